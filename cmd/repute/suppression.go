package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"repute/api"
	"repute/metrics"
	"repute/suppress"
)

// errSuppressionLoading is what the suppression lists answer until their
// index is rebuilt from the store.
var errSuppressionLoading = api.ErrNotReady

// suppression keeps the lists for repute serve: an index (package
// suppress) rebuilt at start from the store's log of changes, fed with
// every batch intake has stored (intake.Options.AfterStore), its changes
// written to the log before the spool forgets the batch. A crash between
// the two drains the batch again; observing is idempotent, so the log ends
// with each change once.
type suppression struct {
	index *suppress.Index
	store metrics.SuppressionLog
	log   *slog.Logger
	ready atomic.Bool
	// changed, if set, is called after changes are written to the log
	// (the webhooks read it).
	changed func()

	mu sync.Mutex // one writer at a time: the log's order is the index's
	// followed is the last change read by follow, by (Logged, ID).
	followed metrics.SuppressionChange
	// pending are changes made in the index and not yet in the log (its
	// write failed): written first at the next call.
	pending []metrics.SuppressionChange
	// flushFailures counts the failed writes to the log.
	flushFailures int

	// snapshotPath is the snapshot file ("": none), storeID the store's
	// identity written in it (suppression_snapshot.go).
	snapshotPath string
	storeID      string
	// following is set once follow runs: the snapshot's position then
	// waits for what it has read.
	following atomic.Bool
	metrics   *suppressionMetrics
	// loadedFrom says where the last load came from: "snapshot" or
	// "replay".
	loadedFrom string
}

func newSuppression(store metrics.SuppressionLog, log *slog.Logger) *suppression {
	return &suppression{store: store, log: log}
}

