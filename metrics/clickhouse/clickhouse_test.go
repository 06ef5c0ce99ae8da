package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
	"repute/metrics/storetest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testOptions returns options for a database of its own on the test server,
// dropped when the test ends.
func testOptions(t testing.TB) Options {
	t.Helper()
	addr, db := testenv.ClickHouseDatabase(t)
	return Options{Addr: addr, Database: db, Timeout: time.Minute}
}

func openStore(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(testCtx(t), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	testenv.ClickHouse(t)
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) metrics.Store {
			return openStore(t, testOptions(t))
		},
		Reopen: func(t *testing.T, s metrics.Store) metrics.Store {
			o := s.(*Store).opts
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openStore(t, o)
		},
		Another: func(t *testing.T, s metrics.Store) metrics.Store {
			return openStore(t, s.(*Store).opts)
		},
	})
}

// sentEvents returns n distinct sent events within one day.
func sentEvents(t testing.TB, n int, day time.Time) []metrics.Event {
	t.Helper()
	events := make([]metrics.Event, n)
	for i := range events {
		e := metrics.Event{
			Time: day.Add(time.Duration(i%86400) * time.Second), Kind: metrics.KindSent,
			Account: "acme", Recipient: fmt.Sprintf("user%d@gmail.com", i),
			MessageID: fmt.Sprintf("<m%d@acme.test>", i), SenderDomain: "news.acme.test",
			SendingIP: "192.0.2.1", Campaign: "black-friday", Source: "test",
		}
		if err := e.Normalize(metrics.ISPMap{}, day.Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		events[i] = e
	}
	return events
}

var testDay = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

func sentTotal(t *testing.T, s *Store) int64 {
	t.Helper()
	r, err := s.Stats(testCtx(t), metrics.StatsQuery{From: testDay, To: testDay.Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return r.Totals.Sent
}

// rowCount is the number of stored rows, repeats included.
func rowCount(t *testing.T, s *Store) uint64 {
	t.Helper()
	conn, err := s.ready(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(testCtx(t), "SELECT count() FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Repeats that reach the table (across calls, across a reopen, from two
// stores at once) are stored as extra rows and still counted once; repeats
// within one call never reach it.
func TestDuplicatesStoredAreCountedOnce(t *testing.T) {
	o := testOptions(t)
	s := openStore(t, o)
	events := sentEvents(t, 1000, testDay)

	batch := append(append([]metrics.Event{}, events...), events[:500]...)
	if err := s.Append(testCtx(t), batch); err != nil {
		t.Fatal(err)
	}
	if got := rowCount(t, s); got != 1000 {
		t.Errorf("rows after one call with 500 repeats = %d, want 1000 (repeats collapsed before insert)", got)
	}
	if err := s.Append(testCtx(t), events[200:700]); err != nil {
		t.Fatal(err)
	}
	if got := rowCount(t, s); got != 1500 {
		t.Errorf("rows after a second call = %d, want 1500 (the test needs stored repeats)", got)
	}
	if got := sentTotal(t, s); got != 1000 {
		t.Errorf("sent after repeats across calls = %d, want 1000", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, o)
	defer s.Close()
	if err := s.Append(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	other := openStore(t, o)
	defer other.Close()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []*Store{s, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := 0; lo < len(events); lo += 100 {
				if err := st.Append(testCtx(t), events[lo:min(lo+150, len(events))]); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := sentTotal(t, s); got != 1000 {
		t.Errorf("sent after reopen and two concurrent writers = %d, want 1000", got)
	}
	// Merging the parts must not change the answer either.
	conn, _ := s.ready(testCtx(t))
	if err := conn.Exec(testCtx(t), "OPTIMIZE TABLE events FINAL"); err != nil {
		t.Fatal(err)
	}
	if got := sentTotal(t, s); got != 1000 {
		t.Errorf("sent after OPTIMIZE FINAL = %d, want 1000", got)
	}
	known, err := s.Known(testCtx(t), events)
	if err != nil || len(known) != len(events) {
		t.Errorf("Known(all stored) = %d keys, %v; want %d", len(known), err, len(events))
	}
}

// Of two events with one key but other content, the first stored counts
// (as with the embedded store's primary key), before and after merges.
func TestFirstStoredWins(t *testing.T) {
	s := openStore(t, testOptions(t))
	defer s.Close()
	first := sentEvents(t, 1, testDay)[0]
	second := first
	second.Kind = metrics.KindDelivered
	second.Time = first.Time.Add(48 * time.Hour) // another day, another partition
	for _, e := range []metrics.Event{first, second} {
		if err := s.Append(testCtx(t), []metrics.Event{e}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // distinct precedence
	}
	check := func(when string) {
		t.Helper()
		r, err := s.Stats(testCtx(t), metrics.StatsQuery{From: testDay, To: testDay.Add(72 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Totals != (metrics.Counts{Sent: 1}) {
			t.Errorf("%s: totals %+v, want only the first: 1 sent", when, r.Totals)
		}
	}
	check("before merges")
	conn, _ := s.ready(testCtx(t))
	if err := conn.Exec(testCtx(t), "OPTIMIZE TABLE events FINAL"); err != nil {
		t.Fatal(err)
	}
	check("after OPTIMIZE FINAL")
}

// A server that comes back without the database (a wiped data directory)
// costs one failed call; the next sets the database up again.
func TestDatabaseLost(t *testing.T) {
	o := testOptions(t)
	s := openStore(t, o)
	defer s.Close()
	events := sentEvents(t, 10, testDay)
	if err := s.Append(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	conn, _ := s.ready(testCtx(t))
	if err := conn.Exec(testCtx(t), "DROP DATABASE "+o.Database); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(testCtx(t), events); err == nil {
		t.Fatal("Append into a dropped database: nil error")
	}
	if err := s.Append(testCtx(t), events); err != nil {
		t.Fatalf("Append after the database was lost: %v, want it set up again", err)
	}
	if got := sentTotal(t, s); got != 10 {
		t.Errorf("sent = %d, want 10", got)
	}
}

// A call spanning several days is inserted one day (partition) at a time.
func TestAppendSplitsByDay(t *testing.T) {
	o := testOptions(t)
	o.BatchSize = 70 // also splits each day into several batches
	s := openStore(t, o)
	defer s.Close()
	var events []metrics.Event
	for d := 0; d < 3; d++ {
		events = append(events, sentEvents(t, 100, testDay.Add(time.Duration(d)*24*time.Hour))...)
	}
	if err := s.Append(testCtx(t), events); err != nil {
		t.Fatal(err)
	}
	conn, _ := s.ready(testCtx(t))
	var parts uint64
	err := conn.QueryRow(testCtx(t), "SELECT uniqExact(partition) FROM system.parts WHERE database = ? AND table = 'events' AND active",
		o.Database).Scan(&parts)
	if err != nil {
		t.Fatal(err)
	}
	if parts != 3 {
		t.Errorf("partitions = %d, want 3", parts)
	}
	r, err := s.Stats(testCtx(t), metrics.StatsQuery{From: testDay, To: testDay.Add(72 * time.Hour),
		GroupBy: []metrics.GroupBy{metrics.GroupDay}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Groups) != 3 || r.Totals.Sent != 300 {
		t.Fatalf("Stats by day = %d groups, %d sent; want 3 groups, 300 sent", len(r.Groups), r.Totals.Sent)
	}
	for i, g := range r.Groups {
		want := testDay.Add(time.Duration(i) * 24 * time.Hour).Format(time.RFC3339)
		if g.Key[metrics.GroupDay] != want || g.Sent != 100 {
			t.Errorf("group %d = %s %d sent, want %s 100", i, g.Key[metrics.GroupDay], g.Sent, want)
		}
	}
}

func TestMigrateIdempotent(t *testing.T) {
	o := testOptions(t)
	o.Retention = 400 * 24 * time.Hour // a TTL where the server has them; ignored on 18.16
	for i := 0; i < 2; i++ {
		if err := Migrate(testCtx(t), o); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	s := openStore(t, o) // migrates a third time
	defer s.Close()
	conn, err := s.ready(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	migrations, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range migrations {
		if !(version{sv.Version.Major, sv.Version.Minor}).less(m.requires) {
			want = append(want, fmt.Sprint(m.version))
		}
	}
	var engine string
	if err := conn.QueryRow(testCtx(t), "SELECT engine_full FROM system.tables WHERE database = ? AND name = 'events'", o.Database).Scan(&engine); err != nil {
		t.Fatal(err)
	}
	hasTTL := !(version{sv.Version.Major, sv.Version.Minor}).less(ttlVersion)
	if got := strings.Contains(engine, "TTL"); got != hasTTL {
		t.Errorf("events engine %q: TTL present = %v, want %v on server %s", engine, got, hasTTL, sv)
	}
	rows, err := conn.Query(testCtx(t), "SELECT version, count() FROM schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v uint32
		var n uint64
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("migration %d recorded %d times, want once", v, n)
		}
		got = append(got, fmt.Sprint(v))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("recorded migrations = %v, want %v (server %s)", got, want, sv)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Needs no server: Open succeeds and every call names the address.
func TestUnreachable(t *testing.T) {
	addr := closedAddr(t)
	s, err := Open(testCtx(t), Options{Addr: addr, DialTimeout: time.Second})
	if err != nil {
		t.Fatalf("Open with the server down: %v, want success", err)
	}
	defer s.Close()
	calls := map[string]error{
		"Ping":   s.Ping(testCtx(t)),
		"Append": s.Append(testCtx(t), sentEvents(t, 1, testDay)),
	}
	_, calls["Stats"] = s.Stats(testCtx(t), metrics.StatsQuery{From: testDay, To: testDay.Add(time.Hour)})
	_, calls["Known"] = s.Known(testCtx(t), sentEvents(t, 1, testDay))
	t.Logf("Ping with the server down: %v", calls["Ping"])
	for name, err := range calls {
		if err == nil || !strings.Contains(err.Error(), addr) || !strings.HasPrefix(err.Error(), "clickhouse: ") {
			t.Errorf("%s with the server down: %v, want a clickhouse: error naming %s", name, err, addr)
		}
	}
	if err := Migrate(testCtx(t), Options{Addr: addr, DialTimeout: time.Second}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Migrate with the server down: %v, want an error naming %s", err, addr)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Ping(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
}

// A store opened while the server is unreachable sets up the database on
// the first call that reaches it. The "outage" is a forwarding port of this
// test, so nothing global is stopped.
func TestServerComesBack(t *testing.T) {
	o := testOptions(t)
	target := o.Addr
	o.Addr = closedAddr(t)
	o.DialTimeout = time.Second
	s := openStore(t, o)
	defer s.Close()
	if err := s.Ping(testCtx(t)); err == nil {
		t.Fatal("Ping before the server is there: nil error")
	}

	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", o.Addr, err)
	}
	defer l.Close()
	go forward(l, target)

	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping once the server is there: %v", err)
	}
	if err := s.Append(testCtx(t), sentEvents(t, 10, testDay)); err != nil {
		t.Fatal(err)
	}
	if got := sentTotal(t, s); got != 10 {
		t.Errorf("sent = %d, want 10", got)
	}
}

// forward copies every connection accepted on l to target.
func forward(l net.Listener, target string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			go io.Copy(u, c)
			io.Copy(c, u)
		}()
	}
}

func TestBadOptions(t *testing.T) {
	for _, db := range []string{"a-b", "x; DROP", "`q`"} {
		if _, err := Open(context.Background(), Options{Database: db}); err == nil {
			t.Errorf("Open(Database %q): nil error, want an invalid name", db)
		}
	}
}

// A database from before 0003 (machine a plain UInt8, no category) keeps
// its rows through the migration: a stored 0 stays human (it cannot be told
// from a verdict), 1 machine; and the migration's statements run again do
// no harm (18.16 has no ADD COLUMN IF NOT EXISTS).
func TestMigrateCategoryVerdict(t *testing.T) {
	o, err := testOptions(t).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	boot, err := o.connect("")
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Exec(ctx, "CREATE DATABASE "+o.Database); err != nil {
		t.Fatal(err)
	}
	boot.Close()
	conn, err := o.connect(o.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q, err := loadQueries()
	if err != nil {
		t.Fatal(err)
	}
	migrations, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var m0003 migration
	for _, m := range migrations {
		if m.version == 3 {
			m0003 = m
		}
	}
	if m0003.name != "0003_category_verdict" {
		t.Fatalf("no migration 0003_category_verdict: %+v", migrations)
	}
	if err := conn.Exec(ctx, q[qMigrationsTable]); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range migrations[0].statements {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Exec(ctx, q[qRecordMigration], uint32(1), migrations[0].name); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"'human', 'm1', 0", "'machine', 'm2', 1"} {
		if err := conn.Exec(ctx, `INSERT INTO events (account, event_id, message_id, machine, time, kind, recipient, precedence)
			SELECT 'acme', `+row+`, toDateTime('2026-11-24 10:00:00', 'UTC'), 'opened', 'a@gmail.com', 1`); err != nil {
			t.Fatalf("insert an old row: %v", err)
		}
	}
	if err := Migrate(ctx, o); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	for _, stmt := range m0003.statements {
		if err := conn.Exec(ctx, stmt); err != nil && !alreadyAdded(stmt, err) {
			t.Errorf("0003 again: %q: %v", stmt, err)
		}
	}
	s := openStore(t, o)
	defer s.Close()
	q3 := metrics.StatsQuery{From: testDay, To: testDay.Add(24 * time.Hour), GroupBy: []metrics.GroupBy{metrics.GroupCategory}}
	r, err := s.Stats(ctx, q3)
	if err != nil {
		t.Fatal(err)
	}
	want := metrics.Counts{OpenedHuman: 1, OpenedMachine: 1}
	if r.Totals != want || len(r.Groups) != 1 || r.Groups[0].Key[metrics.GroupCategory] != "" {
		t.Errorf("after migrating: totals %+v, groups %+v; want %+v in one group of no category", r.Totals, r.Groups, want)
	}
}
