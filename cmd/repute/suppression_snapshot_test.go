package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"repute/metrics"
	"repute/suppress"
)

// loadedFrom returns where the running serve's lists came from, read from
// its /metrics: "snapshot" or "replay".
func loadedFrom(t *testing.T, base string) string {
	t.Helper()
	_, out := do(t, "GET", base+"/metrics", "admin")
	m := regexp.MustCompile(`repute_suppression_load_seconds\{from="(\w+)"\} `).FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("/metrics: want one repute_suppression_load_seconds, got %q", m)
	}
	return m[0][1]
}

// appendChange writes a change to the store's log as another writer
// would, while serve is down.
func appendChange(t *testing.T, cfg serveConfig, c metrics.SuppressionChange) {
	t.Helper()
	c.ID = metrics.SuppressionChangeID(c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AppendSuppressionChanges(ctx, []metrics.SuppressionChange{c}); err != nil {
		t.Fatal(err)
	}
}

func lateBlock(at time.Time) metrics.SuppressionChange {
	return metrics.SuppressionChange{Time: at, Action: "added", Address: "late@gmail.example", Account: "acme", Shared: true,
		List: "blocklist", Reason: "hostunknown", EventID: "late-1", Since: at, Until: at.Add(14 * 24 * time.Hour), By: "other"}
}

// A clean stop writes the snapshot; a restart starts from it and applies
// what another writer logged meanwhile; a damaged snapshot, or one of
// another store, is not used and the whole log is replayed.
func TestSuppressionSnapshot(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testSuppressionSnapshot(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testSuppressionSnapshot(t, "clickhouse") })
}

func testSuppressionSnapshot(t *testing.T, backend string) {
	cfg := twoAccounts(t, backend)
	snap := filepath.Join(cfg.Data, suppressionSnapshotFile)
	base, stop := runApp(t, cfg)
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	body, _ := json.Marshal([]metrics.Event{
		{EventID: "b1", Time: at, Kind: metrics.KindBounced, Account: "acme", SenderDomain: "news.acme.example",
			Recipient: "gone@gmail.example", BounceType: metrics.BounceHard, Reason: "userunknown", Status: "5.1.1"},
		{EventID: "c1", Time: at, Kind: metrics.KindComplained, Account: "acme", SenderDomain: "news.acme.example",
			Recipient: "angry@yahoo.example", FeedbackType: "abuse"},
	})
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	want := func(base, when string) {
		t.Helper()
		got := check(t, base, "acme-key", "news.acme.example", "gone@gmail.example", "angry@yahoo.example", "late@gmail.example", "ok@gmail.example")
		if got[0].Allowed || got[0].EventID != "b1" || got[1].Allowed || got[1].List != "unsubscribe" ||
			got[2].Allowed || got[2].Reason != "hostunknown" || !got[3].Allowed {
			t.Fatalf("%s: %+v; want gone, angry and late refused, ok allowed", when, got)
		}
	}
	if from := loadedFrom(t, base); from != "replay" {
		t.Fatalf("the first start: from %s, want replay (no snapshot yet)", from)
	}
	stop()
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no snapshot after a clean stop: %v", err)
	}
	// Another writer logs a change while serve is down.
	appendChange(t, cfg, lateBlock(at))

	base, stop = runApp(t, cfg)
	want(base, "restarted from the snapshot")
	if from := loadedFrom(t, base); from != "snapshot" {
		t.Fatalf("the restart: from %s, want snapshot", from)
	}
	stop()

	// A damaged snapshot: a byte flipped in the middle.
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop = runApp(t, cfg)
	want(base, "restarted with a damaged snapshot")
	if from := loadedFrom(t, base); from != "replay" {
		t.Fatalf("a damaged snapshot: from %s, want replay", from)
	}
	stop()
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}

	// A snapshot of another store (this one's, copied next to a fresh
	// store) is ignored: none of its entries appear there.
	other := twoAccounts(t, backend)
	if err := os.WriteFile(filepath.Join(other.Data, suppressionSnapshotFile), good, 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop = runApp(t, other)
	got := check(t, base, "acme-key", "news.acme.example", "gone@gmail.example", "late@gmail.example")
	if !got[0].Allowed || !got[1].Allowed {
		t.Fatalf("another store's snapshot was used: %+v", got)
	}
	if from := loadedFrom(t, base); from != "replay" {
		t.Fatalf("another store's snapshot: from %s, want replay", from)
	}
	stop()

	if backend != "" {
		return
	}
	// The same store recreated at the same place: its log begins
	// otherwise, and the snapshot is not used.
	if err := os.WriteFile(snap, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(duckdbPath(cfg)); err != nil {
		t.Fatal(err)
	}
	os.Remove(duckdbPath(cfg) + ".wal")
	appendChange(t, cfg, lateBlock(at)) // a log of its own, with one change
	base, stop = runApp(t, cfg)
	got = check(t, base, "acme-key", "news.acme.example", "gone@gmail.example", "late@gmail.example")
	if !got[0].Allowed || got[1].Allowed {
		t.Fatalf("a recreated store: %+v; want gone allowed (not in its log), late refused", got)
	}
	if from := loadedFrom(t, base); from != "replay" {
		t.Fatalf("a recreated store: from %s, want replay", from)
	}
	stop()
}

// The periodic snapshot is written while serve runs, for its store, with
// a position at least suppressionSettle before it was taken.
func TestSuppressionSnapshotPeriodic(t *testing.T) {
	old := suppressionSnapshotEvery
	suppressionSnapshotEvery = 50 * time.Millisecond
	t.Cleanup(func() { suppressionSnapshotEvery = old }) // after serve stops
	cfg := twoAccounts(t, "")
	base, _ := runApp(t, cfg)
	body, _ := json.Marshal([]metrics.Event{{EventID: "c1", Time: time.Now().UTC().Truncate(time.Second), Kind: metrics.KindUnsubscribed,
		Account: "acme", SenderDomain: "news.acme.example", Recipient: "x@gmail.example"}})
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	if r := check(t, base, "acme-key", "news.acme.example", "x@gmail.example"); r[0].Allowed {
		t.Fatalf("%+v: want unsubscribed", r[0])
	}
	snap := filepath.Join(cfg.Data, suppressionSnapshotFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(snap); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no periodic snapshot within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f, err := os.Open(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	h, err := readSnapshotHeader(r)
	if err != nil || h.store != storeIdentity(cfg) || h.anchor == "" {
		t.Fatalf("header: %+v, %v; want store %q and an anchor", h, err, storeIdentity(cfg))
	}
	if late := time.Now().Add(-suppressionSettle); h.pos.After(late) {
		t.Fatalf("position %v: after now less the settling delay (%v)", h.pos, late)
	}
	if _, err := suppress.ReadSnapshot(r, suppress.Options{}); err != nil {
		t.Fatal(err)
	}
}
