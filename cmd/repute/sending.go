package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/api"
	"repute/correlate"
	"repute/intake"
	"repute/metrics"
	"repute/sender"
	"repute/suppress"
)

// senderConfig is the sender: section (issue 11). The sender is off while
// Relay is empty.
type senderConfig struct {
	Relay string `yaml:"relay"` // host:port
	// TLS is starttls (the default), implicit or none (a loopback relay
	// only).
	TLS string `yaml:"tls"`
	// CAFile is a PEM bundle of the CAs the relay's certificate is
	// checked against (default: the system's).
	CAFile string `yaml:"ca_file"`
	// HeloName is the EHLO name (default: this host's name).
	HeloName string `yaml:"helo_name"`
	User     string `yaml:"user"`     // AUTH PLAIN when set
	Password secret `yaml:"password"` // password_env (or password_file)
	// Connections to the relay at once (default 8).
	Connections  int  `yaml:"connections"`
	RelayIsFinal bool `yaml:"relay_is_final"`
	// BounceDomain receives bounces (MAIL FROM bounces+TOKEN@) and mailto
	// unsubscribes.
	BounceDomain string `yaml:"bounce_domain"`
	// TrackingURL is the public base URL of the tracking endpoints.
	TrackingURL string        `yaml:"tracking_url"`
	RetryFor    time.Duration `yaml:"retry_for"`
	DKIM        []dkimConfig  `yaml:"dkim"`
	// WarmedDomains are sender domains already warm (an established
	// domain moved to repute, a small registration sender): paced with no
	// warm-up schedule limit; the per-provider connection cap and
	// overrides still hold.
	WarmedDomains []string `yaml:"warmed_domains"`

	password string // resolved
}

// dkimConfig is one DKIM key of the sender: section.
type dkimConfig struct {
	Domain   string `yaml:"domain"`
	Selector string `yaml:"selector"`
	KeyFile  string `yaml:"key_file"`
}

// on reports whether the sender runs.
func (c senderConfig) on() bool { return c.Relay != "" }

// checkSender fills the sender's defaults and checks the sender: section
// and the accounts' sender_domains; errors name the key. With resolve
// (repute serve) it reads the relay's password.
func (c *serveConfig) checkSender(getenv func(string) string, resolve bool) error {
	for i := range c.Accounts {
		acc := &c.Accounts[i]
		if acc.SkipWarmup && len(acc.SenderDomains) == 0 {
			return fmt.Errorf("accounts: account %q: skip_warmup needs sender_domains: the domains that skip the warm-up", acc.Name)
		}
		for j, d := range acc.SenderDomains {
			n, err := suppress.NormalizeDomain(d)
			if err != nil || !isDomainName(n) {
				return fmt.Errorf("accounts: account %q: sender_domains[%d] %q: want a domain such as news.acme.example", acc.Name, j, d)
			}
			acc.SenderDomains[j] = n
		}
	}
	s := &c.Sender
	if !s.on() {
		if s.TrackingURL != "" || s.BounceDomain != "" || len(s.DKIM) > 0 || s.User != "" {
			c.warnings = append(c.warnings, "sender.relay is empty: the sender is off and the rest of its section is unused")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s.Relay)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("sender.relay: %q: want host:port, e.g. smtp.example.net:587", s.Relay)
	}
	switch s.TLS {
	case "":
		s.TLS = sender.TLSStartTLS
	case sender.TLSStartTLS, sender.TLSImplicit:
	case sender.TLSNone:
		if !loopbackHost(host) {
			return fmt.Errorf("sender.tls: none sends the mail (and the password) in clear text: allowed only to a loopback relay, not %q", host)
		}
		if s.CAFile != "" {
			return errors.New("sender.ca_file: set with tls: none, where no certificate is checked")
		}
	default:
		return fmt.Errorf("sender.tls: %q: want starttls, implicit or none", s.TLS)
	}
	switch {
	case s.Connections < 0:
		return fmt.Errorf("sender.connections: %d: want a positive number (default %d)", s.Connections, sender.DefaultRelayConnections)
	case s.Connections == 0:
		s.Connections = sender.DefaultRelayConnections
	}
	switch {
	case s.RetryFor < 0:
		return fmt.Errorf("sender.retry_for: %s: want a positive duration (default %s)", s.RetryFor, sender.DefaultRetryFor)
	case s.RetryFor == 0:
		s.RetryFor = sender.DefaultRetryFor
	}
	if s.BounceDomain != "" {
		d, err := suppress.NormalizeDomain(s.BounceDomain)
		if err != nil || !isDomainName(d) {
			return fmt.Errorf("sender.bounce_domain: %q: want a domain such as bounces.acme.example", s.BounceDomain)
		}
		s.BounceDomain = d
	}
	if err := checkTrackingURL(s.TrackingURL); err != nil {
		return fmt.Errorf("sender.tracking_url: %w", err)
	}
	switch {
	case s.User != "" && s.Password.IsZero():
		return errors.New("sender.user is set: its password is required as password_env: NAME (an environment variable)")
	case s.User == "" && !s.Password.IsZero():
		return errors.New("sender.password_env is set without sender.user")
	}
	for i := range s.DKIM {
		k := &s.DKIM[i]
		where := fmt.Sprintf("sender.dkim[%d]", i)
		d, err := suppress.NormalizeDomain(k.Domain)
		switch {
		case k.Domain == "":
			return fmt.Errorf("%s.domain: required: the sender domain the key signs for (d=)", where)
		case err != nil || !isDomainName(d):
			return fmt.Errorf("%s.domain: %q: want a domain such as news.acme.example", where, k.Domain)
		case k.Selector == "":
			return fmt.Errorf("%s.selector: required (s=: the key is published at SELECTOR._domainkey.%s)", where, d)
		case k.KeyFile == "":
			return fmt.Errorf("%s.key_file: required: a PEM private key, RSA of at least %d bits or Ed25519", where, sender.MinRSABits)
		}
		k.Domain = d
	}
	for i, d := range s.WarmedDomains {
		n, err := suppress.NormalizeDomain(d)
		if err != nil || !isDomainName(n) {
			return fmt.Errorf("sender.warmed_domains[%d]: %q: want a domain such as news.acme.example", i, d)
		}
		s.WarmedDomains[i] = n
	}
	if resolve && !s.Password.IsZero() {
		pw, err := s.Password.Resolve(getenv)
		if err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		s.password = pw
	}
	return nil
}

