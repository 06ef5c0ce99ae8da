package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// Appends add delta rows, an open key's +1 only with its first open;
// RefreshRollups sums an hour's deltas into one row per scope and changes
// no count.
func TestRollupCompaction(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	mk := func(id string, kind metrics.Kind) metrics.Event {
		return metrics.Event{EventID: id, Time: at, Kind: kind, Account: "acme", SenderDomain: "news.acme.test",
			MessageID: "m1", Recipient: "a@example.org", RecipientDomain: "example.org", ISP: "other"}
	}
	for i := range 3 {
		if err := s.Append(ctx, []metrics.Event{mk(fmt.Sprint("s", i), metrics.KindSent), mk(fmt.Sprint("o", i), metrics.KindOpened)}); err != nil {
			t.Fatal(err)
		}
	}
	if total, deltas := rollupRows(t, s); total != 3 || deltas != 3 {
		t.Errorf("after 3 appends: %d rows, %d deltas; want 3 and 3", total, deltas)
	}
	want := metrics.Counts{Sent: 3, OpenedUnverified: 1, OpenedHuman: 1}
	check := func(what string) {
		t.Helper()
		g, err := s.RuleCounts(ctx, at, at.Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(g) != 1 || g[0].Counts != want {
			t.Errorf("%s: RuleCounts = %+v, want %+v", what, g, want)
		}
	}
	check("before the refresh")
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if total, deltas := rollupRows(t, s); total != 1 || deltas != 0 {
		t.Errorf("after the refresh: %d rows, %d deltas; want 1 and 0", total, deltas)
	}
	check("after the refresh")
	var firsts int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM rollup_first_opens WHERE event_id = 'o0'").Scan(&firsts); err != nil {
		t.Fatal(err)
	}
	if firsts != 2 {
		t.Errorf("rollup_first_opens holds o0 for %d kinds, want 2 (human, unverified)", firsts)
	}
}

// rollupRows counts the rows of rollup, and the delta rows among them.
func rollupRows(t *testing.T, s *Store) (total, deltas int) {
	t.Helper()
	if err := s.db.QueryRow("SELECT count(*), count(*) FILTER (WHERE NOT compacted) FROM rollup").Scan(&total, &deltas); err != nil {
		t.Fatal(err)
	}
	return total, deltas
}

