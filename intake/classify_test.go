package intake

import (
	"context"
	"testing"
	"time"

	"repute/metrics"
)

// TestIntakeClassifiesBeforeSpooling: Options.Classify sees every
// submitted event before the spool, its verdict is what is stored, and a
// re-post of the same open (with or without a verdict) is a duplicate, since
// the verdict is not part of the id.
func TestIntakeClassifiesBeforeSpooling(t *testing.T) {
	sp, st := &memSpool{}, &memStore{events: map[metrics.Key]metrics.Event{}}
	calls := 0
	p := New(sp, st, Options{Classify: func(e *metrics.Event) {
		calls++
		if e.Kind == metrics.KindOpened && e.Machine == nil && e.UserAgent == "Mozilla/5.0" {
			e.Machine, e.MachineReason = metrics.Verdict(true), "apple_mpp"
		}
	}})
	ctx := context.Background()
	open := metrics.Event{Account: "acme", Kind: metrics.KindOpened, Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		Recipient: "r@example.com", UserAgent: "Mozilla/5.0", ClientIP: "172.224.224.7"}
	if err := open.Normalize(metrics.NewISPMap(nil), open.Time.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	batch := []metrics.Event{open, events("acme", 1)[0]}
	if res, err := p.Submit(ctx, batch); err != nil || res.Duplicates != 0 {
		t.Fatalf("submit: %+v, %v", res, err)
	}
	if calls != 2 {
		t.Errorf("Classify called %d times, want 2 (every event)", calls)
	}
	if err := sp.drainInto(p.drain); err != nil {
		t.Fatal(err)
	}
	got := st.events[open.Key()]
	if got.Machine == nil || !*got.Machine || got.MachineReason != "apple_mpp" {
		t.Errorf("stored open: machine %v %q, want the classifier's verdict", got.Machine, got.MachineReason)
	}
	// The same open again, unjudged or with the poster's verdict: one event.
	again := open
	again.Machine = metrics.Verdict(false)
	if res, _ := p.Submit(ctx, []metrics.Event{open, again}); res.Duplicates != 2 {
		t.Errorf("re-posts: %d duplicates, want 2", res.Duplicates)
	}
}
