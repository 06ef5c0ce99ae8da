// Package storetest is the conformance suite every metrics.Store backend
// passes: idempotent appends, time windows, grouping, the counting rules of
// metrics.Counts, tenant isolation and Known. A backend's test calls Run with
// a Harness that opens fresh stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			Open:   func(t *testing.T) metrics.Store { … a fresh, empty store … },
//			Reopen: func(t *testing.T, s metrics.Store) metrics.Store { … close s, open its data again … },
//		})
//	}
//
// Every subtest opens its own store. The suite closes every store it gets
// from Open or Reopen (except the one it hands to Reopen, which Reopen
// closes), so the harness must not register a Close of its own.
//
// Beyond the rules of metrics.Counts and metrics.StatsQuery, the suite
// holds a backend to these:
//   - The machine verdict is stored in three states (none, human, machine)
//     and counted as metrics.Counts says; a category is stored and grouped
//     by.
//   - Append is idempotent on (account, event_id) within a call, across
//     calls, across Reopen and between concurrent callers, and an event is
//     queryable as soon as Append returns; a read never sees half a batch.
//   - Stats never returns nil Groups (an empty slice instead), rejects an
//     unknown GroupBy with an error, and takes query bounds as instants (a
//     bound inside a second or in another time zone is exact).
//   - A dimension an event lacks groups under "", which sorts first; keys
//     sort as strings.
//   - Known reports the stored keys among the candidates (a key mapped to
//     false counts as absent).
//   - A store that keeps the suppression log (metrics.SuppressionLog)
//     returns every field of a change as appended (times to the
//     nanosecond, a zero time as zero), each ID once however often it was
//     appended (the first stored wins), in (Time, ID) order, and stops at
//     fn's first error, returning it. FindSuppressionChanges gives the
//     same changes in the same order, those of the address and the account
//     asked (exact values), strictly after (AfterTime, AfterID) in (Time,
//     ID) order when either is set, at most Limit when it is positive.
//   - A store that keeps the rules history (metrics.RulesHistory) returns
//     every field of a decision and of a flag change as appended (times
//     to the nanosecond, a zero time as zero, a nil limit as nil), each
//     decision's (ID, Seq) and each flag change's ID once however often it
//     was appended (the first stored wins), decisions in (IssuedAt, Seq,
//     ID) order and flag changes in (Time, ID) order, never a nil slice;
//     the queries keep times in [From, To) (a zero bound is open), the
//     sender domain asked (exact) and at most Limit when it is positive.
//   - A store that reads replies (metrics.ReplyReader) gives every
//     deferred and bounced event in [from, to) once, with its reply and
//     scope, in (time, event id) order, and stops at fn's first error.
//   - A store that keeps roll-ups for the rule engine (metrics.RuleCounter)
//     answers RuleCounts, after RefreshRollups, with the counts Stats gives
//     over metrics.RollupWindow of the window — but for opens and clicks,
//     counted once per key in the hour of the first (metrics.FirstOpens) —
//     for every grouping of metrics.RollupDims, after duplicate appends,
//     changed copies (the first stored wins), appends through two handles
//     (Harness.Another) and events arriving late for old hours.
//
// Event times are fixed (around 2026-11-24T10:00:00Z), so results do not
// depend on the clock.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

// Harness opens the stores the suite runs against.
type Harness struct {
	// Open returns a fresh, empty store. Temporary files or databases it
	// creates should be removed with t.Cleanup.
	Open func(t *testing.T) metrics.Store
	// Reopen closes s and returns a new store over the same data, as a
	// restarted process would see it.
	Reopen func(t *testing.T, s metrics.Store) metrics.Store
	// Another, when set, returns a second store over s's data, open at
	// the same time as s, as another process would open it (for a store
	// whose data one process alone may open, a second handle within the
	// process). The suite closes it.
	Another func(t *testing.T, s metrics.Store) metrics.Store
}

// Run runs the whole suite, one subtest per behaviour.
func Run(t *testing.T, h Harness) {
	if h.Open == nil || h.Reopen == nil {
		t.Fatal("storetest: Harness needs Open and Reopen")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, &suite{h: h})
		})
	}
}

