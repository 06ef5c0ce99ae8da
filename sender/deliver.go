package sender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"repute/dsn"
)

// TLS modes of a Relay.
const (
	TLSStartTLS = "starttls" // RFC 3207: plain connection, then STARTTLS (the default)
	TLSImplicit = "implicit" // RFC 8314 §3.3: TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only to a loopback address
)

// RelayPool defaults.
const (
	DefaultRelayConnections = 8
	// DefaultRelayMaxPerConn is how many messages one connection carries before
	// it is closed and another opened (spreads load over a relay's
	// front-ends; Postfix's smtp_connection_reuse_count_limit plays the same
	// role).
	DefaultRelayMaxPerConn = 100
	// DefaultRelayIdleTimeout closes a connection unused for this long, well
	// before a relay's own idle timeout (RFC 5321 §4.5.3.2.7 gives the
	// server 5 minutes).
	DefaultRelayIdleTimeout = 30 * time.Second
)

// Relay is where the sender delivers: one SMTP server (a smarthost, or the
// recipients' own server when RelayIsFinal) reached with RelayPool.
type Relay struct {
	Addr string // host:port
	// TLS is TLSStartTLS (the default when empty), TLSImplicit or TLSNone;
	// TLSNone is refused unless Addr is a loopback address.
	TLS       string
	TLSConfig *tls.Config // nil: the system roots, ServerName from Addr
	// User, when set, authenticates with AUTH PLAIN (RFC 4616, RFC 4954)
	// after TLS.
	User, Password string
	Connections    int    // at most this many at once (default DefaultRelayConnections)
	HeloName       string // the EHLO name (default "localhost")
	// RelayIsFinal says the relay is the recipients' own server: its 250 is
	// delivery, and the sender records delivered at once.
	RelayIsFinal bool

	MaxPerConn  int           // messages per connection (default DefaultRelayMaxPerConn)
	IdleTimeout time.Duration // default DefaultRelayIdleTimeout
	// CommandTimeout bounds each command's reply (default 5 minutes, RFC
	// 5321 §4.5.3.2); the reply after the final dot gets twice as long.
	CommandTimeout time.Duration
	// Dial opens the TCP connection (default a net.Dialer with a 30 s
	// timeout); tests may count or break connections with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Outcome is what the relay's answer means for an item.
type Outcome int

const (
	// Accepted: 2xx after the content (RFC 5321 §4.2.5).
	Accepted Outcome = iota + 1
	// Temporary: a 4xx at any stage, or no reply at all (connection refused
	// or dropped, a timeout — including mid-DATA, since the relay did not
	// say 250): try again later.
	Temporary
	// Permanent: a 5xx to MAIL, RCPT, DATA or the content, or a command
	// the client itself refuses to send (Code 0).
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// DeliveryResult is the relay's answer for one item, in what dsn.ClassifyReply
// takes: the reply code (0 when there was no reply), the RFC 3463 enhanced
// code ("" when none), the reply text, and the phase it answered.
type DeliveryResult struct {
	Outcome  Outcome
	Code     int
	Enhanced string
	Text     string
	Phase    dsn.Phase
	// Sent says the content went to the relay and it answered: false when
	// the message was refused before DATA or the connection failed (the
	// pacer then gives its slot back).
	Sent bool
	Err  error // the error behind a Temporary or Permanent outcome
}

// RelayPool delivers Items to a Relay over reused connections.
type RelayPool struct {
	r    Relay
	host string
	sem  chan struct{}

	mu     sync.Mutex
	idle   []*pconn // most recently used last
	closed bool

	dials, reuses int64 // under mu
}

type pconn struct {
	c        *smtp.Client
	dsn      bool // the relay advertises DSN (RFC 3461 §4)
	n        int  // messages carried
	lastUsed time.Time
}

// NewRelayPool checks r and returns a pool for it. No connection is made until
// the first Deliver.
func NewRelayPool(r Relay) (*RelayPool, error) {
	host, _, err := net.SplitHostPort(r.Addr)
	if err != nil {
		return nil, fmt.Errorf("sender: relay address %q: %w (want host:port)", r.Addr, err)
	}
	switch r.TLS {
	case "":
		r.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !isLoopback(host) {
			return nil, fmt.Errorf("sender: relay %s: tls: none is allowed only to a loopback address (use starttls or implicit)", r.Addr)
		}
	default:
		return nil, fmt.Errorf("sender: relay tls %q: want starttls, implicit or none", r.TLS)
	}
	if r.Connections <= 0 {
		r.Connections = DefaultRelayConnections
	}
	if r.HeloName == "" {
		r.HeloName = "localhost"
	}
	if r.MaxPerConn <= 0 {
		r.MaxPerConn = DefaultRelayMaxPerConn
	}
	if r.IdleTimeout <= 0 {
		r.IdleTimeout = DefaultRelayIdleTimeout
	}
	if r.CommandTimeout <= 0 {
		r.CommandTimeout = 5 * time.Minute
	}
	if r.TLSConfig == nil {
		r.TLSConfig = &tls.Config{}
	}
	if r.TLSConfig.ServerName == "" {
		r.TLSConfig = r.TLSConfig.Clone()
		r.TLSConfig.ServerName = host
	}
	if r.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second}
		r.Dial = d.DialContext
	}
	return &RelayPool{r: r, host: host, sem: make(chan struct{}, r.Connections)}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Relay returns the configuration in use, defaults filled in.
func (p *RelayPool) Relay() Relay { return p.r }

// RemoteMTA is the relay's host, as events name it.
func (p *RelayPool) RemoteMTA() string { return p.host }

// Deliver sends one item: MAIL FROM with RET=HDRS and ENVID=<the Ref>
// (RFC 3461 §4.3, §4.4) when the relay advertises DSN, RCPT TO with
// NOTIFY=SUCCESS,FAILURE,DELAY and ORCPT=rfc822;<recipient> (RFC 3461 §4.1,
// §4.2), then DATA with it.Data as is. It waits for a free connection (at
// most Relay.Connections at once) and reuses it afterwards unless it
// failed: a completed transaction is followed by the next MAIL directly, an
// aborted one (refused at RCPT or DATA) by RSET (RFC 5321 §4.1.1.5); a
// connection without a reply is closed. A pooled connection found dead at
// MAIL (the relay restarted or timed it out) is replaced once at once. ctx bounds the wait and the dial; a transaction under way runs to
// its end (each reply bounded by CommandTimeout), so that a shutdown does
// not cut a message the relay may already have accepted.
func (p *RelayPool) Deliver(ctx context.Context, it *Item) DeliveryResult {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return DeliveryResult{Outcome: Temporary, Phase: dsn.PhaseConnect, Text: ctx.Err().Error(), Err: ctx.Err()}
	}
	defer func() { <-p.sem }()

	pc, err := p.get(ctx)
	if err != nil {
		return connFailure(err)
	}
	reused := pc.n > 0
	res, broken := p.transact(pc, it)
	p.put(pc, broken)
	if broken && reused && res.Phase == dsn.PhaseMail && res.Code == 0 {
		// A pooled connection the relay closed meanwhile (it restarted,
		// or timed us out) fails at the first command, before anything of
		// the message was sent: once, on a new connection, is safe.
		if pc, err = p.dial(ctx); err != nil {
			return connFailure(err)
		}
		res, broken = p.transact(pc, it)
		p.put(pc, broken)
	}
	return res
}

