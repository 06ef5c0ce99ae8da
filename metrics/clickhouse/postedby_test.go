package clickhouse

import (
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
)

// posted_by is stored as posted (” when nobody's key posted the event),
// and an event equal but for it is the same event: read with FINAL, the
// first stored.
func TestPostedByStored(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	at := testDay.Add(10 * time.Hour)
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
	if err := s.Append(testCtx(t), []metrics.Event{byAcme, byNobody}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // distinct precedence
	if err := s.Append(testCtx(t), []metrics.Event{same}); err != nil {
		t.Fatal(err)
	}
	conn, err := s.ready(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(testCtx(t), "SELECT recipient, posted_by FROM events FINAL ORDER BY recipient")
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