// tests lists the subtests in the order they run.
var tests = []struct {
	name string
	run  func(t *testing.T, s *suite)
}{
	{"AppendTotals", testAppendTotals},
	{"AppendEmpty", testAppendEmpty},
	{"DuplicatesWithinBatch", testDuplicatesWithinBatch},
	{"DuplicatesAcrossBatches", testDuplicatesAcrossBatches},
	{"DuplicatesAcrossReopen", testDuplicatesAcrossReopen},
	{"DuplicatesConcurrentWriters", testDuplicatesConcurrentWriters},
	{"DuplicatesAtAnotherTime", testDuplicatesAtAnotherTime},
	{"LargeBatch", testLargeBatch},
	{"TimeWindow", testTimeWindow},
	{"TimeWindowSubSecondBounds", testTimeWindowSubSecond},
	{"GroupBySingle", testGroupBySingle},
	{"GroupByDayHour", testGroupByDayHour},
	{"GroupByCombined", testGroupByCombined},
	{"StatsMaxGroups", testStatsMaxGroups},
	{"GroupByEmptyValue", testGroupByEmptyValue},
	{"CountKinds", testCountKinds},
	{"CountBounces", testCountBounces},
	{"UniqueOpens", testUniqueOpens},
	{"UniqueClicks", testUniqueClicks},
	{"UniquePerGroup", testUniquePerGroup},
	{"MachineVerdict", testMachineVerdict},
	{"MachineVerdictUnique", testMachineVerdictUnique},
	{"VerdictKeepsID", testVerdictKeepsID},
	{"PostedByKeepsID", testPostedByKeepsID},
	{"GroupByCategory", testGroupByCategory},
	{"DroppedReasons", testDroppedReasons},
	{"Rates", testRates},
	{"TenantIsolation", testTenantIsolation},
	{"QuotedValues", testQuotedValues},
	{"GroupByUnknown", testGroupByUnknown},
	{"ConcurrentReadsAndWrites", testConcurrentReadsAndWrites},
	{"Empty", testEmpty},
	{"Known", testKnown},
	{"KnownMany", testKnownMany},
	{"Evidence", testEvidence},
	{"EvidencePurge", testEvidencePurge},
	{"SendLookup", testSendLookup},
	{"Leases", testLeases},
	{"LeaseExpiry", testLeaseExpiry},
	{"SuppressionLog", testSuppressionLog},
	{"SuppressionLogIdempotent", testSuppressionLogIdempotent},
	{"SuppressionLogStop", testSuppressionLogStop},
	{"SuppressionFind", testSuppressionFind},
	{"SuppressionFindAfter", testSuppressionFindAfter},
	{"SuppressionFindLimit", testSuppressionFindLimit},
	{"SuppressionFindPaging", testSuppressionFindPaging},
	{"SuppressionFollow", testSuppressionFollow},
	{"RulesDecisions", testRulesDecisions},
	{"RulesDecisionsIdempotent", testRulesDecisionsIdempotent},
	{"RulesDecisionsFilter", testRulesDecisionsFilter},
	{"RulesFlagChanges", testRulesFlagChanges},
	{"RulesFlagChangesIdempotent", testRulesFlagChangesIdempotent},
	{"RulesFlagChangesFilter", testRulesFlagChangesFilter},
	{"Replies", testReplies},
	{"RulesState", testRulesState},
	{"RulesOperatorActions", testRulesOperatorActions},
	{"RollupMatchesStats", testRollupMatchesStats},
	{"RollupOpensAcrossHours", testRollupOpensAcrossHours},
	{"RollupWindowEdges", testRollupWindowEdges},
	{"RollupDuplicates", testRollupDuplicates},
	{"RollupTwoHandles", testRollupTwoHandles},
	{"RollupLateEvents", testRollupLateEvents},
	{"RollupFirstStoredWins", testRollupFirstStoredWins},
}

// suite is the state of one subtest: the harness and the current store.
type suite struct {
	h Harness
	s metrics.Store
}

