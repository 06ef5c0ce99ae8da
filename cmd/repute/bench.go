package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"repute/metrics"
	"repute/metrics/clickhouse"
	"repute/metrics/duckdb"
)

func init() {
	commands["bench"] = command{"measure intake throughput against the store's raw insert rate", runBench}
}

// benchFlags are the flags of serve that bench takes: where ClickHouse is
// and how to log in, read the way serve reads them.
var benchFlags = []string{"config", "clickhouse", "clickhouse-user", "clickhouse-password"}

const benchUsage = `Usage: repute bench intake [flags]
       repute bench pixel [flags]   (the tracking pixel under wrk: see repute bench pixel --help)

POSTs events to an in-process repute serve on loopback in batches and times them until
they are queryable in the store, then inserts the same rows with the store's raw bulk
insert (DuckDB Appender, clickhouse-go batch) as the ceiling. The ClickHouse settings are
read as serve reads them: flags, REPUTE_CLICKHOUSE*, and the --config file (whose
clickhouse_password_env or clickhouse_password_file gives the password).

Flags:
`

func runBench(args []string, stdout, stderr io.Writer) int {
	var events, batch, clients int
	var cpuProfile string
	spec := configSpec{command: "bench", help: benchUsage, flags: benchFlags, extra: func(fs *flag.FlagSet) {
		fs.IntVar(&events, "events", 100_000, "events to post")
		fs.IntVar(&batch, "batch", 10_000, "events per POST")
		fs.IntVar(&clients, "clients", 2, "concurrent POSTing clients, as a sending pipeline would run")
		fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to `file`")
	}}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, benchUsage)
		fmt.Fprintln(stdout, "  (see repute bench intake --help)")
		return 0
	}
	if len(args) > 0 && args[0] == "pixel" {
		return runBenchPixel(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "intake" {
		fmt.Fprint(stderr, benchUsage)
		fmt.Fprintln(stderr, "  (see repute bench intake --help)")
		return 2
	}
	cfg, err := loadConfig(spec, args[1:], os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "repute bench:", err)
		return exitStatus(err)
	}
	if events <= 0 || batch <= 0 || clients <= 0 {
		fmt.Fprintln(stderr, "repute bench: --events, --batch and --clients must be positive")
		return 2
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "repute bench:", err)
			return 1
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ch := clickhouse.Options{Addr: cfg.ClickHouse, User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword}
	if err := benchIntake(stdout, events, batch, clients, ch); err != nil {
		fmt.Fprintln(stderr, "repute bench:", err)
		return 1
	}
	return 0
}

