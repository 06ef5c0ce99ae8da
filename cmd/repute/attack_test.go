package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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

	"repute/api"
	"repute/correlate"
	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/sender"
)

// TestAttacks is issue 14's proof: a real `repute serve` child (its own
// binary, embedded DuckDB, a fresh one per attack so that each peak RSS is
// its own) attacked as an attacker would, while a well-behaved client posts
// 1,000-event batches one after the other. During each attack:
//   - every batch of the well-behaved client gets 202 (its latency, which
//     the issue wants within a second, is logged and quoted in the closing
//     note rather than asserted: no timed tests on a shared machine);
//   - /healthz keeps answering 200;
//   - the child's resident set stays under the attack's bound (sampled
//     from /proc/<pid>/status while the attack runs);
//
// and after it every event the client was told was accepted is stored
// exactly once. The numbers (RSS, p50/p99/max latency, the attackers'
// answers) are logged: go test -run TestAttacks -v.
func TestAttacks(t *testing.T) {
	if os.Getenv(heavyVar) != "1" {
		t.Skipf("heavy test (builds repute and attacks it five ways for %s each): set %s=1 or run make test", attackDuration, heavyVar)
	}
	bin := buildRepute(t)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) { runAttack(t, bin, a) })
	}
}

// attackDuration is how long each attack lasts.
const attackDuration = 20 * time.Second

// attackDuckDBMemory is the embedded store's memory cap in the child, and
// attackGoMemLimit the Go heap's soft cap (GOMEMLIMIT): the RSS bound below
// is about their sum and the runtime's own.
const (
	attackDuckDBMemory = "256MB"
	attackGoMemLimit   = "512MiB"
)

type attack struct {
	name string
	// config, when set, is the child's configuration file.
	config string
	// seed, when set, fills the data directory before the child starts.
	seed func(t *testing.T, data string)
	// run attacks until ctx ends, tallying the answers it gets.
	run func(ctx context.Context, env *attackEnv, tally *tally)
	// check, when set, inspects the attackers' tally and the child
	// afterwards.
	check func(t *testing.T, env *attackEnv, tally map[string]int)
}

// attackEnv is the child under attack.
type attackEnv struct {
	base, data string
	pid        int
}

// attackRSSBound is the most resident memory the child may use during an
// attack: the embedded store's cap (attackDuckDBMemory) and the Go heap,
// which holds the well-behaved client's batches on their way and the
// worst attack's request bodies in flight (max_inflight_bytes, 256 MiB),
// kept near attackGoMemLimit by the collector.
const attackRSSBound = 1 << 30

var attacks = []attack{
	{name: "slowloris", run: slowloris},
	// The flood is another tenant's (its own key, so its own key limit):
	// one account's runaway client must not starve the others.
	{name: "large_bodies", config: "accounts:\n  - name: heavy\n    keys: [\"" + api.HashKey(heavyKey) + "\"]\n",
		run: largeBodies, check: checkLargeBodies},
	{name: "invalid_keys", run: invalidKeys, check: checkInvalidKeys},
	{name: "stats_30_years", seed: seedMillion, run: statsThirtyYears, check: checkStats},
	// The pixel's limit lowered so that the flood passes it on any
	// machine (the default, 2,000/s, is for mailbox providers' proxies).
	{name: "pixel_flood", config: "rate_limits:\n  pixel: {rate: 500, burst: 1000}\n",
		run: pixelFlood, check: checkPixels},
}

// buildRepute builds the repute binary (without the race detector: the
// memory measured is the product's).
func buildRepute(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "repute")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// tally counts answers by kind, safely from many goroutines.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[key]++
}

func (t *tally) snapshot() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

