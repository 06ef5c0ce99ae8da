package storetest

import (
	"testing"
	"time"

	"repute/metrics"
)

// testStatsMaxGroups: MaxGroups keeps the first groups in key order and
// says the result was cut; the totals still count every group, uniques
// over the whole range; a cap the groups fit in cuts nothing.
func testStatsMaxGroups(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, domain: "c.test", at: -34 * time.Hour},
		ev{id: "2", kind: metrics.KindSent, domain: "a.test"},
		ev{id: "3", kind: metrics.KindSent, domain: "b.test"},
		ev{id: "4", kind: metrics.KindSent, domain: "a.test", at: 14 * time.Hour},
		ev{id: "5", kind: metrics.KindDelivered, domain: "b.test", at: 14 * time.Hour},
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay, metrics.GroupSenderDomain}
	q.MaxGroups = 2
	r := stats(t, st, q)
	checkGroups(t, q, r.Groups, []row{
		{[]string{"2026-11-23T00:00:00Z", "c.test"}, sent(1)},
		{[]string{"2026-11-24T00:00:00Z", "a.test"}, sent(1)},
	})
	if !r.Truncated {
		t.Errorf("Stats(%s): 5 groups over MaxGroups 2, Truncated false", fmtQuery(q))
	}
	checkCounts(t, "totals of a cut result", r.Totals, metrics.Counts{Sent: 4, Delivered: 1})

	q.MaxGroups = 5
	r = stats(t, st, q)
	if len(r.Groups) != 5 || r.Truncated {
		t.Errorf("Stats(%s): %d groups, truncated %v; want 5, false", fmtQuery(q), len(r.Groups), r.Truncated)
	}
	checkCounts(t, "totals of a whole result", r.Totals, metrics.Counts{Sent: 4, Delivered: 1})
}