// connFailure is the result of a failure before MAIL (dial, greeting, EHLO,
// STARTTLS, AUTH): about the connection, not the message, so temporary
// whatever its code.
func connFailure(err error) DeliveryResult {
	res := DeliveryResult{Outcome: Temporary, Phase: dsn.PhaseConnect, Text: err.Error(), Err: err}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		res.Code, res.Enhanced, res.Text = se.Code, enhancedCode(se), se.Message
	}
	return res
}

func (p *RelayPool) transact(pc *pconn, it *Item) (res DeliveryResult, broken bool) {
	c := pc.c
	fail := func(err error, phase dsn.Phase) (DeliveryResult, bool) {
		res := DeliveryResult{Outcome: Temporary, Phase: phase, Text: err.Error(), Err: err}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			if isLocalRefusal(err) {
				// go-smtp refused to send the command (an address
				// with CR or LF, a malformed parameter): retrying
				// cannot help.
				res.Outcome = Permanent
			}
			return res, true // no reply: the connection is gone or unusable
		}
		res.Code, res.Enhanced, res.Text = se.Code, enhancedCode(se), se.Message
		if se.Code >= 500 && se.Code < 600 {
			res.Outcome = Permanent
		}
		return res, false
	}

	var mopts smtp.MailOptions
	mopts.Size = int64(len(it.Data))
	if pc.dsn {
		mopts.Return = smtp.DSNReturnHeaders
		if !it.Ref.IsZero() {
			mopts.EnvelopeID = it.Ref.String()
		}
	}
	if err := c.Mail(it.EnvelopeFrom, &mopts); err != nil {
		return fail(err, dsn.PhaseMail)
	}
	ropts := &smtp.RcptOptions{
		Notify:                []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822,
		OriginalRecipient:     it.Recipient,
	}
	if !addrIsASCII(it.Recipient) {
		ropts.OriginalRecipientType = smtp.DSNAddressTypeUTF8 // RFC 6533 §3
	}
	if err := c.Rcpt(it.Recipient, ropts); err != nil {
		res, broken := fail(err, dsn.PhaseRcpt)
		return res, broken || c.Reset() != nil
	}
	w, err := c.Data()
	if err != nil {
		res, broken := fail(err, dsn.PhaseData)
		return res, broken || c.Reset() != nil
	}
	if _, err := w.Write(it.Data); err != nil {
		return DeliveryResult{Outcome: Temporary, Phase: dsn.PhaseData, Text: err.Error(), Err: err}, true
	}
	if _, err := w.CloseWithResponse(); err != nil {
		res, broken := fail(err, dsn.PhaseEndOfData)
		res.Sent = !broken
		return res, broken
	}
	// The transaction is complete: the next MAIL may follow without RSET
	// (RFC 5321 §4.1.1.5 RSET is for aborting one).
	return DeliveryResult{Outcome: Accepted, Code: 250, Phase: dsn.PhaseEndOfData, Sent: true}, false
}

