package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The limits a Guard enforces, by the name the 429's error and the
// repute_rate_limited_total metric give them.
const (
	LimitKey         = "key"          // per account key (the account's bucket)
	LimitPixel       = "pixel"        // per address: GET /t/o/
	LimitClick       = "click"        // per address: GET /t/c/
	LimitUnsubscribe = "unsubscribe"  // per address: GET and POST /t/u/
	LimitFeedback    = "feedback"     // per address: POST /v1/feedback
	LimitAuthLockout = "auth_lockout" // unknown keys from a locked-out address
)

// AddressLimits are the per-address limits of the public endpoints.
var AddressLimits = []string{LimitPixel, LimitClick, LimitUnsubscribe, LimitFeedback}

// DefaultMaxAddresses is the default of GuardOptions.MaxAddresses: an
// address takes about 270 bytes, so a table holds at most 4.4 MB (six
// tables: the four per-address limits, the failures). Enough: a client
// over its limit keeps requesting, so stays recent, and is evicted only
// when 16,384 other addresses come between two of its requests.
const DefaultMaxAddresses = 16384

// Lockout refuses unknown keys from an address after Failures failed
// authentications within Window, for Duration. Failures 0: no lock-out.
type Lockout struct {
	Failures int
	Window   time.Duration
	Duration time.Duration
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	// KeyRate is the bucket of every account and of the admin key; an
	// account of AccountRates has its own rate instead. All the keys of
	// an account share its bucket, so that an account rotating its keys
	// (two in force) does not get twice the rate.
	KeyRate      Rate
	AccountRates map[string]Rate
	// AddressRates are the per-address limits, by name (AddressLimits);
	// absent or Off: no limit.
	AddressRates map[string]Rate
	// MaxAddresses bounds the addresses each per-address limit, and the
	// failed-authentication table, hold; default DefaultMaxAddresses.
	MaxAddresses int
	Lockout      Lockout
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (ClientAddr).
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger          // nil: silent
	Registerer     prometheus.Registerer // nil: no metrics
	Now            func() time.Time      // nil: time.Now
}

// Guard holds the rate limits and the failed-authentication lock-out of
// repute serve, shared by the API's handlers (Options.Guard,
// DecisionsOptions.Guard) and the tracking endpoints (AllowAddress). A nil
// *Guard limits nothing. Safe for concurrent use.
type Guard struct {
	o        GuardOptions
	log      *slog.Logger
	keys     map[string]*keyBucket // by account; "" is the admin key's
	addrs    map[string]*addressLimiter
	failures *boundedMap[netip.Addr, failures]

	limited     *prometheus.CounterVec // by limit
	authFails   *prometheus.CounterVec // by reason
	lockouts    prometheus.Counter
	lockedGauge prometheus.GaugeFunc
}

type keyBucket struct {
	mu   sync.Mutex
	rate Rate
	b    bucket
}

// failures are an address's failed authentications in its current window.
type failures struct {
	count       int
	windowStart time.Time
	lockedUntil time.Time
}

