package intake

import (
	"context"
	"errors"
	"testing"
	"time"

	"repute/metrics"
	"repute/spool"
)

// After a crash, the events still in the spool are known: a client that
// re-posts them hears they are duplicates, and they are stored once.
func TestSpooledEventsKnownAfterRestart(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	st.failWith = errors.New("connection refused")
	ctx := context.Background()
	if res, err := New(sp, st, Options{}).Submit(ctx, events("acme", 10)); err != nil || res.Duplicates != 0 {
		t.Fatalf("first submit = %+v, %v; want 0 duplicates", res, err)
	}
	sp.Close() // before any drain: what a crash leaves

	sp, err = spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	st.failWith = nil
	p := New(sp, st, Options{})
	lookups := st.lookups
	res, err := p.Submit(ctx, events("acme", 12))
	if err != nil || res.Duplicates != 10 {
		t.Fatalf("re-post after restart = %+v, %v; want the 10 spooled ones as duplicates", res, err)
	}
	if n := st.lookups - lookups; n != 1 {
		t.Errorf("%d store lookups, want 1 (for the 2 new events only)", n)
	}

	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(rctx) }()
	defer func() { cancel(); <-ran }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := p.WaitVisible(wctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	stored, written := len(st.events), st.written
	st.mu.Unlock()
	if stored != 12 || written != 12 {
		t.Errorf("store has %d events from %d written, want 12 written once each", stored, written)
	}
	// Drained: now the store's answer makes them duplicates.
	p.mu.Lock()
	queued := len(p.queued)
	p.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d keys still queued after the drain, want 0", queued)
	}
	if res, _ := p.Submit(ctx, events("acme", 12)); res.Duplicates != 12 {
		t.Errorf("after the drain: %d duplicates, want 12", res.Duplicates)
	}
}

// The index is built when the drain comes first, too, and the drain then
// forgets the keys it stored.
func TestIndexBeforeFirstDrain(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	sp.records = [][]byte{metrics.AppendEvents(nil, events("acme", 3))}
	p := New(sp, st, Options{})
	if err := sp.drainInto(p.drain); err != nil {
		t.Fatal(err)
	}
	if len(p.queued) != 0 || len(st.events) != 3 {
		t.Errorf("queued %d, stored %d; want 0 and 3", len(p.queued), len(st.events))
	}
}
