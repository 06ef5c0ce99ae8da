package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func asRulesHistory(t *testing.T, st metrics.Store) metrics.RulesHistory {
	t.Helper()
	h, ok := st.(metrics.RulesHistory)
	if !ok {
		t.Skipf("%T keeps no rules history", st)
	}
	return h
}

func intp(v int) *int { return &v }

// decision returns a decision issued at base+at with every field set.
func decision(id string, seq int64, at time.Duration, domain string) metrics.StoredDecision {
	return metrics.StoredDecision{
		ID: id, Seq: seq, IssuedAt: base.Add(at), ExpiresAt: base.Add(at + time.Hour + 123456789),
		SenderDomain: domain, SendingIP: "192.0.2.7", ISP: "gmail", Action: "slow", WarmupDay: 3,
		DailyLimit: 2000, HourlyLimit: 400, MinuteLimit: intp(10), MaxConnections: intp(1), Source: "rule",
		Reasons: `[{"rule":"gmail_unusual_rate","value":2,"threshold":2,"sample":2,"window":"1h"}]`,
	}
}

// flagChange returns a flag change at base+at with every field set, its ID
// computed.
func flagChange(at time.Duration, rule, domain string, raised bool) metrics.StoredFlagChange {
	c := metrics.StoredFlagChange{
		Time: base.Add(at), Rule: rule, Account: "acme", SenderDomain: domain, SendingIP: "192.0.2.7",
		ISP: "gmail", Campaign: "spring", Category: "marketing", Severity: "warning", Value: 0.0031,
		Threshold: 0.003, Sample: 12345, Window: "24h-7d", Raised: raised,
	}
	c.ID = metrics.FlagChangeID(c)
	return c
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func fmtDecision(d metrics.StoredDecision) string {
	ptr := func(p *int) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("%s#%d issued=%s expires=%s dom=%q ip=%q isp=%q %s day=%d daily=%d hourly=%d minute=%s conns=%s source=%q reasons=%s",
		d.ID, d.Seq, fmtTime(d.IssuedAt), fmtTime(d.ExpiresAt), d.SenderDomain, d.SendingIP, d.ISP, d.Action,
		d.WarmupDay, d.DailyLimit, d.HourlyLimit, ptr(d.MinuteLimit), ptr(d.MaxConnections), d.Source, d.Reasons)
}

func fmtFlagChange(c metrics.StoredFlagChange) string {
	return fmt.Sprintf("%s %s %s acct=%q dom=%q ip=%q isp=%q camp=%q cat=%q sev=%q value=%v threshold=%v sample=%d window=%q raised=%v",
		c.ID, fmtTime(c.Time), c.Rule, c.Account, c.SenderDomain, c.SendingIP, c.ISP, c.Campaign, c.Category,
		c.Severity, c.Value, c.Threshold, c.Sample, c.Window, c.Raised)
}

// checkDecisions compares the decisions q selects with want, in order,
// every field.
func checkDecisions(t *testing.T, h metrics.RulesHistory, q metrics.DecisionQuery, want []metrics.StoredDecision) {
	t.Helper()
	got, err := h.Decisions(ctx(t), q)
	if err != nil {
		t.Fatalf("Decisions(%+v): %v", q, err)
	}
	if got == nil {
		t.Errorf("Decisions(%+v) = nil, want an empty slice at least", q)
	}
	g, w := make([]string, len(got)), make([]string, len(want))
	for i, d := range got {
		g[i] = fmtDecision(d)
	}
	for i, d := range want {
		w[i] = fmtDecision(d)
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("Decisions(%+v):\n got %d:\n%s\nwant %d:\n%s", q, len(g), indent(g), len(w), indent(w))
	}
}

// checkFlagChanges compares the flag changes q selects with want, in
// order, every field.
func checkFlagChanges(t *testing.T, h metrics.RulesHistory, q metrics.FlagChangeQuery, want []metrics.StoredFlagChange) {
	t.Helper()
	got, err := h.FlagChanges(ctx(t), q)
	if err != nil {
		t.Fatalf("FlagChanges(%+v): %v", q, err)
	}
	if got == nil {
		t.Errorf("FlagChanges(%+v) = nil, want an empty slice at least", q)
	}
	g, w := make([]string, len(got)), make([]string, len(want))
	for i, c := range got {
		g[i] = fmtFlagChange(c)
	}
	for i, c := range want {
		w[i] = fmtFlagChange(c)
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("FlagChanges(%+v):\n got %d:\n%s\nwant %d:\n%s", q, len(g), indent(g), len(w), indent(w))
	}
}

func testRulesDecisions(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	checkDecisions(t, h, metrics.DecisionQuery{}, nil)
	late := decision("d-late", 7, 2*time.Second, "news.acme.test")
	ns1 := decision("d-ns", 3, time.Second+1, "news.acme.test") // a nanosecond apart
	ns2 := decision("d-ns", 4, time.Second+2, "news.acme.test")
	// The same instant: seq, then id, break the tie.
	tieA := decision("d-b", 5, 0, "news.acme.test")
	tieB := decision("d-a", 6, 0, "news.acme.test")
	tieC := decision("d-c", 6, 0, "news.acme.test")
	// A pause: no end, no minute or connection limit, every limit zero,
	// scope "all" but its domain, operator's, no reasons.
	bare := metrics.StoredDecision{ID: "d-bare", Seq: 1, IssuedAt: base.Add(-time.Minute),
		SenderDomain: "other.test", Action: "pause", Source: "operator", Reasons: "[]"}
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{late, ns2, tieC}); err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{tieB, bare, ns1, tieA}); err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	if err := h.AppendDecisions(ctx(t), nil); err != nil {
		t.Fatalf("AppendDecisions(nil): %v", err)
	}
	want := []metrics.StoredDecision{bare, tieA, tieB, tieC, ns1, ns2, late}
	checkDecisions(t, h, metrics.DecisionQuery{}, want)
	checkDecisions(t, asRulesHistory(t, s.reopen(t)), metrics.DecisionQuery{}, want)
}