// NewGuard returns a Guard for the configured accounts (names); a key of
// an account not among them has the default KeyRate.
func NewGuard(o GuardOptions, accounts []string) (*Guard, error) {
	for name, r := range o.AccountRates {
		if r.PerSecond < 0 || r.Burst < 0 {
			return nil, fmt.Errorf("api: account %q: negative rate limit", name)
		}
	}
	for name, r := range o.AddressRates {
		if r.PerSecond < 0 || r.Burst < 0 {
			return nil, fmt.Errorf("api: %s: negative rate limit", name)
		}
	}
	if o.KeyRate.PerSecond < 0 || o.KeyRate.Burst < 0 {
		return nil, errors.New("api: negative key rate limit")
	}
	if l := o.Lockout; l.Failures < 0 || l.Failures > 0 && (l.Window <= 0 || l.Duration <= 0) {
		return nil, fmt.Errorf("api: auth lock-out: failures %d, window %s and duration %s: want failures ≥ 0, and with failures a positive window and duration",
			l.Failures, l.Window, l.Duration)
	}
	if o.MaxAddresses <= 0 {
		o.MaxAddresses = DefaultMaxAddresses
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Guard{o: o, log: o.Logger, keys: map[string]*keyBucket{"": {rate: o.KeyRate}},
		addrs: map[string]*addressLimiter{}, failures: newBoundedMap[netip.Addr, failures](o.MaxAddresses)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range accounts {
		r, ok := o.AccountRates[name]
		if !ok {
			r = o.KeyRate
		}
		g.keys[name] = &keyBucket{rate: r}
	}
	for _, name := range AddressLimits {
		if r := o.AddressRates[name]; !r.Off() {
			g.addrs[name] = &addressLimiter{rate: r, buckets: newBoundedMap[netip.Addr, bucket](o.MaxAddresses)}
		}
	}
	// No address and no key is ever a label: both are unbounded (and a
	// key is a secret). The addresses locked out are in the log instead.
	g.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repute_rate_limited_total",
		Help: "Requests refused (429) or, for the pixel and the click, answered but not recorded, by limit: key, pixel, click, unsubscribe, feedback, auth_lockout.",
	}, []string{"limit"})
	g.authFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repute_auth_failures_total",
		Help: "Requests to the API without a valid key, by reason: missing, unknown, locked_out (an unknown key from a locked-out address).",
	}, []string{"reason"})
	g.lockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "repute_auth_lockouts_total",
		Help: "Addresses locked out after repeated failed authentications (each is logged with the address).",
	})
	g.lockedGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "repute_auth_locked_addresses",
		Help: "Addresses locked out now.",
	}, g.lockedNow)
	for _, l := range append([]string{LimitKey, LimitAuthLockout}, AddressLimits...) {
		g.limited.WithLabelValues(l)
	}
	for _, r := range []string{"missing", "unknown", "locked_out"} {
		g.authFails.WithLabelValues(r)
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{g.limited, g.authFails, g.lockouts, g.lockedGauge} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("api: register guard metrics: %w", err)
			}
		}
	}
	return g, nil
}

// ClientAddr is r's client address, through the trusted proxies.
func (g *Guard) ClientAddr(r *http.Request) netip.Addr {
	if g == nil {
		return ClientAddr(r, nil)
	}
	return ClientAddr(r, g.o.TrustedProxies)
}

// AllowAddress takes a token of limit (one of AddressLimits) for ip; false
// (counted) and the wait before the next token when there is none.
func (g *Guard) AllowAddress(limit string, ip netip.Addr) (bool, time.Duration) {
	if g == nil {
		return true, 0
	}
	ok, retry := g.addrs[limit].allow(ip, g.o.Now())
	if !ok {
		g.limited.WithLabelValues(limit).Inc()
	}
	return ok, retry
}

// limitAddress answers 429 when r's address is over limit; true when r may
// go on.
func (g *Guard) limitAddress(w http.ResponseWriter, r *http.Request, limit string) bool {
	if g == nil || g.addrs[limit] == nil {
		return true
	}
	ok, retry := g.AllowAddress(limit, g.ClientAddr(r))
	if !ok {
		tooMany(w, limit, retry, fmt.Sprintf("too many requests from this address (limit %q: %s); retry later", limit, describeRate(g.addrs[limit].rate)))
	}
	return ok
}

// allowKey takes a token from p's bucket; it answers 429 and returns false
// when there is none.
func (g *Guard) allowKey(w http.ResponseWriter, p Principal) bool {
	if g == nil {
		return true
	}
	name := p.Account
	if p.Admin {
		name = ""
	}
	kb := g.keys[name]
	if kb == nil || kb.rate.Off() {
		return true
	}
	kb.mu.Lock()
	ok, retry := kb.b.take(kb.rate, g.o.Now())
	kb.mu.Unlock()
	if !ok {
		g.limited.WithLabelValues(LimitKey).Inc()
		who := "the admin key"
		if !p.Admin {
			who = fmt.Sprintf("account %q", p.Account)
		}
		tooMany(w, LimitKey, retry, fmt.Sprintf("too many requests for %s (limit %q: %s); retry later", who, LimitKey, describeRate(kb.rate)))
	}
	return ok
}

