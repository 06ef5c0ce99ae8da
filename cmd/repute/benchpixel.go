package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"repute/correlate"
	"repute/metrics"
	"repute/sender"
	"repute/track"
)

const benchPixelUsage = `Usage: repute bench pixel [flags]

Measures the tracking pixel (GET /t/o/TOKEN.gif) under wrk, in one run, against
  - a bare net/http server answering the same 43 bytes (in this process),
  - nginx's empty_gif (a minimal configuration in a temporary directory),
  - repute serve (this binary, DuckDB in a temporary directory, with sends
    created first so that the tokens resolve),
each with wrk -t THREADS -c CONNECTIONS -d DURATION --latency and one Lua
script that spreads the requests over the tokens, ROUNDS times in
alternating order, after a 2 s warm-up run of each that is not counted. It prints requests/s and
p99 latency of each and the ratio repute/bare (issue 12's target: ≥ 0.9),
then waits for repute's tracking queue to drain and checks that every hit is
accounted for: repute_tracking_hits_total = events + duplicates + dropped.
Needs wrk and nginx (Debian's wrk and nginx-light; scripts/testenv.sh
install brings them).

Flags:
`

func runBenchPixel(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench pixel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchPixelUsage); fs.PrintDefaults() }
	duration := fs.Duration("duration", 10*time.Second, "wrk's -d for each server")
	conns := fs.Int("connections", 64, "wrk's -c")
	threads := fs.Int("threads", 2, "wrk's -t")
	sends := fs.Int("sends", 1000, "sends created in repute, one pixel token each")
	rounds := fs.Int("rounds", 2, "wrk runs per server, alternating the order (ABC CBA …) so that a change of load on the machine weighs on all alike")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *rounds < 1 || *sends < 1 {
		fmt.Fprintln(stderr, "repute bench pixel: --rounds and --sends must be positive")
		return 2
	}
	if err := benchPixel(stdout, *duration, *conns, *threads, *sends, *rounds); err != nil {
		fmt.Fprintln(stderr, "repute bench pixel:", err)
		return 1
	}
	return 0
}

// wrkResult is what the benchmark reads from wrk's report.
type wrkResult struct {
	rps  float64
	p99  time.Duration
	reqs int64
	errs string // non-2xx or socket errors, as wrk prints them
}

