package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"repute/metrics"
	"repute/spool"
)

// memSpool keeps records in memory; drain hands them to the sink on demand.
type memSpool struct {
	mu      sync.Mutex
	records [][]byte
	err     error
	dead    []spool.Refusal
}

func (s *memSpool) Undrained(fn func([]byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memSpool) Append(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.records = append(s.records, p)
	return nil
}

func (s *memSpool) Run(ctx context.Context, sink func(context.Context, [][]byte) error) error {
	<-ctx.Done()
	return nil
}

// Flush waits until drainInto has delivered every record.
func (s *memSpool) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.records)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// drainInto delivers every record to sink, keeping them on failure, and
// setting aside what it refuses, as package spool does.
func (s *memSpool) drainInto(sink func(context.Context, [][]byte) error) error {
	s.mu.Lock()
	records := s.records
	s.mu.Unlock()
	err := sink(context.Background(), records)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		var refused *spool.RefusedError
		if !errors.As(err, &refused) {
			return err
		}
		s.dead = append(s.dead, refused.Refused...)
	}
	s.records = s.records[len(records):]
	return nil
}

// memStore is an idempotent store keyed like the real ones.
type memStore struct {
	mu       sync.Mutex
	events   map[metrics.Key]metrics.Event
	failWith error
	lookups  int
	// refuse, when set, makes a write fail that holds an event for which
	// it is true: a payload the store refuses for good.
	refuse  func(e metrics.Event) bool
	appends int // calls of Append
	written int // events in the Appends that succeeded
}

func (m *memStore) Append(_ context.Context, events []metrics.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appends++
	if m.failWith != nil {
		return m.failWith
	}
	for _, e := range events {
		if m.refuse != nil && m.refuse(e) {
			return fmt.Errorf("memstore: value out of range in event %s", e.EventID)
		}
	}
	for _, e := range events {
		m.events[e.Key()] = e
	}
	m.written += len(events)
	return nil
}

func (m *memStore) Known(_ context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	if m.failWith != nil {
		return nil, m.failWith
	}
	known := map[metrics.Key]bool{}
	for _, e := range events {
		if _, ok := m.events[e.Key()]; ok {
			known[e.Key()] = true
		}
	}
	return known, nil
}

func events(account string, n int) []metrics.Event {
	out := make([]metrics.Event, n)
	for i := range out {
		out[i] = metrics.Event{Account: account, EventID: fmt.Sprintf("id-%d", i), Kind: metrics.KindSent,
			Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Recipient: fmt.Sprintf("r%d@example.com", i)}
	}
	return out
}

func TestSubmitCountsDuplicatesEverywhere(t *testing.T) {
	sp, st := &memSpool{}, &memStore{events: map[metrics.Key]metrics.Event{}}
	p := New(sp, st, Options{})
	ctx := context.Background()

	batch := events("acme", 3)
	batch = append(batch, batch[0]) // a duplicate within the batch
	res, err := p.Submit(ctx, batch)
	if err != nil || res.Duplicates != 1 {
		t.Fatalf("first submit: %+v, %v; want 1 duplicate", res, err)
	}
	// Still in the spool: every event is a duplicate.
	if res, _ := p.Submit(ctx, events("acme", 3)); res.Duplicates != 3 {
		t.Errorf("while spooled: %d duplicates, want 3", res.Duplicates)
	}
	// The same ids in another account are other events.
	if res, _ := p.Submit(ctx, events("globex", 3)); res.Duplicates != 0 {
		t.Errorf("other account: %d duplicates, want 0", res.Duplicates)
	}
	if err := sp.drainInto(p.drain); err != nil {
		t.Fatal(err)
	}
	if len(st.events) != 6 || len(p.queued) != 0 {
		t.Fatalf("stored %d, queued %d; want 6 and 0", len(st.events), len(p.queued))
	}
	// Now in the store: the store's answer makes them duplicates.
	if res, _ := p.Submit(ctx, events("acme", 4)); res.Duplicates != 3 {
		t.Errorf("after drain: %d duplicates, want 3", res.Duplicates)
	}
}

func TestStoreFailureKeepsEventsAndSkipsLookups(t *testing.T) {
	sp, st := &memSpool{}, &memStore{events: map[metrics.Key]metrics.Event{}}
	p := New(sp, st, Options{})
	ctx := context.Background()
	if _, err := p.Submit(ctx, events("acme", 2)); err != nil {
		t.Fatal(err)
	}
	st.failWith = errors.New("store down")
	if err := sp.drainInto(p.drain); err == nil {
		t.Fatal("drain succeeded with the store down")
	}
	if p.StoreError() == nil || len(sp.records) != 1 {
		t.Fatalf("store error %v, spooled records %d; want an error and the record kept", p.StoreError(), len(sp.records))
	}
	lookups := st.lookups
	if _, err := p.Submit(ctx, events("globex", 2)); err != nil {
		t.Fatalf("intake must keep working while the store is down: %v", err)
	}
	if st.lookups != lookups {
		t.Error("looked up duplicates in a failing store")
	}
	st.failWith = nil
	if err := sp.drainInto(p.drain); err != nil || len(st.events) != 4 || p.StoreError() != nil {
		t.Errorf("after recovery: err %v, stored %d, store error %v; want nil, 4, nil", err, len(st.events), p.StoreError())
	}
}

func TestSpoolErrorSpoolsNothing(t *testing.T) {
	sp, st := &memSpool{err: errors.New("disk full")}, &memStore{events: map[metrics.Key]metrics.Event{}}
	p := New(sp, st, Options{})
	if _, err := p.Submit(context.Background(), events("acme", 2)); err == nil {
		t.Fatal("Submit succeeded though the spool failed")
	}
	if len(p.queued) != 0 {
		t.Error("keys marked as queued though nothing was spooled")
	}
}