// benchIntake runs the benchmark; ch.Addr empty: DuckDB. ch.Database is
// ignored: each run has a database of its own.
func benchIntake(w io.Writer, n, batchSize, clients int, ch clickhouse.Options) error {
	chAddr := ch.Addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "repute-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cfg := defaultServeConfig()
	cfg.Data = dir
	cfg.AdminKey = "bench"
	// A fresh database per run, so earlier runs' rows are not duplicates.
	chDatabase := fmt.Sprintf("repute_bench_%d", time.Now().UnixNano())
	if chAddr != "" {
		cfg.ClickHouse, cfg.ClickHouseDatabase = chAddr, chDatabase
		cfg.ClickHouseUser, cfg.ClickHousePassword = ch.User, ch.Password
	}
	log := slog.New(slog.DiscardHandler)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.close()
		return err
	}
	runDone := make(chan error, 1)
	go func() { runDone <- a.run(ctx, ln) }()
	defer func() { cancel(); <-runDone }()

	// One day's partition, a day ago: every row lands in one partition.
	day := time.Now().UTC().Add(-24 * time.Hour).Truncate(24 * time.Hour)
	all := benchEvents(n, day)
	var bodies [][]byte
	for i := 0; i < n; i += batchSize {
		b, err := json.Marshal(all[i:min(i+batchSize, n)])
		if err != nil {
			return err
		}
		bodies = append(bodies, b)
	}

	url := "http://" + ln.Addr().String() + "/v1/events"
	post := func(body []byte) error {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.AdminKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST: %s: %s", res.Status, msg)
		}
		return nil
	}
	start := time.Now()
	next := make(chan []byte)
	errs := make(chan error, clients)
	for range clients {
		go func() {
			var err error
			for body := range next {
				if err == nil {
					err = post(body)
				}
			}
			errs <- err
		}()
	}
	for _, body := range bodies {
		next <- body
	}
	close(next)
	for range clients {
		if err := <-errs; err != nil {
			return err
		}
	}
	posted := time.Since(start)
	q := metrics.StatsQuery{From: day, To: day.Add(24 * time.Hour)}
	for {
		res, err := a.store.Stats(ctx, q)
		if err == nil && total(res.Totals) >= int64(n) {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("rows not queryable after 5 minutes (last error: %v)", err)
		}
		// Polling is itself a query: often enough for a fine reading,
		// seldom enough not to slow what it measures.
		time.Sleep(25 * time.Millisecond)
	}
	e2e := time.Since(start)

	// The same rows, normalized as intake stored them, through the raw path.
	isps := metrics.NewISPMap(nil)
	for i := range all {
		if err := all[i].Normalize(isps, time.Now()); err != nil {
			return err
		}
	}
	var raw time.Duration
	var ceiling string
	if chAddr != "" {
		ceiling = "clickhouse-go batch insert"
		// Batches of the size posted: the same terms as intake.
		raw, err = clickhouse.RawInsert(ctx, clickhouse.Options{Addr: chAddr, Database: chDatabase, User: ch.User, Password: ch.Password, BatchSize: batchSize}, all)
	} else {
		ceiling = "DuckDB Appender"
		raw, err = duckdb.RawAppend(ctx, filepath.Join(dir, "raw.duckdb"), all)
	}
	if err != nil {
		return fmt.Errorf("raw insert: %w", err)
	}

	store := "DuckDB"
	if chAddr != "" {
		store = "ClickHouse " + chAddr + "/" + chDatabase
	}
	intakeRate := float64(n) / e2e.Seconds()
	rawRate := float64(n) / raw.Seconds()
	fmt.Fprintf(w, "intake: %d events in batches of %d from %d clients, POST /v1/events until queryable in %s: %.0f events/s (%v; POSTs took %v)\n",
		n, batchSize, clients, store, intakeRate, e2e.Round(time.Millisecond), posted.Round(time.Millisecond))
	fmt.Fprintf(w, "ceiling: %s of the same rows: %.0f rows/s (%v)\n", ceiling, rawRate, raw.Round(time.Millisecond))
	fmt.Fprintf(w, "ratio intake/ceiling: %.2f\n", intakeRate/rawRate)
	return nil
}

func total(c metrics.Counts) int64 {
	return c.Sent + c.Delivered + c.Deferred + c.BouncedHard + c.BouncedSoft + c.Complained +
		c.OpenedHuman + c.OpenedMachine + c.Clicked + c.Unsubscribed + c.Dropped
}

// benchEvents returns n distinct events within one day, a realistic mix of
// kinds, each for its own message so that every one counts.
func benchEvents(n int, day time.Time) []metrics.Event {
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindSent, metrics.KindSent, metrics.KindDelivered,
		metrics.KindDelivered, metrics.KindDelivered, metrics.KindOpened, metrics.KindOpened,
		metrics.KindBounced, metrics.KindClicked}
	domains := []string{"gmail.com", "outlook.com", "yahoo.com", "qq.com", "163.com", "example.org"}
	out := make([]metrics.Event, n)
	for i := range out {
		e := metrics.Event{
			Time:         day.Add(time.Duration(i%86400) * time.Second),
			Kind:         kinds[i%len(kinds)],
			Account:      fmt.Sprintf("account-%d", i%3),
			SenderDomain: fmt.Sprintf("news%d.example.com", i%5),
			SendingIP:    fmt.Sprintf("192.0.2.%d", i%8),
			Campaign:     fmt.Sprintf("campaign-%d", i%20),
			MessageID:    fmt.Sprintf("<%d.bench@example.com>", i),
			Recipient:    fmt.Sprintf("user%d@%s", i, domains[i%len(domains)]),
		}
		switch e.Kind {
		case metrics.KindBounced:
			e.BounceType, e.Reason, e.Status, e.ReplyCode = "hard", "userunknown", "5.1.1", 550
			e.Diagnostic = "550 5.1.1 The email account that you tried to reach does not exist"
		case metrics.KindOpened:
			e.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
			e.Machine = metrics.Verdict(i%3 == 0)
		}
		out[i] = e
	}
	return out
}