func testRulesDecisionsIdempotent(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	a := decision("d-1", 1, time.Second, "news.acme.test")
	b := decision("d-1", 2, 2*time.Second, "news.acme.test") // the same id issued again: another entry
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{a, b, a}); err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	// Appended again with what (ID, Seq) does not determine changed: the
	// first stored stays.
	again := a
	again.Action, again.Reasons, again.MinuteLimit, again.DailyLimit = "hold", "[]", nil, 1
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{again}); err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	want := []metrics.StoredDecision{a, b}
	checkDecisions(t, h, metrics.DecisionQuery{}, want)
	h = asRulesHistory(t, s.reopen(t))
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{again, b}); err != nil {
		t.Fatalf("AppendDecisions after reopen: %v", err)
	}
	checkDecisions(t, h, metrics.DecisionQuery{}, want)
	checkDecisions(t, h, metrics.DecisionQuery{SenderDomain: "news.acme.test"}, want)
}

func testRulesDecisionsFilter(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	d0 := decision("d-0", 1, 0, "a.test")
	d1 := decision("d-1", 2, 500*time.Millisecond, "b.test")
	d2 := decision("d-2", 3, time.Second, "a.test")
	d3 := decision("d-3", 4, time.Second+1, "a.test")
	d4 := decision("d-4", 5, time.Hour, "a.test")
	if err := h.AppendDecisions(ctx(t), []metrics.StoredDecision{d4, d3, d2, d1, d0}); err != nil {
		t.Fatalf("AppendDecisions: %v", err)
	}
	for _, tc := range []struct {
		name string
		q    metrics.DecisionQuery
		want []metrics.StoredDecision
	}{
		{"all", metrics.DecisionQuery{}, []metrics.StoredDecision{d0, d1, d2, d3, d4}},
		{"from inclusive", metrics.DecisionQuery{From: base.Add(time.Second)}, []metrics.StoredDecision{d2, d3, d4}},
		{"to exclusive", metrics.DecisionQuery{To: base.Add(time.Second)}, []metrics.StoredDecision{d0, d1}},
		{"nanosecond window", metrics.DecisionQuery{From: base.Add(time.Second + 1), To: base.Add(time.Second + 2)},
			[]metrics.StoredDecision{d3}},
		{"another zone", metrics.DecisionQuery{From: base.Add(time.Second).In(time.FixedZone("x", 5*3600)), To: base.Add(time.Hour)},
			[]metrics.StoredDecision{d2, d3}},
		{"domain", metrics.DecisionQuery{SenderDomain: "a.test"}, []metrics.StoredDecision{d0, d2, d3, d4}},
		{"domain exact", metrics.DecisionQuery{SenderDomain: "a.tes"}, nil},
		{"domain and window", metrics.DecisionQuery{SenderDomain: "b.test", From: base, To: base.Add(time.Second)},
			[]metrics.StoredDecision{d1}},
		{"limit", metrics.DecisionQuery{Limit: 2}, []metrics.StoredDecision{d0, d1}},
		{"limit and filters", metrics.DecisionQuery{SenderDomain: "a.test", From: base.Add(time.Millisecond), Limit: 2},
			[]metrics.StoredDecision{d2, d3}},
		{"empty window", metrics.DecisionQuery{From: base.Add(2 * time.Hour)}, nil},
		{"after seq", metrics.DecisionQuery{AfterSeq: 3}, []metrics.StoredDecision{d3, d4}},
		{"after seq and domain", metrics.DecisionQuery{AfterSeq: 1, SenderDomain: "a.test"}, []metrics.StoredDecision{d2, d3, d4}},
		{"after the last seq", metrics.DecisionQuery{AfterSeq: 5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) { checkDecisions(t, h, tc.q, tc.want) })
	}
}

