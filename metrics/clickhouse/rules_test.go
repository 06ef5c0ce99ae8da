package clickhouse

import (
	"testing"
	"time"

	"repute/metrics"
)

// A decision or flag change appended twice is two rows until a merge; reads
// give the first stored before and after OPTIMIZE FINAL.
func TestRulesHistoryFirstStoredWins(t *testing.T) {
	s := openStore(t, testOptions(t))
	defer s.Close()
	at := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)
	first := metrics.StoredDecision{ID: "d-1", Seq: 1, IssuedAt: at, SenderDomain: "news.acme.test",
		Action: "pause", Source: "rule", Reasons: `[{"rule":"complaint_rate"}]`}
	second := first
	second.Action, second.Reasons = "hold", "[]"
	flag := metrics.StoredFlagChange{Time: at, Rule: "complaint_rate", SenderDomain: "news.acme.test",
		Severity: "pause", Value: 0.006, Threshold: 0.005, Sample: 2000, Window: "7d", Raised: true}
	flag.ID = metrics.FlagChangeID(flag)
	flag2 := flag
	flag2.Value = 0.9
	for i, d := range []metrics.StoredDecision{first, second} {
		if err := s.AppendDecisions(testCtx(t), []metrics.StoredDecision{d}); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendFlagChanges(testCtx(t), []metrics.StoredFlagChange{[]metrics.StoredFlagChange{flag, flag2}[i]}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // distinct precedence
	}
	conn, err := s.ready(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"rule_decisions", "rule_flag_changes"} {
		var n uint64
		if err := conn.QueryRow(testCtx(t), "SELECT count() FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%s holds %d rows before merges, want 2 (both appends)", table, n)
		}
	}
	check := func(when string) {
		t.Helper()
		ds, err := s.Decisions(testCtx(t), metrics.DecisionQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].Action != "pause" || ds[0].Reasons != first.Reasons || !ds[0].IssuedAt.Equal(at) {
			t.Errorf("%s: Decisions = %+v, want only the first stored", when, ds)
		}
		fs, err := s.FlagChanges(testCtx(t), metrics.FlagChangeQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].Value != 0.006 {
			t.Errorf("%s: FlagChanges = %+v, want only the first stored", when, fs)
		}
	}
	check("before merges")
	for _, table := range []string{"rule_decisions", "rule_flag_changes"} {
		if err := conn.Exec(testCtx(t), "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	check("after OPTIMIZE FINAL")
}