// A late open moves its key: a -1 in the old row, a +1 in the new, in
// the same append. The compaction drops the row left with no count, and
// an open tied in time with the first but of a greater event id moves
// nothing.
func TestRollupMoveFirstOpen(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	no := false
	open := func(id, domain string, at time.Time) metrics.Event {
		return metrics.Event{EventID: id, Time: at, Kind: metrics.KindOpened, Account: "acme", SenderDomain: domain,
			MessageID: "m1", Recipient: "a@example.org", RecipientDomain: "example.org", ISP: "other", Machine: &no}
	}
	if err := s.Append(ctx, []metrics.Event{open("o2", "b.example", at.Add(2*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	// o1 is earlier; o0 ties with it in time, and its id is smaller.
	if err := s.Append(ctx, []metrics.Event{open("o1", "c.example", at), open("o0", "a.example", at),
		open("o3", "d.example", at)}); err != nil {
		t.Fatal(err)
	}
	var deltas []string
	rows, err := s.db.QueryContext(ctx, "SELECT strftime(hour, '%H') || ' ' || sender_domain || ' ' || opened_human FROM rollup WHERE NOT compacted ORDER BY ALL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		deltas = append(deltas, d)
	}
	rows.Close()
	if want := []string{"10 a.example 1", "12 b.example -1"}; !reflect.DeepEqual(deltas, want) {
		t.Errorf("delta rows %q, want %q", deltas, want)
	}
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if total, _ := rollupRows(t, s); total != 1 {
		t.Errorf("after the refresh: %d rows, want 1 (b.example's is empty)", total)
	}
	g, err := s.RuleCounts(ctx, at, at.Add(3*time.Hour), []metrics.GroupBy{metrics.GroupSenderDomain})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 1 || g[0].Key[metrics.GroupSenderDomain] != "a.example" || g[0].Counts != (metrics.Counts{OpenedHuman: 1}) {
		t.Errorf("RuleCounts = %+v, want one human open, from a.example", g)
	}
}

// openKey in Go is the key of migration 0014 in SQL.
func TestOpenKeyMatchesSQL(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range []metrics.Event{
		{Account: "acme", MessageID: "<m1@x>", Recipient: "a@example.org", EventID: "e1"},
		{Account: "acme", EventID: "e1"},
		{Account: "ümlaut", MessageID: "m", Recipient: "", EventID: "x"},
	} {
		var got uint64
		if err := s.db.QueryRow(`SELECT CASE WHEN $2 <> '' THEN md5_number_lower('m' || chr(0) || $1 || chr(0) || $2 || chr(0) || $3)
			ELSE md5_number_lower('e' || chr(0) || $1 || chr(0) || $4) END`,
			e.Account, e.MessageID, e.Recipient, e.EventID).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := openKey(&e); got != want {
			t.Errorf("open key of %+v: SQL %x, Go %x", e, got, want)
		}
	}
}

// A file that held events under 0012's roll-up counts, once migrated by
// 0014's backfill, what Append gives for the same events: the same rows
// by hour and scope, and the same first opens.
func TestMigrateTo0014(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 14 || all[11].name != "0012_rollups.sql" || all[13].name != "0014_rollup_first_opens.sql" {
		t.Fatalf("migrations: %+v", all)
	}
	events, from, to := migrationEvents()

	// Appended fresh, in batches, shuffled so that late opens move keys.
	fresh, err := Open(filepath.Join(dir, "fresh.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(events); off += 250 {
		if err := fresh.Append(ctx, events[off:min(off+250, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := fresh.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}

	// The same events in a file of 0011, then 0012 (its roll-up backfilled
	// from them) and 0013, as an older repute left it.
	path := filepath.Join(dir, "old.duckdb")
	oldFile(t, path, all[:11], fmt.Sprintf(`ATTACH '%s' AS fresh (READ_ONLY);
		INSERT INTO events SELECT * FROM fresh.events;
		DETACH fresh;`, filepath.Join(dir, "fresh.duckdb")))
	applyTo(t, path, all[11:13])
	old, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	fresh, err = Open(filepath.Join(dir, "fresh.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()

	var n int
	if err := old.db.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != len(events) {
		t.Fatalf("the old file holds %d events (%v), want %d", n, err, len(events))
	}
	for h := from; h.Before(to); h = h.Add(time.Hour) {
		for _, w := range [][2]time.Time{{h, h.Add(time.Hour)}, {from, h.Add(time.Hour)}} {
			a, err := fresh.RuleCounts(ctx, w[0], w[1], metrics.RollupDims)
			if err != nil {
				t.Fatal(err)
			}
			b, err := old.RuleCounts(ctx, w[0], w[1], metrics.RollupDims)
			if err != nil {
				t.Fatal(err)
			}
			if ga, gb := groupsByKey(a), groupsByKey(b); !reflect.DeepEqual(ga, gb) {
				t.Errorf("[%s, %s): appended %v\nmigrated %v", w[0].Format(time.RFC3339), w[1].Format(time.RFC3339), ga, gb)
			}
		}
	}
	a, b := firstOpens(t, fresh), firstOpens(t, old)
	if len(a) == 0 {
		t.Fatal("no first opens: the events have no opens to compare")
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("rollup_first_opens differ:\nappended %v\nmigrated %v", a, b)
	}
}

// firstOpens returns the rows of rollup_first_opens, in order.
func firstOpens(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.Query("SELECT COLUMNS(*)::VARCHAR FROM rollup_first_opens ORDER BY kind, key")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	v := make([]string, 10)
	dest := make([]any, len(v))
	for i := range v {
		dest[i] = &v[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(v))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// groupsByKey returns groups by their keys, leaving out the empty ones.
func groupsByKey(groups []metrics.Group) map[string]metrics.Counts {
	out := map[string]metrics.Counts{}
	for _, g := range groups {
		if g.Counts != (metrics.Counts{}) {
			out[fmt.Sprint(g.Key)] = g.Counts
		}
	}
	return out
}

// applyTo applies migrations ms to the file at path.
func applyTo(t *testing.T, path string, ms []migration) {
	t.Helper()
	c, err := duckdb.NewConnector(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	for _, m := range ms {
		if err := apply(context.Background(), db, m); err != nil {
			t.Fatal(err)
		}
	}
}

// migrationEvents returns shuffled events over 12 hours from [from, to):
// messages opened and clicked several times, by people and machines, with
// and without a verdict, some without a message id, some tied in time.
func migrationEvents() (events []metrics.Event, from, to time.Time) {
	r := rand.New(rand.NewPCG(14, 1))
	from = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	to = from.Add(12 * time.Hour)
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindDelivered, metrics.KindBounced, metrics.KindDeferred,
		metrics.KindComplained, metrics.KindUnsubscribed, metrics.KindDropped,
		metrics.KindOpened, metrics.KindOpened, metrics.KindOpened, metrics.KindClicked, metrics.KindClicked}
	yes, no := true, false
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	for i := range 1500 {
		e := metrics.Event{EventID: fmt.Sprintf("e%d", i), Kind: kinds[r.IntN(len(kinds))],
			Time:    from.Add(time.Duration(r.IntN(12*60)) * time.Minute), // ties at the minute
			Account: pick("acme", "zeta"), SenderDomain: pick("a.example", "b.example", "c.example"),
			SendingIP: pick("192.0.2.1", "192.0.2.2"), Campaign: pick("spring", ""), Category: pick("marketing", ""),
			MessageID: fmt.Sprintf("<m%d@x>", r.IntN(60)), Recipient: pick("a@gmail.com", "b@yahoo.com"),
			ISP: pick("gmail", "yahoo")}
		if e.Kind == metrics.KindBounced {
			e.BounceType = pick(metrics.BounceHard, metrics.BounceSoft)
		}
		if e.Kind == metrics.KindOpened || e.Kind == metrics.KindClicked {
			switch r.IntN(3) {
			case 0:
				e.Machine = &yes
			case 1:
				e.Machine = &no
			}
			if r.IntN(6) == 0 {
				e.MessageID = ""
			}
		}
		events = append(events, e)
	}
	return events, from, to
}
