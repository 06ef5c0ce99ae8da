package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"repute/api"
	"repute/intake"
	"repute/metrics"
	"repute/opens"
	"repute/rules"
	"repute/spool"
	"repute/track"
)

func init() {
	commands["serve"] = command{"run the HTTP API, the spool and the store", runServe}
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadServeConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "repute serve:", err)
		return exitStatus(err)
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "repute serve:", err)
		return 2
	}
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// A failure, at start or later, is one plain line and status 1.
	if err := serve(ctx, cfg, log, stdout); err != nil {
		fmt.Fprintln(stderr, "repute serve:", err)
		return 1
	}
	return 0
}

// newLogger returns the JSON logger. A duration logs as "30s", not as
// nanoseconds, whoever logs it.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: durationAsText})), nil
}

// durationAsText makes a duration attribute its text form ("1m30s").
func durationAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// app is a running repute: spool, store, pipeline and HTTP handler.
type app struct {
	cfg     serveConfig
	log     *slog.Logger
	spool   *spool.Spool
	store   store
	sources []source
	// suppression keeps the blocklist and the unsubscribe list, fed by
	// intake once events are stored.
	suppression *suppression
	// webhooks tell the accounts of the changes of their unsubscribe
	// lists.
	webhooks *webhooks
	pipeline *intake.Pipeline
	handler  http.Handler
	adminKey string // the generated or configured admin key, if any
	// signing is the key set for the tokens repute issues.
	signing signingKeys
	// machine tells machine opens from people's (nil: detection off).
	machine *opens.Detector
	// sending is the built-in sender; nil while sender.relay is empty.
	sending *sending
	// rules is the rule engine: flags, warm-up and throttle decisions.
	rules *ruleEngine
	// decisionsTopic publishes the decisions to kafka.decisions_topic
	// (nil: not set).
	decisionsTopic *decisionsTopic

	// tracking serves /t/o, /t/c and /t/u (tracking.go); trackLn is
	// tracking_listen's listener, nil when they are served on listen.
	tracking *track.Handler
	trackLn  net.Listener
	// tls serves HTTPS on both listeners when tls_cert_file is set; nil:
	// plain HTTP.
	tls *certReloader
	// guard holds the rate limits and the failed-authentication lock-out
	// of the API and the tracking endpoints.
	guard *api.Guard
}

