// Package intake is the durable path of an accepted event: Submit tells
// duplicates apart and writes the rest to the on-disk spool before it
// returns; Run drains the spool into the store. A source (HTTP, Kafka, IMAP)
// acknowledges its input only after Submit returns, so a crash at any point
// loses nothing, and the store's idempotence on (account, event_id) makes a
// replay count once.
//
// An event the store refuses alone while it takes other writes is set aside
// in the spool's dead-letter files after Options.DeadLetterAttempts drain
// attempts (see Pipeline.drain for the rule); a store that is down sends
// nothing there. The events a crash left in the spool count as known
// (duplicates) until drained.
package intake

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
	"repute/spool"
)

// Spool is the durable queue in front of the store (package spool).
type Spool interface {
	// Append returns once payload is on disk, or an error (spool.ErrFull
	// when the bound is reached, a *spool.DiskError when the disk refuses
	// the write: full or failing).
	Append(payload []byte) error
	// Run drains the spool into sink until ctx ends.
	Run(ctx context.Context, sink func(ctx context.Context, payloads [][]byte) error) error
	// Flush returns once every payload appended before it was called has
	// been drained, or with ctx's error.
	Flush(ctx context.Context) error
	// Undrained calls fn with each payload not yet drained, in order.
	Undrained(fn func(payload []byte) error) error
}

// Store is what the pipeline needs of the event store.
type Store interface {
	metrics.Appender
	metrics.KnownChecker
}

// Options configure a Pipeline; the zero value works.
type Options struct {
	Logger *slog.Logger // nil: silent
	// Registerer receives the pipeline's Prometheus metrics; nil: none.
	Registerer prometheus.Registerer
	// KnownTimeout bounds the duplicate lookup in the store; past it (or
	// while the store is failing) events are spooled without the lookup and
	// the store's idempotence collapses any duplicate. Default 2 s.
	KnownTimeout time.Duration
	// DeadLetterAttempts is how many drain attempts must each find an
	// event refused by the store while the store takes other writes before
	// the event is set aside in the spool's dead-letter files. Default 8
	// (with the spool's backoff, about 10 s).
	DeadLetterAttempts int
	// AfterStore, when set, is called with each drained batch's events
	// once they are in the store (those set aside for good left out),
	// before the spool forgets the batch. An error makes the spool drain
	// the batch again (the store writes are not repeated; AfterStore is),
	// so a consumer of stored events (the suppression lists) sees every
	// event at least once, even across a crash, and must be idempotent.
	AfterStore func(ctx context.Context, events []metrics.Event) error
	// Classify, when set, is called by Submit on each submitted event, in
	// place, before the duplicate check and the spool: cmd wires the
	// machine-open detector here (package opens), so an open that arrives
	// without a verdict gets one whatever its source. It must leave the
	// event id alone (the verdict is not part of it, so a re-post of a
	// classified event is still a duplicate) and be safe for concurrent
	// calls; it runs before Submit takes its lock.
	Classify func(e *metrics.Event)
}

// Pipeline connects intake to the spool and the spool to the store.
type Pipeline struct {
	spool   Spool
	store   Store
	log     *slog.Logger
	m       *pipelineMetrics
	known   time.Duration
	mu      sync.Mutex           // serialises Submit: check-then-spool must be atomic
	queued  map[metrics.Key]bool // keys in the spool, not yet confirmed in the store
	indexed bool                 // queued holds the keys a crash left in the spool

	// Of the batch being drained, which the spool passes again until the
	// drain returns nil or a RefusedError; only the drain uses them.
	deadAfter  int
	afterStore func(context.Context, []metrics.Event) error
	classify   func(*metrics.Event)
	written    map[metrics.Key]bool    // already in the store
	strikes    map[metrics.Key]*strike // refused alone while the store took other writes
	probe      []metrics.Event         // one event the store has taken

	healthMu  sync.Mutex
	lastError error // of the last store write; nil when it succeeded
}

