package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"repute/intake"
	"repute/metrics"
)

// limitServer serves the API with the given body limits over a real
// connection (deadlines need one).
func limitServer(t *testing.T, sub Submitter, opts Options) *httptest.Server {
	t.Helper()
	keys, _ := NewKeys(adminKey, nil)
	opts.Keys, opts.Submitter, opts.Stats = keys, sub, &fakeStats{}
	opts.Now = func() time.Time { return testNow }
	h, err := NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, body io.Reader, length int64) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/events", body)
	req.ContentLength = length
	req.Header.Set("Authorization", "Bearer "+adminKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// batch returns a JSON array of n events, padded with spaces to size
// bytes when size is larger.
func batch(n, size int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = event("sent", "acme", fmt.Sprintf("u%d@example.com", i))
	}
	s := "[" + strings.Join(items, ",") + "]"
	return s + strings.Repeat(" ", max(size-len(s), 0))
}

// A body that would pass the in-flight budget gets 503 with Retry-After
// at once, before it is read; small bodies still pass while large ones
// hold the budget; the budget is back once the handler is done.
func TestInflightBudget(t *testing.T) {
	const large = 1200 << 10
	// 2 MiB of bodies, 1.75 MiB of it for large ones.
	srv := limitServer(t, &fakeSubmitter{}, Options{MaxInflightBytes: InflightBytesPerBodyByte * 2 << 20, MaxBodyBytes: 4 << 20})

	// A large body, sent slowly, holds its share of the budget.
	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		res, body := post(t, srv.URL, pr, large)
		done <- fmt.Sprint(res.StatusCode, " ", body)
	}()
	body := batch(2, large)
	io.WriteString(pw, body[:1000])
	time.Sleep(100 * time.Millisecond) // the handler is reading

	// Another large body does not fit: 503 without its body being read.
	start := time.Now()
	res, raw := post(t, srv.URL, strings.NewReader(batch(2, large)), large)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(raw, "max-inflight-bytes") {
		t.Errorf("second large body: %d %q, Retry-After %q; want 503 with Retry-After", res.StatusCode, raw, res.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the 503 took %v", d)
	}
	// A small one still fits, in the part kept for small bodies.
	if res, raw := post(t, srv.URL, strings.NewReader(batch(3, 0)), int64(len(batch(3, 0)))); res.StatusCode != http.StatusAccepted {
		t.Errorf("small body beside a large one: %d %s, want 202", res.StatusCode, raw)
	}
	// A chunked large body is refused once it reads past what is left.
	res, raw = post(t, srv.URL, io.MultiReader(strings.NewReader(batch(2, large))), -1)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("chunked large body: %d %q; want 503 with Retry-After", res.StatusCode, raw)
	}

	io.WriteString(pw, body[1000:])
	pw.Close()
	if got := <-done; !strings.HasPrefix(got, "202") {
		t.Fatalf("the slow large body: %s", got)
	}
	// Released: the large body that was refused fits now.
	if res, raw := post(t, srv.URL, strings.NewReader(batch(2, large)), large); res.StatusCode != http.StatusAccepted {
		t.Errorf("after the budget was released: %d %s", res.StatusCode, raw)
	}
}

