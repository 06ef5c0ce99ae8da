package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"repute/api"
	"repute/intake"
	"repute/metrics"
	"repute/metrics/clickhouse"
	"repute/metrics/duckdb"
	"repute/spool"
)

func init() {
	commands["serve"] = command{"run the HTTP API, the spool and the store", runServe}
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadServeConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "repute serve:", err)
		return 2
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "repute serve:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, cfg, log, stdout); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// app is a running repute: spool, store, pipeline and HTTP handler.
type app struct {
	cfg      serveConfig
	log      *slog.Logger
	spool    *spool.Spool
	store    metrics.Store
	pipeline *intake.Pipeline
	handler  http.Handler
	adminKey string // the generated or configured admin key, if any
}

// newApp opens the spool and the store and builds the handler. Nothing runs
// yet: see (*app).run.
func newApp(ctx context.Context, cfg serveConfig, log *slog.Logger) (*app, error) {
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	a := &app{cfg: cfg, log: log}
	keys, err := a.keys()
	if err != nil {
		return nil, err
	}
	a.spool, err = spool.Open(filepath.Join(cfg.Data, "spool"), spool.Options{
		MaxBytes: cfg.SpoolMaxBytes, Logger: log.With("component", "spool"),
	})
	if err != nil {
		return nil, err
	}
	if cfg.ClickHouse != "" {
		a.store, err = clickhouse.Open(ctx, clickhouse.Options{
			Addr: cfg.ClickHouse, Database: cfg.ClickHouseDatabase,
			User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword,
			Logger: log.With("component", "clickhouse"),
		})
	} else {
		a.store, err = duckdb.Open(filepath.Join(cfg.Data, "repute.duckdb"), duckdb.Options{
			Logger: log.With("component", "duckdb"),
		})
	}
	if err != nil {
		a.spool.Close()
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_records", Help: "Records in the spool not yet drained into the store.",
		}, func() float64 { return float64(a.spool.Stats().Records) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_bytes", Help: "Bytes in the spool not yet drained into the store.",
		}, func() float64 { return float64(a.spool.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_spool_quarantine_files", Help: "Quarantine files in the spool directory: corrupt records cut out, kept for inspection.",
		}, func() float64 { return float64(a.spool.Stats().Quarantined) }),
	)
	a.pipeline = intake.New(a.spool, a.store, intake.Options{
		Logger: log.With("component", "intake"), Registerer: reg,
	})
	a.handler, err = api.NewHandler(api.Options{
		Keys:         keys,
		Submitter:    a.pipeline,
		Stats:        a.store,
		Ready:        a.ready,
		ISPs:         metrics.NewISPMap(cfg.ISPDomains),
		MaxBodyBytes: cfg.MaxBodyBytes,
		Logger:       log.With("component", "api"),
		Gatherer:     reg,
		Registerer:   reg,

		MaxInflightBytes: cfg.MaxInflightBytes,
		MinBodyRate:      cfg.MinBodyRate,
		WriteTimeout:     cfg.WriteTimeout,
	})
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// keys builds the key set; with no key configured at all it generates an
// admin key once and keeps it in the data directory.
func (a *app) keys() (*api.Keys, error) {
	accounts := make([]api.AccountKeys, 0, len(a.cfg.Accounts))
	for _, acc := range a.cfg.Accounts {
		accounts = append(accounts, api.AccountKeys{Name: acc.Name, Keys: acc.Keys})
	}
	admin := a.cfg.AdminKey
	if admin == "" && len(accounts) == 0 {
		var err error
		if admin, err = generatedAdminKey(filepath.Join(a.cfg.Data, "admin.key")); err != nil {
			return nil, err
		}
	}
	a.adminKey = admin
	return api.NewKeys(admin, accounts)
}

// generatedAdminKey reads the key stored at path, or creates one.
func generatedAdminKey(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if key := strings.TrimSpace(string(raw)); key != "" {
			return key, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin key: %w", err)
	}
	b := make([]byte, 24)
	rand.Read(b)
	key := "rk_" + base64.RawURLEncoding.EncodeToString(b)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin key: %w", err)
	}
	return key, nil
}

// ready says why the server cannot serve reads or drain the spool.
func (a *app) ready(ctx context.Context) error {
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("store unreachable (events are kept in the spool): %w", err)
	}
	if err := a.pipeline.StoreError(); err != nil {
		return fmt.Errorf("last store write failed (events are kept in the spool): %w", err)
	}
	return nil
}

func (a *app) close() {
	if err := a.store.Close(); err != nil {
		a.log.Error("closing store", "err", err)
	}
	if err := a.spool.Close(); err != nil {
		a.log.Error("closing spool", "err", err)
	}
}

// run serves on ln until ctx ends, then shuts down in two phases: stop
// intake (no new requests), then flush the spool into the store within the
// shutdown timeout.
func (a *app) run(ctx context.Context, ln net.Listener) error {
	drainCtx, stopDrain := context.WithCancel(context.Background())
	drained := make(chan error, 1)
	go func() { drained <- a.pipeline.Run(drainCtx) }()

	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: min(10*time.Second, a.cfg.ReadTimeout),
		ReadTimeout:       a.cfg.ReadTimeout,
		// It counts from the end of the headers, so the body's read time
		// is added; POST /v1/events restarts it once the body is in.
		WriteTimeout: a.cfg.ReadTimeout + a.cfg.WriteTimeout,
		IdleTimeout:  a.cfg.IdleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	a.log.Info("shutting down: intake stops, spool flushes", "timeout", a.cfg.ShutdownTimeout)
	deadline, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(deadline); serr != nil {
		a.log.Error("http shutdown", "err", serr)
	}
	if ferr := a.spool.Flush(deadline); ferr != nil {
		st := a.spool.Stats()
		a.log.Warn("spool not fully flushed; the rest is replayed at next start",
			"err", ferr, "records", st.Records, "bytes", st.Bytes)
	}
	stopDrain()
	<-drained
	a.close()
	a.log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, stdout io.Writer) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		a.close()
		return err
	}
	store := "duckdb " + filepath.Join(cfg.Data, "repute.duckdb")
	if cfg.ClickHouse != "" {
		store = "clickhouse " + cfg.ClickHouse + "/" + cfg.ClickHouseDatabase
	}
	fmt.Fprintf(stdout, "repute serve listening on http://%s (store: %s, data: %s)\n", ln.Addr(), store, cfg.Data)
	if cfg.AdminKey == "" && len(cfg.Accounts) == 0 {
		fmt.Fprintf(stdout, "admin key (generated, kept in %s): %s\n", filepath.Join(cfg.Data, "admin.key"), a.adminKey)
	}
	fmt.Fprintf(stdout, "try: curl -H 'Authorization: Bearer <key>' http://%s/v1/stats\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "store", store)
	return a.run(ctx, ln)
}
