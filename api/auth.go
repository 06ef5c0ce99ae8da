package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Principal is who a request acts for: the admin (every account) or one
// account.
type Principal struct {
	Admin   bool
	Account string // set when !Admin
}

// Keys authenticates bearer keys. Account keys are configured as SHA-256
// hashes, so the configuration file holds no secret; the admin key is held
// as its hash too. Keys is immutable and safe for concurrent use.
type Keys struct {
	admin    [sha256.Size]byte
	hasAdmin bool
	accounts map[[sha256.Size]byte]string
	names    map[string]bool // the configured accounts
}

// AccountKeys lists the key hashes of one account, as configured:
// "sha256:<hex>".
type AccountKeys struct {
	Name string
	Keys []string
}

// NewKeys builds the key set. adminKey is the admin key itself (empty: no
// admin key); each account key must be "sha256:" and 64 hex digits.
func NewKeys(adminKey string, accounts []AccountKeys) (*Keys, error) {
	k := &Keys{accounts: map[[sha256.Size]byte]string{}, names: map[string]bool{}}
	if adminKey != "" {
		k.admin = sha256.Sum256([]byte(adminKey))
		k.hasAdmin = true
	}
	for _, a := range accounts {
		if a.Name == "" {
			return nil, fmt.Errorf("api: account with no name")
		}
		k.names[a.Name] = true
		for _, s := range a.Keys {
			hexPart, ok := strings.CutPrefix(s, "sha256:")
			raw, err := hex.DecodeString(hexPart)
			if !ok || err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("api: account %q: key %q is not \"sha256:\" and 64 hex digits", a.Name, s)
			}
			h := [sha256.Size]byte(raw)
			if other, dup := k.accounts[h]; dup && other != a.Name {
				return nil, fmt.Errorf("api: one key configured for accounts %q and %q", other, a.Name)
			}
			k.accounts[h] = a.Name
		}
	}
	return k, nil
}

// Empty reports whether no key at all is configured.
func (k *Keys) Empty() bool { return !k.hasAdmin && len(k.accounts) == 0 }

// knownAccount reports whether name may be the account of what the admin
// posts: a configured account, or any name when none is configured (the
// admin alone, as with a generated admin key).
func (k *Keys) knownAccount(name string) bool {
	return len(k.names) == 0 || k.names[name]
}

// HashKey returns the configuration form of a key: "sha256:<hex>".
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(h[:])
}

// authenticate returns the principal of r's bearer key.
func (k *Keys) authenticate(r *http.Request) (Principal, bool) {
	key, ok := bearerKey(r)
	if !ok {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(key))
	// Comparing hashes in constant time keeps the admin key's prefix from
	// leaking through timing; map lookups of account hashes leak nothing
	// useful about the preimage.
	if k.hasAdmin && subtle.ConstantTimeCompare(h[:], k.admin[:]) == 1 {
		return Principal{Admin: true}, true
	}
	if name, ok := k.accounts[h]; ok {
		return Principal{Account: name}, true
	}
	return Principal{}, false
}
