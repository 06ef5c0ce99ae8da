package sender

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"repute/correlate"
	"repute/dsn"
)

// received is one transaction the test relay took (or refused at the end).
type received struct {
	From     string
	MailOpts smtp.MailOptions
	To       []string
	RcptOpts []smtp.RcptOptions
	Data     []byte
	Session  int  // which connection carried it
	TLS      bool // the session was under TLS
	User     string
}

// testRelay is go-smtp's server on 127.0.0.1, recording what it receives;
// its hooks answer as a relay in trouble would.
type testRelay struct {
	t    *testing.T
	addr string
	srv  *smtp.Server
	tls  *tls.Config // server side, for STARTTLS
	user string      // AUTH PLAIN required with this user and password "pw"

	mu       sync.Mutex
	msgs     []received
	sessions int
	// Hooks, called with the number of transactions seen so far (refused
	// ones included) and the recipient; an error refuses.
	onMail  func(n int, from string) error
	onRcpt  func(n int, to string) error
	onData  func(n int, s *session) error // may close the connection
	discard bool                          // count, keep nothing (benchmarks)
	noDSN   bool                          // do not advertise DSN
	count   int
}

type testBackend struct{ r *testRelay }

func (b testBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.r.mu.Lock()
	b.r.sessions++
	n := b.r.sessions
	b.r.mu.Unlock()
	_, isTLS := c.TLSConnectionState()
	return &session{r: b.r, c: c, id: n, tls: isTLS}, nil
}

