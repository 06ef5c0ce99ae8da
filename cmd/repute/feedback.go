package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"

	"repute/api"
	"repute/correlate"
	"repute/ingest"
	"repute/ingest/imap"
	"repute/metrics"
	"repute/metrics/clickhouse"
	"repute/metrics/duckdb"
)

// processorFactory returns the Processor for reports whose unmatched ones
// go to account ("": such a report is ingest.ErrUnattributed). It is cheap:
// call it per request.
type processorFactory func(account string) (*ingest.Processor, error)

// newProcessorFactory builds the Processors of every feedback source
// (POST /v1/feedback, repute ingest) from the configuration (bounce
// lexicon, ISP domains), the store's send lookup (nil: every report is
// unmatched) and the signing keys (nil: no token is trusted).
func newProcessorFactory(cfg serveConfig, sends ingest.SendLookup, signing *signingKeys) (processorFactory, error) {
	lex, err := cfg.lexicon()
	if err != nil {
		return nil, err
	}
	var signer *correlate.Signer
	if signing != nil {
		if signer, err = correlate.New(correlate.Keys(*signing)); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
	}
	isps := metrics.NewISPMap(cfg.ISPDomains)
	return func(account string) (*ingest.Processor, error) {
		conv, err := ingest.NewConverter(ingest.Options{
			Parser: ingest.Parser{Lexicon: lex}, Signer: signer, Sends: sends, Account: account, ISPs: isps,
		})
		if err != nil {
			return nil, err
		}
		return ingest.NewProcessor(conv, int(cfg.MaxEvidenceBytes), nil), nil
	}, nil
}

// feedbackFunc is the api.FeedbackFunc over a processorFactory.
func (f processorFactory) feedbackFunc() api.FeedbackFunc {
	return func(ctx context.Context, raw []byte, src ingest.Source, account string) (ingest.Report, error) {
		p, err := f(account)
		if err != nil {
			return ingest.Report{}, err
		}
		return p.Process(ctx, raw, src)
	}
}

// store is what repute needs of a backend; both implement all of it: the
// events and their stats, the send lookup of the feedback sources, the
// evidence, the log of the suppression lists, and the leases of shared
// IMAP mailboxes.
type store interface {
	metrics.Store
	ingest.SendLookup
	metrics.EvidenceWriter
	metrics.EvidenceReader
	metrics.SuppressionLog
	imap.Leaser
}

var (
	_ store = (*duckdb.Store)(nil)
	_ store = (*clickhouse.Store)(nil)
)

// openStore opens the configured store: ClickHouse when an address is
// set, else the DuckDB file in the data directory.
func openStore(ctx context.Context, cfg serveConfig, log *slog.Logger) (store, error) {
	if cfg.ClickHouse != "" {
		return clickhouse.Open(ctx, clickhouse.Options{
			Addr: cfg.ClickHouse, Database: cfg.ClickHouseDatabase,
			User: cfg.ClickHouseUser, Password: cfg.ClickHousePassword,
			Logger: log.With("component", "clickhouse"),
		})
	}
	return duckdb.Open(duckdbPath(cfg), duckdb.Options{Logger: log.With("component", "duckdb"), MemoryLimit: cfg.DuckDBMemoryLimit})
}

func duckdbPath(cfg serveConfig) string { return filepath.Join(cfg.Data, "repute.duckdb") }

// errDataInUse says that a running repute serve holds the data directory.
func errDataInUse(dir string) error {
	return fmt.Errorf("the data directory %s is in use by a running repute serve; use --server URL --key KEY to go through it", dir)
}

// inUse reports whether err says another process holds the spool or the
// DuckDB file.
func inUse(err error) bool {
	s := err.Error()
	return strings.Contains(s, "in use by another process") || strings.Contains(s, "Conflicting lock") ||
		strings.Contains(s, "Could not set lock")
}

// readSigningKeys returns the signing keys as serve has them, without
// generating any: nil when none are configured and serve has not
// generated its file yet (no token can have been issued then).
func readSigningKeys(cfg serveConfig, getenv func(string) string) (*signingKeys, error) {
	if cfg.SigningKeys.IsZero() {
		path := filepath.Join(cfg.Data, signingKeysFile)
		if _, err := readSecretFile(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	ks, _, _, err := loadSigningKeys(cfg.SigningKeys, cfg.Data, getenv)
	if err != nil {
		return nil, err
	}
	return &ks, nil
}