// load rebuilds the index from the log, retrying with backoff until it
// succeeds or ctx ends; the lists answer only once it is done.
func (s *suppression) load(ctx context.Context) {
	wait := time.Second
	for {
		err := s.loadOnce(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Error("suppression: loading the lists failed; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// loadOnce rebuilds the index once: from the snapshot and the changes
// logged after it when there is a good one, else from the whole log. A
// failed read leaves the index empty and the lists not ready.
func (s *suppression) loadOnce(ctx context.Context) error {
	start := time.Now()
	from := "snapshot"
	index, pos, why := s.readSnapshot(ctx)
	var n int
	var err error
	if index != nil {
		if n, err = s.catchUp(ctx, index, pos); err != nil {
			return err
		}
	} else {
		if !errors.Is(why, os.ErrNotExist) {
			s.log.Warn("suppression: the snapshot is not used; replaying the whole log", "why", why)
		}
		from = "replay"
		if index, err = suppress.New(suppress.Options{}); err != nil {
			return err
		}
		err = s.store.SuppressionChanges(ctx, func(c metrics.SuppressionChange) error {
			n++
			if err := index.Apply(suppress.FromStored(c)); err != nil {
				s.log.Warn("suppression: a change of the log cannot be applied; skipped", "change", c.ID, "err", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.index = index
	s.pending = append(s.pending, stored(index.Sweep(time.Now()))...)
	// Following starts a settling delay before the load began: what
	// another process was still writing then is read again (applying a
	// change twice changes nothing).
	s.followed = metrics.SuppressionChange{Logged: start.Add(-suppressionSettle)}
	s.loadedFrom = from
	s.mu.Unlock()
	s.ready.Store(true)
	took := time.Since(start)
	if s.metrics != nil {
		s.metrics.loadSeconds.Reset()
		s.metrics.loadSeconds.WithLabelValues(from).Set(took.Seconds())
	}
	shared, own := index.Len()
	s.log.Info("suppression lists loaded", "from", from, "changes", n, "blocklist_shared", shared, "blocklist_own", own,
		"took", took.Round(time.Millisecond))
	return nil
}

// notReady says why the lists cannot answer, or nil (for /readyz).
func (s *suppression) notReady() error {
	if s.ready.Load() {
		return nil
	}
	return errSuppressionLoading
}

// afterStore observes a batch intake has stored and writes the changes to
// the log. Until the index is loaded it refuses, so the batch stays in the
// spool and is observed once it is.
func (s *suppression) afterStore(ctx context.Context, events []metrics.Event) error {
	if !s.ready.Load() {
		return errSuppressionLoading
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, run := range byPoster(events) {
		changes, err := s.index.Observe(run, trustOf(run[0]))
		s.pending = append(s.pending, stored(changes)...)
		if err != nil {
			s.log.Warn("suppression: events not observed", "err", err)
		}
	}
	return s.flush(ctx)
}

// flush writes the pending changes to the log; s.mu is held.
func (s *suppression) flush(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	if err := s.store.AppendSuppressionChanges(ctx, s.pending); err != nil {
		s.flushFailures++
		return fmt.Errorf("suppression log: %w", err)
	}
	s.pending = s.pending[:0]
	if s.changed != nil {
		s.changed()
	}
	return nil
}

// sweep records the entries past their expiry, every interval until ctx
// ends.
func (s *suppression) sweep(ctx context.Context, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if !s.ready.Load() {
			continue
		}
		s.mu.Lock()
		s.pending = append(s.pending, stored(s.index.Sweep(time.Now()))...)
		if err := s.flush(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("suppression: writing expired entries to the log failed; retrying later", "err", err)
		}
		s.mu.Unlock()
	}
}

// The pace of following the log; variables for the tests.
var (
	// suppressionFollow is how often follow reads the log.
	suppressionFollow = 2 * time.Second
	// suppressionSettle is how long follow leaves a change to be written:
	// it reads only changes logged that long ago, so that one another
	// process is still committing, or logged by a clock a little behind,
	// is not passed over. It bounds the clock skew between the processes
	// sharing a store (NTP keeps it in milliseconds).
	suppressionSettle = 10 * time.Second
)

// follow applies the changes that other repute serve processes sharing the
// store (ClickHouse) write to its log, every suppressionFollow until ctx
// ends: each process observes only the events its own intake stored, and
// the lists of all of them converge on the log. It reads in the order the
// changes were written (metrics.SuppressionQuery.ByLogged), its own among
// them, which the index applies again harmlessly (suppress.Index.Apply:
// the result depends neither on order nor on repeats). A change made by
// another process reaches this one's checks within suppressionSettle +
// suppressionFollow (12 s) plus the read's own time.
func (s *suppression) follow(ctx context.Context) {
	s.following.Store(true)
	wait := suppressionFollow
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !s.ready.Load() {
			continue
		}
		if err := s.followOnce(ctx, time.Now()); err != nil && ctx.Err() == nil {
			wait = min(2*wait, time.Minute)
			s.log.Error("suppression: reading other processes' changes failed; retrying", "in", wait, "err", err)
			continue
		}
		wait = suppressionFollow
	}
}

// followOnce applies the changes logged after the last one read and at
// least suppressionSettle before now.
func (s *suppression) followOnce(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	after := s.followed
	s.mu.Unlock()
	for {
		n := 0
		err := s.store.FindSuppressionChanges(ctx, metrics.SuppressionQuery{
			ByLogged: true, AfterTime: after.Logged, AfterID: after.ID,
			LoggedBefore: now.Add(-suppressionSettle), Limit: webhookBatch,
		}, func(c metrics.SuppressionChange) error {
			if err := s.index.Apply(suppress.FromStored(c)); err != nil {
				s.log.Warn("suppression: a change of the log cannot be applied; skipped", "change", c.ID, "err", err)
			}
			after = c
			n++
			return nil
		})
		s.mu.Lock()
		s.followed = after
		s.mu.Unlock()
		if err != nil || n < webhookBatch {
			return err
		}
	}
}

var _ api.Suppressions = (*suppression)(nil)

// Check is the lists' answer for the API; errSuppressionLoading until the
// index is loaded.
func (s *suppression) Check(by suppress.Principal, senderDomain string, recipients []string) ([]suppress.Verdict, error) {
	if !s.ready.Load() {
		return nil, errSuppressionLoading
	}
	return s.index.Check(by, senderDomain, recipients), nil
}

// Lookup returns the entries for address that by may see.
func (s *suppression) Lookup(by suppress.Principal, address string) ([]suppress.Entry, error) {
	if !s.ready.Load() {
		return nil, errSuppressionLoading
	}
	return s.index.Lookup(by, address)
}

// Blocklist returns a page of the blocklist entries by may see.
func (s *suppression) Blocklist(by suppress.Principal, q suppress.ListQuery) ([]suppress.Entry, string, error) {
	if !s.ready.Load() {
		return nil, "", errSuppressionLoading
	}
	return s.index.Blocklist(by, q)
}

// Unsubscribes returns a page of the unsubscribe entries by may see.
func (s *suppression) Unsubscribes(by suppress.Principal, q suppress.ListQuery) ([]suppress.Entry, string, error) {
	if !s.ready.Load() {
		return nil, "", errSuppressionLoading
	}
	return s.index.Unsubscribes(by, q)
}

// Lift lifts a blocklist entry and writes the change — a refusal too, so
// the audit shows every attempt.
func (s *suppression) Lift(by suppress.Principal, address, reason string) error {
	return s.change(func() ([]suppress.Change, error) { return s.index.Lift(by, address, reason) })
}

// Unsubscribe puts an address on an unsubscribe list through the API.
func (s *suppression) Unsubscribe(by suppress.Principal, senderDomain, address, reason string) error {
	return s.change(func() ([]suppress.Change, error) { return s.index.Unsubscribe(by, senderDomain, address, reason) })
}

// Resubscribe takes an address off an unsubscribe list.
func (s *suppression) Resubscribe(by suppress.Principal, senderDomain, address, reason string) error {
	return s.change(func() ([]suppress.Change, error) { return s.index.Resubscribe(by, senderDomain, address, reason) })
}

// Audit reads the changes q selects from the store's log (pending ones,
// not yet written, are not there).
func (s *suppression) Audit(ctx context.Context, q metrics.SuppressionQuery) ([]metrics.SuppressionChange, error) {
	var out []metrics.SuppressionChange
	err := s.store.FindSuppressionChanges(ctx, q, func(c metrics.SuppressionChange) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// change makes a change through the API and writes it to the log before
// answering; a log that cannot be written is an error (the change stays
// pending and is written with the next one).
func (s *suppression) change(f func() ([]suppress.Change, error)) error {
	if !s.ready.Load() {
		return errSuppressionLoading
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changes, err := f()
	s.pending = append(s.pending, stored(changes)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ferr := s.flush(ctx); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

// byPoster splits events into runs of the same poster, in order.
func byPoster(events []metrics.Event) [][]metrics.Event {
	var runs [][]metrics.Event
	start := 0
	for i := 1; i <= len(events); i++ {
		if i == len(events) || events[i].PostedBy != events[start].PostedBy {
			runs = append(runs, events[start:i])
			start = i
		}
	}
	return runs
}

// trustOf is the trust of an event's poster (issue 10): an event repute
// produced itself (a report it parsed from a mailbox or a topic, its own
// sender) or that the admin key posted has no PostedBy, and its entries
// are shared with every account; one an account key posted suppresses for
// that account only.
func trustOf(e metrics.Event) suppress.Trust {
	if e.PostedBy == "" {
		return suppress.Trust{Shared: true, By: e.Source}
	}
	return suppress.Trust{Account: e.PostedBy, By: "key:" + e.PostedBy}
}

func stored(changes []suppress.Change) []metrics.SuppressionChange {
	out := make([]metrics.SuppressionChange, len(changes))
	for i, c := range changes {
		out[i] = c.Stored()
	}
	return out
}