type session struct {
	r    *testRelay
	c    *smtp.Conn
	id   int
	tls  bool
	user string
	cur  received
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

func (s *session) AuthMechanisms() []string {
	if s.r.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.r.user || password != "pw" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) n() int {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.r.count
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.r.user != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	if f := s.r.onMail; f != nil {
		if err := f(s.n(), from); err != nil {
			s.r.bump()
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.cur = received{From: from, Session: s.id, TLS: isTLS, User: s.user}
	if opts != nil {
		s.cur.MailOpts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if f := s.r.onRcpt; f != nil {
		if err := f(s.n(), to); err != nil {
			s.r.bump()
			return err
		}
	}
	s.cur.To = append(s.cur.To, to)
	if opts != nil {
		s.cur.RcptOpts = append(s.cur.RcptOpts, *opts)
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	if f := s.r.onData; f != nil {
		if err := f(s.n(), s); err != nil {
			io.Copy(io.Discard, r)
			s.r.bump()
			return err
		}
	}
	if s.r.discard {
		io.Copy(io.Discard, r)
		s.r.bump()
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = data
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, s.cur)
	s.r.count++
	s.r.mu.Unlock()
	return nil
}

func (r *testRelay) bump() {
	r.mu.Lock()
	r.count++
	r.mu.Unlock()
}

// received returns a copy of what the relay accepted.
func (r *testRelay) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.msgs...)
}

func (r *testRelay) sessionCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions
}

// startRelay starts a test relay on addr ("127.0.0.1:0" for any port).
func startRelay(t testing.TB, addr string, configure func(*testRelay)) *testRelay {
	t.Helper()
	r := &testRelay{}
	if tt, ok := t.(*testing.T); ok {
		r.t = tt
	}
	if configure != nil {
		configure(r)
	}
	r.listen(t, addr)
	return r
}

func (r *testRelay) listen(t testing.TB, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a relay just closed may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(testBackend{r})
	srv.Domain = "relay.test"
	srv.ErrorLog = log.New(io.Discard, "", 0) // the failures tests cause on purpose
	srv.EnableDSN = !r.noDSN
	srv.TLSConfig = r.tls
	srv.AllowInsecureAuth = r.tls == nil
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	r.srv, r.addr = srv, ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// restart closes the relay (every connection with it) and listens again on
// the same port.
func (r *testRelay) restart(t testing.TB) {
	t.Helper()
	r.srv.Close()
	r.listen(t, r.addr)
}

func testItem(i int) *Item {
	var ref correlate.Ref
	ref[0], ref[1] = byte(i>>8), byte(i)
	ref[2] = 0x5a
	return &Item{
		Ref:          ref,
		Account:      "acme",
		SenderDomain: "news.acme.example",
		SendingIP:    "pool-a",
		Campaign:     "winter",
		Category:     "marketing",
		MessageID:    fmt.Sprintf("<m%d@news.acme.example>", i),
		Recipient:    fmt.Sprintf("user%d@x.example", i),
		EnvelopeFrom: fmt.Sprintf("bounces+t%d@bounces.acme.example", i),
		Data: []byte(fmt.Sprintf("From: News <news@news.acme.example>\r\nTo: user%d@x.example\r\n"+
			"Message-ID: <m%d@news.acme.example>\r\nSubject: hello\r\n\r\nbody %d\r\n.leading dot\r\n", i, i, i)),
	}
}

func newTestPool(t *testing.T, r *testRelay, mod func(*Relay)) *RelayPool {
	t.Helper()
	cfg := Relay{Addr: r.addr, TLS: TLSNone, Connections: 2}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewRelayPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestDeliverDSNParameters(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := newTestPool(t, r, nil)
	it := testItem(1)
	res := p.Deliver(context.Background(), it)
	if res.Outcome != Accepted || !res.Sent {
		t.Fatalf("Deliver = %+v, want accepted and sent", res)
	}
	got := r.received()
	if len(got) != 1 {
		t.Fatalf("relay received %d messages, want 1", len(got))
	}
	m := got[0]
	if string(m.Data) != string(it.Data) {
		t.Errorf("data differs:\n got %q\nwant %q", m.Data, it.Data)
	}
	if m.From != it.EnvelopeFrom {
		t.Errorf("MAIL FROM %q, want %q", m.From, it.EnvelopeFrom)
	}
	if m.MailOpts.Return != smtp.DSNReturnHeaders || m.MailOpts.EnvelopeID != it.Ref.String() {
		t.Errorf("MAIL RET=%q ENVID=%q, want HDRS and %q", m.MailOpts.Return, m.MailOpts.EnvelopeID, it.Ref.String())
	}
	if len(m.To) != 1 || m.To[0] != it.Recipient {
		t.Fatalf("RCPT TO %q, want %q", m.To, it.Recipient)
	}
	ro := m.RcptOpts[0]
	if fmt.Sprint(ro.Notify) != "[SUCCESS FAILURE DELAY]" {
		t.Errorf("NOTIFY=%v, want SUCCESS,FAILURE,DELAY", ro.Notify)
	}
	if ro.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || ro.OriginalRecipient != it.Recipient {
		t.Errorf("ORCPT=%s;%s, want rfc822;%s", ro.OriginalRecipientType, ro.OriginalRecipient, it.Recipient)
	}
}

func TestDeliverReplies(t *testing.T) {
	tests := []struct {
		name    string
		relay   func(*testRelay)
		outcome Outcome
		code    int
		enh     string
		phase   dsn.Phase
		sent    bool
	}{
		{"rcpt 550 user unknown", func(r *testRelay) {
			r.onRcpt = func(int, string) error {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
			}
		}, Permanent, 550, "5.1.1", dsn.PhaseRcpt, false},
		{"mail 451", func(r *testRelay) {
			r.onMail = func(int, string) error {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			}
		}, Temporary, 451, "4.3.0", dsn.PhaseMail, false},
		{"end of data 554 policy", func(r *testRelay) {
			r.onData = func(int, *session) error {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused by policy"}
			}
		}, Permanent, 554, "5.7.1", dsn.PhaseEndOfData, true},
		{"dropped mid-DATA", func(r *testRelay) {
			r.onData = func(_ int, s *session) error {
				s.c.Conn().Close()
				return errors.New("dropped")
			}
		}, Temporary, 0, "", dsn.PhaseEndOfData, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, "127.0.0.1:0", tt.relay)
			p := newTestPool(t, r, nil)
			res := p.Deliver(context.Background(), testItem(1))
			if res.Outcome != tt.outcome || res.Code != tt.code || res.Enhanced != tt.enh || res.Sent != tt.sent {
				t.Fatalf("Deliver = %+v, want %v %d %q sent=%v", res, tt.outcome, tt.code, tt.enh, tt.sent)
			}
			if tt.code != 0 && res.Phase != tt.phase {
				t.Errorf("phase %q, want %q", res.Phase, tt.phase)
			}
			// The pool recovers: the next message goes through once the
			// relay behaves.
			r.mu.Lock()
			r.onMail, r.onRcpt, r.onData = nil, nil, nil
			r.mu.Unlock()
			if res := p.Deliver(context.Background(), testItem(2)); res.Outcome != Accepted {
				t.Fatalf("after the failure: %+v, want accepted", res)
			}
		})
	}
}

func TestDeliverLocalRefusalIsPermanent(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := newTestPool(t, r, nil)
	it := testItem(1)
	it.Recipient = "user@x.example\r\nDATA"
	res := p.Deliver(context.Background(), it)
	if res.Outcome != Permanent || res.Phase != dsn.PhaseRcpt || res.Code != 0 {
		t.Fatalf("Deliver = %+v, want permanent at rcpt without a reply", res)
	}
	if res := p.Deliver(context.Background(), testItem(2)); res.Outcome != Accepted {
		t.Fatalf("next message: %+v", res)
	}
	if n := len(r.received()); n != 1 {
		t.Errorf("received %d, want 1", n)
	}
}

func TestDeliverReusesConnections(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := newTestPool(t, r, func(c *Relay) { c.Connections = 1; c.MaxPerConn = 4 })
	for i := range 10 {
		if res := p.Deliver(context.Background(), testItem(i)); res.Outcome != Accepted {
			t.Fatalf("message %d: %+v", i, res)
		}
	}
	if n := len(r.received()); n != 10 {
		t.Fatalf("received %d, want 10", n)
	}
	// 4 + 4 + 2 messages: three connections.
	if n := r.sessionCount(); n != 3 {
		t.Errorf("%d connections for 10 messages at 4 per connection, want 3", n)
	}
	st := p.Stats()
	if st.Dials != 3 || st.Reuses != 7 {
		t.Errorf("stats %+v, want 3 dials and 7 reuses", st)
	}
}

func TestDeliverAfterRelayRestart(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := newTestPool(t, r, func(c *Relay) { c.Connections = 1 })
	if res := p.Deliver(context.Background(), testItem(1)); res.Outcome != Accepted {
		t.Fatal(res)
	}
	r.restart(t)
	// The pooled connection is dead; the pool notices at MAIL and sends on
	// a new one, without a deferral.
	if res := p.Deliver(context.Background(), testItem(2)); res.Outcome != Accepted {
		t.Fatalf("after restart: %+v, want accepted", res)
	}
	if n := len(r.received()); n != 2 {
		t.Fatalf("received %d, want 2", n)
	}
}

func TestDeliverIdleConnectionClosed(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := newTestPool(t, r, func(c *Relay) { c.Connections = 1; c.IdleTimeout = time.Millisecond })
	p.Deliver(context.Background(), testItem(1))
	time.Sleep(5 * time.Millisecond) // past the 1 ms idle timeout
	p.CloseIdle()
	if st := p.Stats(); st.Idle != 0 {
		t.Fatalf("idle connections after CloseIdle: %d, want 0", st.Idle)
	}
	p.Deliver(context.Background(), testItem(2))
	if n := r.sessionCount(); n != 2 {
		t.Errorf("%d connections, want 2 (the idle one closed)", n)
	}
}

func TestRelayTLSNoneOnlyLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr, tls string
		ok        bool
	}{
		{"127.0.0.1:25", TLSNone, true},
		{"[::1]:25", TLSNone, true},
		{"localhost:25", TLSNone, true},
		{"smtp.example.net:587", TLSNone, false},
		{"192.0.2.1:25", TLSNone, false},
		{"smtp.example.net:587", "", true},
		{"smtp.example.net:465", TLSImplicit, true},
		{"smtp.example.net:587", "ssl", false},
		{"smtp.example.net", TLSStartTLS, false},
	} {
		_, err := NewRelayPool(Relay{Addr: tt.addr, TLS: tt.tls})
		if (err == nil) != tt.ok {
			t.Errorf("NewRelayPool(%q, tls %q) error = %v, want ok=%v", tt.addr, tt.tls, err, tt.ok)
		}
	}
}