// isDomainName reports whether d (normalized) is a domain name with at
// least two labels, not an address literal.
func isDomainName(d string) bool {
	if d == "" || d[0] == '[' {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			return i > 0 && i < len(d)-1
		}
	}
	return false
}

// checkTrackingURL accepts an absolute https URL, or http to a loopback
// host (tests, a local proxy): it is written into every message.
func checkTrackingURL(raw string) error {
	if raw == "" {
		return errors.New("required: the public https base URL written into messages (pixel, links, one-click unsubscribe), e.g. https://t.acme.example")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q: want an absolute https:// URL, e.g. https://t.acme.example", raw)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("%q: https is required (plain http only for a loopback host)", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: a base URL has no query, fragment or user", raw)
	}
	return nil
}

// sending is the built-in sender as repute serve runs it: the composer,
// the durable queue under <data>/sender/queue, the relay pool and the
// warm-up pacer. It is the api.Sender of POST /v1/messages and GET
// /v1/queue.
type sending struct {
	composer *sender.Composer
	queue    *sender.Queue
	sender   *sender.Sender
	pacer    *sender.WarmupPacer
	sink     *intakeSink
	log      *slog.Logger

	dropped  atomic.Uint64 // dropped events recorded
	unsigned sync.Map      // sender domains already logged as unsigned
	// stopped is why the sender stopped delivering (its queue's journal
	// failed: a full or failing disk), for /readyz; nil while it runs.
	stopped atomic.Pointer[error]
}

// notReady says why the sender no longer delivers, or nil.
func (s *sending) notReady() error {
	if p := s.stopped.Load(); p != nil {
		return fmt.Errorf("sender stopped: its queue can no longer record outcomes (messages wait on disk until the next start): %w", *p)
	}
	return nil
}

var _ api.Sender = (*sending)(nil)

// paceRefresh is how often the pacer reads what every process sent.
var paceRefresh = 5 * time.Second

