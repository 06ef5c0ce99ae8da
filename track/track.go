// Package track serves the public tracking endpoints that the sender writes
// into every message (docs/ARCHITECTURE.md: they live with the sender, whose
// package sender owns the token format) and turns their hits into events
// handed to intake:
//
//	GET /t/o/TOKEN.gif  the pixel: a 43-byte transparent GIF, an opened event
//	GET /t/c/TOKEN      a click: 302 to the URL the token signs, a clicked event
//	GET /t/u/TOKEN      the unsubscribe page: says what, one button; records nothing
//	POST /t/u/TOKEN     unsubscribes (RFC 8058 one-click, or the page's form):
//	                    an unsubscribed event, durable before the answer
//
// No API key: the token decides everything (the send, and so the account,
// sender domain and recipient), nothing else in the request does. A token
// that no key of the set signed, of another kind, altered or cut gets 404
// and records nothing.
//
// # The fast path and its loss window
//
// The pixel and the redirect are answered at once: the request path checks
// the token's MAC and puts the hit (the token's reference, user agent,
// client address, time) on a bounded in-memory queue; it neither reads the
// store nor writes the disk. A worker takes hits in batches (up to
// Options.BatchSize, or what came within Options.BatchWait of the first),
// finds their sends (an in-memory cache of recent references in front of
// Options.Sends), builds the events and submits them to intake, which makes
// them durable. Hits still in the queue when the process dies are lost: at
// most the queue's size, in practice the last BatchWait (~10 ms) of hits. A
// clean shutdown (Shutdown) drains the queue into intake first.
//
// Every accepted hit is counted, and ends as exactly one of: an event
// (repute_tracking_events_total), a duplicate of one (identical hits within
// a second are one event: repute_tracking_duplicates_total), or dropped
// with a reason (repute_tracking_dropped_total{reason}): queue_full (the
// GIF or redirect is answered all the same), unknown_send (a valid token
// whose send the store does not know, also repute_tracking_unknown_total),
// shutdown (the shutdown deadline passed with hits still queued),
// submit_failed (an unsubscribe intake could not take; the person is told
// to try again), rate_limited (a pixel or click over its per-address
// limit, answered all the same). So hits = events + duplicates + dropped,
// always.
//
// The unsubscribe POST takes the slow path on purpose: the event is durable
// in intake before the answer says "unsubscribed".
//
// # Deliberate choices
//
//   - A valid pixel token whose send is not found still gets the GIF: a
//     broken image in a mail client helps nobody, and the send may simply
//     not be drained into the store yet. Nothing is recorded (there is no
//     account or recipient to record it for); it is counted.
//   - HEAD gets the pixel's or the redirect's answer but records nothing: no
//     mail client displays an image or follows a link with HEAD.
//   - GET /t/u/ never unsubscribes: link scanners fetch every URL in a
//     message.
//   - The client address is the TCP peer's; X-Forwarded-For is read only
//     when the peer is one of Options.TrustedProxies (the rightmost address
//     that is not a trusted proxy is the client's).
//   - Over its per-address limit (Options.Limit), the pixel still gets the
//     GIF and the click its redirect, but the hit is not recorded (counted
//     as dropped{reason=rate_limited}): a broken image or a dead link in a
//     person's mail is worse than an open or click not counted, and the
//     answer costs next to nothing; what a flood would cost is the
//     recording. The unsubscribe page and POST get 429 with Retry-After.
package track

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/api"
	"repute/correlate"
	"repute/metrics"
	"repute/sender"
)

// Sources of the events the endpoints record (the event's source field).
const (
	SourcePixel    = "pixel"     // opened, by the pixel
	SourceClick    = "click"     // clicked, by the redirect
	SourceOneClick = "one-click" // unsubscribed by an RFC 8058 POST
	SourcePage     = "page"      // unsubscribed by the page's button
)

// GIF is the pixel: a 1×1 transparent GIF89a, 43 bytes.
var GIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', // header
	1, 0, 1, 0, // 1×1
	0x80, 0, 0, // global colour table of 2 entries
	0, 0, 0, 0xff, 0xff, 0xff, // black, white
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control: colour 0 transparent
	0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // image descriptor
	2, 2, 0x44, 1, 0, // LZW data: one pixel of colour 0
	0x3b, // trailer
}

