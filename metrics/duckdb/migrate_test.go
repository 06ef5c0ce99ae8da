package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// A file written under 0001 (primary key, no key_hash) keeps its events
// through 0002, and they stay known by their key.
func TestMigrateFrom0001(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repute.duckdb")
	ctx := context.Background()
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 || all[0].version != 1 || all[1].version != 2 {
		t.Fatalf("migrations: %+v", all)
	}
	oldFile(t, path, all[:1], `INSERT INTO events (event_id, time, kind, account, recipient)
		VALUES ('e1', TIMESTAMP '2026-11-24 10:00:00', 'sent', 'acme', 'a@example.org')`)

	s, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := metrics.Event{EventID: "e1", Account: "acme", Kind: metrics.KindSent, Recipient: "a@example.org",
		Time: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	known, err := s.Known(ctx, []metrics.Event{e})
	if err != nil {
		t.Fatal(err)
	}
	if !known[e.Key()] {
		t.Errorf("Known after migrating: %v, want %v", known, e.Key())
	}
	if err := s.Append(ctx, []metrics.Event{e}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Stats(ctx, metrics.StatsQuery{From: e.Time, To: e.Time.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals != (metrics.Counts{Sent: 1}) {
		t.Errorf("totals after migrating and appending again: %+v, want sent 1", r.Totals)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(all))
	}
}

// keyHash in Go is key_hash in SQL.
func TestKeyHashMatchesSQL(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range []metrics.Key{
		{Account: "acme", EventID: "e1"},
		{Account: "", EventID: ""},
		{Account: "ümlaut", EventID: "x\x00y"},
		{Account: "a", EventID: "0123456789abcdef0123456789abcdef"},
	} {
		var got uint64
		if err := s.db.QueryRow("SELECT md5_number_lower($1 || chr(0) || $2)", k.Account, k.EventID).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := keyHash(k); got != want {
			t.Errorf("key_hash of %+v: SQL %x, Go %x", k, got, want)
		}
	}
}

// A stored row whose key hash matches a new event's but whose key differs
// (a hash collision, forged here) does not hide the new event.
func TestKeyHashCollision(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	e := metrics.Event{EventID: "new", Account: "acme", Kind: metrics.KindSent, Recipient: "a@example.org",
		Time: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO events (event_id, time, kind, account, recipient, key_hash)
		VALUES ('other', TIMESTAMP '2026-11-24 10:00:00', 'sent', 'acme', 'b@example.org', $1::UBIGINT)`,
		strconv.FormatUint(keyHash(e.Key()), 10)); err != nil {
		t.Fatal(err)
	}
	known, err := s.Known(ctx, []metrics.Event{e})
	if err != nil {
		t.Fatal(err)
	}
	if len(known) != 0 {
		t.Errorf("Known = %v, want none", known)
	}
	if err := s.Append(ctx, []metrics.Event{e, e}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Stats(ctx, metrics.StatsQuery{From: e.Time, To: e.Time.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals != (metrics.Counts{Sent: 2}) {
		t.Errorf("totals = %+v, want sent 2 (the forged row and the new event)", r.Totals)
	}
}

// The Appender fills columns by position: columns must list the table's
// columns in their order.
func TestColumnsMatchTable(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.db.Query(`SELECT column_name FROM information_schema.columns
		WHERE table_name = 'events' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var table []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		table = append(table, name)
	}
	var ours []string
	for _, c := range columns {
		ours = append(ours, c.name)
	}
	if fmt.Sprint(ours) != fmt.Sprint(table) {
		t.Errorf("columns:\n got %v\nwant %v (the table)", ours, table)
	}
}

// A file from before 0004 keeps its rows: a stored false stays human (it
// cannot be told from a verdict), true machine, and there is no category.
func TestMigrateTo0004(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repute.duckdb")
	ctx := context.Background()
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 4 || all[3].name != "0004_category_verdict.sql" {
		t.Fatalf("migrations: %+v", all)
	}
	oldFile(t, path, all[:3], `INSERT INTO events (event_id, time, kind, account, recipient, message_id, machine, key_hash)
		VALUES ('h', TIMESTAMP '2026-11-24 10:00:00', 'opened', 'acme', 'a@example.org', 'm1', false, 1),
		       ('m', TIMESTAMP '2026-11-24 10:00:00', 'opened', 'acme', 'a@example.org', 'm2', true, 2)`)
	s, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	r, err := s.Stats(ctx, metrics.StatsQuery{From: from, To: from.Add(24 * time.Hour),
		GroupBy: []metrics.GroupBy{metrics.GroupCategory}})
	if err != nil {
		t.Fatal(err)
	}
	want := metrics.Counts{OpenedHuman: 1, OpenedMachine: 1}
	if r.Totals != want || len(r.Groups) != 1 || r.Groups[0].Key[metrics.GroupCategory] != "" {
		t.Errorf("after migrating: totals %+v, groups %+v; want %+v in one group of no category", r.Totals, r.Groups, want)
	}
	// New events append after the migration, with and without a verdict.
	e := metrics.Event{Account: "acme", Kind: metrics.KindOpened, Recipient: "b@example.org", MessageID: "m3",
		Time: from.Add(time.Hour), Category: metrics.CategoryMarketing}
	if err := e.Normalize(metrics.ISPMap{}, from.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []metrics.Event{e}); err != nil {
		t.Fatal(err)
	}
	r, err = s.Stats(ctx, metrics.StatsQuery{From: from, To: from.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (metrics.Counts{OpenedHuman: 2, OpenedMachine: 1, OpenedUnverified: 1}); r.Totals != want {
		t.Errorf("after appending: totals %+v, want %+v", r.Totals, want)
	}
}

// oldFile makes a DuckDB file at path as an older repute left it: the
// given migrations applied, then the rows of insert.
func oldFile(t *testing.T, path string, ms []migration, insert string) {
	t.Helper()
	ctx := context.Background()
	c, err := duckdb.NewConnector(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,
		name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := apply(ctx, db, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, insert); err != nil {
		t.Fatal(err)
	}
}
