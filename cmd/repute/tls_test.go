package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 with serial
// to certFile and its key to keyFile, and returns the certificate.
func selfSigned(t *testing.T, serial int64, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "repute test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestServeTLSReload: repute serve with tls_cert_file serves HTTPS; the
// files replaced and SIGHUP sent, new connections get the new
// certificate; a broken pair on the next SIGHUP keeps the one in use.
func TestServeTLSReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := selfSigned(t, 1001, certFile, keyFile)
	s := startServe(t, []string{"--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile})
	if !strings.HasPrefix(s.base, "https://") {
		t.Fatalf("banner's address %s, want https://", s.base)
	}

	// served returns the serial of the certificate a new connection gets,
	// trusting any of certs.
	served := func(certs ...*x509.Certificate) (int64, error) {
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
		}}
		res, err := client.Get(s.base + "/healthz")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("/healthz over TLS: %d", res.StatusCode)
		}
		return res.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	if got, err := served(first); err != nil || got != 1001 {
		t.Fatalf("first certificate: serial %d, %v; want 1001", got, err)
	}
	// Plain HTTP on the TLS listener is not served as the API (Go's
	// server answers it 400).
	if res, err := http.Get(strings.Replace(s.base, "https://", "http://", 1) + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the TLS listener answered 200")
		}
	}

	second := selfSigned(t, 1002, certFile, keyFile)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitSerial := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := served(first, second)
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("10 s after SIGHUP: serial %d, %v; want %d", got, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSerial(1002)

	// A broken pair: the reload fails, the certificate in use stays.
	if err := os.WriteFile(keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(s.log)
		if strings.Contains(string(b), "tls certificate reload failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure logged 10 s after SIGHUP with a broken key")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := served(second); err != nil || got != 1002 {
		t.Errorf("after a failed reload: serial %d, %v; want the one in use, 1002", got, err)
	}
	s.stop()
}

func TestTLSFilesTogether(t *testing.T) {
	_, err := loadServeConfig([]string{"--tls-cert-file", "cert.pem"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--tls-key-file") {
		t.Errorf("--tls-cert-file alone: %v, want an error naming --tls-key-file", err)
	}
}