func testRulesFlagChanges(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	checkFlagChanges(t, h, metrics.FlagChangeQuery{}, nil)
	raised := flagChange(time.Second, "complaint_rate", "news.acme.test", true)
	cleared := flagChange(time.Hour, "complaint_rate", "news.acme.test", false)
	ns := flagChange(time.Second+1, "hard_bounce_rate", "news.acme.test", true)
	// The same instant: the id breaks the tie.
	tie1 := flagChange(0, "low_open_rate", "news.acme.test", true)
	tie2 := flagChange(0, "yahoo_tss04", "news.acme.test", true)
	if tie1.ID > tie2.ID {
		tie1, tie2 = tie2, tie1
	}
	// Empty scope fields, zero numbers.
	bare := metrics.StoredFlagChange{Time: base.Add(-time.Minute), Rule: "warmup_idle", Severity: "info"}
	bare.ID = metrics.FlagChangeID(bare)
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{cleared, tie2, ns}); err != nil {
		t.Fatalf("AppendFlagChanges: %v", err)
	}
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{bare, raised, tie1}); err != nil {
		t.Fatalf("AppendFlagChanges: %v", err)
	}
	if err := h.AppendFlagChanges(ctx(t), nil); err != nil {
		t.Fatalf("AppendFlagChanges(nil): %v", err)
	}
	want := []metrics.StoredFlagChange{bare, tie1, tie2, raised, ns, cleared}
	checkFlagChanges(t, h, metrics.FlagChangeQuery{}, want)
	checkFlagChanges(t, asRulesHistory(t, s.reopen(t)), metrics.FlagChangeQuery{}, want)
}

func testRulesFlagChangesIdempotent(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	a := flagChange(time.Second, "complaint_rate", "news.acme.test", true)
	b := flagChange(time.Second, "complaint_rate", "news.acme.test", false) // cleared at the same instant: another change
	if a.ID == b.ID {
		t.Fatalf("FlagChangeID does not tell raised from cleared: %s", a.ID)
	}
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{a, b, a}); err != nil {
		t.Fatalf("AppendFlagChanges: %v", err)
	}
	again := a
	again.Value, again.Sample, again.Window = 0.9, 1, "1h"
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{again}); err != nil {
		t.Fatalf("AppendFlagChanges: %v", err)
	}
	want := []metrics.StoredFlagChange{a, b}
	if b.ID < a.ID {
		want = []metrics.StoredFlagChange{b, a}
	}
	checkFlagChanges(t, h, metrics.FlagChangeQuery{}, want)
	h = asRulesHistory(t, s.reopen(t))
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{again, b}); err != nil {
		t.Fatalf("AppendFlagChanges after reopen: %v", err)
	}
	checkFlagChanges(t, h, metrics.FlagChangeQuery{}, want)
}

