// Package duckdb is the embedded metrics.Store: one DuckDB file, one
// process (DuckDB locks the file). Events go in through DuckDB's Appender
// into a query that drops duplicates by the primary key (account,
// event_id); statistics are one SQL statement per call.
//
// The schema is in migrations/, applied at Open; the statements are in
// queries/. Both are embedded.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

//go:embed queries/*.sql
var queries embed.FS

// Options configure a Store. The zero value works.
type Options struct {
	// Logger receives migration notes; nil means silent.
	Logger *slog.Logger
}

// Store is a metrics.Store over one DuckDB file. It is safe for concurrent
// use: appends are serialised, reads run beside them.
type Store struct {
	path      string
	connector *duckdb.Connector
	db        *sql.DB
	log       *slog.Logger

	appendSQL, knownSQL, statsSQL string

	// mu serialises appends, which use the one write connection, and
	// guards closed.
	mu     sync.Mutex
	write  *sql.Conn
	closed bool
}

var _ metrics.Store = (*Store)(nil)

// Open opens (creating if needed) the DuckDB file at path and applies the
// migrations it lacks.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("duckdb: empty path")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, log: log}
	for _, q := range []struct {
		name string
		dst  *string
	}{{"append", &s.appendSQL}, {"known", &s.knownSQL}, {"stats", &s.statsSQL}} {
		b, err := queries.ReadFile("queries/" + q.name + ".sql")
		if err != nil {
			return nil, fmt.Errorf("duckdb: query %s: %w", q.name, err)
		}
		*q.dst = string(b)
	}
	var err error
	s.connector, err = duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("duckdb: open %s: %w", path, err)
	}
	s.db = sql.OpenDB(s.connector)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := migrate(ctx, s.db, log); err != nil {
		s.db.Close()
		s.connector.Close()
		return nil, err
	}
	s.write, err = s.db.Conn(ctx)
	if err != nil {
		s.db.Close()
		s.connector.Close()
		return nil, fmt.Errorf("duckdb: connect: %w", err)
	}
	return s, nil
}

// Path returns the path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. Later calls do nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.write.Close(), s.db.Close(), s.connector.Close())
}

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("duckdb: ping: %w", err)
	}
	return nil
}

// column is one column of the events table as the appender fills it.
type column struct {
	name  string
	typ   duckdb.Type
	value func(e *metrics.Event) driver.Value
}

// columns lists every column of events (migrations/0001_events.sql).
var columns = []column{
	{"event_id", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.EventID }},
	{"time", duckdb.TYPE_TIMESTAMP, func(e *metrics.Event) driver.Value { return e.Time.UTC() }},
	{"kind", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return string(e.Kind) }},
	{"source", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Source }},
	{"source_ref", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.SourceRef }},
	{"account", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Account }},
	{"sender_domain", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.SenderDomain }},
	{"sending_ip", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.SendingIP }},
	{"campaign", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Campaign }},
	{"message_id", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.MessageID }},
	{"recipient", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Recipient }},
	{"recipient_domain", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.RecipientDomain }},
	{"isp", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.ISP }},
	{"bounce_type", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.BounceType }},
	{"reason", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Reason }},
	{"status", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Status }},
	{"reply_code", duckdb.TYPE_USMALLINT, func(e *metrics.Event) driver.Value { return e.ReplyCode }},
	{"diagnostic", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Diagnostic }},
	{"remote_mta", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.RemoteMTA }},
	{"correlation", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.Correlation }},
	{"feedback_type", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.FeedbackType }},
	{"feedback_provider", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.FeedbackProvider }},
	{"recipient_recovered_from", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.RecipientRecoveredFrom }},
	{"user_agent", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.UserAgent }},
	{"client_ip", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.ClientIP }},
	{"machine", duckdb.TYPE_BOOLEAN, func(e *metrics.Event) driver.Value { return e.Machine }},
	{"machine_reason", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.MachineReason }},
	{"url", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.URL }},
	{"evidence_id", duckdb.TYPE_VARCHAR, func(e *metrics.Event) driver.Value { return e.EvidenceID }},
}

// appendRows appends events with a through the column list.
func appendRows(a *duckdb.Appender, events []metrics.Event) error {
	row := make([]driver.Value, len(columns))
	for i := range events {
		for j, c := range columns {
			row[j] = c.value(&events[i])
		}
		if err := a.AppendRow(row...); err != nil {
			return err
		}
	}
	return nil
}

// Append stores events, idempotently on (account, event_id), in one
// transaction: when it returns nil every event is committed and queryable.
func (s *Store) Append(ctx context.Context, events []metrics.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("duckdb: append: store closed")
	}
	if _, err := s.write.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("duckdb: append: %w", err)
	}
	err := s.write.Raw(func(dc any) error {
		a, err := newBatchAppender(dc.(driver.Conn), s.appendSQL)
		if err != nil {
			return err
		}
		if err := appendRows(a, events); err != nil {
			a.Close()
			return err
		}
		return a.CloseWithCancel(ctx)
	})
	if err == nil {
		_, err = s.write.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		// A failed statement leaves the transaction aborted; roll it back
		// with a context of its own so that a cancelled ctx still does.
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, rerr := s.write.ExecContext(rctx, "ROLLBACK"); rerr != nil {
			s.log.Warn("duckdb: rollback failed", "err", rerr)
		}
		return fmt.Errorf("duckdb: append %d events: %w", len(events), err)
	}
	return nil
}

// newBatchAppender returns a query appender that runs query over the
// appended rows, visible as the table "batch" with the columns of events.
func newBatchAppender(conn driver.Conn, query string) (*duckdb.Appender, error) {
	names := make([]string, len(columns))
	types := make([]duckdb.TypeInfo, len(columns))
	for i, c := range columns {
		t, err := duckdb.NewTypeInfo(c.typ)
		if err != nil {
			return nil, err
		}
		names[i], types[i] = c.name, t
	}
	return duckdb.NewQueryAppender(conn, query, "batch", types, names)
}

// Known returns the keys of events already stored. It looks only at
// stored events within the candidates' time span: a stored event with the
// same key but another time is not reported (the same fact has the same
// time; metrics.KnownChecker allows this narrowing).
func (s *Store) Known(ctx context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	known := map[metrics.Key]bool{}
	if len(events) == 0 {
		return known, nil
	}
	accounts := make([]string, len(events))
	ids := make([]string, len(events))
	first, last := events[0].Time, events[0].Time
	for i, e := range events {
		accounts[i], ids[i] = e.Account, e.EventID
		if e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	rows, err := s.db.QueryContext(ctx, s.knownSQL, accounts, ids,
		first.UTC().Truncate(time.Second), last.UTC().Truncate(time.Second))
	if err != nil {
		return nil, fmt.Errorf("duckdb: known: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k metrics.Key
		if err := rows.Scan(&k.Account, &k.EventID); err != nil {
			return nil, fmt.Errorf("duckdb: known: %w", err)
		}
		known[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: known: %w", err)
	}
	return known, nil
}