// newSending builds the sender from cfg.Sender: a bad DKIM key file or CA
// file is an error naming the file.
func newSending(cfg serveConfig, keys signingKeys, stats metrics.StatsReader, pipeline *intake.Pipeline,
	isps metrics.ISPMap, log *slog.Logger) (*sending, error) {
	sc := cfg.Sender
	corr, err := correlate.New(correlate.Keys(keys))
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	track, err := sender.NewTrackingSigner(correlate.Keys(keys))
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	var dkim []sender.DKIMKey
	for i, k := range sc.DKIM {
		key, err := sender.LoadDKIMKey(k.Domain, k.Selector, k.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sender.dkim[%d].key_file %s: %w", i, k.KeyFile, err)
		}
		dkim = append(dkim, key)
	}
	composer, err := sender.NewComposer(sender.ComposerOptions{
		Correlate: corr, Tracking: track, TrackingURL: sc.TrackingURL, BounceDomain: sc.BounceDomain, DKIM: dkim,
	})
	if err != nil {
		return nil, err
	}
	relay := sender.Relay{
		Addr: sc.Relay, TLS: sc.TLS, User: sc.User, Password: sc.password,
		Connections: sc.Connections, HeloName: sc.HeloName, RelayIsFinal: sc.RelayIsFinal,
	}
	if relay.HeloName == "" {
		if h, err := os.Hostname(); err == nil {
			relay.HeloName = h
		}
	}
	if sc.CAFile != "" {
		pem, err := os.ReadFile(sc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sender.ca_file %s: %w", sc.CAFile, plainErr(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sender.ca_file %s: no PEM certificate in it", sc.CAFile)
		}
		relay.TLSConfig = &tls.Config{RootCAs: pool}
	}
	po := sender.PacerOptions{History: sender.StoreHistory{Stats: stats}}
	// The pacer's own schedule does not hold domains that are warm already,
	// nor those of skip_warmup accounts (the rule engine caps these).
	if skip := skipWarmupDomains(cfg.Accounts); len(sc.WarmedDomains) > 0 || len(skip) > 0 {
		warmed := make(map[string]bool, len(sc.WarmedDomains)+len(skip))
		for d := range skip {
			warmed[d] = true
		}
		for _, d := range sc.WarmedDomains {
			warmed[d] = true
		}
		po.Warmed = func(d string) bool { return warmed[d] }
	}
	pacer, err := sender.NewWarmupPacer(po)
	if err != nil {
		return nil, err
	}
	q, err := sender.OpenQueueLogger(filepath.Join(cfg.Data, "sender", "queue"), log)
	if err != nil {
		return nil, fmt.Errorf("sender queue: %w", err)
	}
	sink := &intakeSink{pipeline: pipeline, isps: isps, log: log}
	snd, err := sender.New(sender.Options{
		Queue: q, Relay: relay, Pacer: pacer, Events: sink, ISP: isps.Lookup,
		RetryFor: sc.RetryFor, Logger: log,
	})
	if err != nil {
		q.Close()
		return nil, err
	}
	s := &sending{composer: composer, queue: q, sender: snd, pacer: pacer, sink: sink, log: log}
	for _, k := range dkim {
		log.Info("dkim key loaded", "domain", k.Domain, "selector", k.Selector)
	}
	log.Info("sender on", "relay", sc.Relay, "tls", sc.TLS, "connections", sc.Connections,
		"bounce_domain", sc.BounceDomain, "warmed_domains", sc.WarmedDomains, "queued", q.Len())
	return s, nil
}

// run delivers until ctx ends, and refreshes the pacer's view of what
// every process sent every paceRefresh meanwhile.
func (s *sending) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.sender.Run(ctx); err != nil {
			s.stopped.Store(&err)
			s.log.Error("sender stopped: the queue can no longer record outcomes; messages wait on disk until the next start", "err", err)
		}
	})
	wg.Go(func() {
		t := time.NewTicker(paceRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := s.pacer.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("pacer: reading what every process sent failed; pacing on this process's own counts", "err", err)
			}
		}
	})
	wg.Wait()
}

// close closes the queue: what is not done stays on disk.
func (s *sending) close() error { return s.queue.Close() }

// Compose implements api.Sender.
func (s *sending) Compose(p *sender.Prepared, account, recipient string) (*sender.Item, error) {
	it, signed, err := s.composer.Compose(p, account, recipient)
	if err != nil {
		return nil, err
	}
	if !signed {
		if _, seen := s.unsigned.LoadOrStore(p.SenderDomain, true); !seen {
			s.log.Warn("no DKIM key for this sender domain: its messages go out unsigned (add it under sender.dkim)",
				"sender_domain", p.SenderDomain)
		}
	}
	return it, nil
}

// Record implements api.Sender: the dropped events of POST /v1/messages.
func (s *sending) Record(ctx context.Context, events []metrics.Event) error {
	if err := s.sink.Record(ctx, events); err != nil {
		return err
	}
	s.dropped.Add(uint64(len(events)))
	return nil
}

// Enqueue implements api.Sender.
func (s *sending) Enqueue(items []*sender.Item) error { return s.sender.Enqueue(items) }

// Summary implements api.Sender.
func (s *sending) Summary(account string) sender.QueueSummary {
	return s.sender.AccountSummary(account)
}