// authFailed counts and logs a request without a valid key and answers
// it: 401, or 429 when its address is locked out. The key itself is never
// logged nor answered: the log has the first 8 hex digits of its SHA-256,
// enough to match it to a configured (or revoked) key's "sha256:" hash and
// useless to guess it.
func (g *Guard) authFailed(w http.ResponseWriter, r *http.Request) {
	reason, keyHash := "missing", ""
	if key, ok := bearerKey(r); ok {
		reason = "unknown"
		h := sha256.Sum256([]byte(key))
		keyHash = hex.EncodeToString(h[:4])
	}
	if g == nil {
		unauthorized(w)
		return
	}
	ip := g.ClientAddr(r)
	now := g.o.Now()
	var (
		locked     time.Time
		count      int
		justLocked bool
	)
	lo := g.o.Lockout
	g.failures.do(clientKey(ip), func(f *failures) {
		if now.Before(f.lockedUntil) {
			locked = f.lockedUntil
			return
		}
		window := lo.Window
		if lo.Failures == 0 {
			window = time.Minute // only bounds the log lines below
		}
		if f.windowStart.IsZero() || now.Sub(f.windowStart) >= window {
			f.windowStart, f.count = now, 0
		}
		f.count++
		count = f.count
		if lo.Failures > 0 && f.count >= lo.Failures {
			f.lockedUntil = now.Add(lo.Duration)
			f.windowStart, f.count = time.Time{}, 0
			justLocked = true
		}
	})
	if !locked.IsZero() {
		g.authFails.WithLabelValues("locked_out").Inc()
		g.limited.WithLabelValues(LimitAuthLockout).Inc()
		tooMany(w, LimitAuthLockout, locked.Sub(now), fmt.Sprintf(
			"too many failed authentications from this address (%d within %s): unknown keys from it are refused until %s; requests with a valid key still pass",
			lo.Failures, lo.Window, locked.UTC().Format(time.RFC3339)))
		return
	}
	g.authFails.WithLabelValues(reason).Inc()
	// At most the lock-out's number of lines per address and window (20
	// a minute without a lock-out): a flood of bad keys does not flood the
	// log; the counter has them all.
	if limit := max(lo.Failures, 20); count <= limit {
		attrs := []any{"remote", ip.String(), "reason", reason, "path", r.URL.Path}
		if keyHash != "" {
			attrs = append(attrs, "key_sha256_prefix", keyHash)
		}
		g.log.Warn("authentication failed", attrs...)
	}
	if justLocked {
		g.lockouts.Inc()
		g.log.Warn("address locked out after repeated failed authentications: unknown keys from it are refused, valid keys still pass",
			"remote", ip.String(), "failures", lo.Failures, "window", lo.Window, "duration", lo.Duration)
	}
	unauthorized(w)
}

// lockedNow counts the addresses locked out now.
func (g *Guard) lockedNow() float64 {
	now := g.o.Now()
	n := 0
	for i := range g.failures.shards {
		sh := &g.failures.shards[i]
		sh.mu.Lock()
		for _, el := range sh.m {
			if now.Before(el.Value.(*lruEntry[netip.Addr, failures]).val.lockedUntil) {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return float64(n)
}

// bearerKey returns the key of r's Authorization: Bearer header.
func bearerKey(r *http.Request) (string, bool) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", false
	}
	return key, true
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="repute"`)
	writeError(w, http.StatusUnauthorized, "missing or unknown bearer key (Authorization: Bearer <key>)")
}

// tooMany answers 429 (RFC 6585 §4) with Retry-After in whole seconds and
// the limit's name.
func tooMany(w http.ResponseWriter, limit string, retry time.Duration, msg string) {
	w.Header().Set("Retry-After", retryAfterSeconds(retry))
	writeJSON(w, http.StatusTooManyRequests, struct {
		Error string `json:"error"`
		Limit string `json:"limit"`
	}{msg, limit})
}

func describeRate(r Rate) string {
	return fmt.Sprintf("%g requests/s, bursts of %g", r.PerSecond, r.burst())
}
