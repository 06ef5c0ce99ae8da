package duckdb_test

import (
	"context"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"repute/metrics"
	"repute/rules"
)

// BenchmarkRulesCycle is issue 13's DuckDB target: one evaluation of the
// default rules over 10,000 sender domains × 7 providers, with the events
// of the last 7 days — 10 million for the target, a small default so that
// it runs quickly:
//
//	REPUTE_BENCH_EVENTS=10000000 go test ./metrics/duckdb -run '^$' -bench RulesCycle -benchtime 1x -count 2 -timeout 2h
//
// Set up (reported as load-s and compact-s): the events go in through
// Append in batches of 100,000 — the path users get, which adds the
// roll-up deltas in the same transaction — then RefreshRollups compacts
// them. The events are those of the ClickHouse benchmark: 4 per message
// (sent; delivered or bounced; opened, clicked, complained, unsubscribed
// or deferred; opened again an hour later or deferred). Each iteration
// appends 1,000 events to the current hour (not timed), then times the
// refresh (refresh-s) and the evaluation (eval-s); ns/op is both.
// rollup-rows and first-opens are the sizes of the two roll-up tables at
// the end, which the evaluation's reads (rollup) and each append's key
// lookup (rollup_first_opens) grow with.
func BenchmarkRulesCycle(b *testing.B) {
	n := 200_000
	if v := os.Getenv("REPUTE_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 4 {
			b.Fatalf("REPUTE_BENCH_EVENTS=%q: want a number of events, at least 4", v)
		}
	}
	s := open(b, filepath.Join(b.TempDir(), "repute.duckdb"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC()

	start := time.Now()
	const batch = 100_000
	for off := 0; off < n; off += batch {
		if err := s.Append(ctx, ruleEvents(n, off, min(batch, n-off), now)); err != nil {
			b.Fatal(err)
		}
	}
	load := time.Since(start)
	start = time.Now()
	if err := s.RefreshRollups(ctx); err != nil {
		b.Fatal(err)
	}
	compact := time.Since(start)

	engine := &rules.Engine{Rules: rules.Defaults(), Source: &rules.RollupSource{Counter: refreshed{s}}}
	var refresh, eval time.Duration
	var flags int
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if err := s.Append(ctx, liveEvents(i)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := s.RefreshRollups(ctx); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		fs, err := engine.Evaluate(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		refresh, eval, flags = refresh+t1.Sub(t0), eval+time.Since(t1), len(fs)
	}
	b.StopTimer()
	if os.Getenv("REPUTE_BENCH_RAW") != "" {
		// For comparison: the same evaluation over Stats (raw events).
		raw := &rules.Engine{Rules: rules.Defaults(), Source: rules.StatsSource{Stats: s}}
		t0 := time.Now()
		if _, err := raw.Evaluate(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "raw-eval-s")
	}
	var rows, firsts int64
	if err := s.RollupSizes(ctx, &rows, &firsts); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rows), "rollup-rows")
	b.ReportMetric(float64(firsts), "first-opens")
	b.ReportMetric(load.Seconds(), "load-s")
	b.ReportMetric(compact.Seconds(), "compact-s")
	b.ReportMetric(refresh.Seconds()/float64(b.N), "refresh-s")
	b.ReportMetric(eval.Seconds()/float64(b.N), "eval-s")
	b.Logf("%d events: load %v, compact %v; per cycle refresh %v, evaluation %v, %d flags",
		n, load.Round(time.Millisecond), compact.Round(time.Millisecond),
		(refresh / time.Duration(b.N)).Round(time.Millisecond), (eval / time.Duration(b.N)).Round(time.Millisecond), flags)
}

// refreshed is a store whose refresh the benchmark makes itself, to time it
// apart from the evaluation. With REPUTE_BENCH_TRACE set it logs each
// RuleCounts of the evaluation: its window, grouping, groups and time.
type refreshed struct{ metrics.RuleCounter }

func (refreshed) RefreshRollups(context.Context) error { return nil }