// answer is the tally key of a client's result: the status code, with
// " without Retry-After" on a 429 or 503 that lacks it, or the error.
func answer(res *http.Response, err error) string {
	if err != nil {
		return "error: " + errText(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	key := strconv.Itoa(res.StatusCode)
	if (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) &&
		res.Header.Get("Retry-After") == "" {
		key += " without Retry-After"
	}
	return key
}

func runAttack(t *testing.T, bin string, a attack) {
	data := filepath.Join(t.TempDir(), "data")
	if a.seed != nil {
		a.seed(t, data)
	}
	args := []string{"--duckdb-memory-limit", attackDuckDBMemory}
	if a.config != "" {
		file := filepath.Join(t.TempDir(), "repute.yaml")
		if err := os.WriteFile(file, []byte(a.config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", file)
	}
	base, pid := startBinary(t, bin, data, args...)
	env := &attackEnv{base: base, data: data, pid: pid}

	ctx, stop := context.WithTimeout(context.Background(), attackDuration)
	defer stop()
	var (
		wg      sync.WaitGroup
		tl      tally
		rssPeak atomic.Int64
		health  tally
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		a.run(ctx, env, &tl)
	}()
	go func() { // the child's resident set, sampled
		defer wg.Done()
		for ctx.Err() == nil {
			rssPeak.Store(max(rssPeak.Load(), procStatus(t, pid, "VmRSS:")))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() { // /healthz, with a client of its own
		defer wg.Done()
		c := &http.Client{Timeout: 2 * time.Second}
		for ctx.Err() == nil {
			res, err := c.Get(base + "/healthz")
			if ctx.Err() == nil {
				health.add(answer(res, err))
			}
			time.Sleep(250 * time.Millisecond)
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
		req, _ := http.NewRequest("POST", base+"/v1/events", bytes.NewReader(goodBatch(batch)))
		req.Header.Set("Authorization", "Bearer admin")
		start := time.Now()
		res, err := good.Do(req)
		if err != nil {
			t.Fatalf("well-behaved batch %d: %v", batch, err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		latencies = append(latencies, time.Since(start))
		if res.StatusCode != http.StatusAccepted {
			failures = append(failures, fmt.Sprintf("batch %d: %d %s", batch, res.StatusCode, raw))
			continue
		}
		var out struct{ Accepted, Duplicates int }
		json.Unmarshal(raw, &out)
		accepted += out.Accepted - out.Duplicates
	}
	stop()
	wg.Wait()

	slices.Sort(latencies)
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	t.Logf("attackers' answers: %v", tl.snapshot())
	t.Logf("/healthz: %v", health.snapshot())
	t.Logf("well-behaved client: %d batches, latency p50 %v p99 %v max %v",
		len(latencies), p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), p(1).Round(time.Millisecond))
	t.Logf("child RSS during the attack: at most %.0f MiB (bound %d MiB; VmHWM over its life %.0f MiB)",
		float64(rssPeak.Load())/(1<<20), attackRSSBound>>20, float64(procStatus(t, pid, "VmHWM:"))/(1<<20))

	for _, f := range failures {
		t.Errorf("well-behaved client did not get 202: %s", f)
	}
	for k, n := range health.snapshot() {
		if k != "200" {
			t.Errorf("/healthz answered %s %d times during the attack", k, n)
		}
	}
	if rss := rssPeak.Load(); rss >= attackRSSBound {
		t.Errorf("child RSS reached %d MiB, want under %d MiB", rss>>20, attackRSSBound>>20)
	}
	for k, n := range tl.snapshot() {
		if strings.Contains(k, "without Retry-After") {
			t.Errorf("attackers: %d answers %s", n, k)
		}
	}
	if a.check != nil {
		a.check(t, env, tl.snapshot())
	}
	checkStoredOnce(t, base, good, len(latencies), accepted)
}

// checkStoredOnce posts a last batch with ?wait=visible and checks that
// the store holds exactly the events the well-behaved client was told were
// accepted (every event is its own "sent" message of account good).
func checkStoredOnce(t *testing.T, base string, good *http.Client, batch, accepted int) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/events?wait=visible", bytes.NewReader(goodBatch(batch)))
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

// procStatus returns a "kB" field of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Errorf("/proc/%d/status: %v", pid, err)
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Errorf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	t.Errorf("no %s in /proc/%d/status", field, pid)
	return 0
}

// slowloris opens 500 connections that trickle one byte a second: half
// send their headers so, half send complete headers (with a valid key)
// and then their body so. Each reconnects when the server cuts it.
func slowloris(ctx context.Context, env *attackEnv, tl *tally) {
	addr := strings.TrimPrefix(env.base, "http://")
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var head, slow string
			if i%2 == 0 {
				head = "POST /v1/events HTTP/1.1\r\nHost: repute\r\nAuthorization: Bearer admin\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
			} else {
				head = ""
				slow = "GET /v1/stats HTTP/1.1\r\nHost: repute\r\nAuthorization: Bearer admin\r\nX-Padding: " + strings.Repeat("a", 1000) + "\r\n\r\n"
			}
			for ctx.Err() == nil {
				tl.add(trickle(ctx, addr, head, slow))
			}
		}()
	}
	wg.Wait()
}

// trickle connects to addr, writes head at once and then trickle one byte
// a second until the server closes the connection or ctx ends; it returns
// how the connection ended.
func trickle(ctx context.Context, addr, head, trickle string) string {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return "ended"
		}
		time.Sleep(time.Second)
		return "dial error: " + errText(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if head != "" {
		if _, err := conn.Write([]byte(head)); err != nil {
			return "cut"
		}
	}
	if trickle == "" {
		trickle = strings.Repeat("[", 100000)
	}
	for i := 0; i < len(trickle); i++ {
		if _, err := conn.Write([]byte{trickle[i]}); err != nil {
			if ctx.Err() != nil {
				return "ended"
			}
			return "cut"
		}
		select {
		case <-ctx.Done():
			return "ended"
		case <-time.After(time.Second):
		}
	}
	return "sent whole"
}

// heavyKey is the key of account heavy, the large bodies' sender.
const heavyKey = "rk_heavy-attack-test-key"

// largeBodies is 200 clients of account heavy posting a valid 16 MiB array again and again
// (a retry storm: the first is stored, later ones are duplicates, so what
// is measured is the HTTP layer's memory), 100 ms after each answer,
// ignoring Retry-After.
func largeBodies(ctx context.Context, env *attackEnv, tl *tally) {
	heavy := heavyBody(16 << 20)
	// The server answers 503 and closes the connection while the client
	// is still sending the body: the client may see the reset rather than
	// the answer (tallied as an error).
	flood(ctx, 200, 3*time.Minute, 100*time.Millisecond, tl, func() *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "POST", env.base+"/v1/events", bytes.NewReader(heavy))
		req.Header.Set("Authorization", "Bearer "+heavyKey)
		return req
	})
}

func checkLargeBodies(t *testing.T, _ *attackEnv, tl map[string]int) {
	// Under the flood most large bodies are refused (503, 429 past the
	// account's key limit, or a reset while they are still being sent)
	// and some are taken when the budget allows: all are right; nothing
	// else is.
	for k, n := range tl {
		if k != "202" && k != "503" && k != "429" && !strings.HasPrefix(k, "error: ") {
			t.Errorf("large bodies: %d answered %s", n, k)
		}
	}
}

// invalidKeys is 64 clients posting small batches with made-up keys as
// fast as they are answered.
func invalidKeys(ctx context.Context, env *attackEnv, tl *tally) {
	flood(ctx, 64, 10*time.Second, 0, tl, func() *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "POST", env.base+"/v1/events",
			strings.NewReader(`[{"account":"x","kind":"sent","recipient":"a@b.example"}]`))
		req.Header.Set("Authorization", "Bearer guess-"+strconv.FormatUint(rand.Uint64(), 36))
		return req
	})
}

// checkInvalidKeys: no made-up key let in, and the address locked out
// (auth_lockout: 429 after 20 failures a minute).
func checkInvalidKeys(t *testing.T, _ *attackEnv, tl map[string]int) {
	for k, n := range tl {
		if strings.HasPrefix(k, "2") {
			t.Errorf("a made-up key was let in: %d answers %s", n, k)
		}
	}
	if tl["429"] == 0 {
		t.Errorf("no 429: the lock-out never came: %v", tl)
	}
}

// seedMillion stores a million events over 26 years, 7 providers, in the
// embedded store of data before the child opens it. (Intake takes times
// from 2000 on, older being a likely mistake, so the million spans 2000 to
// now, inside the 30 years asked for.)
func seedMillion(t *testing.T, data string) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := duckdb.Open(filepath.Join(data, "repute.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	isps := []string{"gmail.com", "outlook.com", "yahoo.com", "icloud.com", "qq.com", "163.com", "example.net"}
	start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	span := time.Since(start) - time.Hour
	began := time.Now()
	for b := range 100 {
		events := make([]metrics.Event, 10000)
		for i := range events {
			n := b*len(events) + i
			rcpt := fmt.Sprintf("u%d@%s", n, isps[n%len(isps)])
			e := metrics.Event{Account: "history", Kind: metrics.KindSent,
				Time:      start.Add(time.Duration(rand.Int64N(int64(span)))),
				Recipient: rcpt, SenderDomain: "old.example", MessageID: fmt.Sprintf("<%d@old.example>", n)}
			if err := e.Normalize(metrics.NewISPMap(nil), time.Now()); err != nil {
				t.Fatal(err)
			}
			events[i] = e
		}
		if err := st.Append(context.Background(), events); err != nil {
			t.Fatalf("seeding batch %d: %v", b, err)
		}
	}
	t.Logf("seeded 1,000,000 events over 26 years in %v", time.Since(began).Round(time.Millisecond))
}

// statsThirtyYears is 8 clients asking for 30 years of statistics by
// provider and day, one after the other each.
func statsThirtyYears(ctx context.Context, env *attackEnv, tl *tally) {
	to := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	from := to.AddDate(-30, 0, 0)
	u := fmt.Sprintf("%s/v1/stats?from=%s&to=%s&group_by=isp,day", env.base, from.Format(time.RFC3339), to.Format(time.RFC3339))
	c := &http.Client{Timeout: 5 * time.Minute}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
				req.Header.Set("Authorization", "Bearer admin")
				res, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						tl.add(answer(nil, err))
					}
					continue
				}
				var body struct {
					Groups    []json.RawMessage `json:"groups"`
					Truncated bool              `json:"truncated"`
				}
				json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				key := strconv.Itoa(res.StatusCode)
				if res.StatusCode == http.StatusOK {
					key += fmt.Sprintf(" groups=%d truncated=%v", len(body.Groups), body.Truncated)
				}
				if ctx.Err() == nil {
					tl.add(key)
				}
			}
		}()
	}
	wg.Wait()
}