func testRulesFlagChangesFilter(t *testing.T, s *suite) {
	h := asRulesHistory(t, s.open(t))
	c0 := flagChange(0, "r", "a.test", true)
	c1 := flagChange(500*time.Millisecond, "r", "b.test", true)
	c2 := flagChange(time.Second, "r", "a.test", false)
	c3 := flagChange(time.Second+1, "s", "a.test", true)
	c4 := flagChange(time.Hour, "s", "a.test", false)
	if err := h.AppendFlagChanges(ctx(t), []metrics.StoredFlagChange{c4, c3, c2, c1, c0}); err != nil {
		t.Fatalf("AppendFlagChanges: %v", err)
	}
	for _, tc := range []struct {
		name string
		q    metrics.FlagChangeQuery
		want []metrics.StoredFlagChange
	}{
		{"all", metrics.FlagChangeQuery{}, []metrics.StoredFlagChange{c0, c1, c2, c3, c4}},
		{"from inclusive", metrics.FlagChangeQuery{From: base.Add(time.Second)}, []metrics.StoredFlagChange{c2, c3, c4}},
		{"to exclusive", metrics.FlagChangeQuery{To: base.Add(time.Second)}, []metrics.StoredFlagChange{c0, c1}},
		{"nanosecond window", metrics.FlagChangeQuery{From: base.Add(time.Second + 1), To: base.Add(time.Second + 2)},
			[]metrics.StoredFlagChange{c3}},
		{"domain", metrics.FlagChangeQuery{SenderDomain: "a.test"}, []metrics.StoredFlagChange{c0, c2, c3, c4}},
		{"domain exact", metrics.FlagChangeQuery{SenderDomain: "A.test"}, nil},
		{"domain and window", metrics.FlagChangeQuery{SenderDomain: "b.test", From: base, To: base.Add(time.Second)},
			[]metrics.StoredFlagChange{c1}},
		{"limit", metrics.FlagChangeQuery{Limit: 3}, []metrics.StoredFlagChange{c0, c1, c2}},
		{"limit and filters", metrics.FlagChangeQuery{SenderDomain: "a.test", From: base.Add(time.Millisecond), Limit: 2},
			[]metrics.StoredFlagChange{c2, c3}},
		{"empty window", metrics.FlagChangeQuery{To: base.Add(-time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) { checkFlagChanges(t, h, tc.q, tc.want) })
	}
}

func asRulesState(t *testing.T, st metrics.Store) metrics.RulesState {
	t.Helper()
	r, ok := st.(metrics.RulesState)
	if !ok {
		t.Skipf("%T keeps no rules state", st)
	}
	return r
}

func checkRulesState(t *testing.T, r metrics.RulesState, wantVersion int64, want string) {
	t.Helper()
	v, got, err := r.LoadRulesState(ctx(t))
	if err != nil {
		t.Fatalf("LoadRulesState: %v", err)
	}
	if v != wantVersion || string(got) != want || (want == "") != (got == nil) {
		t.Errorf("LoadRulesState = %d %q, want %d %q", v, got, wantVersion, want)
	}
}

// testRulesState: the highest version wins, whatever the order of the
// saves, and survives a reopen.
func testRulesState(t *testing.T, s *suite) {
	r := asRulesState(t, s.open(t))
	checkRulesState(t, r, 0, "")
	for _, v := range []int64{20, 30, 10} {
		if err := r.SaveRulesState(ctx(t), v, []byte(fmt.Sprintf(`{"v":%d}`, v))); err != nil {
			t.Fatalf("SaveRulesState(%d): %v", v, err)
		}
	}
	checkRulesState(t, r, 30, `{"v":30}`)
	r = asRulesState(t, s.reopen(t))
	checkRulesState(t, r, 30, `{"v":30}`)
	if err := r.SaveRulesState(ctx(t), 31, []byte(`{"v":31}`)); err != nil {
		t.Fatalf("SaveRulesState(31): %v", err)
	}
	checkRulesState(t, r, 31, `{"v":31}`)
}

// testRulesOperatorActions: actions in (Time, ID) order from a time on,
// the first stored of an ID kept.
func testRulesOperatorActions(t *testing.T, s *suite) {
	r := asRulesState(t, s.open(t))
	act := func(id string, at time.Duration, reason string) metrics.StoredOperatorAction {
		return metrics.StoredOperatorAction{ID: id, Time: base.Add(at), Who: "admin", Action: "cancel",
			DecisionID: "dec_" + id, Target: "dec_t", SenderDomain: "news.acme.test", SendingIP: "192.0.2.7",
			ISP: "gmail", Reason: reason, Decision: `{"id":"dec_` + id + `"}`}
	}
	a, b, c := act("a", 0, "first"), act("b", time.Second, "first"), act("c", time.Second, "first")
	if err := r.AppendOperatorActions(ctx(t), []metrics.StoredOperatorAction{c, a}); err != nil {
		t.Fatalf("AppendOperatorActions: %v", err)
	}
	if err := r.AppendOperatorActions(ctx(t), []metrics.StoredOperatorAction{b, act("a", 0, "again")}); err != nil {
		t.Fatalf("AppendOperatorActions: %v", err)
	}
	r = asRulesState(t, s.reopen(t))
	for _, tc := range []struct {
		from time.Time
		want []metrics.StoredOperatorAction
	}{
		{time.Time{}, []metrics.StoredOperatorAction{a, b, c}},
		{base.Add(time.Second), []metrics.StoredOperatorAction{b, c}},
		{base.Add(time.Hour), nil},
	} {
		got, err := r.OperatorActions(ctx(t), tc.from)
		if err != nil {
			t.Fatalf("OperatorActions: %v", err)
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", append([]metrics.StoredOperatorAction{}, tc.want...)) {
			t.Errorf("OperatorActions(%s):\n got %+v\nwant %+v", fmtTime(tc.from), got, tc.want)
		}
	}
}
