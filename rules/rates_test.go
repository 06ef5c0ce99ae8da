package rules

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/metrics"
)

func TestRatesDenominators(t *testing.T) {
	c := metrics.Counts{Sent: 1000, Delivered: 800, Deferred: 1500, BouncedHard: 50, BouncedSoft: 30,
		Complained: 4, OpenedHuman: 200, OpenedMachine: 600, Unsubscribed: 8}
	r := RatesOf(c)
	for _, tc := range []struct {
		name   string
		value  float64
		sample int64
	}{
		{RateHardBounce, 0.05, 1000},      // bounced_hard / sent
		{RateComplaint, 0.005, 800},       // complained / delivered
		{RateHumanOpen, 0.25, 800},        // opened_human / delivered
		{RateMachineOpenShare, 0.75, 800}, // machine / all opens
		{RateDeferral, 1.5, 1000},         // deferred events / sent
		{RateUnsubscribe, 0.01, 800},      // unsubscribed / delivered
	} {
		v, s := r.Value(tc.name)
		if v != tc.value || s != tc.sample {
			t.Errorf("%s = %v (sample %d), want %v (%d)", tc.name, v, s, tc.value, tc.sample)
		}
	}
	if z := RatesOf(metrics.Counts{}); z != (Rates{}) {
		t.Errorf("rates of nothing = %+v, want zeros", z)
	}
}

// Machine opens never lift the open rate: adding any number of them leaves
// the human open rate as it was.
func TestMachineOpensNeverLiftOpenRate(t *testing.T) {
	base := metrics.Counts{Delivered: 400, OpenedHuman: 100}
	want := RatesOf(base).HumanOpenRate
	for _, m := range []int64{0, 1, 400, 100000} {
		c := base
		c.OpenedMachine = m
		if got := RatesOf(c).HumanOpenRate; got != want {
			t.Errorf("with %d machine opens the open rate is %v, want %v", m, got, want)
		}
	}
}

type fakeStats struct {
	q   metrics.StatsQuery
	res *metrics.StatsResult
}

func (f *fakeStats) Stats(_ context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	f.q = q
	return f.res, nil
}

