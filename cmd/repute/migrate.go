package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"repute/metrics/clickhouse"
)

func init() {
	commands["migrate"] = command{"create the ClickHouse database and apply pending migrations", runMigrate}
}

// runMigrate implements `repute migrate`: it creates the ClickHouse database
// if missing and applies the pending migrations. `repute serve` does the same
// on its first connection; migrate is for doing it ahead of a deploy, or as a
// user with more rights. Each flag is also REPUTE_<FLAG> in the environment
// (a flag wins), like serve's.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts clickhouse.Options
	fs.StringVar(&opts.Addr, "clickhouse", "", "ClickHouse native `address` (host:port)")
	fs.StringVar(&opts.Database, "clickhouse-database", "repute", "ClickHouse `database`, created if missing")
	fs.StringVar(&opts.User, "clickhouse-user", "", "ClickHouse `user` (default: default)")
	fs.StringVar(&opts.Password, "clickhouse-password", "", "ClickHouse `password` (better: REPUTE_CLICKHOUSE_PASSWORD)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: repute migrate --clickhouse ADDR [flags]")
		fmt.Fprintln(fs.Output(), "\nCreates the ClickHouse database if missing and applies the pending migrations,")
		fmt.Fprintln(fs.Output(), "recorded in its schema_migrations table (running it again changes nothing).")
		fmt.Fprintln(fs.Output(), "Each flag may also be set as REPUTE_<FLAG> (upper case, - → _). The embedded")
		fmt.Fprintln(fs.Output(), "DuckDB store needs no migrate: serve sets it up.\n\nFlags:")
		fs.PrintDefaults()
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "REPUTE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := os.Getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintf(stderr, "repute migrate: %v\n", envErr)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "repute migrate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if opts.Addr == "" {
		fmt.Fprintln(stderr, "repute migrate: no ClickHouse address: set --clickhouse or REPUTE_CLICKHOUSE")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	opts.Timeout = *timeout
	if err := clickhouse.Migrate(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "repute migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "clickhouse %s: database %s is up to date\n", opts.Addr, opts.Database)
	return 0
}
