package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

// The synthetic Apple ranges of package opens' tests (172.224.224.0/26,
// 104.28.0.0/24, two IPv6 prefixes).
const testAppleRanges = "../../opens/testdata/egress-ip-ranges.csv"

// TestMachineOpensThroughServe is issue 12's end-to-end case, on both
// stores: an external tracker posts opens without a verdict; the Apple
// proxy's is stored as a machine open (apple_mpp), Thunderbird's as a
// person's, and one posted with "machine": false keeps the poster's
// verdict. GET /v1/stats counts them so, and the open rate uses the human
// opens only.
func TestMachineOpensThroughServe(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testMachineOpensThroughServe(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testMachineOpensThroughServe(t, "clickhouse") })
}

func testMachineOpensThroughServe(t *testing.T, backend string) {
	cfg := twoAccounts(t, backend)
	cfg.MachineOpens.AppleRangesFile = testAppleRanges
	base, stop := runApp(t, cfg)

	at := testDay.Add(10 * time.Hour)
	ev := func(kind metrics.Kind, n string) metrics.Event {
		return metrics.Event{Time: at, Kind: kind, Account: "acme", SenderDomain: "news.acme.example",
			MessageID: "<" + n + "@acme.example>", Recipient: n + "@icloud.com"}
	}
	var events []metrics.Event
	for _, n := range []string{"apple", "bird", "poster", "plain"} {
		events = append(events, ev(metrics.KindDelivered, n))
	}
	apple := ev(metrics.KindOpened, "apple")
	apple.UserAgent, apple.ClientIP = "Mozilla/5.0", "172.224.224.7"
	bird := ev(metrics.KindOpened, "bird")
	bird.UserAgent, bird.ClientIP = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0", "203.0.113.5"
	poster := ev(metrics.KindOpened, "poster") // the Apple proxy's look, but the poster says a person
	poster.UserAgent, poster.ClientIP, poster.Machine = "Mozilla/5.0", "172.224.224.8", metrics.Verdict(false)
	plain := ev(metrics.KindOpened, "plain") // nothing to judge by: no verdict
	events = append(events, apple, bird, poster, plain)

	body, _ := json.Marshal(events)
	if status, out := post(t, base+"/v1/events?wait=visible", "acme-key", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	// A re-post of the classified open is a duplicate: the verdict is not
	// part of the id.
	body, _ = json.Marshal([]metrics.Event{apple})
	if status, out := post(t, base+"/v1/events?wait=visible", "acme-key", "application/json", body); status != http.StatusAccepted ||
		!strings.Contains(out, `"duplicates":1`) {
		t.Errorf("re-post of the Apple open: %d %s; want 1 duplicate", status, out)
	}

	c := client{t: t, base: base, key: "acme-key"}
	want := metrics.Counts{Delivered: 4, OpenedHuman: 3, OpenedMachine: 1, OpenedUnverified: 1}
	c.waitForTotals(dayQuery(), want)
	_, st := c.stats(dayQuery())
	if r := st.Totals.Rates; r.OpenRate == nil || *r.OpenRate != 0.75 || r.MachineOpenShare == nil || *r.MachineOpenShare != 0.25 {
		t.Errorf("rates: open %v, machine share %v; want 0.75 (3 human / 4 delivered) and 0.25", deref(r.OpenRate), deref(r.MachineOpenShare))
	}

	if backend != "" {
		return
	}
	stop()
	db, err := sql.Open("duckdb", duckdbPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT recipient, machine, machine_reason FROM events WHERE kind = 'opened' ORDER BY recipient`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var rcpt, reason string
		var machine sql.NullBool
		if err := rows.Scan(&rcpt, &machine, &reason); err != nil {
			t.Fatal(err)
		}
		v := "null"
		if machine.Valid {
			v = map[bool]string{true: "true", false: "false"}[machine.Bool]
		}
		got = append(got, rcpt+" "+v+" "+reason)
	}
	wantRows := "apple@icloud.com true apple_mpp, bird@icloud.com false , plain@icloud.com null , poster@icloud.com false "
	if g := strings.Join(got, ", "); g != wantRows {
		t.Errorf("stored opens:\n%s\nwant\n%s", g, wantRows)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestMachineOpensConfig(t *testing.T) {
	noenv := func(string) string { return "" }
	dir := t.TempDir()
	file := filepath.Join(dir, "repute.yaml")
	os.WriteFile(file, []byte("machine_opens:\n  apple_ranges_file: /etc/repute/apple.csv\n  prefetch_window: 5s\n"), 0o600)
	cfg, err := loadServeConfig([]string{"--config", file}, noenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if m := cfg.MachineOpens; m.AppleRangesFile != "/etc/repute/apple.csv" || m.PrefetchWindow != 5*time.Second || m.Off {
		t.Errorf("machine_opens = %+v", m)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"machine_opens:\n  apple_range_file: x\n", `line 2: machine_opens: unknown key "apple_range_file" (did you mean apple_ranges_file?)`},
		{"machine_opens:\n  prefetch_window: 10\n", `line 2: machine_opens.prefetch_window: expected a duration such as 30s, 5m or 1h30m, got "10"`},
		{"machine_opens:\n  off: true\n  apple_ranges_file: x\n", "off is set beside apple_ranges_file"},
	} {
		os.WriteFile(file, []byte(tt.yaml), 0o600)
		if _, err := loadServeConfig([]string{"--config", file}, noenv, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: error %v, want one containing %q", tt.yaml, err, tt.want)
		}
	}

	// A ranges file with a bad line stops the start, naming file and line.
	bad := filepath.Join(dir, "apple.csv")
	os.WriteFile(bad, []byte("172.224.224.0/27,US,US-CA,Los Angeles,\nnonsense,US\n"), 0o600)
	cfg = defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	cfg.MachineOpens.AppleRangesFile = bad
	if _, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "machine_opens") || !strings.Contains(err.Error(), "apple.csv") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad ranges file: %v; want an error naming machine_opens, the file and line 2", err)
	}
}

// TestMachineOpensOff: with machine_opens: off, an open keeps the verdict it
// came with (none).
func TestMachineOpensOff(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.MachineOpens.Off = true
	base, _ := runApp(t, cfg)
	e := metrics.Event{Time: testDay.Add(time.Hour), Kind: metrics.KindOpened, Account: "acme", Recipient: "x@icloud.com",
		UserAgent: "Mozilla/5.0", ClientIP: "172.224.224.7"}
	body, _ := json.Marshal([]metrics.Event{e})
	if status, out := post(t, base+"/v1/events?wait=visible", "acme-key", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", status, out)
	}
	client{t: t, base: base, key: "acme-key"}.waitForTotals(dayQuery(), metrics.Counts{OpenedHuman: 1, OpenedUnverified: 1})
}