func TestStatsSourceMapsGroupsToScopes(t *testing.T) {
	fs := &fakeStats{res: &metrics.StatsResult{Groups: []metrics.Group{
		{Key: map[metrics.GroupBy]string{"sender_domain": "a.example", "isp": "gmail", "sending_ip": "192.0.2.1"}, Counts: metrics.Counts{Sent: 3}},
		{Key: map[metrics.GroupBy]string{"sender_domain": "a.example", "isp": "yahoo", "sending_ip": ""}, Counts: metrics.Counts{Delivered: 2}},
	}}}
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	by := []metrics.GroupBy{metrics.GroupSenderDomain, metrics.GroupISP, metrics.GroupSendingIP}
	got, err := StatsSource{fs}.Counts(context.Background(), from, from.Add(time.Hour), by)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Scope]metrics.Counts{
		{SenderDomain: "a.example", ISP: "gmail", SendingIP: "192.0.2.1"}: {Sent: 3},
		{SenderDomain: "a.example", ISP: "yahoo"}:                         {Delivered: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	if !fs.q.From.Equal(from) || !fs.q.To.Equal(from.Add(time.Hour)) || fs.q.Account != "" || !reflect.DeepEqual(fs.q.GroupBy, by) {
		t.Errorf("query = %+v", fs.q)
	}
	if _, err := (StatsSource{fs}).Counts(context.Background(), from, from, []metrics.GroupBy{metrics.GroupDay}); err == nil {
		t.Error("grouping by day: no error")
	}
}

func deferral(at time.Time, domain, ip, diag string) metrics.Event {
	return metrics.Event{Time: at, Kind: metrics.KindDeferred, Account: "acme", SenderDomain: domain,
		SendingIP: ip, ISP: "gmail", Recipient: "r@gmail.com", Diagnostic: diag}
}

func TestResponseLogKeepsOnlyMatchesWithinBounds(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l, err := NewResponseLog(Defaults(), ResponseLogOptions{PerScope: 3, MaxScopes: 2, Keep: 2 * time.Hour, MaxDiagnostic: 40})
	if err != nil {
		t.Fatal(err)
	}
	busy := "421 4.3.2 Server busy, try again later and do not come back too soon"
	l.Observe([]metrics.Event{
		deferral(at, "a.example", "", "450 4.2.1 mailbox full"), // no pattern: dropped
		{Time: at, Kind: metrics.KindOpened, Account: "acme", Recipient: "r@gmail.com", Diagnostic: "server busy"},
		deferral(at, "a.example", "", busy),
		deferral(at.Add(time.Minute), "a.example", "", busy),
		deferral(at.Add(2*time.Minute), "a.example", "", busy),
		deferral(at.Add(3*time.Minute), "a.example", "", busy), // the 4th: the 1st goes
	})
	rs, _ := l.Responses(context.Background(), at.Add(-time.Hour), at.Add(time.Hour))
	if len(rs) != 3 || !rs[0].Time.Equal(at.Add(time.Minute)) {
		t.Fatalf("responses = %+v, want the last 3", rs)
	}
	if len(rs[0].Diagnostic) != 40 || rs[0].Scope != (Scope{Account: "acme", SenderDomain: "a.example", ISP: "gmail"}) {
		t.Errorf("response = %+v", rs[0])
	}
	// A third scope evicts the one whose newest reply is oldest.
	l.Observe([]metrics.Event{deferral(at.Add(10*time.Minute), "b.example", "", busy)})
	l.Observe([]metrics.Event{deferral(at.Add(20*time.Minute), "c.example", "", busy)})
	rs, _ = l.Responses(context.Background(), at.Add(-time.Hour), at.Add(time.Hour))
	domains := map[string]int{}
	for _, r := range rs {
		domains[r.Scope.SenderDomain]++
	}
	if !reflect.DeepEqual(domains, map[string]int{"b.example": 1, "c.example": 1}) {
		t.Errorf("scopes kept = %v", domains)
	}
	// Older than Keep before the newest: gone.
	l.Observe([]metrics.Event{deferral(at.Add(2*time.Hour+15*time.Minute), "c.example", "", busy)})
	if n := l.Len(); n != 2 {
		t.Errorf("after 2h15m, %d replies kept, want 2 (c.example's)", n)
	}
	// The window is [from, to).
	rs, _ = l.Responses(context.Background(), at.Add(20*time.Minute), at.Add(2*time.Hour+15*time.Minute))
	if len(rs) != 1 {
		t.Errorf("responses in [20m, 2h15m) = %d, want 1", len(rs))
	}
}

// A ResponseLog stays bounded under a flood of distinct scopes.
func TestResponseLogBounded(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l, _ := NewResponseLog(Defaults(), ResponseLogOptions{PerScope: 10, MaxScopes: 100})
	for i := range 1000 {
		evs := make([]metrics.Event, 20)
		for j := range evs {
			evs[j] = deferral(at.Add(time.Duration(i)*time.Second), fmt.Sprintf("d%d.example", i), "", "421 server busy")
		}
		l.Observe(evs)
	}
	if n := l.Len(); n > 100*10 {
		t.Errorf("%d replies kept, bound is 1000", n)
	}
}

// An Engine over a fake Source: the cohort queries and the skipping of
// scopes with an empty dimension.
func TestEngineOpenRateCohortQueries(t *testing.T) {
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	src := sourceFunc(func(from, to time.Time, by []metrics.GroupBy) map[Scope]metrics.Counts {
		if !from.Equal(now.Add(-7 * 24 * time.Hour)) {
			t.Errorf("from = %v", from)
		}
		if to.Equal(now) { // opens
			return map[Scope]metrics.Counts{
				{SenderDomain: "a.example"}: {Delivered: 5000, OpenedHuman: 100, OpenedMachine: 900},
				{SenderDomain: ""}:          {Delivered: 5000},
			}
		}
		if !to.Equal(now.Add(-24 * time.Hour)) {
			t.Errorf("to = %v", to)
		}
		return map[Scope]metrics.Counts{{SenderDomain: "a.example"}: {Delivered: 400}, {SenderDomain: ""}: {Delivered: 5000}}
	})
	rs, err := Load(strings.NewReader(`rates:
  - id: low_open_rate
    rate: human_open_rate
    scopes: [sender_domain]
    window: 7d
    min_age: 24h
    min_sample: 200
    when: below
    thresholds: [{severity: warning, value: 0.5}]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Rules: rs, Source: src}
	flags, err := e.Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []Flag{{Rule: "low_open_rate", Scope: Scope{SenderDomain: "a.example"}, Severity: SeverityWarning,
		Value: 0.25, Threshold: 0.5, Sample: 400, Window: "24h-7d", Since: now}}
	if !reflect.DeepEqual(flags, want) {
		t.Errorf("flags = %+v\nwant %+v", flags, want)
	}
}

// sourceFunc is a Source that gives every count, opens or not.
type sourceFunc func(from, to time.Time, by []metrics.GroupBy) map[Scope]metrics.Counts

func (f sourceFunc) Counts(_ context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	return f(from, to, by), nil
}

// fakeRollups is a store with roll-ups: it records refreshes and the
// windows asked, with the refreshes made before each (the engine asks
// its windows concurrently).
type fakeRollups struct {
	fakeStats
	mu        sync.Mutex
	refreshes int
	asked     [][2]time.Time
	seen      []int // refreshes made before each ask
	groups    []metrics.Group
}

func (f *fakeRollups) RefreshRollups(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	return nil
}

func (f *fakeRollups) RuleCounts(_ context.Context, from, to time.Time, _ []metrics.GroupBy) ([]metrics.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, [2]time.Time{from, to})
	f.seen = append(f.seen, f.refreshes)
	return f.groups, nil
}

// NewSource reads the roll-ups of a store that keeps them, refreshing
// once per evaluation (at its first window ending after the last refresh
// began), and the statistics of one that does not.
func TestNewSourceRefreshesOncePerEvaluation(t *testing.T) {
	if _, ok := NewSource(&fakeStats{}).(StatsSource); !ok {
		t.Errorf("NewSource over a store without roll-ups = %T, want StatsSource", NewSource(&fakeStats{}))
	}
	f := &fakeRollups{groups: []metrics.Group{
		{Key: map[metrics.GroupBy]string{"sender_domain": "a.example"}, Counts: metrics.Counts{Sent: 300, BouncedHard: 60}},
	}}
	src := NewSource(f)
	if _, ok := src.(*RollupSource); !ok {
		t.Fatalf("NewSource over a store with roll-ups = %T, want *RollupSource", src)
	}
	e := &Engine{Rules: Defaults(), Source: src}
	now := time.Now()
	flags, err := e.Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if f.refreshes != 1 {
		t.Errorf("one evaluation refreshed %d times, want 1", f.refreshes)
	}
	if len(f.asked) == 0 || slices.Contains(f.seen, 0) {
		t.Errorf("windows asked %v after %v refreshes each: want every one after the refresh", f.asked, f.seen)
	}
	var bounce bool
	for _, fl := range flags {
		bounce = bounce || fl.Rule == "hard_bounce_rate" && fl.Scope.SenderDomain == "a.example"
	}
	if !bounce {
		t.Errorf("flags %v: want hard_bounce_rate of a.example from the roll-up counts", flags)
	}
	// A past evaluation (a backtest) reuses the refresh; a later one refreshes.
	if _, err := e.Evaluate(context.Background(), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f.refreshes != 1 {
		t.Errorf("an evaluation of a past time refreshed: %d refreshes, want 1", f.refreshes)
	}
	if _, err := e.Evaluate(context.Background(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if f.refreshes != 2 {
		t.Errorf("after a later evaluation: %d refreshes, want 2", f.refreshes)
	}
}