// New returns a pipeline from sp to st.
func New(sp Spool, st Store, opts Options) *Pipeline {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	known := opts.KnownTimeout
	if known <= 0 {
		known = 2 * time.Second
	}
	deadAfter := opts.DeadLetterAttempts
	if deadAfter <= 0 {
		deadAfter = 8
	}
	return &Pipeline{spool: sp, store: st, log: log, m: newPipelineMetrics(opts.Registerer),
		known: known, queued: map[metrics.Key]bool{}, deadAfter: deadAfter, afterStore: opts.AfterStore,
		classify: opts.Classify,
		written:  map[metrics.Key]bool{}, strikes: map[metrics.Key]*strike{}}
}

// Result says what became of submitted events.
type Result struct {
	// Duplicates are the events already known (in the store, in the spool,
	// or earlier in the same submission): accepted without effect.
	Duplicates int
}

// Submit spools the events that are not duplicates and returns once they
// are durable. The events must be normalized. On error nothing of this
// submission was spooled. Options.Classify, if set, is applied to the
// events in place first.
func (p *Pipeline) Submit(ctx context.Context, events []metrics.Event) (Result, error) {
	if p.classify != nil {
		for i := range events {
			p.classify(&events[i])
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.indexSpool()

	keep := make([]bool, len(events))
	n := 0
	inBatch := make(map[metrics.Key]bool, len(events))
	for i := range events {
		k := events[i].Key()
		if inBatch[k] || p.queued[k] {
			continue
		}
		inBatch[k] = true
		keep[i] = true
		n++
	}
	fresh := kept(events, keep, n)
	known := p.lookupKnown(ctx, fresh)
	if len(known) > 0 {
		keep, n = keep[:len(fresh)], 0
		for i := range fresh {
			keep[i] = !known[fresh[i].Key()]
			if keep[i] {
				n++
			}
		}
		fresh = kept(fresh, keep, n)
	}
	if len(fresh) > 0 {
		if err := p.spool.Append(metrics.AppendEvents(nil, fresh)); err != nil {
			return Result{}, fmt.Errorf("intake: spool: %w", err)
		}
		for _, e := range fresh {
			p.queued[e.Key()] = true
			p.m.accepted.WithLabelValues(string(e.Kind), e.Source).Inc()
		}
	}
	res := Result{Duplicates: len(events) - len(fresh)}
	p.m.duplicates.Add(float64(res.Duplicates))
	return res, nil
}

// kept returns the n events of src whose keep is true: src itself when
// that is all of them, so that a large batch of new events is not copied
// (an event takes about 500 bytes).
func kept(src []metrics.Event, keep []bool, n int) []metrics.Event {
	if n == len(src) {
		return src
	}
	out := make([]metrics.Event, 0, n)
	for i := range src {
		if keep[i] {
			out = append(out, src[i])
		}
	}
	return out
}

// lookupKnown asks the store which events it has. When the store is failing
// or slow it answers nothing rather than hold intake up: a duplicate then
// reaches the spool and the store collapses it, so only the reported count
// of duplicates is affected, never the stored data.
func (p *Pipeline) lookupKnown(ctx context.Context, events []metrics.Event) map[metrics.Key]bool {
	if len(events) == 0 || p.StoreError() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.known)
	defer cancel()
	known, err := p.store.Known(ctx, events)
	if err != nil {
		p.log.Warn("duplicate lookup failed; spooling without it", "err", err)
		return nil
	}
	return known
}

// WaitVisible returns once every event submitted before it was called is
// in the store (queryable), or with an error when ctx ends first: the
// events are then still in the spool, on their way.
func (p *Pipeline) WaitVisible(ctx context.Context) error {
	if err := p.spool.Flush(ctx); err != nil {
		return fmt.Errorf("intake: waiting for the store: %w", err)
	}
	return nil
}

// Run drains the spool into the store until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	return p.spool.Run(ctx, p.drain)
}

// indexSpool marks the events still in the spool as queued, once, before
// the first Submit or drain (p.mu held): after a crash they were accepted
// but may not be in the store, and a client retrying them must hear they
// are duplicates.
func (p *Pipeline) indexSpool() {
	if p.indexed {
		return
	}
	p.indexed = true
	n := 0
	err := p.spool.Undrained(func(payload []byte) error {
		events, err := metrics.DecodeEvents(payload)
		if err != nil {
			return fmt.Errorf("intake: decode spooled events: %w", err)
		}
		for i := range events {
			p.queued[events[i].Key()] = true
		}
		n += len(events)
		return nil
	})
	if err != nil {
		p.log.Warn("indexing the events in the spool failed: re-posted ones may be spooled again (the store keeps them once)", "err", err)
	}
	if n > 0 {
		p.log.Info("events in the spool count as known until drained", "events", n)
	}
}