func (r refreshed) RuleCounts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) ([]metrics.Group, error) {
	t0 := time.Now()
	g, err := r.RuleCounter.RuleCounts(ctx, from, to, by)
	if os.Getenv("REPUTE_BENCH_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "RuleCounts %v by %v: %d groups in %v\n", to.Sub(from).Round(time.Minute), by, len(g),
			time.Since(t0).Round(time.Millisecond))
	}
	return g, err
}

var (
	benchISPs    = []string{"gmail", "yahoo", "outlook", "qq", "163", "icloud", "other"}
	benchDomains = []string{"gmail.com", "yahoo.com", "outlook.com", "qq.com", "163.com", "icloud.com", "example.net"}
	benchCats    = []string{"marketing", "transactional", "registration"}
	benchSeed    = maphash.MakeSeed()
)

// ruleEvents returns events [off, off+count) of the n the benchmark
// loads (the distribution of the ClickHouse benchmark's SQL).
func ruleEvents(n, off, count int, now time.Time) []metrics.Event {
	msgs := int64(max(1, n/4))
	start := now.Add(-7 * 24 * time.Hour).Unix()
	span := int64((7*24*time.Hour - 2*time.Hour) / time.Second)
	yes, no := true, false
	out := make([]metrics.Event, count)
	for i := range out {
		num := off + i
		m, slot := num/4, num%4
		d, p := m%10000, m/10000%7
		r := int64(maphash.Comparable(benchSeed, num) % 1000)
		at := start + int64(m)*span/msgs
		e := metrics.Event{EventID: fmt.Sprintf("e%d", num), Source: "bench",
			Account: fmt.Sprintf("acct%d", d%100), SenderDomain: fmt.Sprintf("d%d.example", d),
			SendingIP: fmt.Sprintf("192.0.2.%d", d%200), Category: benchCats[d%3],
			MessageID: fmt.Sprintf("<m%d@bench>", m), Recipient: fmt.Sprintf("u%d@%s", m, benchDomains[p]),
			RecipientDomain: benchDomains[p], ISP: benchISPs[p]}
		switch slot {
		case 0:
			e.Kind = metrics.KindSent
		case 1:
			at += 30
			e.Kind = metrics.KindDelivered
			if r < 50 {
				e.Kind, e.BounceType = metrics.KindBounced, metrics.BounceSoft
				if r < 30 {
					e.BounceType = metrics.BounceHard
				}
			}
		case 2:
			at += 60 + r*3
			switch {
			case r < 600:
				e.Kind = metrics.KindOpened
			case r < 700:
				e.Kind = metrics.KindClicked
			case r < 702:
				e.Kind = metrics.KindComplained
			case r < 707:
				e.Kind = metrics.KindUnsubscribed
			default:
				e.Kind = metrics.KindDeferred
			}
		default:
			at += 3600 + r*3
			e.Kind = metrics.KindDeferred
			if r < 400 {
				e.Kind = metrics.KindOpened
			}
		}
		if e.Kind == metrics.KindOpened || e.Kind == metrics.KindClicked {
			switch {
			case r%10 == 0:
			case r%10 < 4:
				e.Machine = &yes
			default:
				e.Machine = &no
			}
		}
		e.Time = time.Unix(at, 0).UTC()
		out[i] = e
	}
	return out
}

// liveEvents returns 1,000 new sends and deliveries of the current hour,
// round i.
func liveEvents(i int) []metrics.Event {
	at := time.Now().UTC().Add(-time.Second).Truncate(time.Second)
	out := make([]metrics.Event, 1000)
	for j := range out {
		p := j % 7
		out[j] = metrics.Event{EventID: fmt.Sprintf("live-%d-%d", i, j), Time: at, Kind: metrics.KindSent,
			Source: "bench", Account: fmt.Sprintf("acct%d", j%100), SenderDomain: fmt.Sprintf("d%d.example", j*7%10000),
			MessageID: fmt.Sprintf("<live%d.%d@bench>", i, j), Recipient: fmt.Sprintf("live%d@%s", j, benchDomains[p]),
			RecipientDomain: benchDomains[p], ISP: benchISPs[p]}
		if j%2 == 1 {
			out[j].Kind = metrics.KindDelivered
		}
	}
	return out
}
