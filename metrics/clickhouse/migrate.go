package clickhouse

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed sql/migrations/*.sql sql/queries.sql
var sqlFiles embed.FS

// migration is one numbered file of sql/migrations.
type migration struct {
	version    uint32
	name       string   // file name without .sql
	requires   version  // minimum server version; zero: any
	statements []string // separated by a ';' at the end of a line
}

// version is a ClickHouse server version, major.minor.
type version struct{ major, minor uint64 }

func (v version) less(w version) bool {
	return v.major < w.major || v.major == w.major && v.minor < w.minor
}

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// ttlVersion is the first release with table TTL.
var ttlVersion = version{19, 6}

// loadMigrations parses the embedded migrations, in version order. A file
// may start with a "-- requires: MAJOR.MINOR" line: it is applied only on
// servers at least that new, and stays pending (unrecorded) on older ones.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(sqlFiles, "sql/migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []migration
	for _, file := range names {
		name := strings.TrimSuffix(path.Base(file), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: migration %s: name must start with its number", file)
		}
		body, err := sqlFiles.ReadFile(file)
		if err != nil {
			return nil, err
		}
		m := migration{version: uint32(v), name: name}
		if m.requires, err = parseRequires(string(body)); err != nil {
			return nil, fmt.Errorf("clickhouse: migration %s: %w", file, err)
		}
		m.statements = splitStatements(string(body))
		out = append(out, m)
	}
	return out, nil
}

func parseRequires(body string) (version, error) {
	first, _, _ := strings.Cut(body, "\n")
	rest, ok := strings.CutPrefix(strings.TrimSpace(first), "-- requires:")
	if !ok {
		return version{}, nil
	}
	major, minor, _ := strings.Cut(strings.TrimSpace(rest), ".")
	a, err1 := strconv.ParseUint(major, 10, 32)
	b, err2 := strconv.ParseUint(minor, 10, 32)
	if err1 != nil || err2 != nil {
		return version{}, fmt.Errorf("bad requires line %q", first)
	}
	return version{a, b}, nil
}

// splitStatements splits SQL text into statements at lines ending in ';',
// dropping whole-line comments.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); stmt != "" {
				out = append(out, stmt)
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}

// queries are the named queries of sql/queries.sql.
type queries map[string]string

// loadQueries parses sql/queries.sql into its named queries and checks that
// every name the package uses is there.
func loadQueries() (queries, error) {
	body, err := sqlFiles.ReadFile("sql/queries.sql")
	if err != nil {
		return nil, err
	}
	queries := queries{}
	var name string
	var cur strings.Builder
	flush := func() {
		if name != "" {
			queries[name] = strings.TrimSpace(cur.String())
		}
		cur.Reset()
	}
	for _, line := range strings.Split(string(body), "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			flush()
			name = strings.TrimSpace(n)
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	for _, n := range queryNames {
		if queries[n] == "" {
			return nil, fmt.Errorf("clickhouse: no query %q in sql/queries.sql", n)
		}
	}
	return queries, nil
}

// The names of the queries in sql/queries.sql.
const (
	qMigrationsTable    = "migrations-table"
	qAppliedMigrations  = "applied-migrations"
	qRecordMigration    = "record-migration"
	qStats              = "stats"
	qKnown              = "known"
	qRollupNow          = "rollup-now"
	qRollupDirty        = "rollup-dirty"
	qRollupLogs         = "rollup-logs"
	qRollupCompute      = "rollup-compute"
	qRollupFinish       = "rollup-finish"
	qRollupMark         = "rollup-mark"
	qRollupCounts       = "rollup-counts"
	qRollupOpenKeys     = "rollup-open-keys"
	qRollupOpenMarks    = "rollup-open-marks"
	qRollupHourVersions = "rollup-hour-versions"
	qRollupSpanVersions = "rollup-span-versions"
	qRollupSpanCompute  = "rollup-span-compute"
	qRollupSpanFinish   = "rollup-span-finish"
)

var queryNames = []string{qMigrationsTable, qAppliedMigrations, qRecordMigration, qStats, qKnown,
	qRollupNow, qRollupDirty, qRollupLogs, qRollupCompute, qRollupFinish, qRollupMark, qRollupCounts,
	qRollupOpenKeys, qRollupOpenMarks, qRollupHourVersions, qRollupSpanVersions, qRollupSpanCompute,
	qRollupSpanFinish}

// Migrate creates the database if missing and applies the pending
// migrations, recording each in the schema_migrations table. It is what
// `repute migrate` runs, and Open runs it on the first connection. Running it
// again is harmless; so is running it from two processes at once (every
// statement is idempotent).
func Migrate(ctx context.Context, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	q, err := loadQueries()
	if err != nil {
		return err
	}
	conn, err := migrate(ctx, o, q)
	if err != nil {
		return err
	}
	return conn.Close()
}

// migrate connects, creates the database and migrates it, and returns the
// connection to the database.
func migrate(ctx context.Context, o Options, q queries) (driver.Conn, error) {
	fail := func(what string, err error) error {
		return fmt.Errorf("clickhouse: %s: %s: %w", o.Addr, what, err)
	}
	migrations, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	boot, err := o.connect("")
	if err != nil {
		return nil, err
	}
	err = boot.Ping(ctx)
	if err == nil {
		err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+o.Database+"`")
		if err != nil {
			err = fmt.Errorf("create database %s: %w", o.Database, err)
		}
	}
	boot.Close()
	if err != nil {
		return nil, fail("connect", err)
	}

	conn, err := o.connect(o.Database)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	sv, err := conn.ServerVersion()
	if err != nil {
		return nil, fail("server version", err)
	}
	server := version{sv.Version.Major, sv.Version.Minor}

	if err := conn.Exec(ctx, q[qMigrationsTable]); err != nil {
		return nil, fail("create schema_migrations", err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, q[qAppliedMigrations])
	if err != nil {
		return nil, fail("read schema_migrations", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fail("read schema_migrations", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fail("read schema_migrations", err)
	}

	apply, waiting := plan(migrations, applied, server)
	for _, m := range waiting {
		o.Logger.Info("clickhouse migration waits for a newer server",
			"migration", m.name, "requires", m.requires.String(), "server", server.String())
	}
	for _, m := range apply {
		for _, stmt := range m.statements {
			if err := conn.Exec(ctx, stmt); err != nil && !alreadyAdded(stmt, err) {
				return nil, fail("migration "+m.name, err)
			}
		}
		if err := conn.Exec(ctx, q[qRecordMigration], m.version, m.name); err != nil {
			return nil, fail("record migration "+m.name, err)
		}
		o.Logger.Info("clickhouse migration applied", "migration", m.name)
	}

	if err := applyRetention(ctx, conn, o, server); err != nil {
		return nil, fail("retention", err)
	}
	ok = true
	return conn, nil
}

// errColumnExists is the code of ClickHouse's "Cannot add column …: column
// with this name already exists" (ILLEGAL_COLUMN).
const errColumnExists = 44

// alreadyAdded tells whether err is an ADD COLUMN statement finding its
// column there already: 18.16 has no ADD COLUMN IF NOT EXISTS, so this is
// how a migration that adds a column stays idempotent (a second process
// migrating at the same time, or a run interrupted before its record).
func alreadyAdded(stmt string, err error) bool {
	var ex *ch.Exception
	return strings.Contains(strings.ToUpper(stmt), "ADD COLUMN") && errors.As(err, &ex) &&
		ex.Code == errColumnExists && strings.Contains(ex.Message, "already exists")
}

// plan splits the migrations not yet applied into those to apply now, in
// order, and those waiting for a newer server than server.
func plan(migrations []migration, applied map[uint32]bool, server version) (apply, waiting []migration) {
	for _, m := range migrations {
		switch {
		case applied[m.version]:
		case server.less(m.requires):
			waiting = append(waiting, m)
		default:
			apply = append(apply, m)
		}
	}
	return apply, waiting
}

// applyRetention sets the events TTL from Options.Retention on servers that
// have TTL (19.6+); older ones keep everything, with a warning.
func applyRetention(ctx context.Context, conn driver.Conn, o Options, server version) error {
	if o.Retention <= 0 {
		return nil
	}
	if server.less(ttlVersion) {
		o.Logger.Warn("clickhouse retention not applied: TTL needs a newer server",
			"requires", ttlVersion.String(), "server", server.String())
		return nil
	}
	days := int64((o.Retention + 24*time.Hour - 1) / (24 * time.Hour))
	// rollup_events keeps what events keeps: an old hour is recomputed
	// from it whenever a late event comes (0013_rollup_events.sql).
	for _, table := range []string{"events", "rollup_events"} {
		// Only when it changes: on current servers MODIFY TTL rewrites the parts.
		var engine string
		if err := conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&engine); err != nil {
			return err
		}
		if strings.Contains(engine, fmt.Sprintf("TTL time + toIntervalDay(%d)", days)) {
			continue
		}
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY TTL time + INTERVAL %d DAY", table, days)); err != nil {
			return err
		}
	}
	return nil
}