// drain writes spooled payloads to the store; the spool advances past them
// only when it returns nil or a *spool.RefusedError.
//
// When the store refuses a batch, the drain tells a refused event from a
// store that is down by bisecting: it writes halves, then quarters, down
// to single events, and checks each failure against a write the store has
// taken before (rewriting an event it already has, which the store's
// idempotence makes harmless). An event the store refuses alone while it
// takes other writes gets a strike; at DeadLetterAttempts strikes it is
// refused for good: the spool sets it aside in a dead-letter file. When
// that check fails too, the store is down: the drain gives up the attempt
// with no strike, and the spool retries after a backoff.
func (p *Pipeline) drain(ctx context.Context, payloads [][]byte) error {
	p.mu.Lock()
	p.indexSpool()
	p.mu.Unlock()

	var (
		events []metrics.Event
		locs   []loc
		keys   []metrics.Key
		all    []metrics.Event // for AfterStore
	)
	for i, payload := range payloads {
		batch, err := metrics.DecodeEvents(payload)
		if err != nil {
			// The spool checksums every record, so this is a bug, not a
			// torn write; fail loudly rather than skip.
			return fmt.Errorf("intake: decode spooled events: %w", err)
		}
		if p.afterStore != nil {
			all = append(all, batch...)
		}
		for j := range batch {
			k := batch[j].Key()
			keys = append(keys, k)
			if p.written[k] {
				continue // by an earlier attempt at this batch
			}
			events = append(events, batch[j])
			locs = append(locs, loc{index: i, part: j})
		}
	}
	w := &writer{p: p, ctx: ctx, limit: 2*bits.Len(uint(len(events))) + 2}
	w.write(events, locs)
	if w.err == nil && len(w.refused) > 0 && !w.proven {
		w.check(w.refused[len(w.refused)-1].err)
	}
	if w.err != nil {
		p.setStoreError(w.err)
		return fmt.Errorf("intake: store: %w", w.err)
	}

	var (
		refused []spool.Refusal
		pending error
	)
	for _, r := range w.refused {
		e := &events[r.i]
		k := e.Key()
		st := p.strikes[k]
		if st == nil {
			st = &strike{}
			p.strikes[k] = st
		}
		st.n++
		if st.n < p.deadAfter {
			pending = fmt.Errorf("intake: store refuses %s/%s alone while it takes other writes (attempt %d of %d before dead-letter): %w",
				e.Account, e.EventID, st.n, p.deadAfter, r.err)
			continue
		}
		refused = append(refused, spool.Refusal{
			Index: locs[r.i].index, Part: locs[r.i].part,
			Payload: metrics.AppendEvents(nil, []metrics.Event{*e}), Attempts: st.n, Err: r.err,
		})
	}
	if pending != nil {
		p.setStoreError(pending)
		return pending
	}
	if p.afterStore != nil {
		if err := p.afterStore(ctx, storedOf(all, refused)); err != nil {
			err = fmt.Errorf("intake: after the store write: %w", err)
			p.setStoreError(err)
			return err
		}
	}
	p.setStoreError(nil)
	// The batch is done: stored, or set aside for good.
	p.mu.Lock()
	for _, k := range keys {
		delete(p.queued, k)
	}
	p.mu.Unlock()
	clear(p.written)
	clear(p.strikes)
	if len(refused) > 0 {
		return &spool.RefusedError{Refused: refused}
	}
	return nil
}

// storedOf is all but the events refused for good (refused, whose payloads
// hold the events set aside).
func storedOf(all []metrics.Event, refused []spool.Refusal) []metrics.Event {
	if len(refused) == 0 {
		return all
	}
	out := make([]metrics.Event, 0, len(all))
	gone := make(map[metrics.Key]bool, len(refused))
	for _, r := range refused {
		if evs, err := metrics.DecodeEvents(r.Payload); err == nil {
			for _, e := range evs {
				gone[e.Key()] = true
			}
		}
	}
	for _, e := range all {
		if !gone[e.Key()] {
			out = append(out, e)
		}
	}
	return out
}