// Sends finds the send of a token's reference (both stores satisfy it).
type Sends interface {
	SendByRef(ctx context.Context, ref string) (metrics.Send, bool, error)
}

// Options configure a Handler. Signer, Sends and Submit are required.
type Options struct {
	Signer *sender.TrackingSigner
	Sends  Sends
	// Submit hands normalized events to intake and returns once they are
	// durable, with the number of them that were duplicates.
	Submit func(ctx context.Context, events []metrics.Event) (duplicates int, err error)
	// Classify gives an open or click the machine-open verdict
	// (opens.Detector.Classify); nil: no verdict here (intake may still
	// give one).
	Classify func(ua string, ip netip.Addr, at, sentAt time.Time) (machine bool, reason string)
	// DisplayName names an account on the unsubscribe page; nil or ""
	// means the account's name.
	DisplayName func(account string) string
	// ISPs derives the events' isp (metrics.Event.Normalize).
	ISPs metrics.ISPMap
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Limit takes a token of a client address's limit for an endpoint
	// ("pixel", "click", "unsubscribe": api.Guard.AllowAddress); false
	// and the wait before the next token when there is none. nil: no
	// limit.
	Limit func(endpoint string, ip netip.Addr) (ok bool, retryAfter time.Duration)

	QueueSize int           // hits waiting for the worker; default 65536
	BatchSize int           // hits per batch; default 1000
	BatchWait time.Duration // how long a batch waits for more after its first hit; default 10ms
	CacheSize int           // sends cached by reference; default 65536
	// LookupTimeout bounds a store lookup; default 5s.
	LookupTimeout time.Duration

	Registerer prometheus.Registerer // nil: no metrics registered
	Logger     *slog.Logger          // nil: silent
	Now        func() time.Time      // nil: time.Now
}

// hit is one accepted pixel fetch or click, waiting for the worker.
type hit struct {
	click bool
	ref   correlate.Ref
	url   string
	ua    string
	ip    netip.Addr
	at    time.Time
}

// Handler serves the endpoints (http.Handler) and runs the worker (Run).
type Handler struct {
	o       Options
	log     *slog.Logger
	queue   chan hit
	drain   chan struct{} // closed by Shutdown: finish the queue and return
	done    chan struct{} // closed when Run returns
	stopped atomic.Bool
	once    sync.Once
	cache   *sendCache
	recent  recentHits // the worker's alone
	m       counters
}

type counters struct {
	hitOpen, hitClick, hitUnsub                 prometheus.Counter
	rejOpen, rejClick, rejUnsub                 prometheus.Counter
	events, duplicates, unknown                 prometheus.Counter
	dropFull, dropUnknown, dropShut, dropSubmit prometheus.Counter
	dropLimited                                 prometheus.Counter
}

