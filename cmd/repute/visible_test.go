package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"repute/metrics"
)

// ?wait=visible gives read-after-write: once the 202 is in, the stats count
// the batch. Without it the 202 comes first and the events follow within
// the drain delay, which is logged (README quotes it).
func TestWaitVisibleReadsAfterWrite(t *testing.T) {
	cfg := defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	base := startApp(t, cfg)
	c := client{t, base, "admin"}

	postRaw := func(query string, events []metrics.Event) int {
		body, _ := json.Marshal(events)
		req, _ := http.NewRequest("POST", base+"/v1/events"+query, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer admin")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	all := benchEvents(40_000, testDay)
	var want metrics.Counts
	var waited []time.Duration
	for i := 0; i < 20_000; i += 1000 {
		start := time.Now()
		if status := postRaw("?wait=visible", all[i:i+1000]); status != http.StatusAccepted {
			t.Fatalf("POST ?wait=visible: %d", status)
		}
		waited = append(waited, time.Since(start))
		want = expectedCounts(all[:i+1000], "")
		if _, body := c.stats(dayQuery()); body.Totals.Counts != want {
			t.Fatalf("right after the 202 of ?wait=visible: %+v, want %+v", body.Totals.Counts, want)
		}
	}

	// Without the wait: how long from the 202 until the stats count it.
	var delays []time.Duration
	for i := 20_000; i < len(all); i += 1000 {
		if status := postRaw("", all[i:i+1000]); status != http.StatusAccepted {
			t.Fatalf("POST: %d", status)
		}
		accepted := time.Now()
		want = expectedCounts(all[:i+1000], "")
		for {
			if _, body := c.stats(dayQuery()); body.Totals.Counts == want {
				break
			}
			if time.Since(accepted) > 30*time.Second {
				t.Fatalf("not visible 30 s after the 202")
			}
			time.Sleep(5 * time.Millisecond)
		}
		delays = append(delays, time.Since(accepted))
	}
	slices.Sort(waited)
	slices.Sort(delays)
	t.Logf("1,000-event batches on DuckDB: ?wait=visible answers in %v (median), %v (max); without it, queryable %v (median), %v (max) after the 202",
		waited[len(waited)/2].Round(time.Millisecond), waited[len(waited)-1].Round(time.Millisecond),
		delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
}
