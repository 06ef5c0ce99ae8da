package duckdb_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/metrics/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) metrics.Store {
			return open(t, filepath.Join(t.TempDir(), "repute.duckdb"))
		},
		Reopen: func(t *testing.T, s metrics.Store) metrics.Store {
			st := s.(*duckdb.Store)
			if err := st.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, st.Path())
		},
		// DuckDB locks its file to one process; two Stores over one file
		// in a process share DuckDB's instance, as two writers would.
		Another: func(t *testing.T, s metrics.Store) metrics.Store {
			return open(t, s.(*duckdb.Store).Path())
		},
	})
}

func open(t testing.TB, path string) *duckdb.Store {
	t.Helper()
	s, err := duckdb.Open(path, duckdb.Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

// A key stored at one time and appended again at another is still one
// event (the first stored wins), and the other events of that batch land.
func TestAppendSameKeyOtherTime(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "repute.duckdb"))
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	ev := func(id string, at time.Time) metrics.Event {
		return metrics.Event{EventID: id, Time: at, Kind: metrics.KindSent, Account: "acme",
			Recipient: "a@example.org", RecipientDomain: "example.org", ISP: "other"}
	}
	if err := s.Append(ctx, []metrics.Event{ev("a", at)}); err != nil {
		t.Fatal(err)
	}
	later := at.Add(72 * time.Hour)
	if err := s.Append(ctx, []metrics.Event{ev("a", later), ev("b", later), ev("b", later)}); err != nil {
		t.Fatal(err)
	}
	q := metrics.StatsQuery{From: at.Add(-time.Hour), To: later.Add(time.Hour),
		GroupBy: []metrics.GroupBy{metrics.GroupDay}}
	r, err := s.Stats(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals != (metrics.Counts{Sent: 2}) || len(r.Groups) != 2 ||
		r.Groups[0].Key[metrics.GroupDay] != "2026-11-24T00:00:00Z" ||
		r.Groups[1].Key[metrics.GroupDay] != "2026-11-27T00:00:00Z" {
		t.Errorf("Stats = %+v, want sent 2: a on the 24th (first stored wins), b on the 27th", r)
	}
}

func TestOpenTwiceAppliesMigrationsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repute.duckdb")
	for range 3 {
		s := open(t, path)
		if err := s.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

func TestClosedStore(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "repute.duckdb"))
	s.Close()
	err := s.Append(context.Background(), []metrics.Event{{EventID: "x", Account: "a"}})
	if err == nil {
		t.Error("Append on a closed store: no error")
	}
}

// A cancelled append stores nothing and leaves the store usable.
func TestAppendCancelled(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "repute.duckdb"))
	defer s.Close()
	events := benchEvents(t, 0, 5000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, events); err == nil {
		t.Fatal("Append with a cancelled context: no error")
	}
	q := metrics.StatsQuery{From: events[0].Time.Add(-48 * time.Hour), To: events[0].Time.Add(48 * time.Hour)}
	r, err := s.Stats(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if r.Totals != (metrics.Counts{}) {
		t.Errorf("after a cancelled append: totals %+v, want none", r.Totals)
	}
	if err := s.Append(context.Background(), events); err != nil {
		t.Fatalf("Append after a cancelled one: %v", err)
	}
	known, err := s.Known(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	if len(known) != len(events) {
		t.Errorf("Known after append: %d of %d events", len(known), len(events))
	}
}

// TestAppendSurvivesCrash appends in a child process that exits without
// closing the store (as kill -9 would leave it: no checkpoint, only the
// write-ahead log), then reopens the file here.
func TestAppendSurvivesCrash(t *testing.T) {
	if path := os.Getenv("REPUTE_DUCKDB_CRASH_CHILD"); path != "" {
		s, err := duckdb.Open(path, duckdb.Options{})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		if err := s.Append(context.Background(), benchEvents(t, 0, 3000)); err != nil {
			fmt.Println("append:", err)
			os.Exit(2)
		}
		os.Exit(0) // no Close
	}
	path := filepath.Join(t.TempDir(), "repute.duckdb")
	for range 2 { // the second run appends the same events again
		cmd := exec.Command(os.Args[0], "-test.run=^TestAppendSurvivesCrash$")
		cmd.Env = append(os.Environ(), "REPUTE_DUCKDB_CRASH_CHILD="+path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
	}
	s := open(t, path)
	defer s.Close()
	events := benchEvents(t, 0, 3000)
	known, err := s.Known(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Stats(context.Background(), metrics.StatsQuery{
		From: events[0].Time.Add(-48 * time.Hour), To: events[0].Time.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range []int64{r.Totals.Sent, r.Totals.Delivered, r.Totals.BouncedHard,
		r.Totals.OpenedHuman, r.Totals.OpenedMachine, r.Totals.Clicked} {
		total += n
	}
	if len(known) != len(events) || total != int64(len(events)) {
		t.Errorf("after two crashed appends of %d events: %d known, %d counted; want %d each",
			len(events), len(known), total, len(events))
	}
}

// Two Stores over one file in one process share DuckDB's instance (its
// instance cache); appends through both still store each event once.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repute.duckdb")
	a, b := open(t, path), open(t, path)
	defer a.Close()
	defer b.Close()
	events := benchEvents(t, 0, 2000)
	ctx := context.Background()
	for round := range 5 {
		batch := events[round*400 : round*400+400]
		errs := make(chan error, 2)
		for _, s := range []*duckdb.Store{a, b} {
			go func() { errs <- s.Append(ctx, batch) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
	}
	known, err := a.Known(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Stats(ctx, metrics.StatsQuery{From: events[0].Time.Add(-48 * time.Hour), To: events[0].Time.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Totals
	total := c.Sent + c.Delivered + c.BouncedHard + c.OpenedHuman + c.Clicked
	if len(known) != len(events) || total != int64(len(events)) {
		t.Errorf("%d events appended through two stores: %d known, %d counted", len(events), len(known), total)
	}
}