// open opens a fresh store for the subtest and closes it at its end.
func (s *suite) open(t *testing.T) metrics.Store {
	t.Helper()
	s.s = s.h.Open(t)
	t.Cleanup(func() {
		if err := s.s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s.s
}

// reopen closes the current store and opens its data again.
func (s *suite) reopen(t *testing.T) metrics.Store {
	t.Helper()
	s.s = s.h.Reopen(t, s.s)
	return s.s
}

// ctx returns a context with a deadline, as every store call should have.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// base is the fixed clock of the suite: every event is near it.
var base = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// ev describes an event by its interesting fields; mk fills in the rest.
type ev struct {
	id        string
	at        time.Duration // after base
	kind      metrics.Kind
	account   string
	domain    string // sender domain
	ip        string
	campaign  string
	msg       string // message id
	rcpt      string
	bounce    string
	machine   bool   // an open or click: machine verdict true (else a person's)
	noVerdict bool   // an open or click without a verdict (machine null)
	why       string // machine_reason, or reason
	category  string
	sourceRef string
}

// mk returns the normalized event e describes; defaults: account "acme",
// recipient "user@gmail.com", sender domain "news.acme.test"; an open or a
// click has a verdict (false, a person, unless machine or noVerdict); a
// dropped event is "paused" unless why says otherwise.
func mk(t testing.TB, e ev) metrics.Event {
	t.Helper()
	x := metrics.Event{
		EventID:      e.id,
		Time:         base.Add(e.at),
		Kind:         e.kind,
		Source:       "storetest",
		SourceRef:    e.sourceRef,
		Account:      e.account,
		SenderDomain: e.domain,
		SendingIP:    e.ip,
		Campaign:     e.campaign,
		MessageID:    e.msg,
		Recipient:    e.rcpt,
		BounceType:   e.bounce,
		Category:     e.category,
	}
	switch {
	case e.machine:
		x.Machine, x.MachineReason = metrics.Verdict(true), e.why
	case e.noVerdict:
	case e.kind == metrics.KindOpened || e.kind == metrics.KindClicked:
		x.Machine = metrics.Verdict(false)
	}
	if e.kind == metrics.KindDropped {
		x.Reason = e.why
		if x.Reason == "" {
			x.Reason = metrics.DropPaused
		}
	}
	if x.Account == "" {
		x.Account = "acme"
	}
	if x.Recipient == "" {
		x.Recipient = "user@gmail.com"
	}
	if x.SenderDomain == "" {
		x.SenderDomain = "news.acme.test"
	}
	if err := x.Normalize(metrics.ISPMap{}, base.Add(365*24*time.Hour)); err != nil {
		t.Fatalf("storetest: bad test event %+v: %v", e, err)
	}
	return x
}

func mkAll(t testing.TB, es ...ev) []metrics.Event {
	t.Helper()
	out := make([]metrics.Event, len(es))
	for i, e := range es {
		out[i] = mk(t, e)
	}
	return out
}

func appendOK(t *testing.T, st metrics.Store, events []metrics.Event) {
	t.Helper()
	if err := st.Append(ctx(t), events); err != nil {
		t.Fatalf("Append(%d events): %v", len(events), err)
	}
}

// window is a range that holds every event of the suite.
func window() metrics.StatsQuery {
	return metrics.StatsQuery{From: base.Add(-30 * 24 * time.Hour), To: base.Add(30 * 24 * time.Hour)}
}

func stats(t *testing.T, st metrics.Store, q metrics.StatsQuery) *metrics.StatsResult {
	t.Helper()
	r, err := st.Stats(ctx(t), q)
	if err != nil {
		t.Fatalf("Stats(%s): %v", fmtQuery(q), err)
	}
	if r == nil {
		t.Fatalf("Stats(%s) = nil result", fmtQuery(q))
	}
	if r.Groups == nil {
		t.Errorf("Stats(%s).Groups = nil, want a non-nil slice", fmtQuery(q))
	}
	return r
}

func totals(t *testing.T, st metrics.Store, q metrics.StatsQuery) metrics.Counts {
	t.Helper()
	return stats(t, st, q).Totals
}

func fmtQuery(q metrics.StatsQuery) string {
	return fmt.Sprintf("from=%s to=%s account=%q group_by=%v",
		q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano), q.Account, q.GroupBy)
}

func checkCounts(t *testing.T, what string, got, want metrics.Counts) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// row is an expected group: its key values in GroupBy order and its counts.
type row struct {
	key []string
	c   metrics.Counts
}

// checkGroups compares groups with want, in order.
func checkGroups(t *testing.T, q metrics.StatsQuery, got []metrics.Group, want []row) {
	t.Helper()
	g := make([]string, len(got))
	for i, x := range got {
		g[i] = fmtGroup(q.GroupBy, x.Key, x.Counts)
	}
	w := make([]string, len(want))
	for i, x := range want {
		key := map[metrics.GroupBy]string{}
		for j, dim := range q.GroupBy {
			key[dim] = x.key[j]
		}
		w[i] = fmtGroup(q.GroupBy, key, x.c)
	}
	ok := len(g) == len(w)
	for i := 0; ok && i < len(g); i++ {
		ok = g[i] == w[i] && len(got[i].Key) == len(q.GroupBy)
	}
	if !ok {
		t.Errorf("Stats(%s) groups:\n got %d:\n%s\nwant %d:\n%s", fmtQuery(q),
			len(g), indent(g), len(w), indent(w))
	}
}

func fmtGroup(dims []metrics.GroupBy, key map[metrics.GroupBy]string, c metrics.Counts) string {
	s := ""
	for _, d := range dims {
		s += fmt.Sprintf("%s=%q ", d, key[d])
	}
	if len(key) != len(dims) {
		s += fmt.Sprintf("(full key %v) ", key)
	}
	return s + fmt.Sprintf("%+v", c)
}

func indent(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "\t" + l + "\n"
	}
	return s
}
