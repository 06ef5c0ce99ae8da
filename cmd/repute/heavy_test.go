package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heavyVar enables TestServeBoundedMemoryUnderLargeBodies; scripts/test.sh
// (make test) sets it.
const heavyVar = "REPUTE_HEAVY_TESTS"

// The "done when": a real `repute serve` (its own binary, embedded
// DuckDB) takes 200 concurrent 16 MiB bodies while a well-behaved client
// posts 1,000-event batches: the well-behaved client keeps getting 202, the
// child's peak RSS stays under 1 GiB, and every event it was told was
// accepted is stored once.
//
// The large bodies are one valid 16 MiB array of about 92,000 events, the
// same each time (a retry storm): the first is stored, later ones are
// duplicates, so the spool bound plays no part and what is measured is the
// HTTP layer's memory. The flood clients post again 100 ms after each
// answer, ignoring Retry-After, to keep the pressure up.
func TestServeBoundedMemoryUnderLargeBodies(t *testing.T) {
	if os.Getenv(heavyVar) != "1" {
		t.Skipf("heavy test (builds repute, posts 200 × 16 MiB for %s): set %s=1 or run make test", heavyDuration, heavyVar)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "repute")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	base, pid := startBinary(t, bin, filepath.Join(dir, "data"))

	heavy := heavyBody(16 << 20)
	t.Logf("large body: %d bytes", len(heavy))

	ctx, stop := context.WithTimeout(context.Background(), heavyDuration)
	defer stop()
	var (
		wg      sync.WaitGroup
		statusM sync.Mutex
		statuss = map[string]int{}
	)
	flood := &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/events", bytes.NewReader(heavy))
				req.Header.Set("Authorization", "Bearer admin")
				res, err := flood.Do(req)
				key := "error"
				if err != nil {
					// The server answers 503 and closes the connection
					// while the client is still sending the body: the
					// client may see the reset rather than the answer.
					key = "error: " + errText(err)
				} else {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					key = strconv.Itoa(res.StatusCode)
					if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "" {
						key += " without Retry-After"
					}
				}
				if ctx.Err() == nil {
					statusM.Lock()
					statuss[key]++
					statusM.Unlock()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}

	// The Go heap's share of the peak, from /metrics, for the log.
	var heapPeak atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			heapPeak.Store(max(heapPeak.Load(), goHeap(base)))
			time.Sleep(300 * time.Millisecond)
		}
	}()

	// The well-behaved client: 1,000-event batches, one after the other.
	good := &http.Client{Timeout: time.Minute}
	var (
		latencies []time.Duration
		accepted  int
		failures  []string
	)
	for batch := 0; ctx.Err() == nil; batch++ {
		body := goodBatch(batch)
		req, _ := http.NewRequest("POST", base+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer admin")
		start := time.Now()
		res, err := good.Do(req)
		if err != nil {
			t.Fatalf("well-behaved batch %d: %v", batch, err)
		}
		var out struct{ Accepted, Duplicates int }
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		latencies = append(latencies, time.Since(start))
		if res.StatusCode != http.StatusAccepted {
			failures = append(failures, fmt.Sprintf("batch %d: %d %s", batch, res.StatusCode, raw))
			continue
		}
		json.Unmarshal(raw, &out)
		accepted += out.Accepted - out.Duplicates
	}
	stop()
	wg.Wait()
	peak := vmHWM(t, pid)

	slices.Sort(latencies)
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	t.Logf("large bodies' answers: %v", statuss)
	t.Logf("well-behaved client: %d batches, %d events accepted, latency p50 %v p90 %v max %v",
		len(latencies), accepted, p(0.5).Round(time.Millisecond), p(0.9).Round(time.Millisecond), p(1).Round(time.Millisecond))
	t.Logf("child peak RSS (VmHWM): %.0f MiB (Go heap at most %.0f MiB)", float64(peak)/(1<<20), float64(heapPeak.Load())/(1<<20))

	for _, f := range failures {
		t.Errorf("well-behaved client did not get 202: %s", f)
	}
	if statuss["202"] == 0 {
		t.Errorf("no large body was accepted: %v", statuss)
	}
	for k := range statuss {
		if strings.Contains(k, "without") {
			t.Errorf("large bodies: %d answered %s", statuss[k], k)
		}
	}
	if peak >= 1<<30 {
		t.Errorf("child peak RSS %d MiB, want under 1024 MiB", peak>>20)
	}

	// Every accepted event of the well-behaved client, stored once: a last
	// batch with ?wait=visible, then the counts (every event is its own
	// "sent" message).
	req, _ := http.NewRequest("POST", base+"/v1/events?wait=visible", bytes.NewReader(goodBatch(len(latencies))))
	req.Header.Set("Authorization", "Bearer admin")
	res, err := good.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("last batch with ?wait=visible: %d", res.StatusCode)
	}
	accepted += 1000
	c := client{t, base, "admin"}
	_, body := c.stats(dayQuery() + "&account=good")
	if got := body.Totals.Sent; got != int64(accepted) {
		t.Errorf("stored %d of the well-behaved client's events, want the %d it was told were accepted", got, accepted)
	}
}

const heavyDuration = 30 * time.Second

// startBinary runs bin serve with an embedded store in data and returns
// its base URL and process id; the process is killed when the test ends.
func startBinary(t *testing.T, bin, data string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data", data)
	cmd.Env = append(os.Environ(), "REPUTE_ADMIN_KEY=admin")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child stderr (end):\n%s", tail(stderr.String(), 4000))
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child banner: %v", err)
	}
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("child banner %q", line)
	}
	go io.Copy(io.Discard, stdout)
	return strings.Fields(rest)[0], cmd.Process.Pid
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// vmHWM returns the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("peak RSS: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// errText is the last part of a client error, without addresses.
func errText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// goHeap returns go_memstats_heap_alloc_bytes from base's /metrics, or 0.
func goHeap(base string) int64 {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_alloc_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	return 0
}

// heavyBody returns a JSON array of distinct events of account "heavy" of
// at most size bytes.
func heavyBody(size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteByte('[')
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"account":"heavy","kind":"sent","time":%q,"recipient":"user%d@gmail.com",`+
			`"sender_domain":"news.example.com","campaign":"storm","message_id":"<%d.storm@example.com>"}`,
			testDay.Add(time.Duration(i%86400)*time.Second).Format(time.RFC3339), i, i)
		if b.Len()+len(item)+2 > size {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// goodBatch returns the well-behaved client's batch n: 1,000 distinct
// "sent" events of account "good".
func goodBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"account":"good","kind":"sent","time":%q,"recipient":"r%d.%d@outlook.com",`+
			`"sender_domain":"mail.good.example","campaign":"steady","message_id":"<%d.%d@good.example>"}`,
			testDay.Add(time.Duration(i)*time.Second).Format(time.RFC3339), n, i, n, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}