// newApp opens the spool and the store and builds the handler. Nothing runs
// yet: see (*app).run.
func newApp(ctx context.Context, cfg serveConfig, log *slog.Logger) (*app, error) {
	if err := checkAccountKeys(cfg.Accounts); err != nil {
		return nil, err
	}
	if err := checkDataDir(cfg.Data); err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log}
	var (
		signingSource string
		generated     bool
		err           error
	)
	a.signing, signingSource, generated, err = loadSigningKeys(cfg.SigningKeys, cfg.Data, os.Getenv)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Warn("signing keys generated: several nodes must share one set; copy this file to each, or set signing_keys_env or signing_keys_file",
			"file", filepath.Join(cfg.Data, signingKeysFile))
	}
	keys, err := a.keys(signingSource)
	if err != nil {
		return nil, err
	}
	a.spool, err = spool.Open(filepath.Join(cfg.Data, "spool"), spool.Options{
		MaxBytes: cfg.SpoolMaxBytes, Logger: log.With("component", "spool"),
	})
	if err != nil {
		return nil, err
	}
	a.store, err = openStore(ctx, cfg, log)
	if err != nil {
		a.spool.Close()
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_records", Help: "Records in the spool not yet drained into the store.",
		}, func() float64 { return float64(a.spool.Stats().Records) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_bytes", Help: "Bytes in the spool not yet drained into the store.",
		}, func() float64 { return float64(a.spool.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_quarantine_files", Help: "Quarantine files in the spool directory: corrupt records cut out, kept for inspection.",
		}, func() float64 { return float64(a.spool.Stats().Quarantined) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_dead_records", Help: "Dead-letter files in the spool directory: events the store refused for good, set aside (repute spool dead lists them).",
		}, func() float64 { return float64(a.spool.Stats().Dead) }),
	)
	a.suppression = newSuppression(a.store, log.With("component", "suppress"))
	a.suppression.snapshotPath = filepath.Join(cfg.Data, suppressionSnapshotFile)
	a.suppression.storeID = storeIdentity(cfg)
	a.suppression.metrics = newSuppressionMetrics()
	reg.MustRegister(a.suppression.metrics.collectors()...)
	a.webhooks = newWebhooks(cfg.Accounts, a.store, cfg.Data, log.With("component", "webhooks"))
	a.suppression.changed = a.webhooks.changed
	a.machine, err = machineOpens(cfg.MachineOpens, log)
	if err != nil {
		a.close()
		return nil, err
	}
	var classify func(*metrics.Event)
	if a.machine != nil {
		// The send's time is not looked up at intake (no prefetch verdict
		// there): it would cost a store read per open under intake's lock,
		// and the tracking endpoints, which know the send, classify with
		// a.machine themselves.
		classify = func(e *metrics.Event) { a.machine.ClassifyEvent(e, time.Time{}) }
	}
	mx, err := ispMX(cfg, reg, log.With("component", "isp-mx"))
	if err != nil {
		a.close()
		return nil, err
	}
	classify = chainClassify(classify, ispClassify(mx))
	a.pipeline = intake.New(a.spool, a.store, intake.Options{
		Logger: log.With("component", "intake"), Registerer: reg,
		AfterStore: func(ctx context.Context, events []metrics.Event) error {
			if a.rules != nil {
				a.rules.observe(events) // the replies the pattern rules read
			}
			return a.suppression.afterStore(ctx, events)
		},
		Classify: classify,
	})
	// One Converter configuration for every feedback source: POST
	// /v1/feedback, the IMAP mailboxes and the Kafka raw topics.
	signing := a.signing
	procs, err := newProcessorFactory(cfg, a.store, &signing)
	if err == nil {
		a.sources, err = a.feedbackSources(procs, reg)
	}
	if err != nil {
		a.close()
		return nil, err
	}
	isps := metrics.NewISPMap(cfg.ISPDomains)
	var apiSender api.Sender
	if cfg.Sender.on() {
		a.sending, err = newSending(cfg, a.signing, a.store, a.pipeline, isps, log.With("component", "sender"))
		if err != nil {
			a.close()
			return nil, err
		}
		reg.MustRegister(newSenderCollector(a.sending))
		apiSender = a.sending
	}
	var pacer rules.Pacer // nil without the sender: decisions are only served
	if a.sending != nil {
		pacer = a.sending.decisionPacer()
	}
	if a.rules, err = newRuleEngine(cfg, a.store, pacer, log.With("component", "rules")); err != nil {
		a.close()
		return nil, err
	}
	reg.MustRegister(a.rules.collectors()...)
	if a.decisionsTopic, err = newDecisionsTopic(cfg.Kafka, a.rules.decider.Store(), reg,
		log.With("component", "decisions-topic"), decisionsTopicOptions{
			Evaluating: a.rules.decider.Evaluating,
			Current:    func() []rules.Decision { return a.rules.decider.Current(time.Now(), rules.DecisionScope{}) },
		}); err != nil {
		a.close()
		return nil, err
	}
	senderDomains := map[string][]string{}
	for _, acc := range cfg.Accounts {
		if len(acc.SenderDomains) > 0 {
			senderDomains[acc.Name] = append(senderDomains[acc.Name], acc.SenderDomains...)
		}
	}
	guardOpts := cfg.guardOptions()
	guardOpts.Registerer = reg
	guardOpts.Logger = log.With("component", "api")
	if guardOpts.TrustedProxies, err = parseTrustedProxies(cfg.TrustedProxies); err != nil {
		a.close()
		return nil, err
	}
	names := make([]string, 0, len(cfg.Accounts))
	for _, acc := range cfg.Accounts {
		names = append(names, acc.Name)
	}
	if a.guard, err = api.NewGuard(guardOpts, names); err != nil {
		a.close()
		return nil, err
	}
	a.handler, err = api.NewHandler(api.Options{
		Feedback:       procs.feedbackFunc(),
		Evidence:       a.store,
		EvidenceReader: a.store,
		Suppressions:   a.suppression,
		Webhooks:       a.webhooks,
		Sender:         apiSender,
		SenderDomains:  senderDomains,

		Keys:         keys,
		Submitter:    a.pipeline,
		Stats:        a.store,
		Ready:        a.ready,
		ISPs:         isps,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Logger:       log.With("component", "api"),
		Gatherer:     reg,
		Registerer:   reg,

		MaxInflightBytes: cfg.MaxInflightBytes,
		MinBodyRate:      cfg.MinBodyRate,
		WriteTimeout:     cfg.WriteTimeout,

		Guard:         a.guard,
		QueryTimeout:  cfg.QueryTimeout,
		MaxResultRows: cfg.MaxResultRows,
	})
	if err != nil {
		a.close()
		return nil, err
	}
	a.handler, err = api.WithDecisions(a.handler, api.DecisionsOptions{
		Keys: keys, Decisions: a.rules, Owner: senderDomainOwner(senderDomains), Logger: log.With("component", "api"),
		Guard: a.guard, QueryTimeout: cfg.QueryTimeout, MaxResultRows: cfg.MaxResultRows,
	})
	if err != nil {
		a.close()
		return nil, err
	}
	if err := a.newTracking(reg); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// machineOpens builds the machine-open detector: intake applies it to every
