package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// certReloader serves HTTPS with tls_cert_file and tls_key_file, for
// deployments without a TLS-terminating proxy in front. The certificate
// is read again on SIGHUP (a renewal replaces the files, then signals):
// connections made after the reload get the new one, open ones keep
// theirs, and a reload that fails keeps the old certificate and logs why.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the pair; an unreadable or mismatched pair is an
// error at start.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls_cert_file %s / tls_key_file %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	attrs := []any{"cert_file", r.certFile}
	if leaf := cert.Leaf; leaf != nil {
		attrs = append(attrs, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.log.Info("tls certificate loaded", attrs...)
	return nil
}

// reload loads the pair again; on failure the certificate in use stays.
func (r *certReloader) reload() {
	if err := r.load(); err != nil {
		r.log.Error("tls certificate reload failed; keeping the one in use", "err", err)
	}
}

// config is the server's TLS configuration: TLS 1.2 at least (RFC 8996
// retires 1.0 and 1.1; Go's defaults pick the cipher suites), the
// certificate read per handshake from r.
func (r *certReloader) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}

// watch reloads on every SIGHUP until ctx ends.
func (r *certReloader) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP: reloading the tls certificate")
			r.reload()
		}
	}
}