// New checks o and returns a Handler. Its worker runs in Run.
func New(o Options) (*Handler, error) {
	switch {
	case o.Signer == nil:
		return nil, errors.New("track: no token signer")
	case o.Sends == nil:
		return nil, errors.New("track: no send lookup")
	case o.Submit == nil:
		return nil, errors.New("track: nowhere to submit events")
	case o.QueueSize < 0 || o.BatchSize < 0 || o.BatchWait < 0 || o.CacheSize < 0 || o.LookupTimeout < 0:
		return nil, errors.New("track: negative queue size, batch size, batch wait, cache size or lookup timeout")
	}
	if o.QueueSize == 0 {
		o.QueueSize = 65536
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.BatchWait == 0 {
		o.BatchWait = 10 * time.Millisecond
	}
	if o.CacheSize == 0 {
		o.CacheSize = 65536
	}
	if o.LookupTimeout == 0 {
		o.LookupTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, log: log, queue: make(chan hit, o.QueueSize),
		drain: make(chan struct{}), done: make(chan struct{}), cache: newSendCache(o.CacheSize),
		recent: recentHits{bySecond: map[int64]map[hitKey]struct{}{}}}
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "repute_tracking_hits_total",
		Help: "Tracking hits with a valid token, by kind (open, click, unsubscribe): each ends as an event, a duplicate or dropped."}, []string{"kind"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "repute_tracking_rejected_total",
		Help: "Tracking requests answered 404: a token no key signed, altered, cut or of another kind, by endpoint."}, []string{"kind"})
	events := prometheus.NewCounter(prometheus.CounterOpts{Name: "repute_tracking_events_total",
		Help: "Tracking hits recorded as new events (durable in intake)."})
	dups := prometheus.NewCounter(prometheus.CounterOpts{Name: "repute_tracking_duplicates_total",
		Help: "Tracking hits that were the same event as another (identical hits within a second)."})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "repute_tracking_dropped_total",
		Help: "Tracking hits recorded as nothing, by reason: queue_full, unknown_send, shutdown, submit_failed, rate_limited (a pixel or click over its per-address limit, answered all the same)."}, []string{"reason"})
	unknown := prometheus.NewCounter(prometheus.CounterOpts{Name: "repute_tracking_unknown_total",
		Help: "Tracking hits with a valid token whose send the store does not know (yet); also in dropped{reason=unknown_send}."})
	h.m = counters{
		hitOpen: hits.WithLabelValues("open"), hitClick: hits.WithLabelValues("click"), hitUnsub: hits.WithLabelValues("unsubscribe"),
		rejOpen: rejected.WithLabelValues("open"), rejClick: rejected.WithLabelValues("click"), rejUnsub: rejected.WithLabelValues("unsubscribe"),
		events: events, duplicates: dups, unknown: unknown,
		dropFull: dropped.WithLabelValues("queue_full"), dropUnknown: dropped.WithLabelValues("unknown_send"),
		dropShut: dropped.WithLabelValues("shutdown"), dropSubmit: dropped.WithLabelValues("submit_failed"),
		dropLimited: dropped.WithLabelValues("rate_limited"),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{hits, rejected, events, dups, dropped, unknown} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("track: metrics: %w", err)
			}
		}
	}
	return h, nil
}

// ServeHTTP serves /t/o/, /t/c/ and /t/u/; anything else is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/t/o/"):
		h.pixel(w, r, p[len("/t/o/"):])
	case strings.HasPrefix(p, "/t/c/"):
		h.click(w, r, p[len("/t/c/"):])
	case strings.HasPrefix(p, "/t/u/"):
		h.unsubscribe(w, r, p[len("/t/u/"):])
	default:
		http.NotFound(w, r)
	}
}

// Header values, shared by every answer (nothing appends to them).
var (
	gifType      = []string{"image/gif"}
	gifLength    = []string{strconv.Itoa(len(GIF))}
	noStore      = []string{"no-store"}
	pragmaNo     = []string{"no-cache"}
	expiresZero  = []string{"0"}
	getHead      = []string{"GET, HEAD"}
	getHeadPost  = []string{"GET, HEAD, POST"}
	noReferrer   = []string{"no-referrer"}
	textPlain    = []string{"text/plain; charset=utf-8"}
	textHTML     = []string{"text/html; charset=utf-8"}
	pageSecurity = []string{"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"}
)

// noCache forbids every cache to keep the answer: each fetch must reach us
// (RFC 9111 §5.2.2.5; Pragma and Expires for HTTP/1.0 proxies).
func noCache(hd http.Header) {
	hd["Cache-Control"] = noStore
	hd["Pragma"] = pragmaNo
	hd["Expires"] = expiresZero
}

