package rules

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"repute/metrics"
)

// MX resolver defaults (MXOptions' zero fields).
const (
	// DefaultMXEntries bounds the cache: the least recently used domain
	// goes first.
	DefaultMXEntries = 100000
	// DefaultMXNegativeTTL is how long a domain without MX records (NXDOMAIN
	// or no answer) stays cached.
	DefaultMXNegativeTTL = time.Hour
	// DefaultMXMinTTL and DefaultMXMaxTTL clamp the answer's TTL: a zero
	// or tiny TTL would query on every event, a week-long one would miss a
	// domain's move between providers.
	DefaultMXMinTTL = time.Minute
	DefaultMXMaxTTL = 24 * time.Hour
	// DefaultMXTTL is used when the answer's TTL could not be read (an
	// answer that came over TCP).
	DefaultMXTTL = time.Hour
	// DefaultMXTimeout bounds one lookup, retries included.
	DefaultMXTimeout = 5 * time.Second
	// DefaultMXBackground bounds the lookups Cached runs at once.
	DefaultMXBackground = 8
	// DefaultMXRetryAfter is how long Cached waits after a failed lookup
	// of a domain before it tries that domain again.
	DefaultMXRetryAfter = time.Minute
)

// mxProviders maps MX host suffixes (at a label boundary) to the provider
// groups of metrics' ISP map, for custom domains hosted by the big
// providers. The longest matching suffix wins.
var mxProviders = map[string]string{
	"google.com":             "gmail",     // Google Workspace: aspmx.l.google.com, alt1.aspmx.l.google.com, smtp.google.com
	"googlemail.com":         "gmail",     // Google Workspace's older backups: aspmx2.googlemail.com
	"protection.outlook.com": "microsoft", // Microsoft 365: <tenant>.mail.protection.outlook.com
	"outlook.com":            "microsoft", // Outlook.com and the consumer domains: hotmail-com.olc.protection.outlook.com
	"yahoodns.net":           "yahoo",     // Yahoo and AOL: mta5.am0.yahoodns.net, mx-aol.mail.gm0.yahoodns.net
	"icloud.com":             "apple",     // iCloud custom domains: mx01.mail.icloud.com
	"me.com":                 "apple",     // older iCloud hosts: mx1.mail.me.com
	"zoho.com":               "zoho",      // Zoho Mail: mx.zoho.com
	"zoho.eu":                "zoho",      // Zoho Mail EU: mx.zoho.eu
	"zohomail.com":           "zoho",      // Zoho Mail: mx.zohomail.com
	"protonmail.ch":          "proton",    // Proton Mail custom domains: mail.protonmail.ch, mailsec.protonmail.ch
	"yandex.net":             "yandex",    // Yandex 360: mx.yandex.net
	"yandex.ru":              "yandex",    // Yandex (older): mx.yandex.ru
	"mail.ru":                "mailru",    // VK WorkMail / Mail.ru for business: mxs.mail.ru, emx.mail.ru
	"qq.com":                 "tencent",   // Tencent Exmail: mxbiz1.qq.com, mxdomain.qq.com
	"163.com":                "netease",   // NetEase enterprise mail: mx.ym.163.com, qiye163mx01.mxmail.163.com
	"netease.com":            "netease",   // NetEase enterprise mail: qiye163mx01.mxmail.netease.com
	"gmx.net":                "gmx",       // GMX / WEB.DE hosted domains: mx00.gmx.net
	"mxhichina.com":          "aliyun",    // Alibaba Mail (Aliyun): mxn.mxhichina.com
}

// mxHostProvider returns the provider of an MX host name, or "".
func mxHostProvider(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for h := host; h != ""; {
		if p, ok := mxProviders[h]; ok {
			return p
		}
		dot := strings.IndexByte(h, '.')
		if dot < 0 {
			break
		}
		h = h[dot+1:]
	}
	return ""
}

