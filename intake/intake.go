// Package intake is the durable path of an accepted event: Submit tells
// duplicates apart and writes the rest to the on-disk spool before it
// returns; Run drains the spool into the store. A source (HTTP, Kafka, IMAP)
// acknowledges its input only after Submit returns, so a crash at any point
// loses nothing, and the store's idempotence on (account, event_id) makes a
// replay count once.
package intake

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
)

// Spool is the durable queue in front of the store (package spool).
type Spool interface {
	// Append returns once payload is on disk, or an error (spool.ErrFull
	// when the bound is reached).
	Append(payload []byte) error
	// Run drains the spool into sink until ctx ends.
	Run(ctx context.Context, sink func(ctx context.Context, payloads [][]byte) error) error
	// Flush returns once every payload appended before it was called has
	// been drained, or with ctx's error.
	Flush(ctx context.Context) error
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
}

// Pipeline connects intake to the spool and the spool to the store.
type Pipeline struct {
	spool  Spool
	store  Store
	log    *slog.Logger
	m      *pipelineMetrics
	known  time.Duration
	mu     sync.Mutex           // serialises Submit: check-then-spool must be atomic
	queued map[metrics.Key]bool // keys in the spool, not yet confirmed in the store

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
	return &Pipeline{spool: sp, store: st, log: log, m: newPipelineMetrics(opts.Registerer),
		known: known, queued: map[metrics.Key]bool{}}
}

// Result says what became of submitted events.
type Result struct {
	// Duplicates are the events already known (in the store, in the spool,
	// or earlier in the same submission): accepted without effect.
	Duplicates int
}

// Submit spools the events that are not duplicates and returns once they
// are durable. The events must be normalized. On error nothing of this
// submission was spooled.
func (p *Pipeline) Submit(ctx context.Context, events []metrics.Event) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

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

// drain writes spooled payloads to the store; the spool advances past them
// only when it returns nil.
func (p *Pipeline) drain(ctx context.Context, payloads [][]byte) error {
	var events []metrics.Event
	for _, payload := range payloads {
		batch, err := metrics.DecodeEvents(payload)
		if err != nil {
			// The spool checksums every record, so this is a bug, not a
			// torn write; fail loudly rather than skip.
			return fmt.Errorf("intake: decode spooled events: %w", err)
		}
		events = append(events, batch...)
	}
	start := time.Now()
	err := p.store.Append(ctx, events)
	p.m.storeWrite.Observe(time.Since(start).Seconds())
	p.setStoreError(err)
	if err != nil {
		p.m.storeErrors.Inc()
		return fmt.Errorf("intake: store: %w", err)
	}
	p.m.batchSize.Observe(float64(len(events)))
	p.mu.Lock()
	for _, e := range events {
		delete(p.queued, e.Key())
	}
	p.mu.Unlock()
	return nil
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
