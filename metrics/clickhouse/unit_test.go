package clickhouse

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func TestDedup(t *testing.T) {
	ev := func(account, id string) metrics.Event { return metrics.Event{Account: account, EventID: id} }
	a, b, c, a2 := ev("acme", "a"), ev("acme", "b"), ev("beta", "a"), ev("acme", "a")
	a2.Campaign = "second"
	got := dedup([]metrics.Event{a, b, c, a2, b})
	if len(got) != 3 || got[0].Key() != a.Key() || got[0].Campaign != "" || got[1].Key() != b.Key() || got[2].Key() != c.Key() {
		t.Errorf("dedup = %v, want a (first), b, beta's a", got)
	}
	in := []metrics.Event{a, b}
	if got := dedup(in); &got[0] != &in[0] {
		t.Errorf("dedup without repeats copied the slice")
	}
}

func TestSplitByDay(t *testing.T) {
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	at := func(h int) metrics.Event {
		return metrics.Event{EventID: fmt.Sprint(h), Time: day.Add(time.Duration(h) * time.Hour)}
	}
	got := splitByDay([]metrics.Event{at(50), at(1), at(23), at(24), at(2)})
	var days []string
	for _, d := range got {
		var ids []string
		for _, e := range d {
			ids = append(ids, e.EventID)
		}
		days = append(days, strings.Join(ids, ","))
	}
	if want := []string{"1,23,2", "24", "50"}; !slices.Equal(days, want) {
		t.Errorf("splitByDay = %q, want %q", days, want)
	}
}

func TestCeilSeconds(t *testing.T) {
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{base, base.Unix()},
		{base.Add(time.Nanosecond), base.Unix() + 1},
		{base.Add(999 * time.Millisecond), base.Unix() + 1},
		{time.Time{}, 0},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 1<<32 - 1},
	} {
		if got := ceilSeconds(tc.in); got != tc.want {
			t.Errorf("ceilSeconds(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestEmbeddedSQL(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].requires != (version{}) || len(ms[0].statements) != 1 {
		t.Fatalf("first migration = %+v, want 0001 with one statement for any server", ms[0])
	}
	for i, m := range ms {
		if m.version != uint32(i+1) {
			t.Errorf("migration %s has number %d, want %d (no gaps)", m.name, m.version, i+1)
		}
		for _, s := range m.statements {
			if strings.HasSuffix(s, ";") || strings.TrimSpace(s) == "" {
				t.Errorf("migration %s: bad statement %q", m.name, s)
			}
		}
	}
	for _, m := range ms {
		if m.name == "0002_codecs" && (m.requires == version{}) {
			t.Errorf("0002_codecs must require a newer server than 18.16")
		}
	}
	if _, err := loadQueries(); err != nil {
		t.Fatal(err)
	}
	if _, err := parseRequires("-- requires: x.y\n"); err == nil {
		t.Error("parseRequires(x.y): nil error")
	}
}

func TestColumnValues(t *testing.T) {
	cols, err := columnValues([]metrics.Event{{Kind: metrics.KindDropped, Machine: metrics.Verdict(true), ReplyCode: 550}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != len(columns) {
		t.Fatalf("columnValues gives %d columns, columns names %d", len(cols), len(columns))
	}
	if k := cols[3].([]int8)[0]; k != 9 {
		t.Errorf("dropped = Enum8 value %d, want 9", k)
	}
	if _, err := columnValues([]metrics.Event{{Kind: "nope"}}, 7); err == nil {
		t.Error("unknown kind: nil error")
	}
}

func TestPlan(t *testing.T) {
	ms := []migration{{version: 1, name: "0001_events"}, {version: 2, name: "0002_codecs", requires: version{20, 3}},
		{version: 3, name: "0003_more"}}
	names := func(ms []migration) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		server         version
		applied        map[uint32]bool
		apply, waiting string
	}{
		{version{18, 16}, nil, "0001_events,0003_more", "0002_codecs"},
		{version{18, 16}, map[uint32]bool{1: true, 3: true}, "", "0002_codecs"},
		{version{20, 3}, map[uint32]bool{1: true, 3: true}, "0002_codecs", ""},
		{version{25, 1}, nil, "0001_events,0002_codecs,0003_more", ""},
		{version{25, 1}, map[uint32]bool{1: true, 2: true, 3: true}, "", ""},
	} {
		apply, waiting := plan(ms, tc.applied, tc.server)
		if names(apply) != tc.apply || names(waiting) != tc.waiting {
			t.Errorf("plan(server %s, applied %v) = apply %q, waiting %q; want %q, %q",
				tc.server, tc.applied, names(apply), names(waiting), tc.apply, tc.waiting)
		}
	}
}