// MXOptions configures an MXResolver. The zero value works: the system's
// DNS servers, the built-in ISP map and the defaults above.
type MXOptions struct {
	// Server is the DNS server ("host:port") every query goes to; empty
	// means the system's (resolv.conf).
	Server string
	// ISPs maps recipient domains to providers before any lookup.
	ISPs metrics.ISPMap
	// MaxEntries bounds the cache (DefaultMXEntries).
	MaxEntries int
	// NegativeTTL, MinTTL, MaxTTL, DefaultTTL and Timeout: the defaults
	// above.
	NegativeTTL time.Duration
	MinTTL      time.Duration
	MaxTTL      time.Duration
	DefaultTTL  time.Duration
	Timeout     time.Duration
	// MaxBackground bounds the lookups Cached starts and runs at once
	// (DefaultMXBackground); RetryAfter is its wait after a failed one
	// (DefaultMXRetryAfter).
	MaxBackground int
	RetryAfter    time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// MXResolver finds the mailbox provider of a recipient domain: the ISP map
// first, then the domain's MX hosts (a custom domain hosted by Google,
// Microsoft, …). Answers are cached for their TTL (clamped), domains
// without MX records for NegativeTTL, in a bounded LRU; concurrent lookups
// of one domain share one query. MXResolver is safe for concurrent use.
type MXResolver struct {
	o   MXOptions
	res *net.Resolver

	mu     sync.Mutex
	lru    *list.List // of *mxEntry, most recently used first
	cache  map[string]*list.Element
	flight map[string]*mxCall
	// Cached's lookups: how many run, and the domains whose last one
	// failed, until when they are not tried again.
	background int
	failed     map[string]time.Time
	stats      MXStats
}

// MXStats counts what Cached did with the domains it was not answered
// from the cache.
type MXStats struct {
	// Started: lookups started in the background; Failed: of those, the
	// ones that failed (a timeout, SERVFAIL; a domain without MX records
	// is an answer).
	Started, Failed int64
	// Busy: misses that started nothing because MaxBackground lookups
	// were running or the domain's last lookup had failed less than
	// RetryAfter before; the domain's next event tries again.
	Busy int64
}

type mxEntry struct {
	domain   string
	provider string
	expires  time.Time
}

// mxCall is one lookup in flight; waiters share its result.
type mxCall struct {
	done     chan struct{}
	waiters  int // callers beyond the one that started it (tests)
	provider string
	err      error
}

// NewMXResolver returns an MXResolver.
func NewMXResolver(o MXOptions) (*MXResolver, error) {
	if o.MaxEntries < 0 || o.NegativeTTL < 0 || o.MinTTL < 0 || o.MaxTTL < 0 || o.DefaultTTL < 0 || o.Timeout < 0 ||
		o.MaxBackground < 0 || o.RetryAfter < 0 {
		return nil, fmt.Errorf("%w: negative MX option", ErrInvalid)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMXEntries
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultMXNegativeTTL
	}
	if o.MinTTL == 0 {
		o.MinTTL = DefaultMXMinTTL
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = DefaultMXMaxTTL
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultMXTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultMXTimeout
	}
	if o.MaxBackground == 0 {
		o.MaxBackground = DefaultMXBackground
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultMXRetryAfter
	}
	if o.MinTTL > o.MaxTTL {
		return nil, fmt.Errorf("%w: MX MinTTL %v above MaxTTL %v", ErrInvalid, o.MinTTL, o.MaxTTL)
	}
	if o.Server != "" {
		if _, _, err := net.SplitHostPort(o.Server); err != nil {
			return nil, fmt.Errorf("%w: MX server %q: %v", ErrInvalid, o.Server, err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &MXResolver{
		o:      o,
		lru:    list.New(),
		cache:  make(map[string]*list.Element),
		flight: make(map[string]*mxCall),
		failed: make(map[string]time.Time),
	}
	// The pure-Go resolver, so that Dial is used and the answer's TTL can
	// be read on its way in.
	r.res = &net.Resolver{PreferGo: true, Dial: r.dial}
	return r, nil
}

// Provider returns the mailbox provider group of a recipient domain
// (metrics' ISP map names: gmail, microsoft, …), or "" when neither the
// map nor the MX hosts name one. A domain the ISP map knows is never
// looked up. A domain without MX records is "" with a nil error; an error
// means the lookup failed (a timeout, SERVFAIL) and nothing was cached.
func (r *MXResolver) Provider(ctx context.Context, domain string) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" {
		return "", fmt.Errorf("%w: empty domain", ErrInvalid)
	}
	if g := r.o.ISPs.Lookup(domain); g != metrics.ISPOther {
		return g, nil
	}

	r.mu.Lock()
	if e, ok := r.cache[domain]; ok {
		ent := e.Value.(*mxEntry)
		if r.o.Now().Before(ent.expires) {
			r.lru.MoveToFront(e)
			r.mu.Unlock()
			return ent.provider, nil
		}
		r.lru.Remove(e)
		delete(r.cache, domain)
	}
	c, ok := r.flight[domain]
	if ok {
		c.waiters++
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.provider, c.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c = &mxCall{done: make(chan struct{})}
	r.flight[domain] = c
	r.mu.Unlock()

	// The query outlives a caller that gives up: others may wait on it.
	go r.lookup(context.WithoutCancel(ctx), domain, c)
	select {
	case <-c.done:
		return c.provider, c.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Cached is Provider without waiting, for the request path (intake): the
// provider of domain from the ISP map or the cache, with ok; or, on a
// miss, ("", false) at once, a lookup of domain started in the background
// whose answer serves later calls. An answer past its TTL is still given
// while its refresh runs (a domain does not lose its provider every TTL).
// At most MaxBackground lookups run at
// once, and a domain whose lookup failed is not tried again for
// RetryAfter: the misses that start nothing are counted (Stats), and the
// domain's next call tries again.
func (r *MXResolver) Cached(domain string) (provider string, ok bool) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" {
		return "", false
	}
	if g := r.o.ISPs.Lookup(domain); g != metrics.ISPOther {
		return g, true
	}
	now := r.o.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	provider, ok = "", false
	if e, found := r.cache[domain]; found {
		ent := e.Value.(*mxEntry)
		r.lru.MoveToFront(e)
		if now.Before(ent.expires) {
			return ent.provider, true
		}
		provider, ok = ent.provider, true // stale: refreshed below
	}
	if _, found := r.flight[domain]; found {
		return provider, ok // Provider's or an earlier Cached's lookup
	}
	if until, found := r.failed[domain]; found && now.Before(until) || r.background >= r.o.MaxBackground {
		r.stats.Busy++
		return provider, ok
	}
	delete(r.failed, domain)
	c := &mxCall{done: make(chan struct{})}
	r.flight[domain] = c
	r.background++
	r.stats.Started++
	go func() {
		r.lookup(context.Background(), domain, c)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.background--
		if c.err != nil {
			r.stats.Failed++
			if len(r.failed) >= r.o.MaxEntries {
				// Bounded like the cache: forget the failures, which
				// costs at most one early retry each.
				clear(r.failed)
			}
			r.failed[domain] = r.o.Now().Add(r.o.RetryAfter)
		}
	}()
	return provider, ok
}

// Stats returns the counts of Cached's lookups since the start.
func (r *MXResolver) Stats() MXStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// lookup runs one query for domain, caches its result and releases c.
func (r *MXResolver) lookup(ctx context.Context, domain string, c *mxCall) {
	rec := &ttlRecord{}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, ttlKey{}, rec), r.o.Timeout)
	defer cancel()
	mxs, err := r.res.LookupMX(ctx, domain+".")

	var ttl time.Duration
	var dnsErr *net.DNSError
	switch {
	case len(mxs) > 0:
		// LookupMX returns the valid records with an error when some
		// names were malformed: the valid ones decide.
		err = nil
		c.provider = providerOfMX(mxs)
		ttl = r.o.DefaultTTL
		if s, ok := rec.get(); ok {
			ttl = min(max(time.Duration(s)*time.Second, r.o.MinTTL), r.o.MaxTTL)
		}
	case err == nil || (errors.As(err, &dnsErr) && dnsErr.IsNotFound):
		err = nil
		ttl = r.o.NegativeTTL
	default:
		if dnsErr != nil && r.o.Server != "" {
			// The resolver names the server of resolv.conf it meant to
			// ask; dial sent the query to Server.
			e := *dnsErr
			e.Server = r.o.Server
			err = &e
		}
		c.err = fmt.Errorf("rules: mx lookup %s: %w", domain, err)
	}

	r.mu.Lock()
	if c.err == nil {
		r.store(domain, c.provider, r.o.Now().Add(ttl))
	}
	delete(r.flight, domain)
	r.mu.Unlock()
	close(c.done)
}

// store caches a result; r.mu is held.
func (r *MXResolver) store(domain, provider string, expires time.Time) {
	if e, ok := r.cache[domain]; ok {
		ent := e.Value.(*mxEntry)
		ent.provider, ent.expires = provider, expires
		r.lru.MoveToFront(e)
		return
	}
	r.cache[domain] = r.lru.PushFront(&mxEntry{domain: domain, provider: provider, expires: expires})
	for r.lru.Len() > r.o.MaxEntries {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.cache, old.Value.(*mxEntry).domain)
	}
}

