// Package duckdb is the embedded metrics.Store: one DuckDB file, one
// process (DuckDB locks the file).
//
// Events go in through DuckDB's Appender, in one committed transaction per
// Append (DuckDB syncs its write-ahead log at commit); the primary key
// (account, event_id) keeps each event once. DuckDB plans INSERT OR IGNORE as a join
// against the whole table, so Append first tries the Appender straight into
// events, then an anti-join over the batch's time span, and only then OR
// IGNORE (see Store.Append). Statistics are one SQL statement per call.
//
// Divergence: Known looks for stored events only within the candidates'
// time span, as metrics.KnownChecker allows; a key stored at another time is
// not reported as known, though Append still stores it once.
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

// queryTexts holds the statements of queries/, by file name.
type queryTexts struct {
	appendSpan, appendExact, staging, known, stats string
}

func loadQueries() (queryTexts, error) {
	var q queryTexts
	for name, dst := range map[string]*string{"append_span": &q.appendSpan, "append_exact": &q.appendExact,
		"staging": &q.staging, "known": &q.known, "stats": &q.stats} {
		b, err := queries.ReadFile("queries/" + name + ".sql")
		if err != nil {
			return q, fmt.Errorf("duckdb: query %s: %w", name, err)
		}
		*dst = string(b)
	}
	return q, nil
}

// Options configure a Store. The zero value works.
type Options struct {
	// Logger receives applied migrations and failed rollbacks; nil means
	// silent.
	Logger *slog.Logger
}

// Store is a metrics.Store over one DuckDB file. It is safe for concurrent
// use: appends are serialised, reads run beside them.
type Store struct {
	path      string
	connector *duckdb.Connector
	db        *sql.DB
	log       *slog.Logger

	sql queryTexts

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
	var err error
	if s.sql, err = loadQueries(); err != nil {
		return nil, err
	}
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
	if err == nil {
		_, err = s.write.ExecContext(ctx, s.sql.staging)
	}
	if err != nil {
		if s.write != nil {
			s.write.Close()
		}
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
	value func(e *metrics.Event) driver.Value
}

// columns lists every column of events (migrations/0001_events.sql).
var columns = []column{
	{"event_id", func(e *metrics.Event) driver.Value { return e.EventID }},
	{"time", func(e *metrics.Event) driver.Value { return e.Time.UTC() }},
	{"kind", func(e *metrics.Event) driver.Value { return string(e.Kind) }},
	{"source", func(e *metrics.Event) driver.Value { return e.Source }},
	{"source_ref", func(e *metrics.Event) driver.Value { return e.SourceRef }},
	{"account", func(e *metrics.Event) driver.Value { return e.Account }},
	{"sender_domain", func(e *metrics.Event) driver.Value { return e.SenderDomain }},
	{"sending_ip", func(e *metrics.Event) driver.Value { return e.SendingIP }},
	{"campaign", func(e *metrics.Event) driver.Value { return e.Campaign }},
	{"message_id", func(e *metrics.Event) driver.Value { return e.MessageID }},
	{"recipient", func(e *metrics.Event) driver.Value { return e.Recipient }},
	{"recipient_domain", func(e *metrics.Event) driver.Value { return e.RecipientDomain }},
	{"isp", func(e *metrics.Event) driver.Value { return e.ISP }},
	{"bounce_type", func(e *metrics.Event) driver.Value { return e.BounceType }},
	{"reason", func(e *metrics.Event) driver.Value { return e.Reason }},
	{"status", func(e *metrics.Event) driver.Value { return e.Status }},
	{"reply_code", func(e *metrics.Event) driver.Value { return e.ReplyCode }},
	{"diagnostic", func(e *metrics.Event) driver.Value { return e.Diagnostic }},
	{"remote_mta", func(e *metrics.Event) driver.Value { return e.RemoteMTA }},
	{"correlation", func(e *metrics.Event) driver.Value { return e.Correlation }},
	{"feedback_type", func(e *metrics.Event) driver.Value { return e.FeedbackType }},
	{"feedback_provider", func(e *metrics.Event) driver.Value { return e.FeedbackProvider }},
	{"recipient_recovered_from", func(e *metrics.Event) driver.Value { return e.RecipientRecoveredFrom }},
	{"user_agent", func(e *metrics.Event) driver.Value { return e.UserAgent }},
	{"client_ip", func(e *metrics.Event) driver.Value { return e.ClientIP }},
	{"machine", func(e *metrics.Event) driver.Value { return e.Machine }},
	{"machine_reason", func(e *metrics.Event) driver.Value { return e.MachineReason }},
	{"url", func(e *metrics.Event) driver.Value { return e.URL }},
	{"evidence_id", func(e *metrics.Event) driver.Value { return e.EvidenceID }},
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
//
// The batch, without its repeated keys, first goes through the Appender
// straight into events. When the primary key refuses it (some event is
// stored already), it goes through the Appender into the staging table and
// from there into events by queries/append_span.sql (which drops the events
// stored within the batch's time span) or, when the primary key still
// refuses, by append_exact.sql (which drops those stored at any time: a
// join against the whole table, hence the last resort).
func (s *Store) Append(ctx context.Context, events []metrics.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("duckdb: append: store closed")
	}
	if err := s.append(ctx, unique(events)); err != nil {
		return fmt.Errorf("duckdb: append %d events: %w", len(events), err)
	}
	return nil
}

func (s *Store) append(ctx context.Context, events []metrics.Event) error {
	// First try: every event is new, appended straight into events. The
	// Appender reports a duplicate key as an untyped error; any failure
	// leads to the staging path, which reports what is really wrong.
	err := s.inTx(ctx, func() error { return s.appendTo(ctx, "", "events", events) })
	if err == nil || ctx.Err() != nil {
		return err
	}
	// The staging table is temporary: filling and emptying it writes no log.
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.write.ExecContext(dctx, "DELETE FROM staging"); err != nil {
			s.log.Warn("duckdb: empty staging table", "err", err)
		}
	}()
	if err := s.appendTo(ctx, "temp", "staging", events); err != nil {
		return err
	}
	first, last := timeSpan(events)
	err = s.inTx(ctx, func() error {
		_, err := s.write.ExecContext(ctx, s.sql.appendSpan, first, last)
		return err
	})
	if isConstraint(err) {
		err = s.inTx(ctx, func() error {
			_, err := s.write.ExecContext(ctx, s.sql.appendExact)
			return err
		})
	}
	return err
}

