package rules

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

type failingSource struct{}

func (failingSource) Counts(context.Context, time.Time, time.Time, []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	return nil, errors.New("store down")
}

func TestEvaluateErrors(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := (&Engine{}).Evaluate(context.Background(), now); err == nil {
		t.Error("an engine with no rules: no error")
	}
	_, err := (&Engine{Rules: Defaults(), Source: failingSource{}}).Evaluate(context.Background(), now)
	if err == nil || err.Error() != "store down" {
		t.Errorf("error = %v, want the source's", err)
	}
}

// One query per distinct (window, grouping) per evaluation: the defaults'
// four rate rules over 7 days share theirs.
func TestEvaluateQueriesOncePerWindow(t *testing.T) {
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	calls := map[string]int{}
	src := sourceFunc(func(from, to time.Time, by []metrics.GroupBy) map[Scope]metrics.Counts {
		calls[fmt.Sprint(to.Sub(from), by)]++
		return nil
	})
	if _, err := (&Engine{Rules: Defaults(), Source: src}).Evaluate(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	for k, n := range calls {
		if n != 1 {
			t.Errorf("query %s ran %d times", k, n)
		}
	}
	// [sender_domain], [sender_domain isp], [sender_domain category] over
	// 7d and 6d (the open rates' deliveries).
	if len(calls) != 6 {
		t.Errorf("%d distinct queries, want 6: %v", len(calls), calls)
	}
}

// One evaluation's own cost (the store's is its backend's benchmark):
// 10,000 sender domains × 7 providers.
func BenchmarkEvaluate10kDomains(b *testing.B) {
	isps := []string{"gmail", "microsoft", "yahoo", "apple", "tencent", "netease", "other"}
	byDomain := map[Scope]metrics.Counts{}
	byISP := map[Scope]metrics.Counts{}
	for i := range 10000 {
		d := fmt.Sprintf("d%d.example", i)
		c := metrics.Counts{Sent: 7000, Delivered: 6800, BouncedHard: int64(i % 900), Complained: int64(i % 40),
			OpenedHuman: int64(1000 + i%5000), OpenedMachine: 900}
		byDomain[Scope{SenderDomain: d}] = c
		for _, isp := range isps {
			c := c
			c.Sent, c.Delivered, c.OpenedHuman = 1000, 970, c.OpenedHuman/7
			byISP[Scope{SenderDomain: d, ISP: isp}] = c
		}
	}
	src := sourceFunc(func(_, _ time.Time, by []metrics.GroupBy) map[Scope]metrics.Counts {
		if len(by) == 2 && by[1] == metrics.GroupISP {
			return byISP
		}
		return byDomain
	})
	e := &Engine{Rules: Defaults(), Source: src}
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		flags, err := e.Evaluate(context.Background(), now.Add(time.Duration(i)*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		n = len(flags)
	}
	b.ReportMetric(float64(n), "flags")
}

// Observing a burst of matching replies (a provider throttling everyone):
// 100,000 replies over 10,000 scopes.
func BenchmarkResponseLogObserve(b *testing.B) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	evs := make([]metrics.Event, 100000)
	for i := range evs {
		evs[i] = deferral(at.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("d%d.example", i%10000), "192.0.2.1",
			"421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address.")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, _ := NewResponseLog(Defaults(), ResponseLogOptions{})
		for j := 0; j < len(evs); j += 1000 {
			l.Observe(evs[j : j+1000])
		}
	}
	b.ReportMetric(float64(len(evs)*b.N)/b.Elapsed().Seconds(), "replies/s")
}
