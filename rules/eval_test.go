package rules

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
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

// fineSource is a Source over counts of fine scopes (every dimension set
// that any grouping asks for), which it sums into the grouping asked,
// recording each query. additiveSource is the same as an AdditiveSource.
type fineSource struct {
	fine  map[Scope]metrics.Counts
	mu    sync.Mutex
	asked map[string]int // by window length and grouping
}

func (s *fineSource) Counts(_ context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	s.mu.Lock()
	s.asked[fmt.Sprint(to.Sub(from), by)]++
	s.mu.Unlock()
	out := map[Scope]metrics.Counts{}
	for sc, c := range s.fine {
		var coarse Scope
		for _, d := range by {
			setScope(&coarse, d, scopeField(sc, d))
		}
		out[coarse] = out[coarse].Plus(c)
	}
	return out, nil
}

type additiveSource struct{ *fineSource }

func (additiveSource) Additive() {}

// Over an AdditiveSource an evaluation reads each window once, by the
// union of its groupings, and sums it into each: the flags are those of
// one query per grouping.
func TestEvaluateAdditiveSourceReadsEachWindowOnce(t *testing.T) {
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	fine := map[Scope]metrics.Counts{}
	for i := range 40 {
		sc := Scope{SenderDomain: fmt.Sprintf("d%d.example", i%10), ISP: []string{"gmail", "yahoo", ""}[i%3],
			Category: []string{"registration", "marketing", "", "registration"}[i%4]}
		fine[sc] = metrics.Counts{Sent: int64(100 + 37*i), Delivered: int64(90 + 30*i), BouncedHard: int64(i % 13),
			Complained: int64(i % 3), OpenedHuman: int64(20 + 11*i), OpenedMachine: int64(i)}
	}
	add := additiveSource{&fineSource{fine: fine, asked: map[string]int{}}}
	got, err := (&Engine{Rules: Defaults(), Source: add}).Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"168h0m0s [sender_domain isp category]": 1,
		"144h0m0s [sender_domain isp category]": 1, // the open rates' deliveries
	}
	if !reflect.DeepEqual(add.asked, want) {
		t.Errorf("queries asked = %v, want %v", add.asked, want)
	}
	each := &fineSource{fine: fine, asked: map[string]int{}}
	all, err := (&Engine{Rules: Defaults(), Source: each}).Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(each.asked) != 6 {
		t.Errorf("a Source not additive was asked %v, want 6 queries", each.asked)
	}
	if len(got) == 0 || !reflect.DeepEqual(got, all) {
		t.Errorf("flags = %+v\nwant (as with a query per grouping) %+v", got, all)
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