// isConstraint reports whether err is DuckDB refusing a constraint.
func isConstraint(err error) bool {
	var derr *duckdb.Error
	return errors.As(err, &derr) && derr.Type == duckdb.ErrorTypeConstraint
}

// inTx runs fn in a transaction on the write connection and commits it, or
// rolls it back when fn or the commit fails.
func (s *Store) inTx(ctx context.Context, fn func() error) error {
	if _, err := s.write.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		if _, err = s.write.ExecContext(ctx, "COMMIT"); err == nil {
			return nil
		}
	}
	// Roll back with a context of its own, so that a cancelled ctx still
	// leaves the connection clean for the next call.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, rerr := s.write.ExecContext(rctx, "ROLLBACK"); rerr != nil {
		s.log.Warn("duckdb: rollback failed", "err", rerr)
	}
	return err
}

// unique returns events without repeated keys, keeping the first of each;
// events itself when no key repeats.
func unique(events []metrics.Event) []metrics.Event {
	seen := make(map[metrics.Key]struct{}, len(events))
	for i := range events {
		k := events[i].Key()
		if _, dup := seen[k]; dup {
			out := append([]metrics.Event(nil), events[:i]...)
			for _, e := range events[i+1:] {
				if _, dup := seen[e.Key()]; !dup {
					seen[e.Key()] = struct{}{}
					out = append(out, e)
				}
			}
			return out
		}
		seen[k] = struct{}{}
	}
	return events
}

// appendTo appends events to the table catalog.main.table with the
// Appender.
func (s *Store) appendTo(ctx context.Context, catalog, table string, events []metrics.Event) error {
	return s.write.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), catalog, "main", table)
		if err != nil {
			return err
		}
		if err := appendRows(a, events); err != nil {
			a.Close()
			return err
		}
		return a.CloseWithCancel(ctx)
	})
}

// timeSpan returns the earliest and latest time of events, in UTC.
func timeSpan(events []metrics.Event) (first, last time.Time) {
	first, last = events[0].Time, events[0].Time
	for _, e := range events[1:] {
		if e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	return first.UTC(), last.UTC()
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
	for i, e := range events {
		accounts[i], ids[i] = e.Account, e.EventID
	}
	first, last := timeSpan(events)
	rows, err := s.db.QueryContext(ctx, s.sql.known, accounts, ids, first, last)
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