// A body that stays under the minimum rate after the grace period is cut
// off with 408; one that keeps the rate is read.
func TestSlowBodyIs408(t *testing.T) {
	srv := limitServer(t, &fakeSubmitter{}, Options{MinBodyRate: 4 << 10, BodyRateGrace: 300 * time.Millisecond})
	body := batch(50, 0)

	// A slow loris: a few bytes, then a trickle far under 4 KiB/s.
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for i := 0; i < len(body); i += 10 {
			if _, err := io.WriteString(pw, body[i:min(i+10, len(body))]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	res, raw := post(t, srv.URL, pr, int64(len(body)))
	pr.Close()
	if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(raw, "min-body-rate") {
		t.Errorf("slow body: %d %s, want 408", res.StatusCode, raw)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut off after %v, want soon after the 300ms grace", d)
	}

	// The same body at a good pace, in pieces with pauses, passes.
	pr2, pw2 := io.Pipe()
	go func() {
		defer pw2.Close()
		for i := 0; i < len(body); i += 1000 {
			io.WriteString(pw2, body[i:min(i+1000, len(body))])
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if res, raw := post(t, srv.URL, pr2, int64(len(body))); res.StatusCode != http.StatusAccepted {
		t.Errorf("body at 50 KB/s: %d %s, want 202", res.StatusCode, raw)
	}
}

// slowSubmitter takes its time and fails if the request's context ends
// meanwhile.
type slowSubmitter struct{ d time.Duration }

func (s slowSubmitter) Submit(ctx context.Context, events []metrics.Event) (intake.Result, error) {
	select {
	case <-time.After(s.d):
		return intake.Result{}, nil
	case <-ctx.Done():
		return intake.Result{}, ctx.Err()
	}
}

// The read deadlines that enforce the body rate end with the body: a
// handler that works on past them keeps its request context.
func TestRateDeadlineEndsWithTheBody(t *testing.T) {
	srv := limitServer(t, slowSubmitter{600 * time.Millisecond}, Options{MinBodyRate: 1 << 20, BodyRateGrace: 100 * time.Millisecond})
	for _, length := range []int64{int64(len(batch(5, 0))), -1} {
		if res, raw := post(t, srv.URL, strings.NewReader(batch(5, 0)), length); res.StatusCode != http.StatusAccepted {
			t.Errorf("Content-Length %d: %d %s, want 202", length, res.StatusCode, raw)
		}
	}
}

// Posting a large body allocates a small multiple of its size: it is read
// at its exact length, decoded into one slice sized from the count of its
// objects, and validated in place.
func TestPostMemoryIsASmallMultipleOfTheBody(t *testing.T) {
	items := make([]string, 20_000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"account":"acme","kind":"sent","time":"2026-11-25T10:00:00Z","recipient":"user%d@gmail.com",`+
			`"sender_domain":"news.example.com","campaign":"winter","message_id":"<%d.x@example.com>"}`, i, i)
	}
	body := "[" + strings.Join(items, ",") + "]"
	sub := &countingSubmitter{}
	keys, _ := NewKeys(adminKey, nil)
	h, err := NewHandler(Options{Keys: keys, Submitter: sub, Stats: &fakeStats{}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	do(t, h, "POST", "/v1/events", adminKey, "", body) // warm up
	sub.n = 0
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, raw := do(t, h, "POST", "/v1/events", adminKey, "", body)
	runtime.ReadMemStats(&after)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", res.StatusCode, raw)
	}
	ratio := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(body))
	t.Logf("the handler allocated %.1f× the body (%d bytes, %d events)", ratio, len(body), sub.n)
	if sub.n != 20_000 {
		t.Errorf("%d events submitted", sub.n)
	}
	if ratio > 5 {
		t.Errorf("the handler allocated %.1f× the body, want at most 5×", ratio)
	}
}

// countingSubmitter counts events and keeps none.
type countingSubmitter struct{ n int }

func (c *countingSubmitter) Submit(_ context.Context, events []metrics.Event) (intake.Result, error) {
	c.n += len(events)
	return intake.Result{}, nil
}

// A streaming handler that calls StreamWithoutWriteTimeout outlives the
// server's write timeout; one that does not is cut off.
func TestStreamWithoutWriteTimeout(t *testing.T) {
	stream := func(exempt bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if exempt && !StreamWithoutWriteTimeout(w) {
				t.Error("StreamWithoutWriteTimeout: not supported")
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 6 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				http.NewResponseController(w).Flush()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/exempt", stream(true))
	mux.Handle("/plain", stream(false))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.WriteTimeout = 250 * time.Millisecond
	srv.Start()
	defer srv.Close()

	events := func(path string) int {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			return 0
		}
		defer res.Body.Close()
		n := 0
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				n++
			}
		}
		return n
	}
	if n := events("/exempt"); n != 6 {
		t.Errorf("exempt stream: %d events, want all 6", n)
	}
	if n := events("/plain"); n >= 6 {
		t.Errorf("plain stream: %d events past the write timeout, want it cut off", n)
	}
}
