package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/internal/smallfs"
	"repute/internal/testenv"
)

// TestServeDiskFull: a real repute serve (this binary re-executed) with
// its data directory on a 4 MiB file system and its store (ClickHouse)
// down, so that the spool fills the disk. Intake answers 503 with
// Retry-After naming the full disk, /readyz says so, and a SIGKILL then
// leaves a spool that the next start reads back. With the store back, the
// drain frees the disk and intake resumes by itself, and every event that
// was acknowledged with 202 is in the store exactly once.
func TestServeDiskFull(t *testing.T) {
	addr, database := testenv.ClickHouseDatabase(t)
	data := filepath.Join(smallfs.Mount(t, 4<<20), "data")
	spoolDir := filepath.Join(data, "spool")
	proxy := newCuttableProxy(t, addr)
	args := []string{"--listen", "127.0.0.1:0", "--data", data, "--clickhouse", proxy.addr(), "--clickhouse-database", database}
	s := startServe(t, args)
	c := client{t, s.base, "admin"}

	post := func(base string, batch int) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/v1/events", bytes.NewReader(goodBatch(batch)))
		req.Header.Set("Authorization", "Bearer admin")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST batch %d: %v", batch, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, res.Header, string(body)
	}
	accepted := 0
	acceptedBatch := func(batch int, body string) {
		var out struct{ Accepted, Duplicates int }
		json.Unmarshal([]byte(body), &out)
		if out.Duplicates != 0 {
			t.Errorf("batch %d: %d duplicates, want none (each batch is posted once)", batch, out.Duplicates)
		}
		accepted += out.Accepted - out.Duplicates
	}

	// The store goes away: batches are spooled until the disk is full.
	proxy.setDown(true)
	batch := 0
	var full string
	for ; batch < 200 && full == ""; batch++ {
		status, h, body := post(s.base, batch)
		switch {
		case status == http.StatusAccepted:
			acceptedBatch(batch, body)
		case status == http.StatusServiceUnavailable:
			if h.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After: %s", body)
			}
			if !strings.Contains(body, "disk full at "+spoolDir) {
				t.Fatalf("batch %d: 503 %s; want it to say the disk is full at %s", batch, body, spoolDir)
			}
			full = body
		default:
			t.Fatalf("batch %d: %d %s", batch, status, body)
		}
	}
	if full == "" {
		t.Fatalf("%d batches accepted on a 4 MiB disk without a 503", batch)
	}
	t.Logf("disk full after %d batches (%d events accepted): %s", batch-1, accepted, strings.TrimSpace(full))

	ready := func(base string) (int, string) {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(body)
	}
	// Twice: the second answer is a probe's, a second later.
	for range 2 {
		if status, body := ready(s.base); status != http.StatusServiceUnavailable || !strings.Contains(body, "disk full at "+spoolDir) {
			t.Errorf("/readyz on a full disk: %d %s; want 503 saying the disk is full at %s", status, body, spoolDir)
		}
		time.Sleep(1100 * time.Millisecond)
	}

	// Killed on the full disk, started again: what was acknowledged is
	// read back from the spool (checked by the count at the end).
	s.kill()
	proxy.setDown(false)
	s = startServe(t, args)
	c.base = s.base

	// The store is back: the drain frees the disk, and intake and
	// readiness return without help. A client retries a 503 (after
	// Retry-After; sooner here).
	deadline := time.Now().Add(2 * time.Minute) // the drain of 25,000 events, under -race on a loaded machine
	for retries := 0; ; retries++ {
		status, _, body := post(s.base, batch)
		if status == http.StatusAccepted {
			t.Logf("intake resumed after the restart, %d retries of 503", retries)
			acceptedBatch(batch, body)
			batch++
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("batch %d after the store came back (2 min): %d %s", batch, status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		status, body := ready(s.base)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 2 min after the store came back: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for end := batch + 5; batch < end; batch++ {
		status, _, body := post(s.base, batch)
		if status != http.StatusAccepted {
			t.Fatalf("batch %d after the disk was freed: %d %s", batch, status, body)
		}
		acceptedBatch(batch, body)
	}

	// Every acknowledged event, stored once; none of the refused batch.
	req, _ := http.NewRequest("POST", s.base+"/v1/events?wait=visible", bytes.NewReader(goodBatch(batch)))
	req.Header.Set("Authorization", "Bearer admin")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("last batch with ?wait=visible: %d", res.StatusCode)
	}
	accepted += 1000
	if _, body := c.stats(dayQuery() + "&account=good"); body.Totals.Sent != int64(accepted) {
		t.Errorf("stored %d events, want the %d acknowledged with 202", body.Totals.Sent, accepted)
	}
}
