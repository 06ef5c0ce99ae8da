// Package clickhouse is the metrics.Store backend for ClickHouse, over the
// native protocol with github.com/ClickHouse/clickhouse-go/v2. It runs on
// Debian's ClickHouse 18.16 and on current releases; see README.md for the
// schema, the deduplication design and which features need a newer server.
//
// Open connects lazily: it succeeds while the server is unreachable, and the
// first call that reaches the server creates the database and applies the
// migrations. Until then every call returns an error naming the address.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"repute/metrics"
)

// Options configure a Store. The zero value works against a local server.
type Options struct {
	Addr     string // host:port of the native protocol; default 127.0.0.1:9000
	Database string // default "repute"; created if missing
	User     string // default "default"
	Password string

	Logger *slog.Logger // nil means silent

	// BatchSize bounds the rows of one insert; Append splits what it gets
	// into per-day batches of at most this many rows. Default 100,000.
	BatchSize int
	// Timeout is the deadline of every call to the server (a shorter
	// deadline of the caller's context wins). Default 60 s.
	Timeout time.Duration
	// DialTimeout bounds connecting. Default 5 s.
	DialTimeout time.Duration
	// Retention, when positive, sets a TTL on the events table so that
	// ClickHouse deletes older rows. TTL needs ClickHouse 19.6 or later; on
	// an older server it is not applied and Open logs a warning.
	Retention time.Duration
	// LeaseSettle is how long TryLease waits after claiming a lease that
	// was not its holder's before reading back whether its claim won (see
	// lease.go). Default 300 ms.
	LeaseSettle time.Duration
}

const (
	defaultAddr        = "127.0.0.1:9000"
	defaultDatabase    = "repute"
	defaultUser        = "default"
	defaultBatchSize   = 100_000
	defaultTimeout     = 60 * time.Second
	defaultDialTimeout = 5 * time.Second
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withDefaults fills in zero values and checks what can be checked without
// the server.
func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		o.Addr = defaultAddr
	}
	if o.Database == "" {
		o.Database = defaultDatabase
	}
	if !identRE.MatchString(o.Database) {
		return o, fmt.Errorf("clickhouse: database name %q: letters, digits and _ only", o.Database)
	}
	if o.User == "" {
		o.User = defaultUser
	}
	if o.BatchSize <= 0 {
		o.BatchSize = defaultBatchSize
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.LeaseSettle <= 0 {
		o.LeaseSettle = defaultLeaseSettle
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// connect opens a connection pool to database (empty: the user's default).
// clickhouse-go dials lazily, so this never touches the network.
func (o Options) connect(database string) (driver.Conn, error) {
	conn, err := ch.Open(&ch.Options{
		Addr:         []string{o.Addr},
		Auth:         ch.Auth{Database: database, Username: o.User, Password: o.Password},
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.Timeout,
		MaxOpenConns: 8,
		MaxIdleConns: 4,
		Compression:  &ch.Compression{Method: ch.CompressionLZ4},
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", o.Addr, err)
	}
	return conn, nil
}

// Store is a metrics.Store over a ClickHouse database. It is safe for
// concurrent use.
type Store struct {
	opts Options
	q    queries

	mu     sync.Mutex
	conn   driver.Conn // nil until connected and migrated
	closed bool

	// refreshMu serialises RefreshRollups.
	refreshMu sync.Mutex
}

var _ metrics.Store = (*Store)(nil)

// ErrClosed is returned by every call on a closed Store.
var ErrClosed = errors.New("clickhouse: store closed")

// Open returns a Store. It does not wait for the server: when ClickHouse is
// unreachable Open still succeeds, and the database and migrations are set up
// by the first call that reaches it (Ping, Append, Stats or Known). Open
// fails only on invalid options.
func Open(ctx context.Context, opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q, err := loadQueries()
	if err != nil {
		return nil, err
	}
	s := &Store{opts: o, q: q}
	// Try once now so that a reachable server is ready at once; failure is
	// not an error here.
	if _, err := s.ready(ctx); err != nil && !errors.Is(err, ErrClosed) {
		o.Logger.Warn("clickhouse not ready yet; will retry on use", "addr", o.Addr, "err", err)
	}
	return s, nil
}

// ready returns the connection, connecting and migrating first if needed.
func (s *Store) ready(ctx context.Context) (driver.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.conn != nil {
		return s.conn, nil
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	conn, err := migrate(ctx, s.opts, s.q)
	if err != nil {
		return nil, err
	}
	s.conn = conn
	s.opts.Logger.Info("clickhouse ready", "addr", s.opts.Addr, "database", s.opts.Database)
	return conn, nil
}

// deadline bounds ctx by the configured per-call timeout.
func (s *Store) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// Server error codes after which the store sets itself up again.
const (
	codeUnknownTable    = 60
	codeUnknownDatabase = 81
)

// errorf wraps err with the package prefix and the server address. When the
// server has lost the database or the table (it came back empty), the
// connection is dropped, so that the next call creates and migrates again.
func (s *Store) errorf(what string, err error) error {
	var ex *ch.Exception
	if errors.As(err, &ex) && (ex.Code == codeUnknownTable || ex.Code == codeUnknownDatabase) {
		s.forget()
	}
	return fmt.Errorf("clickhouse: %s: %s: %w", s.opts.Addr, what, err)
}

// forget drops the connection; the next call connects and migrates again.
func (s *Store) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Ping reports whether the server answers; its error names the address.
func (s *Store) Ping(ctx context.Context) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		return s.errorf("ping", err)
	}
	return nil
}

// Close releases the connections. Calls after Close return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil {
		return fmt.Errorf("clickhouse: %s: close: %w", s.opts.Addr, err)
	}
	return nil
}
