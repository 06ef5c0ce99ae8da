package intake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"repute/metrics"
	"repute/spool"
)

func newMemStore() *memStore { return &memStore{events: map[metrics.Key]metrics.Event{}} }

// drainUntil drains sp into p until it holds nothing, at most n times, and
// returns the errors of the attempts that failed.
func drainUntil(t *testing.T, sp *memSpool, p *Pipeline, n int) []error {
	t.Helper()
	var errs []error
	for range n {
		err := sp.drainInto(p.drain)
		if err == nil {
			return errs
		}
		errs = append(errs, err)
	}
	t.Fatalf("still undrained after %d attempts: %v", n, errs[len(errs)-1])
	return nil
}

func TestRefusedEventGoesToDeadLetter(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	st.refuse = func(e metrics.Event) bool { return e.Account == "acme" && e.EventID == "id-7" }
	p := New(sp, st, Options{DeadLetterAttempts: 3})
	ctx := context.Background()
	if _, err := p.Submit(ctx, events("acme", 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Submit(ctx, events("globex", 10)); err != nil {
		t.Fatal(err)
	}
	errs := drainUntil(t, sp, p, 10)
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "acme/id-7") {
		t.Errorf("attempts failed with %v, want 2 naming acme/id-7 before it is set aside", errs)
	}
	if len(st.events) != 19 {
		t.Errorf("stored %d events, want the 19 the store takes", len(st.events))
	}
	if len(sp.dead) != 1 {
		t.Fatalf("dead-lettered %d, want 1", len(sp.dead))
	}
	d := sp.dead[0]
	got, err := metrics.DecodeEvents(d.Payload)
	if err != nil || len(got) != 1 || got[0].EventID != "id-7" || got[0].Account != "acme" {
		t.Fatalf("dead-letter payload = %v, %v; want event acme/id-7", got, err)
	}
	if d.Index != 0 || d.Part != 7 || d.Attempts != 3 || d.Err == nil || !strings.Contains(d.Err.Error(), "out of range") {
		t.Errorf("refusal = %+v, want record 0, part 7, 3 attempts, the store's error", d)
	}
	if p.StoreError() != nil || len(p.queued) != 0 {
		t.Errorf("after the dead letter: store error %v, queued %d; want nil, 0", p.StoreError(), len(p.queued))
	}
}

// A refused event alone, with nothing the store has taken to compare with,
// looks like a store that is down: it waits until another write succeeds.
func TestLoneRefusedEventWaitsForProof(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	st.refuse = func(e metrics.Event) bool { return e.EventID == "id-0" }
	p := New(sp, st, Options{DeadLetterAttempts: 2})
	ctx := context.Background()
	if _, err := p.Submit(ctx, events("acme", 1)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := sp.drainInto(p.drain); err == nil {
			t.Fatal("drain succeeded with the only event refused")
		}
	}
	if len(sp.dead) != 0 {
		t.Fatal("dead-lettered an event with no proof that the store takes writes")
	}
	if _, err := p.Submit(ctx, events("acme", 3)[1:]); err != nil {
		t.Fatal(err)
	}
	drainUntil(t, sp, p, 5)
	if len(sp.dead) != 1 || len(st.events) != 2 {
		t.Errorf("dead %d, stored %d; want 1 and 2", len(sp.dead), len(st.events))
	}
}

// When the store is down nothing is dead-lettered, whatever the number of
// attempts; each attempt costs few writes; everything is stored after.
func TestStoreDownDeadLettersNothing(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	p := New(sp, st, Options{DeadLetterAttempts: 2})
	ctx := context.Background()
	// A first batch stored: the drain has an event to check the store with.
	if _, err := p.Submit(ctx, events("acme", 1)); err != nil {
		t.Fatal(err)
	}
	drainUntil(t, sp, p, 1)
	if _, err := p.Submit(ctx, events("globex", 1000)); err != nil {
		t.Fatal(err)
	}
	st.failWith = errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
	for i := range 20 {
		before := st.appends
		if err := sp.drainInto(p.drain); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("attempt %d with the store down = %v, want the store's error", i, err)
		}
		if n := st.appends - before; n > 2 {
			t.Fatalf("attempt %d with the store down made %d writes, want 2 (the batch and a check)", i, n)
		}
	}
	if len(sp.dead) != 0 || p.StoreError() == nil {
		t.Fatalf("store down: dead %d, store error %v; want none dead and the error kept", len(sp.dead), p.StoreError())
	}
	st.failWith = nil
	drainUntil(t, sp, p, 1)
	if len(st.events) != 1001 || len(sp.dead) != 0 {
		t.Errorf("after recovery: stored %d, dead %d; want 1001, 0", len(st.events), len(sp.dead))
	}
}

// A store down from the start (no event to check it with) costs a bounded
// number of writes per attempt too.
func TestStoreDownFromStart(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	p := New(sp, st, Options{DeadLetterAttempts: 1})
	if _, err := p.Submit(context.Background(), events("acme", 5000)); err != nil {
		t.Fatal(err)
	}
	st.failWith = errors.New("connection refused")
	for range 5 {
		before := st.appends
		if err := sp.drainInto(p.drain); err == nil {
			t.Fatal("drain succeeded with the store down")
		}
		if n := st.appends - before; n > 2*13+2 {
			t.Fatalf("%d writes in one attempt, want at most %d", n, 2*13+2)
		}
	}
	if len(sp.dead) != 0 {
		t.Fatal("dead-lettered while the store was down")
	}
}

// Several refused events among many: all found, the rest stored, each
// good event written once across the attempts.
func TestSeveralRefused(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	bad := map[string]bool{"id-0": true, "id-1": true, "id-500": true, "id-999": true}
	st.refuse = func(e metrics.Event) bool { return bad[e.EventID] }
	p := New(sp, st, Options{DeadLetterAttempts: 4})
	if _, err := p.Submit(context.Background(), events("acme", 1000)); err != nil {
		t.Fatal(err)
	}
	drainUntil(t, sp, p, 10)
	if len(st.events) != 996 || len(sp.dead) != 4 {
		t.Errorf("stored %d, dead %d; want 996, 4", len(st.events), len(sp.dead))
	}
}

// With the real spool: the refused event ends in a dead-letter file, the
// others in the store, and the drain goes on with later events.
func TestDeadLetterWithSpool(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	st := newMemStore()
	st.refuse = func(e metrics.Event) bool { return e.EventID == "id-3" }
	p := New(sp, st, Options{DeadLetterAttempts: 3})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	for i := range 5 {
		if _, err := p.Submit(ctx, events(fmt.Sprintf("acct%d", i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := p.WaitVisible(wctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	n := len(st.events)
	st.mu.Unlock()
	if n != 45 {
		t.Errorf("stored %d, want 45", n)
	}
	dead, err := spool.ReadDead(dir)
	if err != nil || len(dead) != 5 {
		t.Fatalf("ReadDead = %d, %v; want 5 (id-3 of each account)", len(dead), err)
	}
	for _, d := range dead {
		got, err := metrics.DecodeEvents(d.Payload)
		if err != nil || len(got) != 1 || got[0].EventID != "id-3" || d.Part != 3 || d.Attempts < 3 {
			t.Errorf("dead record %+v: events %v, %v; want id-3, part 3, at least 3 attempts", d, got, err)
		}
	}
	if sp.Stats().Dead != 5 {
		t.Errorf("Stats.Dead = %d, want 5", sp.Stats().Dead)
	}
}