// open or click that arrives without a verdict, from any source, by user
// agent and address. nil when machine_opens: off is set.
func machineOpens(cfg machineOpensConfig, log *slog.Logger) (*opens.Detector, error) {
	if cfg.Off {
		log.Info("machine-open detection off: opens keep the verdict they arrive with")
		return nil, nil
	}
	d, err := opens.New(opens.Options{AppleRangesFile: cfg.AppleRangesFile, PrefetchWindow: cfg.PrefetchWindow})
	if err != nil {
		return nil, fmt.Errorf("config machine_opens: %w", err)
	}
	if cfg.AppleRangesFile == "" {
		log.Info("machine opens: no apple_ranges_file: opens with Apple's proxy user agent are flagged apple_mpp_ua, unconfirmed by address")
	} else {
		log.Info("machine opens: Apple proxy ranges loaded", "file", cfg.AppleRangesFile, "ranges", d.AppleRanges().Len())
	}
	return d, nil
}

// keys builds the key set; with no key configured at all it generates an
// admin key once and keeps it in the data directory. It logs the keys in
// force, and warns of a generated admin key that is no longer used.
func (a *app) keys(signingSource string) (*api.Keys, error) {
	accounts := make([]api.AccountKeys, 0, len(a.cfg.Accounts))
	counts := map[string]int{}
	for _, acc := range a.cfg.Accounts {
		accounts = append(accounts, api.AccountKeys{Name: acc.Name, Keys: acc.Keys})
		counts[acc.Name] += len(acc.Keys)
	}
	path := filepath.Join(a.cfg.Data, "admin.key")
	admin, source := a.cfg.AdminKey, "environment"
	switch {
	case admin != "":
	case len(accounts) == 0:
		var err error
		if admin, err = generatedAdminKey(path, a.log); err != nil {
			return nil, err
		}
		source = "generated"
	default:
		source = "none"
	}
	attrs := []any{"admin", source}
	if source == "generated" {
		attrs = append(attrs, "admin_key_file", path)
	}
	attrs = append(attrs, "account_keys", counts, "signing_keys", signingSource)
	a.log.Info("keys in force", attrs...)
	if source != "generated" {
		if _, err := os.Stat(path); err == nil {
			why := "REPUTE_ADMIN_KEY is set"
			if source == "none" {
				why = "accounts are configured and REPUTE_ADMIN_KEY is not set: no admin key is in force"
			}
			a.log.Warn("the generated admin key is no longer used: "+why+"; set REPUTE_ADMIN_KEY to its content to keep it, or delete the file",
				"file", path)
		}
	}
	a.adminKey = admin
	return api.NewKeys(admin, accounts)
}

// checkAccountKeys refuses a key that is not a key hash, such as the
// placeholder of repute.example.yaml, saying how to make one.
func checkAccountKeys(accounts []accountConfig) error {
	for _, acc := range accounts {
		for _, k := range acc.Keys {
			if !validKeyHash(k) {
				return fmt.Errorf("config accounts: account %q: key %q is not a key hash (\"sha256:\" and 64 hex digits); make one with: repute keys new --account %s",
					acc.Name, k, acc.Name)
			}
		}
	}
	return nil
}