// intakeSink is the sender's EventSink: its events, normalized, go to
// intake like every source's. They have no PostedBy: repute produced
// them, so a blocklist entry one causes is shared by every account.
//
// Records that arrive while a Submit is under way are submitted together
// by the next one (a group commit): each Submit holds intake's lock across
// a store lookup and the spool's fsync, a few milliseconds, so one event a
// Submit would cap the sender at a few hundred messages a second however
// many connections and pipelined outcomes it has (TestSendingCrash: ~170/s
// with 4 connections to a relay that answers in 2 ms, and every crash
// then re-sent the full Connections + Pipeline window).
type intakeSink struct {
	pipeline *intake.Pipeline
	isps     metrics.ISPMap
	log      *slog.Logger

	mu       sync.Mutex
	pending  []metrics.Event
	waiters  []chan error
	flushing bool
}

// sinkSubmitTimeout bounds one grouped Submit.
const sinkSubmitTimeout = 30 * time.Second

func (k *intakeSink) Record(ctx context.Context, events []metrics.Event) error {
	now := time.Now()
	out := make([]metrics.Event, 0, len(events))
	for _, e := range events {
		e.PostedBy = ""
		if err := e.Normalize(k.isps, now.Add(time.Minute)); err != nil {
			// Retrying would fail the same way for ever: say it loudly.
			k.log.Error("sender event invalid; not recorded", "kind", e.Kind, "recipient", e.Recipient, "ref", e.SourceRef, "err", err)
			continue
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil
	}
	done := make(chan error, 1)
	k.mu.Lock()
	k.pending = append(k.pending, out...)
	k.waiters = append(k.waiters, done)
	if !k.flushing {
		k.flushing = true
		go k.flush()
	}
	k.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The events may still be submitted: recording them again
		// later is a duplicate intake drops.
		return ctx.Err()
	}
}

// flush submits what is pending, one Submit for everything that arrived
// meanwhile, until nothing is.
func (k *intakeSink) flush() {
	for {
		k.mu.Lock()
		events, waiters := k.pending, k.waiters
		k.pending, k.waiters = nil, nil
		if len(waiters) == 0 {
			k.flushing = false
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), sinkSubmitTimeout)
		_, err := k.pipeline.Submit(ctx, events)
		cancel()
		for _, w := range waiters {
			w <- err
		}
	}
}

// senderCollector exports the sender's counters and its queue at scrape
// time.
type senderCollector struct {
	s        *sending
	messages *prometheus.Desc
	queue    *prometheus.Desc
}

func newSenderCollector(s *sending) *senderCollector {
	return &senderCollector{
		s: s,
		messages: prometheus.NewDesc("repute_sender_messages_total",
			"Messages of the built-in sender by outcome: sent (the relay said 2xx), bounced (5xx), deferred (4xx or no reply; retried), expired (given up after retry_for), dropped (not sent: suppressed or not an address).",
			[]string{"outcome"}, nil),
		queue: prometheus.NewDesc("repute_sender_queue",
			"Messages in the sender's queue by why they wait: ready, retrying, paced, in_flight, relay_down.",
			[]string{"why"}, nil),
	}
}

func (c *senderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.queue
}

func (c *senderCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.sender.Stats()
	for _, m := range []struct {
		outcome string
		n       uint64
	}{
		{"sent", st.Sent}, {"bounced", st.Bounced - st.Expired}, {"deferred", st.Deferred},
		{"expired", st.Expired}, {"dropped", c.s.dropped.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(m.n), m.outcome)
	}
	sum := c.s.sender.Summary()
	for _, q := range []struct {
		why string
		n   int
	}{
		{sender.WhyReady, sum.Ready}, {sender.WhyRetrying, sum.Retrying}, {sender.WhyPaced, sum.Paced},
		{sender.WhyInFlight, sum.InFlight}, {sender.WhyRelayDown, sum.RelayDown},
	} {
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(q.n), q.why)
	}
}

// decisionPacer is the pacer the rule engine's decisions are applied to:
// the sender's, and each change wakes the messages it was holding, so a
// lifted pause or an ended slow-down takes effect at once instead of
// after the time the old limits named.
func (s *sending) decisionPacer() *repacingPacer { return &repacingPacer{s.pacer, s.sender} }

type repacingPacer struct {
	pacer  *sender.WarmupPacer
	sender *sender.Sender
}

func (p *repacingPacer) SetOverride(scope sender.Scope, o sender.Override) {
	p.pacer.SetOverride(scope, o)
	p.sender.Repace()
}

func (p *repacingPacer) ClearOverride(scope sender.Scope) {
	p.pacer.ClearOverride(scope)
	p.sender.Repace()
}

// skipWarmupDomains are the sender domains of the accounts with
// skip_warmup.
func skipWarmupDomains(accounts []accountConfig) map[string]bool {
	skip := map[string]bool{}
	for _, acc := range accounts {
		if acc.SkipWarmup {
			for _, d := range acc.SenderDomains {
				skip[d] = true
			}
		}
	}
	return skip
}
