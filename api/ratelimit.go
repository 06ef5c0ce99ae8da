package api

import (
	"container/list"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is a token bucket: PerSecond tokens are added each second up to
// Burst, and each request takes one. PerSecond 0 means no limit.
type Rate struct {
	PerSecond float64
	// Burst is what a client that was quiet may spend at once; below 1 it
	// is PerSecond rounded up (at least 1).
	Burst int
}

// Off reports whether r limits nothing.
func (r Rate) Off() bool { return r.PerSecond <= 0 }

func (r Rate) burst() float64 {
	if r.Burst >= 1 {
		return float64(r.Burst)
	}
	return max(1, math.Ceil(r.PerSecond))
}

// bucket is one client's token bucket. Its zero value is full (see take).
type bucket struct {
	tokens float64
	last   time.Time // zero: never used, full
}

// take takes a token at now; when none is left it returns false and how
// long until one is.
func (b *bucket) take(r Rate, now time.Time) (bool, time.Duration) {
	depth := r.burst()
	if b.last.IsZero() {
		b.tokens = depth
	} else if el := now.Sub(b.last); el > 0 {
		b.tokens = min(depth, b.tokens+el.Seconds()*r.PerSecond)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / r.PerSecond * float64(time.Second))
}

// lruShards is the number of independently locked parts of a boundedMap:
// enough that the pixel's many concurrent requests rarely wait on one
// another, few enough that each part still holds max/16 clients.
const lruShards = 16

// boundedMap holds a value per key, at most max of them: the least
// recently used key of a shard is evicted when the shard is full. It keeps
// the state of per-address limits bounded whatever the number of addresses
// an attacker uses; an evicted address starts afresh (a full bucket, no
// failures), which only an attacker cycling through more than max
// addresses can bring about, and such an attacker is not slowed by a
// per-address limit anyway.
type boundedMap[K comparable, V any] struct {
	seed   maphash.Seed
	shards [lruShards]lruShard[K, V]
}

type lruShard[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	m     map[K]*list.Element
	order list.List // of *lruEntry, the most recent at the front
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	b := &boundedMap[K, V]{seed: maphash.MakeSeed()}
	per := (max + lruShards - 1) / lruShards
	for i := range b.shards {
		b.shards[i].max = per
		b.shards[i].m = map[K]*list.Element{}
	}
	return b
}

// do calls f with k's value (a zero V for a key not held), under the
// shard's lock; f may change it.
func (b *boundedMap[K, V]) do(k K, f func(v *V)) {
	sh := &b.shards[maphash.Comparable(b.seed, k)%lruShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	el, ok := sh.m[k]
	if ok {
		sh.order.MoveToFront(el)
	} else {
		if sh.order.Len() >= sh.max {
			old := sh.order.Back()
			sh.order.Remove(old)
			delete(sh.m, old.Value.(*lruEntry[K, V]).key)
		}
		el = sh.order.PushFront(&lruEntry[K, V]{key: k})
		sh.m[k] = el
	}
	f(&el.Value.(*lruEntry[K, V]).val)
}

// len returns the number of keys held.
func (b *boundedMap[K, V]) len() int {
	n := 0
	for i := range b.shards {
		b.shards[i].mu.Lock()
		n += len(b.shards[i].m)
		b.shards[i].mu.Unlock()
	}
	return n
}

// addressLimiter is a Rate per client address, its buckets in a
// boundedMap.
type addressLimiter struct {
	rate    Rate
	buckets *boundedMap[netip.Addr, bucket]
}

func (l *addressLimiter) allow(ip netip.Addr, now time.Time) (ok bool, retry time.Duration) {
	if l == nil || l.rate.Off() {
		return true, 0
	}
	l.buckets.do(clientKey(ip), func(b *bucket) { ok, retry = b.take(l.rate, now) })
	return ok, retry
}

// clientKey is the address a limit counts by: an IPv4 address itself, and
// an IPv6 address's /64, the smallest prefix a site is given (RFC 6177
// §2; RFC 4291 §2.5.1: a /64 is one subnet) — one client holds the whole
// /64 and could otherwise take a fresh bucket for every request.
func clientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// ClientAddr is the address of r's client: the TCP peer's, or, when the
// peer is one of trusted (reverse proxies), the rightmost address of
// X-Forwarded-For that is not a trusted proxy. The invalid Addr when
// RemoteAddr is not an address (tests with no connection).
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !trustedAddr(trusted, ip) {
		return ip
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip // garbage: trust nothing further left
			}
			ip = a.Unmap()
			if !trustedAddr(trusted, ip) {
				return ip
			}
		}
	}
	return ip
}

func trustedAddr(trusted []netip.Prefix, ip netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// retryAfterSeconds is d in whole seconds for Retry-After, rounded up and
// at least 1 (RFC 9110 §10.2.3: a non-negative integer of seconds).
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}
