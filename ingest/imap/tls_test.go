package imap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testCert is a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imap.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// tlsServer starts the in-memory server with implicit TLS or with
// STARTTLS (LOGIN refused before it), one user u/p with an INBOX.
func tlsServer(t *testing.T, mode string, cert tls.Certificate) (string, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:   imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapMove: {}, imapv2.CapUIDPlus: {}},
		Logger: discardLogger{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case TLSImplicit:
		ln = tls.NewListener(ln, cfg)
	case TLSStartTLS:
		opts.TLSConfig = cfg
	}
	srv := imapserver.New(opts)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), user
}

// TestMemTLS reads a mailbox over implicit TLS (port 993 style) and over
// STARTTLS, trusting a private CA through Options.TLSConfig; a server whose
// certificate is not trusted is never logged in to, and nothing moves.
func TestMemTLS(t *testing.T) {
	cert, pool := testCert(t)
	msgs := loadCorpusMsgs(t)
	for _, mode := range []string{TLSImplicit, TLSStartTLS} {
		t.Run(mode, func(t *testing.T) {
			addr, user := tlsServer(t, mode, cert)
			if err := user.Create("Processed", nil); err != nil {
				t.Fatal(err)
			}
			appendTo(t, user, "INBOX", msgs.bounce)

			rec := newRecorder()
			o := memOptions(t, addr)
			o.TLS, o.TLSConfig = mode, &tls.Config{RootCAs: pool}
			r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, r)
			waitFor(t, "the bounce processed over TLS", 10*time.Second, func() bool { return len(rec.snapshot()) == 1 })
			stop()
		})
		t.Run(mode+" untrusted", func(t *testing.T) {
			addr, user := tlsServer(t, mode, cert)
			appendTo(t, user, "INBOX", msgs.bounce)
			rec := newRecorder()
			reg := prometheus.NewRegistry()
			o := memOptions(t, addr)
			o.TLS, o.Registerer = mode, reg // the system roots: the test CA is not among them
			r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, r)
			waitFor(t, "a refused connection counted", 10*time.Second, func() bool {
				return testutil.ToFloat64(r.m.errors.WithLabelValues(ErrKindConnect)) > 0
			})
			stop()
			if n := len(rec.snapshot()); n != 0 {
				t.Errorf("%d events read from a server whose certificate is not trusted", n)
			}
		})
	}
}

// appendTo appends a message to a folder of the in-memory server's user,
// through a client over a plain loopback server of its own.
func appendTo(t *testing.T, user *imapmemserver.User, folder string, msg []byte) {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imapv2.CapSet{imapv2.CapIMAP4rev1: {}}, InsecureAuth: true, Logger: discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u", "p").Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, folder, crlf(msg))
}
