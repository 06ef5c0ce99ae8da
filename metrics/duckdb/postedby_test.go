package duckdb

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
)

// posted_by is stored as posted (” when nobody's key posted the event),
// and an event equal but for it is the same event, stored once.
func TestPostedByStored(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	mk := func(rcpt, by string) metrics.Event {
		e := metrics.Event{Time: at, Kind: metrics.KindBounced, Account: "acme", Recipient: rcpt,
			BounceType: "hard", PostedBy: by}
		if err := e.Normalize(metrics.ISPMap{}, at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	byAcme, byNobody := mk("a@gmail.com", "acme"), mk("b@gmail.com", "")
	same := mk("a@gmail.com", "") // byAcme but for who posted it
	if same.EventID != byAcme.EventID {
		t.Fatalf("posted_by changed the id: %s, %s", byAcme.EventID, same.EventID)
	}
	if err := s.Append(ctx, []metrics.Event{byAcme, byNobody}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []metrics.Event{same}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT recipient, posted_by FROM events ORDER BY recipient")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][2]string
	for rows.Next() {
		var r [2]string
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"a@gmail.com", "acme"}, {"b@gmail.com", ""}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("stored (recipient, posted_by) = %v, want %v (the first stored, once)", got, want)
	}
}