func checkStats(t *testing.T, _ *attackEnv, tl map[string]int) {
	answered := 0
	for k, n := range tl {
		if strings.HasPrefix(k, "200") || strings.HasPrefix(k, "503") {
			answered += n
		}
	}
	if answered == 0 {
		t.Errorf("no 30-year query was answered (200, or 503 past the query deadline): %v", tl)
	}
}

// pixelFlood is 64 clients fetching tracking pixels of valid tokens from
// one address as fast as they are answered.
func pixelFlood(ctx context.Context, env *attackEnv, tl *tally) {
	ks, _, _, err := loadSigningKeys(secret{}, env.data, os.Getenv)
	if err != nil {
		tl.add("no signing keys: " + err.Error())
		return
	}
	signer, err := sender.NewTrackingSigner(correlate.Keys(ks))
	if err != nil {
		tl.add("no signer: " + err.Error())
		return
	}
	flood(ctx, 64, 10*time.Second, 0, tl, func() *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "GET", env.base+"/t/o/"+signer.OpenToken(correlate.NewRef())+".gif", nil)
		req.Header.Set("User-Agent", "Mozilla/5.0 (flood)")
		return req
	})
}

// flood runs clients goroutines, each sending newRequest's requests one
// after the other (pause between an answer and the next request) until
// ctx ends, and tallies the answers that came while ctx lasted.
func flood(ctx context.Context, clients int, timeout, pause time.Duration, tl *tally, newRequest func() *http.Request) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := c.Do(newRequest())
				if ctx.Err() == nil {
					tl.add(answer(res, err))
				} else if err == nil {
					res.Body.Close()
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		})
	}
	wg.Wait()
}

// checkPixels: every pixel answered with the image (over the limit too: a
// broken image in a person's mail is worse than an open not counted), and
// the flood limited.
func checkPixels(t *testing.T, env *attackEnv, tl map[string]int) {
	for k, n := range tl {
		if k != "200" {
			t.Errorf("pixel flood: %d answered %s, want the GIF", n, k)
		}
	}
	if m := trackingCounters(t, env.base); m["dropped{reason=rate_limited}"] == 0 {
		t.Errorf("the pixel flood was never limited: %v", m)
	}
}