// loc is where an event is in the batch being drained: the payload's
// index and the event's index in it.
type loc struct{ index, part int }

// strike counts the drain attempts that found an event refused alone.
type strike struct{ n int }

// refusal is an event the store refused alone: its index in the attempt.
type refusal struct {
	i   int
	err error
}

// writer is one attempt at writing a batch, bisecting what the store
// refuses.
type writer struct {
	p   *Pipeline
	ctx context.Context
	// limit is how many writes may fail in a row, while no earlier write
	// can prove the store takes writes, before the store is deemed down.
	limit   int
	fails   int  // writes failed since the last one that succeeded
	proven  bool // the last write or check succeeded
	next    int  // index in the attempt of events[0] in write
	refused []refusal
	err     error // the store is down: the attempt is given up
}

// write writes events (at w.next onwards in the attempt), halving what
// fails down to single events.
func (w *writer) write(events []metrics.Event, locs []loc) {
	if w.err != nil || len(events) == 0 {
		return
	}
	base := w.next
	err := w.append(events)
	if err == nil {
		w.next += len(events)
		return
	}
	if w.ctx.Err() != nil {
		w.err = err
		return
	}
	w.fails++
	if w.fails >= w.limit || len(w.p.probe) > 0 {
		if !w.check(err) {
			return
		}
	}
	if len(events) == 1 {
		w.refused = append(w.refused, refusal{i: base, err: err})
		w.next++
		return
	}
	half := len(events) / 2
	w.write(events[:half], locs[:half])
	w.write(events[half:], locs[half:])
}

// append writes events to the store, and remembers the last as a probe.
func (w *writer) append(events []metrics.Event) error {
	p := w.p
	start := time.Now()
	err := p.store.Append(w.ctx, events)
	p.m.storeWrite.Observe(time.Since(start).Seconds())
	if err != nil {
		p.m.storeErrors.Inc()
		w.proven = false
		return err
	}
	p.m.batchSize.Observe(float64(len(events)))
	for i := range events {
		p.written[events[i].Key()] = true
	}
	p.probe = append(p.probe[:0], events[len(events)-1])
	w.fails, w.proven = 0, true
	return nil
}

// check tells whether the store takes writes, by writing again an event
// it has taken: when it does not, or no such event is known, the store is
// deemed down and the attempt is given up with err.
func (w *writer) check(err error) bool {
	p := w.p
	if len(p.probe) > 0 {
		perr := p.store.Append(w.ctx, p.probe)
		if perr == nil {
			w.fails, w.proven = 0, true
			return true
		}
		p.m.storeErrors.Inc()
	}
	w.err = err
	return false
}

func (p *Pipeline) setStoreError(err error) {
	p.healthMu.Lock()
	p.lastError = err
	p.healthMu.Unlock()
}

// StoreError returns the error of the last store write, nil if it
// succeeded (or none was tried yet).
func (p *Pipeline) StoreError() error {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	return p.lastError
}

type pipelineMetrics struct {
	accepted    *prometheus.CounterVec
	duplicates  prometheus.Counter
	storeWrite  prometheus.Histogram
	storeErrors prometheus.Counter
	batchSize   prometheus.Histogram
}

func newPipelineMetrics(reg prometheus.Registerer) *pipelineMetrics {
	m := &pipelineMetrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repute_events_accepted_total",
			Help: "Events accepted and spooled, by kind and source (duplicates excluded).",
		}, []string{"kind", "source"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repute_events_duplicate_total",
			Help: "Events accepted without effect because they were already known.",
		}),
		storeWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "repute_store_write_seconds",
			Help:    "Latency of one store write (a drained spool batch).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repute_store_write_errors_total",
			Help: "Store writes that failed; the spool keeps their events and retries.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "repute_store_batch_events",
			Help:    "Events per store write.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.accepted, m.duplicates, m.storeWrite, m.storeErrors, m.batchSize)
	}
	return m
}