// isLocalRefusal says err is go-smtp's own refusal to send a command (its
// plain "smtp: …" errors), not a failure of the connection.
func isLocalRefusal(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return false
	}
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(err.Error(), "smtp: ")
}

func enhancedCode(se *smtp.SMTPError) string {
	ec := se.EnhancedCode
	if ec[0] <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

func addrIsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// get returns an idle connection used within IdleTimeout, or a new one.
func (p *RelayPool) get(ctx context.Context) (*pconn, error) {
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("sender: relay pool closed")
	}
	var stale []*pconn
	var pc *pconn
	for len(p.idle) > 0 {
		last := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(last.lastUsed) > p.r.IdleTimeout {
			stale = append(stale, last)
			continue
		}
		pc = last
		p.reuses++
		break
	}
	p.mu.Unlock()
	for _, s := range stale {
		s.c.Close()
	}
	if pc != nil {
		return pc, nil
	}
	return p.dial(ctx)
}

func (p *RelayPool) dial(ctx context.Context) (*pconn, error) {
	conn, err := p.r.Dial(ctx, "tcp", p.r.Addr)
	if err != nil {
		return nil, fmt.Errorf("sender: relay %s: %w", p.r.Addr, err)
	}
	if p.r.TLS == TLSImplicit {
		tc := tls.Client(conn, p.r.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("sender: relay %s: TLS: %w", p.r.Addr, err)
		}
		conn = tc
	}
	var c *smtp.Client
	if p.r.TLS == TLSStartTLS {
		// go-smtp says EHLO localhost before STARTTLS; our HeloName goes
		// in the EHLO after it (RFC 3207 §4.2: the client must say EHLO
		// again), which is the one the relay keeps.
		c, err = smtp.NewClientStartTLS(conn, p.r.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("sender: relay %s: STARTTLS: %w", p.r.Addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = p.r.CommandTimeout
	c.SubmissionTimeout = 2 * p.r.CommandTimeout
	if err := c.Hello(p.r.HeloName); err != nil {
		c.Close()
		return nil, fmt.Errorf("sender: relay %s: EHLO: %w", p.r.Addr, err)
	}
	if p.r.User != "" {
		if ok, _ := c.Extension("AUTH"); !ok || !c.SupportsAuth(sasl.Plain) {
			c.Close()
			return nil, fmt.Errorf("sender: relay %s: AUTH PLAIN not offered (is TLS on?)", p.r.Addr)
		}
		if err := c.Auth(sasl.NewPlainClient("", p.r.User, p.r.Password)); err != nil {
			c.Close()
			return nil, fmt.Errorf("sender: relay %s: AUTH PLAIN as %q: %w", p.r.Addr, p.r.User, err)
		}
	}
	hasDSN, _ := c.Extension("DSN")
	p.mu.Lock()
	p.dials++
	p.mu.Unlock()
	return &pconn{c: c, dsn: hasDSN}, nil
}

func (p *RelayPool) put(pc *pconn, broken bool) {
	pc.n++
	if broken {
		pc.c.Close()
		return
	}
	if pc.n >= p.r.MaxPerConn {
		quitClient(pc.c)
		return
	}
	pc.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		quitClient(pc.c)
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

func quitClient(c *smtp.Client) {
	if c.Quit() != nil {
		c.Close()
	}
}

// CloseIdle closes the connections unused for longer than IdleTimeout.
// The sender's loop calls it periodically.
func (p *RelayPool) CloseIdle() {
	now := time.Now()
	p.mu.Lock()
	var stale []*pconn
	kept := p.idle[:0]
	for _, pc := range p.idle {
		if now.Sub(pc.lastUsed) > p.r.IdleTimeout {
			stale = append(stale, pc)
		} else {
			kept = append(kept, pc)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.mu.Unlock()
	for _, pc := range stale {
		quitClient(pc.c)
	}
}

// RelayPoolStats counts connections.
type RelayPoolStats struct {
	Dials  int64 // connections opened
	Reuses int64 // deliveries over a connection opened before
	Idle   int   // connections open and unused now
}

// Stats returns the pool's counters.
func (p *RelayPool) Stats() RelayPoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return RelayPoolStats{Dials: p.dials, Reuses: p.reuses, Idle: len(p.idle)}
}

// Close says QUIT on every idle connection; a connection in use is closed
// when its delivery ends.
func (p *RelayPool) Close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		quitClient(pc.c)
	}
	return nil
}