// validKeyHash reports whether s is an account key as configured:
// "sha256:" and 64 hex digits.
func validKeyHash(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// generatedAdminKey reads the key stored at path, or creates one, mode
// 0600. A key file that group or others can read is made 0600, with a
// warning.
func generatedAdminKey(path string, log *slog.Logger) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if key := strings.TrimSpace(string(raw)); key != "" {
			st, err := os.Stat(path)
			if err != nil {
				return "", fmt.Errorf("admin key: %w", err)
			}
			if st.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return "", fmt.Errorf("admin key: %w", err)
				}
				log.Warn("admin key file was readable by others: made it mode 0600", "file", path,
					"was", fmt.Sprintf("%04o", st.Mode().Perm()))
			}
			return key, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin key: %w", err)
	}
	key := newKey()
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin key: %w", err)
	}
	// WriteFile keeps the mode of a file that existed (empty): make sure.
	if err := os.Chmod(path, 0o600); err != nil {
		return "", fmt.Errorf("admin key: %w", err)
	}
	return key, nil
}

// newKey returns a new random API key: "rk_" and 32 base64url characters.
func newKey() string {
	b := make([]byte, 24)
	rand.Read(b)
	return "rk_" + base64.RawURLEncoding.EncodeToString(b)
}

// checkDataDir creates the data directory if missing and checks that it
// is writable, before anything is put in it.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, plainErr(err))
	}
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, plainErr(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// plainErr strips the operation and path from a file system or network
// error, for messages that name them already.
func plainErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// listen binds addr; its error reads "listen 127.0.0.1:8080: address
// already in use".
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, plainErr(err))
	}
	return ln, nil
}

// ready says why the server cannot serve reads or drain the spool.
func (a *app) ready(ctx context.Context) error {
	// A failed spool write is probed (at most once a second), so that
	// readiness returns with the disk, before any client retries.
	if err := a.spool.Probe(); err != nil {
		return fmt.Errorf("cannot accept events: %w", err)
	}
	if err := a.suppression.notReady(); err != nil {
		return err
	}
	if a.sending != nil {
		if err := a.sending.notReady(); err != nil {
			return err
		}
	}
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("store unreachable (events are kept in the spool): %w", err)
	}
	if err := a.pipeline.StoreError(); err != nil {
		return fmt.Errorf("last store write failed (events are kept in the spool): %w", err)
	}
	return nil
}

func (a *app) close() {
	if a.sending != nil {
		if err := a.sending.close(); err != nil {
			a.log.Error("closing the sender's queue", "err", err)
		}
	}
	if err := a.store.Close(); err != nil {
		a.log.Error("closing store", "err", err)
	}
	if err := a.spool.Close(); err != nil {
		a.log.Error("closing spool", "err", err)
	}
}