func benchPixel(w io.Writer, d time.Duration, conns, threads, nSends, rounds int) error {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk not found: apt-get install wrk (or scripts/testenv.sh install)")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return errors.New("nginx not found: apt-get install nginx-light (or scripts/testenv.sh install)")
		}
		nginx = "/usr/sbin/nginx"
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repute-bench-pixel-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// repute serve first: its sends must be stored before the run.
	signingKey := "bench-pixel-signing-key-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	reputeAddr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(dir, "repute.yaml")
	os.WriteFile(cfgFile, []byte("signing_keys_env: REPUTE_BENCH_SIGNING_KEYS\nlog_level: warn\n# wrk fetches from one address: the per-address pixel limit is off here\nrate_limits: {pixel: {rate: 0}}\n"), 0o600)
	serve := exec.Command(self, "serve", "--config", cfgFile, "--listen", reputeAddr, "--data", filepath.Join(dir, "data"))
	serve.Env = append(os.Environ(), "REPUTE_ADMIN_KEY=bench", "REPUTE_BENCH_SIGNING_KEYS="+signingKey)
	var serveLog bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		return err
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- serve.Wait() }()
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-serveDone:
		case <-time.After(60 * time.Second):
			serve.Process.Kill()
			<-serveDone
		}
	}()
	reputeBase := "http://" + reputeAddr
	if err := waitHTTP(reputeBase+"/healthz", serveDone); err != nil {
		return fmt.Errorf("repute serve: %w\n%s", err, serveLog.String())
	}
	signer, err := sender.NewTrackingSigner(correlate.Keys{Sign: []byte(signingKey)})
	if err != nil {
		return err
	}
	paths, err := benchSends(reputeBase, "bench", signer, nSends)
	if err != nil {
		return err
	}
	script := filepath.Join(dir, "paths.lua")
	var lua strings.Builder
	lua.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&lua, "  %q,\n", p)
	}
	lua.WriteString("}\nlocal n = #paths\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(nil, paths[(i % n) + 1])\nend\n")
	if err := os.WriteFile(script, []byte(lua.String()), 0o600); err != nil {
		return err
	}

	// The bare net/http server: the same 43 bytes, nothing else.
	bareLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		w.Write(track.GIF)
	})}
	go bare.Serve(bareLn)
	defer bare.Close()

	// nginx's empty_gif, as the current user, everything in dir.
	nginxAddr, err := freeAddr()
	if err != nil {
		return err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // or the workers run as nobody
	}
	conf := fmt.Sprintf(`%sworker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  server {
    listen %[3]s;
    location / { empty_gif; add_header Cache-Control no-store; }
  }
}
`, user, dir, nginxAddr)
	nginxConf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(nginxConf, []byte(conf), 0o600); err != nil {
		return err
	}
	ngx := exec.Command(nginx, "-c", nginxConf, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"))
	var ngxLog bytes.Buffer
	ngx.Stdout, ngx.Stderr = &ngxLog, &ngxLog
	if err := ngx.Start(); err != nil {
		return err
	}
	ngxDone := make(chan error, 1)
	go func() { ngxDone <- ngx.Wait() }()
	defer func() {
		ngx.Process.Signal(syscall.SIGQUIT) // graceful stop of the master and its workers
		select {
		case <-ngxDone:
		case <-time.After(10 * time.Second):
			ngx.Process.Kill()
			<-ngxDone
		}
	}()
	if err := waitHTTP("http://"+nginxAddr+"/", ngxDone); err != nil {
		return fmt.Errorf("nginx: %w\n%s", err, ngxLog.String())
	}

	fmt.Fprintf(w, "wrk -t%d -c%d -d%s --latency, %d pixel tokens round robin (one Lua script for all three), %d round(s), the order reversed each round\n",
		threads, conns, d, len(paths), rounds)
	fmt.Fprintf(w, "%-22s %12s %10s %10s\n", "server", "requests/s", "p99", "requests")
	servers := []struct{ name, base string }{
		{"net/http (bare)", "http://" + bareLn.Addr().String()},
		{"nginx empty_gif", "http://" + nginxAddr},
		{"repute serve", reputeBase},
	}
	// A warm-up run each (2 s, not counted): repute's worker caches the
	// sends of the tokens on their first hits, connections and buffers
	// are made; then the rounds measure the steady state.
	for _, s := range servers {
		if _, err := runWrk(wrk, script, s.base, 2*time.Second, conns, threads); err != nil {
			return fmt.Errorf("%s (warm-up): %w", s.name, err)
		}
	}
	type total struct {
		rps    float64
		p99    time.Duration
		reqs   int64
		rounds int
	}
	totals := map[string]*total{}
	for round := range rounds {
		for i := range servers {
			s := servers[i]
			if round%2 == 1 {
				s = servers[len(servers)-1-i]
			}
			r, err := runWrk(wrk, script, s.base, d, conns, threads)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			t := totals[s.name]
			if t == nil {
				t = &total{}
				totals[s.name] = t
			}
			t.rps += r.rps
			t.p99 = max(t.p99, r.p99)
			t.reqs += r.reqs
			t.rounds++
			fmt.Fprintf(w, "%-22s %12.0f %10s %10d%s\n", s.name, r.rps, r.p99, r.reqs, r.errs)
		}
	}
	if rounds > 1 {
		fmt.Fprintf(w, "mean of the rounds (p99: the worst round):\n")
		for _, s := range servers {
			t := totals[s.name]
			fmt.Fprintf(w, "%-22s %12.0f %10s %10d\n", s.name, t.rps/float64(t.rounds), t.p99, t.reqs)
		}
	}
	mean := func(name string) float64 { return totals[name].rps / float64(totals[name].rounds) }
	fmt.Fprintf(w, "repute/bare: %.2f (target ≥ 0.90)\n", mean("repute serve")/mean("net/http (bare)"))
	fmt.Fprintf(w, "repute/nginx: %.2f\n", mean("repute serve")/mean("nginx empty_gif"))

	// Every hit accounted for, once the queue drained.
	var c map[string]float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err = reputeCounters(reputeBase)
		if err != nil {
			return err
		}
		if c["hits"] == c["events"]+c["duplicates"]+c["dropped"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(w, "repute hits %.0f = events %.0f + duplicates %.0f + dropped %.0f (queue_full %.0f, unknown_send %.0f)\n",
		c["hits"], c["events"], c["duplicates"], c["dropped"], c["dropped{reason=queue_full}"], c["dropped{reason=unknown_send}"])
	if c["hits"] != c["events"]+c["duplicates"]+c["dropped"] {
		return errors.New("hits not all accounted for after 60 s")
	}
	if int64(c["hits"]) < totals["repute serve"].reqs {
		return fmt.Errorf("repute counted %.0f hits, wrk made %d requests", c["hits"], totals["repute serve"].reqs)
	}
	fmt.Fprintln(w, "every hit accounted for")
	return nil
}

// benchSends creates n sends through POST /v1/events and returns their
// pixel paths.
func benchSends(base, adminKey string, signer *sender.TrackingSigner, n int) ([]string, error) {
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	events := make([]metrics.Event, n)
	paths := make([]string, n)
	for i := range events {
		ref := correlate.NewRef()
		events[i] = metrics.Event{Time: at, Kind: metrics.KindSent, Source: "sender", SourceRef: ref.String(), Account: "bench",
			SenderDomain: "news.bench.example", Campaign: "bench", MessageID: fmt.Sprintf("<%d@bench.example>", i),
			Recipient: fmt.Sprintf("r%d@example.com", i)}
		paths[i] = "/t/o/" + signer.OpenToken(ref) + ".gif"
	}
	body, _ := json.Marshal(events)
	req, _ := http.NewRequest("POST", base+"/v1/events?wait=visible", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(res.Body)
		return nil, fmt.Errorf("POST sends: %d %s", res.StatusCode, b)
	}
	return paths, nil
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99     = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkReqs    = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	wrkProblem = regexp.MustCompile(`(?m)^\s+(Non-2xx or 3xx responses: \d+|Socket errors: .*)$`)
)

func runWrk(wrk, script, base string, d time.Duration, conns, threads int) (wrkResult, error) {
	cmd := exec.Command(wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(), "--latency", "-s", script, base)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("%v: %s", err, out)
	}
	var r wrkResult
	m := wrkRPS.FindSubmatch(out)
	p := wrkP99.FindSubmatch(out)
	n := wrkReqs.FindSubmatch(out)
	if m == nil || p == nil || n == nil {
		return r, fmt.Errorf("cannot read wrk's report:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	r.reqs, _ = strconv.ParseInt(string(n[1]), 10, 64)
	v, _ := strconv.ParseFloat(string(p[1]), 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[2])]
	r.p99 = time.Duration(v * float64(unit)).Round(time.Microsecond)
	for _, x := range wrkProblem.FindAllSubmatch(out, -1) {
		r.errs += "  (" + string(x[1]) + ")"
	}
	return r, nil
}

// reputeCounters reads the repute_tracking_* counters, labelled ones
// summed and by label as "dropped{reason=queue_full}".
func reputeCounters(base string) (map[string]float64, error) {
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer bench")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "repute_tracking_") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		short, label, _ := strings.Cut(strings.TrimPrefix(name, "repute_tracking_"), "{")
		short = strings.TrimSuffix(short, "_total")
		out[short] += v
		if label != "" {
			out[short+"{"+strings.ReplaceAll(label, `"`, "")] = v
		}
	}
	return out, sc.Err()
}

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP waits until url answers, or the process behind it exits.
func waitHTTP(url string, exited chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // for the caller's wait
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within 60 s", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
