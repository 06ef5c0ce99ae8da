package sender

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"
)

func testEd25519(t testing.TB) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
}

var rsaKey2048 *rsa.PrivateKey

func testRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	if bits == 2048 && rsaKey2048 != nil {
		return rsaKey2048
	}
	k, err := rsa.GenerateKey(rand.NewChaCha8([32]byte{9}), bits)
	if err != nil {
		t.Fatal(err)
	}
	if bits == 2048 {
		rsaKey2048 = k
	}
	return k
}

// dnsStub answers the DKIM key queries for keys.
func dnsStub(t testing.TB, keys ...DKIMKey) func(string) ([]string, error) {
	recs := map[string]string{}
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
		alg := "rsa"
		if ed, ok := k.Signer.Public().(ed25519.PublicKey); ok {
			der, alg = ed, "ed25519" // RFC 8463 §4.2: the raw key
		} else if err != nil {
			t.Fatal(err)
		}
		recs[k.Selector+"._domainkey."+k.Domain] = "v=DKIM1; k=" + alg + "; p=" + base64.StdEncoding.EncodeToString(der)
	}
	return func(name string) ([]string, error) {
		if r, ok := recs[name]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
}

func verifyAll(t *testing.T, data []byte, lookup func(string) ([]string, error), want int) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != want {
		t.Fatalf("%d signatures, want %d", len(vs), want)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
		for _, h := range []string{"from", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id", "date", "to"} {
			found := false
			for _, x := range v.HeaderKeys {
				found = found || strings.EqualFold(x, h)
			}
			if !found {
				t.Errorf("signature of %s does not cover %s: %v", v.Domain, h, v.HeaderKeys)
			}
		}
	}
}

func TestDKIMSignVerify(t *testing.T) {
	ed := DKIMKey{Domain: "news.acme.example", Selector: "ed", Signer: testEd25519(t)}
	rs := DKIMKey{Domain: "news.acme.example", Selector: "rsa", Signer: testRSA(t, 2048)}
	lookup := dnsStub(t, ed, rs)
	for name, keys := range map[string][]DKIMKey{"ed25519": {ed}, "rsa": {rs}, "both": {rs, ed}} {
		t.Run(name, func(t *testing.T) {
			c := newTestComposer(t, "bounces.acme.example", keys...)
			it, signed, err := c.Compose(mustPrepare(t, goldenMessage()), "acme", "a@x.example")
			if err != nil || !signed {
				t.Fatalf("Compose: signed %v, %v", signed, err)
			}
			verifyAll(t, it.Data, lookup, len(keys))

			// re-parsed with go-message and written back
			e, err := message.Read(bytes.NewReader(it.Data))
			if err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			if err := e.WriteTo(&again); err != nil {
				t.Fatal(err)
			}
			verifyAll(t, again.Bytes(), lookup, len(keys))

			// an added From breaks it (From is oversigned)
			forged := append([]byte("From: boss@acme.example\r\n"), it.Data...)
			vs, _ := dkim.VerifyWithOptions(bytes.NewReader(forged), &dkim.VerifyOptions{LookupTXT: lookup})
			for _, v := range vs {
				if v.Err == nil {
					t.Error("a signature survives an added From")
				}
			}
		})
	}
}

func TestDKIMUnsignedDomain(t *testing.T) {
	c := newTestComposer(t, "", DKIMKey{Domain: "other.example", Selector: "s", Signer: testEd25519(t)})
	it, signed, err := c.Compose(mustPrepare(t, goldenMessage()), "acme", "a@x.example")
	if err != nil {
		t.Fatal(err)
	}
	if signed || bytes.Contains(it.Data, []byte("DKIM-Signature")) || c.Signs("news.acme.example") || !c.Signs("OTHER.example") {
		t.Errorf("signed %v, Signs %v", signed, c.Signs("news.acme.example"))
	}
}

func TestLoadDKIMKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rs := testRSA(t, 2048)
	p8rsa, _ := x509.MarshalPKCS8PrivateKey(rs)
	p8ed, _ := x509.MarshalPKCS8PrivateKey(testEd25519(t))
	small := testRSA(t, 1024)
	for _, tc := range []struct {
		file, err string
	}{
		{write("pkcs1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rs)), ""},
		{write("pkcs8rsa.pem", "PRIVATE KEY", p8rsa), ""},
		{write("pkcs8ed.pem", "PRIVATE KEY", p8ed), ""},
		{write("small.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "RSA key of 1024 bits"},
		{write("cert.pem", "CERTIFICATE", []byte{1}), `PEM block "CERTIFICATE"`},
		{write("junk.pem", "PRIVATE KEY", []byte{1, 2}), "asn1"},
		{filepath.Join(dir, "missing.pem"), "no such file"},
	} {
		k, err := LoadDKIMKey("News.Acme.Example", "s1", tc.file)
		if tc.err == "" {
			if err != nil || k.Domain != "news.acme.example" || k.Selector != "s1" || k.Signer == nil {
				t.Errorf("%s: %+v, %v", tc.file, k, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one with %q", tc.file, err, tc.err)
		}
	}
}