// Len returns the number of cached domains.
func (r *MXResolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

// providerOfMX returns the provider of the most preferred MX hosts (the
// ones that receive the mail; LookupMX sorts by preference): the first of
// them a provider is known for, or "". Backup MX hosts do not count: a
// domain whose primary MX is a filtering gateway is that gateway's.
func providerOfMX(mxs []*net.MX) string {
	best := mxs[0].Pref
	for _, mx := range mxs {
		if mx.Pref != best {
			break
		}
		if p := mxHostProvider(mx.Host); p != "" {
			return p
		}
	}
	return ""
}

// dial connects to the configured server (or the one the resolver chose),
// wrapping datagram connections so that the answers' TTLs are recorded.
func (r *MXResolver) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if r.o.Server != "" {
		address = r.o.Server
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	rec, _ := ctx.Value(ttlKey{}).(*ttlRecord)
	pc, ok := conn.(net.PacketConn)
	if rec == nil || !ok {
		// Over TCP a Read may return part of a message: no TTL, the
		// default applies.
		return conn, nil
	}
	// The resolver tells datagram from stream connections by
	// net.PacketConn: the wrapper must stay one.
	return &ttlConn{Conn: conn, pc: pc, rec: rec}, nil
}

type ttlKey struct{}

// ttlRecord holds the smallest MX TTL of the last answer read.
type ttlRecord struct {
	mu  sync.Mutex
	ttl uint32
	ok  bool
}

func (t *ttlRecord) get() (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ttl, t.ok
}

// observe reads the MX records' TTL of a DNS answer; anything it cannot
// parse is left to the resolver.
func (t *ttlRecord) observe(msg []byte) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.RCode != dnsmessage.RCodeSuccess {
		return
	}
	if err := p.SkipAllQuestions(); err != nil {
		return
	}
	var ttl uint32
	found := false
	for {
		ah, err := p.AnswerHeader()
		if err != nil {
			break // ErrSectionDone, or a malformed record
		}
		if ah.Type == dnsmessage.TypeMX && (!found || ah.TTL < ttl) {
			ttl, found = ah.TTL, true
		}
		if err := p.SkipAnswer(); err != nil {
			break
		}
	}
	if found {
		t.mu.Lock()
		t.ttl, t.ok = ttl, true
		t.mu.Unlock()
	}
}

// ttlConn is a datagram connection that records the TTLs of what it reads.
type ttlConn struct {
	net.Conn
	pc  net.PacketConn
	rec *ttlRecord
}

func (c *ttlConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rec.observe(b[:n])
	}
	return n, err
}

func (c *ttlConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.pc.ReadFrom(b)
	if n > 0 {
		c.rec.observe(b[:n])
	}
	return n, addr, err
}

func (c *ttlConn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.pc.WriteTo(b, addr) }

var _ net.PacketConn = (*ttlConn)(nil)