// testCA makes a private CA and a certificate for 127.0.0.1 signed by it.
func testCA(t testing.TB) (server *tls.Config, roots *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "repute test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, roots
}

func TestDeliverStartTLSAndAuth(t *testing.T) {
	srvTLS, roots := testCA(t)
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) { r.tls = srvTLS; r.user = "acme" })
	p := newTestPool(t, r, func(c *Relay) {
		c.TLS = TLSStartTLS
		c.TLSConfig = &tls.Config{RootCAs: roots}
		c.User, c.Password = "acme", "pw"
	})
	if res := p.Deliver(context.Background(), testItem(1)); res.Outcome != Accepted {
		t.Fatalf("Deliver = %+v", res)
	}
	m := r.received()[0]
	if !m.TLS || m.User != "acme" {
		t.Errorf("transaction TLS=%v user=%q, want TLS and acme", m.TLS, m.User)
	}

	// A certificate from another CA is refused: temporary, nothing sent.
	_, otherRoots := testCA(t)
	bad := newTestPool(t, r, func(c *Relay) {
		c.TLS = TLSStartTLS
		c.TLSConfig = &tls.Config{RootCAs: otherRoots}
	})
	if res := bad.Deliver(context.Background(), testItem(2)); res.Outcome != Temporary || res.Phase != dsn.PhaseConnect {
		t.Errorf("unknown CA: %+v, want temporary at connect", res)
	}
	// A wrong password: temporary (a configuration problem, not the
	// message's), nothing sent.
	wrong := newTestPool(t, r, func(c *Relay) {
		c.TLS = TLSStartTLS
		c.TLSConfig = &tls.Config{RootCAs: roots}
		c.User, c.Password = "acme", "nope"
	})
	if res := wrong.Deliver(context.Background(), testItem(3)); res.Outcome != Temporary || res.Code != 535 {
		t.Errorf("bad password: %+v, want temporary 535", res)
	}
	if n := len(r.received()); n != 1 {
		t.Errorf("received %d, want 1", n)
	}
}

