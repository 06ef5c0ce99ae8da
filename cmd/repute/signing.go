package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// signingKeys is the one key set for every token repute issues (tracking
// links, unsubscribe links, …): Sign signs new tokens, and a token verifies
// when any key of Verify (Sign first) verifies it, so keys can be rotated
// by putting a new key in front and dropping the old one later.
type signingKeys struct {
	Sign   []byte
	Verify [][]byte
}

// minSigningKeyLen is the shortest signing key accepted, in bytes of its
// text: a generated key is 43 characters (32 random bytes, base64url).
const minSigningKeyLen = 32

// signingKeysFile is the generated key set, in the data directory.
const signingKeysFile = "signing.keys"

// parseSigningKeys parses a key set: keys separated by commas (or lines,
// in a file), the first signing.
func parseSigningKeys(s string) (signingKeys, error) {
	var ks signingKeys
	for _, k := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(k) < minSigningKeyLen {
			return signingKeys{}, fmt.Errorf("signing key %d is %d characters long: want at least %d (random; e.g. openssl rand -base64 32)",
				len(ks.Verify)+1, len(k), minSigningKeyLen)
		}
		ks.Verify = append(ks.Verify, []byte(k))
	}
	if len(ks.Verify) == 0 {
		return signingKeys{}, errors.New("no signing key: want comma-separated keys, the first signing")
	}
	ks.Sign = ks.Verify[0]
	return ks, nil
}

// loadSigningKeys returns the signing key set: from the configured secret
// (signing_keys_env or signing_keys_file) when set, else from
// <data>/signing.keys, generated with mode 0600 on first use. source says
// where the keys came from, for the start-up log; generated is true when
// the file was created now.
func loadSigningKeys(ref secret, dataDir string, getenv func(string) string) (ks signingKeys, source string, generated bool, err error) {
	if !ref.IsZero() {
		v, err := ref.Resolve(getenv)
		if err != nil {
			return signingKeys{}, "", false, err
		}
		ks, err := parseSigningKeys(v)
		if err != nil {
			return signingKeys{}, "", false, err
		}
		if ref.Env != "" {
			return ks, "environment " + ref.Env, false, nil
		}
		return ks, "file " + ref.File, false, nil
	}
	path := filepath.Join(dataDir, signingKeysFile)
	v, err := readSecretFile(path)
	switch {
	case err == nil:
		ks, err := parseSigningKeys(v)
		if err != nil {
			return signingKeys{}, "", false, fmt.Errorf("%s: %w", path, err)
		}
		return ks, "generated " + path, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return signingKeys{}, "", false, fmt.Errorf("signing keys: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	key := base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return signingKeys{}, "", false, fmt.Errorf("signing keys: %w", err)
	}
	_, err = f.WriteString(key + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return signingKeys{}, "", false, fmt.Errorf("signing keys: %w", err)
	}
	ks, err = parseSigningKeys(key)
	return ks, "generated " + path, true, err
}