func (h *Handler) pixel(w http.ResponseWriter, r *http.Request, rest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = getHead
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutSuffix(rest, ".gif")
	var ref correlate.Ref
	var err error
	if ok {
		ref, err = h.o.Signer.ParseOpenToken(tok)
	}
	if !ok || err != nil {
		h.m.rejOpen.Inc()
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd["Content-Type"] = gifType
	hd["Content-Length"] = gifLength
	noCache(hd)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	w.Write(GIF)
	h.enqueue(hit{ref: ref, ua: r.UserAgent(), ip: h.clientIP(r), at: h.o.Now()}, "pixel")
}

func (h *Handler) click(w http.ResponseWriter, r *http.Request, tok string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = getHead
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ref, url, err := h.o.Signer.ParseClickToken(tok)
	if err != nil {
		h.m.rejClick.Inc()
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	noCache(hd)
	hd["Referrer-Policy"] = noReferrer
	// The URL is the one the sender found in the message, signed: it is
	// sent as it is (http.Redirect would rewrite a relative one).
	hd["Location"] = []string{url}
	w.WriteHeader(http.StatusFound)
	if r.Method == http.MethodHead {
		return
	}
	h.enqueue(hit{click: true, ref: ref, url: url, ua: r.UserAgent(), ip: h.clientIP(r), at: h.o.Now()}, "click")
}

// enqueue hands a hit to the worker without waiting; over the address's
// limit of endpoint, or with the queue full, the hit is counted as
// dropped.
func (h *Handler) enqueue(x hit, endpoint string) {
	if x.click {
		h.m.hitClick.Inc()
	} else {
		h.m.hitOpen.Inc()
	}
	if h.o.Limit != nil {
		if ok, _ := h.o.Limit(endpoint, x.ip); !ok {
			h.m.dropLimited.Inc()
			return
		}
	}
	if h.stopped.Load() {
		h.m.dropShut.Inc()
		return
	}
	select {
	case h.queue <- x:
	default:
		h.m.dropFull.Inc()
	}
}

// clientIP is the client's address (api.ClientAddr).
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	return api.ClientAddr(r, h.o.TrustedProxies)
}

// Run is the worker: it turns queued hits into events until ctx ends or,
// after Shutdown, the queue is empty. Hits left when ctx ends are counted
// as dropped (shutdown).
func (h *Handler) Run(ctx context.Context) error {
	defer close(h.done)
	batch := make([]hit, 0, h.o.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		draining := false
		select {
		case x := <-h.queue:
			batch = append(batch, x)
		case <-h.drain:
			draining = true
		case <-ctx.Done():
			h.abandon(nil)
			return nil
		}
		if draining {
			// Shutdown: no more hits come; take what is queued.
			for {
				batch = batch[:0]
			more:
				for len(batch) < h.o.BatchSize {
					select {
					case x := <-h.queue:
						batch = append(batch, x)
					default:
						break more
					}
				}
				if len(batch) == 0 {
					return nil
				}
				if !h.process(ctx, batch) {
					h.abandon(nil)
					return nil
				}
			}
		}
		timer.Reset(h.o.BatchWait)
	fill:
		for len(batch) < h.o.BatchSize {
			select {
			case x := <-h.queue:
				batch = append(batch, x)
			case <-timer.C:
				break fill
			case <-h.drain:
				break fill
			}
		}
		timer.Stop()
		if !h.process(ctx, batch) {
			h.abandon(nil)
			return nil
		}
	}
}

// abandon counts what is left in the queue as dropped (shutdown).
func (h *Handler) abandon(batch []hit) {
	h.m.dropShut.Add(float64(len(batch)))
	for {
		select {
		case <-h.queue:
			h.m.dropShut.Inc()
		default:
			return
		}
	}
}

// Shutdown stops taking hits (later ones are counted as dropped), lets Run
// submit what is queued, and waits for Run to return or ctx to end. Call it
// after the HTTP servers stopped, before intake stops; cancel Run's context
// when it returns an error.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.once.Do(func() {
		h.stopped.Store(true)
		close(h.drain)
	})
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("track: %d hits still queued: %w", len(h.queue), ctx.Err())
	}
}