func TestDeliverImplicitTLS(t *testing.T) {
	srvTLS, roots := testCA(t)
	r := &testRelay{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(testBackend{r})
	srv.EnableDSN = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.addr = ln.Addr().String()
	p := newTestPool(t, r, func(c *Relay) { c.TLS = TLSImplicit; c.TLSConfig = &tls.Config{RootCAs: roots} })
	if res := p.Deliver(context.Background(), testItem(1)); res.Outcome != Accepted {
		t.Fatalf("Deliver = %+v", res)
	}
	if m := r.received(); len(m) != 1 || !m[0].TLS {
		t.Errorf("received %+v, want one message over TLS", m)
	}
}

func TestDeliverNoDSN(t *testing.T) {
	// A relay without DSN gets no RET/ENVID/NOTIFY/ORCPT (RFC 3461 §4: the
	// parameters are for servers that advertise it).
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) { r.noDSN = true })
	p := newTestPool(t, r, nil)
	if res := p.Deliver(context.Background(), testItem(1)); res.Outcome != Accepted {
		t.Fatal(res)
	}
	m := r.received()[0]
	if m.MailOpts.EnvelopeID != "" || len(m.RcptOpts[0].Notify) != 0 {
		t.Errorf("DSN parameters sent to a relay without DSN: %+v %+v", m.MailOpts, m.RcptOpts)
	}
	if !strings.HasPrefix(string(m.Data), "From:") {
		t.Errorf("data %q", m.Data)
	}
}