// run serves on ln until ctx ends, then shuts down in two phases: stop
// intake (no new requests), then flush the spool into the store within the
// shutdown timeout.
func (a *app) run(ctx context.Context, ln net.Listener) error {
	drainCtx, stopDrain := context.WithCancel(context.Background())
	drained := make(chan error, 1)
	go func() { drained <- a.pipeline.Run(drainCtx) }()

	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: min(10*time.Second, a.cfg.ReadTimeout),
		ReadTimeout:       a.cfg.ReadTimeout,
		// It counts from the end of the headers, so the body's read time
		// is added; POST /v1/events restarts it once the body is in.
		WriteTimeout: a.cfg.ReadTimeout + a.cfg.WriteTimeout,
		IdleTimeout:  a.cfg.IdleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- a.serveHTTP(srv, ln) }()
	stopTracking := a.startTracking()
	if a.tls != nil {
		tlsCtx, stopTLS := context.WithCancel(context.Background())
		defer stopTLS()
		go a.tls.watch(tlsCtx)
	}

	// The feedback sources, the sender and the evidence purge stop before
	// intake: a source acknowledges (moves, commits) only what intake made
	// durable, and the sender records an outcome in its queue only once
	// intake made its event durable. The sender's queue closes after the
	// HTTP server (POST /v1/messages enqueues), in a.close.
	sourcesCtx, stopSources := context.WithCancel(context.Background())
	sourcesDone := make(chan struct{})
	go func() {
		defer close(sourcesDone)
		var wg sync.WaitGroup
		wg.Go(func() { runSources(sourcesCtx, a.sources, a.log) })
		wg.Go(func() {
			purgeEvidence(sourcesCtx, a.store, a.cfg.EvidenceRetention, a.log.With("component", "evidence"))
		})
		wg.Go(func() { a.webhooks.run(sourcesCtx) })
		wg.Go(func() { a.rules.run(sourcesCtx) })
		wg.Go(func() { a.decisionsTopic.run(sourcesCtx) }) // nil: returns at once
		if a.sending != nil {
			wg.Go(func() { a.sending.run(sourcesCtx) })
		}
		wg.Go(func() {
			a.suppression.load(sourcesCtx)
			var follow sync.WaitGroup
			if a.cfg.ClickHouse != "" {
				// Only ClickHouse is shared by several processes (one
				// process at a time opens a DuckDB file).
				follow.Go(func() { a.suppression.follow(sourcesCtx) })
			}
			follow.Go(func() { a.suppression.snapshots(sourcesCtx) })
			a.suppression.sweep(sourcesCtx, time.Minute)
			follow.Wait()
		})
		wg.Wait()
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	a.log.Info("shutting down: sources and intake stop, spool flushes", "timeout", a.cfg.ShutdownTimeout.String())
	deadline, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	stopSources()
	<-sourcesDone
	if serr := srv.Shutdown(deadline); serr != nil {
		a.log.Error("http shutdown", "err", serr)
	}
	// The tracking hits still queued go to intake before it stops.
	stopTracking(deadline)
	if ferr := a.spool.Flush(deadline); ferr != nil {
		st := a.spool.Stats()
		a.log.Warn("spool not fully flushed; the rest is replayed at next start",
			"err", ferr, "records", st.Records, "bytes", st.Bytes)
	}
	stopDrain()
	<-drained
	// Every change is in the log now: the snapshot spares the next start
	// the replay.
	if serr := a.suppression.saveSnapshot(deadline); serr != nil {
		a.log.Error("suppression: writing the snapshot at shutdown failed", "err", serr)
	}
	a.close()
	a.log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// serveHTTP serves srv on ln, over TLS when tls_cert_file is set.
func (a *app) serveHTTP(srv *http.Server, ln net.Listener) error {
	if a.tls == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = a.tls.config()
	return srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
}

// serve binds the listener first, then opens the data directory and the
// store: a start-up failure (port in use, unwritable data directory)
// leaves a new data directory untouched.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, stdout io.Writer) error {
	ln, err := listen(cfg.Listen)
	if err != nil {
		return err
	}
	trackLn, err := listenTracking(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	var certs *certReloader
	if cfg.TLSCertFile != "" {
		certs, err = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log.With("component", "tls"))
	}
	var a *app
	if err == nil {
		a, err = newApp(ctx, cfg, log)
	}
	if err != nil {
		ln.Close()
		if trackLn != nil {
			trackLn.Close()
		}
		return err
	}
	a.trackLn, a.tls = trackLn, certs
	scheme := "http"
	if certs != nil {
		scheme = "https"
	}
	if trackLn != nil {
		fmt.Fprintf(stdout, "tracking endpoints (/t/o, /t/c, /t/u) on %s://%s\n", scheme, trackLn.Addr())
		log.Info("tracking endpoints listening", "addr", trackLn.Addr().String())
	}
	store := "duckdb " + filepath.Join(cfg.Data, "repute.duckdb")
	if cfg.ClickHouse != "" {
		store = "clickhouse " + cfg.ClickHouse + "/" + cfg.ClickHouseDatabase
	}
	fmt.Fprintf(stdout, "repute serve listening on %s://%s (store: %s, data: %s)\n", scheme, ln.Addr(), store, cfg.Data)
	if cfg.AdminKey == "" && len(cfg.Accounts) == 0 {
		fmt.Fprintf(stdout, "admin key (generated, kept in %s): %s\n", filepath.Join(cfg.Data, "admin.key"), a.adminKey)
	}
	fmt.Fprintf(stdout, "try: curl -H 'Authorization: Bearer <key>' %s://%s/v1/stats\n", scheme, ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "store", store)
	return a.run(ctx, ln)
}
