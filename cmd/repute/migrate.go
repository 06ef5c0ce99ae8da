package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"repute/metrics/clickhouse"
)

func init() {
	commands["migrate"] = command{"create the ClickHouse database and apply pending migrations", runMigrate}
}

const migrateUsage = `Usage: repute migrate [flags]

Creates the ClickHouse database if missing and applies the pending
migrations, recorded in its schema_migrations table (running it again
changes nothing). repute serve does the same on its first connection;
migrate is for doing it ahead of a deploy, or as a user with more rights.
It reads serve's configuration, so --config names the same file; only the
clickhouse settings matter here. The embedded DuckDB store needs no migrate.

` + configHelp

// migrateFlags are the flags of serve that migrate takes.
var migrateFlags = []string{"config", "clickhouse", "clickhouse-database", "clickhouse-user", "clickhouse-password", "log-level"}

// migrateTimeout bounds the whole migration.
const migrateTimeout = 2 * time.Minute

func runMigrate(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(configSpec{command: "migrate", help: migrateUsage, flags: migrateFlags}, args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "repute migrate:", err)
		return exitStatus(err)
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "repute migrate:", err)
		return 2
	}
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	if cfg.ClickHouse == "" {
		fmt.Fprintln(stderr, "repute migrate: no ClickHouse address: set --clickhouse, REPUTE_CLICKHOUSE or clickhouse: in the config file")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	opts := clickhouse.Options{
		Addr: cfg.ClickHouse, Database: cfg.ClickHouseDatabase,
		User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword,
		Timeout: migrateTimeout,
	}
	if err := clickhouse.Migrate(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "repute migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "clickhouse %s: database %s is up to date\n", opts.Addr, opts.Database)
	return 0
}