// process finds the sends of a batch, builds the events and submits them,
// retrying while the store or intake fails. It returns false when ctx
// ended first (the batch is then counted as dropped).
func (h *Handler) process(ctx context.Context, batch []hit) bool {
	events := make([]metrics.Event, 0, len(batch))
	now := h.o.Now()
	h.prefetch(ctx, batch)
	localDups := 0
	for i := range batch {
		x := &batch[i]
		// A hit identical to one of the last seconds is a duplicate of its
		// event: counted here, without building the event or asking
		// intake, which would find the same (a wrk run is 95% of them).
		if h.recent.seen(x) {
			localDups++
			continue
		}
		s, found, ok := h.send(ctx, x.ref)
		if !ok {
			h.m.dropShut.Add(float64(len(batch) - i))
			return false
		}
		if !found {
			h.m.unknown.Inc()
			h.m.dropUnknown.Inc()
			h.recent.forget(x)
			continue
		}
		kind, source := metrics.KindOpened, SourcePixel
		if x.click {
			kind, source = metrics.KindClicked, SourceClick
		}
		e := h.event(x.ref, kind, source, "", x.url, x.ua, x.ip, x.at, s)
		if h.o.Classify != nil {
			// As opens.Detector.ClassifyEvent: no user agent and no machine
			// signal leaves no verdict rather than "a person".
			if m, reason := h.o.Classify(x.ua, x.ip, x.at, s.Time); m || x.ua != "" {
				e.Machine, e.MachineReason = &m, reason
			}
		}
		if err := e.Normalize(h.o.ISPs, now); err != nil {
			// Nothing of ours should be refused; say so rather than loop.
			h.log.Error("tracking event refused", "kind", kind, "ref", x.ref.String(), "err", err)
			h.m.dropSubmit.Inc()
			continue
		}
		events = append(events, e)
	}
	h.m.duplicates.Add(float64(localDups))
	if len(events) == 0 {
		return true
	}
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		dups, err := h.o.Submit(ctx, events)
		if err == nil {
			h.m.events.Add(float64(len(events) - dups))
			h.m.duplicates.Add(float64(dups))
			return true
		}
		h.log.Warn("tracking events not taken by intake; retrying", "events", len(events), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			h.m.dropShut.Add(float64(len(events)))
			return false
		case <-time.After(wait):
		}
	}
}

// lookupWorkers is how many store lookups a batch runs at once: a DuckDB
// lookup takes about a millisecond, mostly waiting, so a batch of opens
// of distinct messages is found several times faster than one by one.
const lookupWorkers = 8

// prefetch looks up, concurrently, the sends of the batch's references
// that are not cached, and caches them; a failure is left for send to
// retry.
func (h *Handler) prefetch(ctx context.Context, batch []hit) {
	now := h.o.Now()
	want := map[correlate.Ref]bool{}
	for i := range batch {
		if _, _, ok := h.cache.get(batch[i].ref, now); !ok {
			want[batch[i].ref] = true
		}
	}
	if len(want) < 2 {
		return
	}
	refs := make(chan correlate.Ref)
	var wg sync.WaitGroup
	for range min(lookupWorkers, len(want)) {
		wg.Go(func() {
			for ref := range refs {
				h.lookup(ctx, ref) // caches what it finds
			}
		})
	}
	for ref := range want {
		refs <- ref
	}
	close(refs)
	wg.Wait()
}

// send returns the send of ref from the cache or the store, retrying while
// the store fails; ok is false when ctx ended first.
func (h *Handler) send(ctx context.Context, ref correlate.Ref) (s metrics.Send, found, ok bool) {
	if s, found, hit := h.cache.get(ref, h.o.Now()); hit {
		return s, found, true
	}
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		s, found, err := h.lookup(ctx, ref)
		if err == nil {
			return s, found, true
		}
		h.log.Warn("tracking: send lookup failed; retrying", "ref", ref.String(), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return metrics.Send{}, false, false
		case <-time.After(wait):
		}
	}
}

// lookup reads the send of ref from the store and caches the answer.
func (h *Handler) lookup(ctx context.Context, ref correlate.Ref) (metrics.Send, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, h.o.LookupTimeout)
	defer cancel()
	s, found, err := h.o.Sends.SendByRef(lctx, ref.String())
	if err != nil {
		return metrics.Send{}, false, err
	}
	h.cache.put(ref, s, found, h.o.Now())
	return s, found, nil
}

// event builds the event of a hit on the send s. Its id is derived from
// what identifies the hit — reference, kind, URL, user agent, client
// address and the second it came in — so identical hits within a second
// are one event, whichever node took them.
func (h *Handler) event(ref correlate.Ref, kind metrics.Kind, source, reason, url, ua string, ip netip.Addr, at time.Time, s metrics.Send) metrics.Event {
	at = at.UTC().Truncate(time.Second)
	ipText := ""
	if ip.IsValid() {
		ipText = ip.String()
	}
	e := metrics.Event{
		Time: at, Kind: kind, Source: source, SourceRef: ref.String(),
		Account: s.Account, SenderDomain: s.SenderDomain, Campaign: s.Campaign, SendingIP: s.SendingIP,
		MessageID: s.MessageID, Recipient: s.Recipient,
		UserAgent: ua, ClientIP: truncateIP(ip), URL: url, Reason: reason,
	}
	e.EventID = metrics.DerivedID(hitIdentity(ref, kind, url, ua, ipText, at), s.Recipient, kind)
	return e
}

