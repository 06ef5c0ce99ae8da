package intake

import (
	"context"
	"errors"
	"testing"
	"time"

	"repute/metrics"
	"repute/spool"
)

// WaitVisible returns only once the events submitted before it are in the
// store, and says so when the store does not take them in time.
func TestWaitVisible(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	st := &memStore{events: map[metrics.Key]metrics.Event{}, failWith: errors.New("store down")}
	p := New(sp, st, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	if _, err := p.Submit(ctx, events("acme", 5)); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := p.WaitVisible(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("store down: WaitVisible = %v, want the deadline", err)
	}

	st.mu.Lock()
	st.failWith = nil
	st.mu.Unlock()
	if err := p.WaitVisible(ctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	n := len(st.events)
	st.mu.Unlock()
	if n != 5 {
		t.Errorf("after WaitVisible the store has %d events, want 5", n)
	}
}
