// Package duckdb is the embedded metrics.Store: one DuckDB file, one
// process (DuckDB locks the file).
//
// Events go in through DuckDB's Appender, in one committed transaction per
// Append (DuckDB syncs its write-ahead log at commit). Each event is stored
// once by (account, event_id): appends are serialised, and each first looks
// up which of its events are stored already, through a key_hash column (the
// low 64 bits of the MD5 of the key) whose matches are then compared
// exactly. migrations/0002_key_hash.sql says why this replaced a primary
// key; 0003_append_lock.sql how appends through two Stores over one file
// stay apart. Known uses the same lookup. Statistics are one SQL statement per
// call.
//
// The schema is in migrations/, applied at Open; the statements are in
// queries/. Both are embedded.
package duckdb

import (
	"context"
	"crypto/md5"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

//go:embed queries/*.sql
var queries embed.FS

// queryTexts holds the statements of queries/, by file name.
type queryTexts struct {
	known, stats string
}

func loadQueries() (queryTexts, error) {
	var q queryTexts
	for name, dst := range map[string]*string{"known": &q.known, "stats": &q.stats} {
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
	// Timeout is the deadline of every read (statistics, duplicate
	// checks, send lookups, evidence, suppression searches); a shorter
	// deadline of the caller's context wins, and the driver interrupts
	// the query when it passes. Default 60 s, as the ClickHouse store's.
	Timeout time.Duration
	// MemoryLimit caps DuckDB's buffer manager (its cache of the file and
	// the memory of its queries), in DuckDB's size syntax ("512MB",
	// "2GB"); empty leaves DuckDB's default, 80% of the machine's memory.
	// Queries that need more spill to a temporary directory beside the
	// file or fail with an error naming the limit: the process stays
	// within its bound either way.
	// https://duckdb.org/docs/stable/configuration/overview
	MemoryLimit string
}

// defaultTimeout is Options.Timeout's default.
const defaultTimeout = 60 * time.Second

// Store is a metrics.Store over one DuckDB file. It is safe for concurrent
// use: appends are serialised, reads run beside them.
type Store struct {
	path      string
	connector *duckdb.Connector
	db        *sql.DB
	log       *slog.Logger
	timeout   time.Duration

	sql queryTexts
	// The send lookups, prepared once: planning is most of a point
	// query's cost in DuckDB.
	sendByRef, sendByMsgID *sql.Stmt
	// sends holds the keys of the sends table (sendfilter.go).
	sends *sendFilter

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
	s := &Store{path: path, log: log, timeout: opts.Timeout}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	var err error
	if s.sql, err = loadQueries(); err != nil {
		return nil, err
	}
	dsn := path
	if opts.MemoryLimit != "" {
		dsn += "?" + url.Values{"memory_limit": {opts.MemoryLimit}}.Encode()
	}
	s.connector, err = duckdb.NewConnector(dsn, nil)
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
		s.sendByRef, err = s.db.PrepareContext(ctx, sendsByRef)
	}
	if err == nil {
		s.sendByMsgID, err = s.db.PrepareContext(ctx, sendsByMsgID)
	}
	if err == nil {
		s.sends, err = filterFor(ctx, path, s.db)
	}
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
	releaseFilter(s.path)
	return errors.Join(s.sendByRef.Close(), s.sendByMsgID.Close(), s.write.Close(), s.db.Close(), s.connector.Close())
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

// columns lists every column of events in table order (as migrations 0002,
// 0004 and 0009 leave it): the Appender fills them by position.
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
	{"machine", func(e *metrics.Event) driver.Value {
		if e.Machine == nil {
			return nil // no verdict
		}
		return *e.Machine
	}},
	{"machine_reason", func(e *metrics.Event) driver.Value { return e.MachineReason }},
	{"url", func(e *metrics.Event) driver.Value { return e.URL }},
	{"evidence_id", func(e *metrics.Event) driver.Value { return e.EvidenceID }},
	{"key_hash", func(e *metrics.Event) driver.Value { return keyHash(e.Key()) }},
	{"category", func(e *metrics.Event) driver.Value { return e.Category }},
	{"posted_by", func(e *metrics.Event) driver.Value { return e.PostedBy }},
}

// keyHash returns the key_hash of k: md5_number_lower(account || chr(0) ||
// event_id) in DuckDB, the low 64 bits of the MD5 read little-endian.
func keyHash(k metrics.Key) uint64 {
	sum := md5.Sum([]byte(k.Account + "\x00" + k.EventID))
	return binary.LittleEndian.Uint64(sum[8:])
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
// Appends through one Store are serialised; in each, the events found new
// are still new when they are appended, because the transaction first
// updates the append_lock row, so that a concurrent append through another
// Store over the same file conflicts and is retried.
func (s *Store) Append(ctx context.Context, events []metrics.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := s.writeTx(ctx, func() error { return s.appendInTx(ctx, events) }); err != nil {
		return fmt.Errorf("duckdb: append %d events: %w", len(events), err)
	}
	return nil
}

// errClosed is what a write on a closed Store returns.
var errClosed = errors.New("store closed")

// writeTx runs fn in a transaction on the write connection, serialised
// with the Store's other writes. A conflict means another writer's
// transaction (another Store over the same file) holds a row fn writes:
// writeTx waits for it (with a growing pause, about 10 s in all) and runs fn
// again in a new transaction, as long as ctx allows. fn must be safe to
// run again.
func (s *Store) writeTx(ctx context.Context, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	const tries = 100
	pause := time.Millisecond
	var err error
	for try := 1; ; try++ {
		err = s.tx(ctx, fn)
		var derr *duckdb.Error
		if try == tries || !errors.As(err, &derr) || derr.Type != duckdb.ErrorTypeTransaction {
			break
		}
		s.log.Debug("duckdb: write conflicts with another writer, retrying", "pause", pause, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
	return err
}

// tx runs fn in one transaction on the write connection.
func (s *Store) tx(ctx context.Context, fn func() error) error {
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

func (s *Store) appendInTx(ctx context.Context, events []metrics.Event) error {
	if _, err := s.write.ExecContext(ctx, "UPDATE append_lock SET appends = appends + 1"); err != nil {
		return err
	}
	stored, err := s.stored(ctx, s.write, events)
	if err != nil {
		return err
	}
	fresh := make([]metrics.Event, 0, len(events))
	for _, e := range events {
		if !stored[e.Key()] {
			stored[e.Key()] = true // a key repeated within the batch
			fresh = append(fresh, e)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	plan, err := planRollup(ctx, s.write, fresh)
	if err != nil {
		return err
	}
	if len(plan.updates) > 0 {
		if _, err := s.write.ExecContext(ctx, updateFirstOpens, plan.updateArgs()...); err != nil {
			return fmt.Errorf("first opens: %w", err)
		}
	}
	return s.write.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "", "", "events")
		if err != nil {
			return err
		}
		if err := appendRows(a, fresh); err != nil {
			a.Close()
			return err
		}
		if err := a.CloseWithCancel(ctx); err != nil {
			return err
		}
		if err := appendRollup(ctx, dc.(driver.Conn), plan); err != nil {
			return err
		}
		return s.appendSends(ctx, dc.(driver.Conn), fresh)
	})
}

// querier is what stored needs of a *sql.DB or *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// stored returns the keys of events that are stored, by key hash and then
// exactly.
func (s *Store) stored(ctx context.Context, q querier, events []metrics.Event) (map[metrics.Key]bool, error) {
	hashes := make([]uint64, len(events))
	for i := range events {
		hashes[i] = keyHash(events[i].Key())
	}
	rows, err := q.QueryContext(ctx, s.sql.known, hashes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	matches := map[metrics.Key]bool{}
	for rows.Next() {
		var k metrics.Key
		if err := rows.Scan(&k.Account, &k.EventID); err != nil {
			return nil, err
		}
		matches[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	stored := make(map[metrics.Key]bool, len(matches))
	for i := range events {
		if k := events[i].Key(); matches[k] {
			stored[k] = true
		}
	}
	return stored, nil
}

// deadline bounds a read's ctx by Options.Timeout.
func (s *Store) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Known returns the keys of events already stored.
func (s *Store) Known(ctx context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	if len(events) == 0 {
		return map[metrics.Key]bool{}, nil
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	known, err := s.stored(ctx, s.db, events)
	if err != nil {
		return nil, fmt.Errorf("duckdb: known: %w", err)
	}
	return known, nil
}