// hitIdentity is the report identity (metrics.DerivedID) of a hit.
func hitIdentity(ref correlate.Ref, kind metrics.Kind, url, ua, ip string, at time.Time) string {
	buf := make([]byte, 0, 64+len(url)+len(ua))
	for _, v := range []string{ref.String(), string(kind), url, ua, ip, strconv.FormatInt(at.Unix(), 10)} {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	sum := sha256.Sum256(buf)
	return "track:" + hex.EncodeToString(sum[:16])
}

// unknownTTL is how long a reference whose send was not found is
// remembered as unknown: long enough to spare the store a flood of one
// message's hits, short enough that a send drained a moment later counts.
const unknownTTL = 2 * time.Second

// sendCache keeps the sends of recent references: two generations of a
// map, the older dropped when the newer is full (an approximate LRU
// without a list to maintain). Only the worker uses it, and the
// unsubscribe handlers: it is locked.
type sendCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[correlate.Ref]cached
}

type cached struct {
	s       metrics.Send
	found   bool
	expires time.Time // for a reference not found
}

func newSendCache(size int) *sendCache {
	return &sendCache{max: max(1, size/2), cur: map[correlate.Ref]cached{}, old: map[correlate.Ref]cached{}}
}

func (c *sendCache) get(ref correlate.Ref, now time.Time) (metrics.Send, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.cur[ref]
	if !ok {
		if v, ok = c.old[ref]; ok {
			c.putLocked(ref, v)
		}
	}
	if !ok || !v.found && now.After(v.expires) {
		return metrics.Send{}, false, false
	}
	return v.s, v.found, true
}

func (c *sendCache) put(ref correlate.Ref, s metrics.Send, found bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(ref, cached{s: s, found: found, expires: now.Add(unknownTTL)})
}

func (c *sendCache) putLocked(ref correlate.Ref, v cached) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[correlate.Ref]cached, c.max)
	}
	c.cur[ref] = v
}

// hitKey identifies a hit within its second (the event id's input).
type hitKey struct {
	click bool
	ref   correlate.Ref
	url   string
	ua    string
	ip    netip.Addr
}

// recentHits remembers the hits of the last few seconds, by second, so
// the worker counts an identical hit within the same second as a
// duplicate without building its event. Seconds more than recentSeconds
// behind the latest seen are forgotten (intake still catches a duplicate
// that comes later than that).
type recentHits struct {
	bySecond map[int64]map[hitKey]struct{}
	latest   int64
}

const recentSeconds = 3

// seen reports whether x was seen before in its second, and remembers it.
func (r *recentHits) seen(x *hit) bool {
	sec := x.at.Unix()
	if sec > r.latest {
		r.latest = sec
		for s := range r.bySecond {
			if s < sec-recentSeconds {
				delete(r.bySecond, s)
			}
		}
	}
	m := r.bySecond[sec]
	if m == nil {
		if sec < r.latest-recentSeconds {
			return false // too old to track: intake decides
		}
		m = map[hitKey]struct{}{}
		r.bySecond[sec] = m
	}
	k := hitKey{click: x.click, ref: x.ref, url: x.url, ua: x.ua, ip: x.ip}
	if _, ok := m[k]; ok {
		return true
	}
	m[k] = struct{}{}
	return false
}

// forget removes x, whose send was not found: a later identical hit is
// looked up again rather than counted as a duplicate of nothing.
func (r *recentHits) forget(x *hit) {
	delete(r.bySecond[x.at.Unix()], hitKey{click: x.click, ref: x.ref, url: x.url, ua: x.ua, ip: x.ip})
}

// truncateIP is the client address as it is stored: its network, IPv4 /24
// and IPv6 /48, written as a prefix ("192.0.2.0/24"). A reader's address
// is personal data (GDPR recital 30), and the stored event needs no more:
// the machine verdict is taken on the full address before it is cut, and
// the event's id hashes the full address, so two readers behind one /24
// stay two events. docs/events.md asks posters of client_ip the same.
func truncateIP(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}
