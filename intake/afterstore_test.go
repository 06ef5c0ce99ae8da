package intake

import (
	"context"
	"errors"
	"sync"
	"testing"

	"repute/metrics"
)

// recordingHook records what AfterStore is given, failing while fail > 0.
type recordingHook struct {
	mu    sync.Mutex
	fail  int
	calls int
	seen  map[metrics.Key]int
}

func (h *recordingHook) after(_ context.Context, events []metrics.Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.fail > 0 {
		h.fail--
		return errors.New("suppression log down")
	}
	for _, e := range events {
		h.seen[e.Key()]++
	}
	return nil
}

// TestAfterStore: the hook sees every stored event of a batch once the
// store has it; when the hook fails the batch is drained again without
// writing the store again.
func TestAfterStore(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	h := &recordingHook{fail: 2, seen: map[metrics.Key]int{}}
	p := New(sp, st, Options{AfterStore: h.after})
	ctx := context.Background()
	if _, err := p.Submit(ctx, events("acme", 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Submit(ctx, events("globex", 4)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := sp.drainInto(p.drain); err == nil {
			t.Fatal("the drain succeeded while the hook failed")
		}
		if len(sp.records) != 2 || p.StoreError() == nil {
			t.Fatalf("%d records left in the spool, store error %v while the hook fails; want 2 and an error", len(sp.records), p.StoreError())
		}
	}
	appends := st.appends
	if err := sp.drainInto(p.drain); err != nil {
		t.Fatal(err)
	}
	if st.appends != appends {
		t.Errorf("the store was written again on a retry for the hook (%d Appends, then %d)", appends, st.appends)
	}
	if len(sp.records) != 0 || len(h.seen) != 10 || p.StoreError() != nil {
		t.Errorf("spool %d records, hook saw %d events, store error %v; want 0, 10, nil", len(sp.records), len(h.seen), p.StoreError())
	}
	for k, n := range h.seen {
		if n != 1 {
			t.Errorf("the hook saw %v %d times once it succeeded", k, n)
		}
	}
}

// TestAfterStoreSkipsRefused: an event set aside for good is not given to
// the hook; the others are.
func TestAfterStoreSkipsRefused(t *testing.T) {
	sp, st := &memSpool{}, newMemStore()
	st.refuse = func(e metrics.Event) bool { return e.Account == "acme" && e.EventID == "id-3" }
	h := &recordingHook{seen: map[metrics.Key]int{}}
	p := New(sp, st, Options{DeadLetterAttempts: 1, AfterStore: h.after})
	if _, err := p.Submit(context.Background(), events("acme", 6)); err != nil {
		t.Fatal(err)
	}
	if err := sp.drainInto(p.drain); err != nil {
		t.Fatal(err)
	}
	if len(sp.dead) != 1 || len(h.seen) != 5 {
		t.Fatalf("%d dead, the hook saw %d; want 1 and the 5 stored", len(sp.dead), len(h.seen))
	}
	for k := range h.seen {
		if k.EventID == "id-3" {
			t.Error("the hook saw the event set aside for good")
		}
	}
}
