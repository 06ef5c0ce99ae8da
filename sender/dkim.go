package sender

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// MinRSABits is the smallest RSA DKIM key LoadDKIMKey accepts: RFC 8301
// §3.2 requires verifiers to accept 1024 to 4096 bits and signers to use at
// least 1024, and large receivers (Google, Microsoft) treat 1024 as weak;
// 2048 is what they ask for.
const MinRSABits = 2048

// dkimHeaders are the header fields every signature covers (RFC 6376
// §5.4.1 lists what should be signed). From is listed twice: the second,
// absent instance signs "no further From" (oversigning, RFC 6376 §8.15),
// so a From added in transit breaks the signature instead of being shown
// beside a valid one.
var dkimHeaders = []string{
	"From", "From", "To", "Subject", "Date", "Message-ID",
	"List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// DKIMKey is one DKIM signing key of a sender domain: its signatures say
// d=Domain; s=Selector (the public key is at Selector._domainkey.Domain).
// A domain may have several, e.g. an RSA and an Ed25519 key (RFC 8463 §3
// suggests signing with both while verifiers catch up with Ed25519).
type DKIMKey struct {
	Domain, Selector string
	Signer           crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// LoadDKIMKey reads a private key from a PEM file: "RSA PRIVATE KEY"
// (PKCS #1) or "PRIVATE KEY" (PKCS #8) holding RSA of at least MinRSABits
// bits or Ed25519 (RFC 8463). domain is lower-cased.
func LoadDKIMKey(domain, selector, keyFile string) (DKIMKey, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return DKIMKey{}, fmt.Errorf("sender: dkim key for %s: %w", domain, err)
	}
	k, err := ParseDKIMKey(domain, selector, b)
	if err != nil {
		return DKIMKey{}, fmt.Errorf("%w (%s)", err, keyFile)
	}
	return k, nil
}

// ParseDKIMKey is LoadDKIMKey on the contents of the file.
func ParseDKIMKey(domain, selector string, pemBytes []byte) (DKIMKey, error) {
	fail := func(format string, args ...any) (DKIMKey, error) {
		return DKIMKey{}, fmt.Errorf("sender: dkim key for %s, selector %s: "+format, append([]any{domain, selector}, args...)...)
	}
	if domain == "" || selector == "" {
		return fail("the domain and the selector are required")
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return fail("no PEM block")
	}
	var key any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return fail("PEM block %q is neither \"RSA PRIVATE KEY\" nor \"PRIVATE KEY\"", blk.Type)
	}
	if err != nil {
		return fail("%v", err)
	}
	var s crypto.Signer
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return fail("RSA key of %d bits, want at least %d", n, MinRSABits)
		}
		s = k
	case ed25519.PrivateKey:
		s = k
	default:
		return fail("%T is neither RSA nor Ed25519", key)
	}
	return DKIMKey{Domain: strings.ToLower(domain), Selector: selector, Signer: s}, nil
}

// dkimSign returns the DKIM-Signature fields (each ending in CRLF) of msg
// for keys, c=relaxed/simple and SHA-256 (RFC 6376 §3.4, RFC 8463).
// Headers are relaxed: relays refold and recase them. The body is simple:
// the composer writes it 7-bit, quoted-printable, in CRLF lines of at most
// 76 octets with no trailing white space (QP encodes it), which relays
// leave as it is, and simple costs a fraction of relaxed's per-byte pass
// over a 25 KB newsletter. Amazon SES signs with the same choice.
func dkimSign(msg []byte, keys []DKIMKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	signers := make([]*dkim.Signer, len(keys))
	ws := make([]io.Writer, len(keys))
	for i, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationSimple,
			HeaderKeys:             dkimHeaders,
		})
		if err != nil {
			return nil, fmt.Errorf("sender: dkim signer for %s, selector %s: %w", k.Domain, k.Selector, err)
		}
		signers[i], ws[i] = s, s
	}
	var werr error
	if _, err := io.MultiWriter(ws...).Write(msg); err != nil {
		werr = err
	}
	var out []byte
	for i, s := range signers {
		if err := s.Close(); err != nil && werr == nil {
			werr = fmt.Errorf("sender: dkim signature for %s, selector %s: %w", keys[i].Domain, keys[i].Selector, err)
		}
		out = append(out, s.Signature()...)
	}
	if werr != nil {
		return nil, werr
	}
	return out, nil
}
