package rules

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

type failingSource struct{}

func (failingSource) Counts(context.Context, time.Time, time.Time, []metrics.GroupBy, metrics.Opens) (map[Scope]metrics.Counts, error) {
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

// askedSource is a Source that records the queries asked and, like a
// store's roll-ups, leaves the unique counts out when asked without opens.
type askedSource struct {
	counts map[Scope]metrics.Counts
	asked  map[string][]metrics.Opens // by window length and grouping
}

func (s *askedSource) Counts(_ context.Context, from, to time.Time, by []metrics.GroupBy, opens metrics.Opens) (map[Scope]metrics.Counts, error) {
	k := fmt.Sprint(to.Sub(from), by)
	s.asked[k] = append(s.asked[k], opens)
	out := make(map[Scope]metrics.Counts, len(s.counts))
	for sc, c := range s.counts {
		if !opens {
			c.OpenedHuman, c.OpenedMachine, c.OpenedUnverified, c.Clicked = 0, 0, 0, 0
		}
		out[sc] = c
	}
	return out, nil
}

// Opens are asked only where a rule's rate needs them, once per window
// and grouping even when a rule without opens comes first, and the flags
// are those of a Source that always counts them.
func TestEvaluateAsksOpensOnlyWhereNeeded(t *testing.T) {
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	counts := map[Scope]metrics.Counts{
		{SenderDomain: "a.example"}: {Sent: 1000, Delivered: 1000, BouncedHard: 90, Complained: 4,
			OpenedHuman: 100, OpenedMachine: 50, Clicked: 7},
	}
	rs, err := Load(strings.NewReader(`
rates:
  - id: bounces
    rate: hard_bounce_rate
    scopes: [sender_domain]
    window: 7d
    when: above
    thresholds: [{severity: warning, value: 0.05}]
  - id: opens
    rate: human_open_rate
    scopes: [sender_domain]
    window: 7d
    min_age: 24h
    when: below
    thresholds: [{severity: warning, value: 0.5}]
  - id: complaints
    rate: complaint_rate
    scopes: [sender_domain]
    window: 2d
    when: above
    thresholds: [{severity: warning, value: 0.001}]
`))
	if err != nil {
		t.Fatal(err)
	}
	src := &askedSource{counts: counts, asked: map[string][]metrics.Opens{}}
	got, err := (&Engine{Rules: rs, Source: src}).Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]metrics.Opens{
		"168h0m0s [sender_domain]": {metrics.WithOpens},    // bounces and opens
		"144h0m0s [sender_domain]": {metrics.WithoutOpens}, // the open rate's deliveries
		"48h0m0s [sender_domain]":  {metrics.WithoutOpens}, // complaints
	}
	if !reflect.DeepEqual(src.asked, want) {
		t.Errorf("queries asked = %v, want %v", src.asked, want)
	}
	all, err := (&Engine{Rules: rs, Source: sourceFunc(func(time.Time, time.Time, []metrics.GroupBy) map[Scope]metrics.Counts {
		return counts
	})}).Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !reflect.DeepEqual(got, all) {
		t.Errorf("flags = %+v\nwant (3, as when every query counts opens) %+v", got, all)
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
