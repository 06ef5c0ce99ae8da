package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
	"repute/suppress"
)

// The suppression snapshot (<data>/suppression.snapshot) saves the start-up
// replay of the whole log: the index (suppress.Index.WriteSnapshot) behind
// a header of our own that says which store it was made from and how far
// into its log it goes. At start a snapshot that matches the store and
// reads cleanly is the index, brought up to date with the changes logged
// after its position (read in the order written, as follow does); any
// doubt — no file, another store, a damaged file — and the log is replayed
// whole, as without a snapshot. A snapshot is written every
// suppressionSnapshotEvery and at clean shutdown.
//
// The header: the line "repute suppression snapshot 1\n", the store's
// identity and the log's anchor (each a uvarint length and bytes), the
// position (int64 unix nanoseconds, little-endian), and a CRC-32C of
// those. The anchor is the id and Logged time of the log's first change:
// the stores keep no identity of their own, so a store emptied or
// recreated at the same place is told apart by the beginning of its log.
const (
	suppressionSnapshotFile  = "suppression.snapshot"
	suppressionSnapshotMagic = "repute suppression snapshot 1\n"
)

// suppressionSnapshotEvery is how often serve writes the snapshot; a
// variable for the tests.
var suppressionSnapshotEvery = 10 * time.Minute

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// storeIdentity names the store a snapshot belongs to: the backend and
// where it is. The stores keep no identity of their own (no random id);
// the log's anchor tells apart a store recreated at the same place.
func storeIdentity(cfg serveConfig) string {
	if cfg.ClickHouse != "" {
		return "clickhouse " + cfg.ClickHouse + "/" + cfg.ClickHouseDatabase
	}
	p, err := filepath.Abs(duckdbPath(cfg))
	if err != nil {
		p = duckdbPath(cfg)
	}
	return "duckdb " + p
}

// suppressionMetrics are the load's gauges.
type suppressionMetrics struct {
	loadSeconds *prometheus.GaugeVec
	lockSeconds prometheus.Gauge
}

func newSuppressionMetrics() *suppressionMetrics {
	return &suppressionMetrics{
		loadSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "repute_suppression_load_seconds",
			Help: "How long the last start-up load of the suppression lists took, by where it came from: snapshot (then the log after it) or replay (the whole log).",
		}, []string{"from"}),
		lockSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "repute_suppression_snapshot_lock_seconds",
			Help: "How long the last suppression snapshot held the index's read lock (copying its entries).",
		}),
	}
}

func (m *suppressionMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.loadSeconds, m.lockSeconds}
}

// readSnapshot reads the snapshot, if there is one that belongs to the
// store: the index and the position it covers (every change logged
// before it is in the index). why says why none was used.
func (s *suppression) readSnapshot(ctx context.Context) (index *suppress.Index, pos time.Time, why error) {
	if s.snapshotPath == "" {
		return nil, time.Time{}, errors.New("no snapshot configured")
	}
	f, err := os.Open(s.snapshotPath)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	h, err := readSnapshotHeader(r)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", s.snapshotPath, err)
	}
	if h.store != s.storeID {
		return nil, time.Time{}, fmt.Errorf("%s was made from another store (%q, this is %q)", s.snapshotPath, h.store, s.storeID)
	}
	anchor, err := s.logAnchor(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the beginning of the log: %w", err)
	}
	if anchor != h.anchor {
		return nil, time.Time{}, fmt.Errorf("%s was made from a log that began otherwise (%q, this one %q): the store was recreated or its log cut", s.snapshotPath, h.anchor, anchor)
	}
	index, err = suppress.ReadSnapshot(r, suppress.Options{})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", s.snapshotPath, err)
	}
	return index, h.pos, nil
}

// logAnchor returns the id and Logged time of the log's first change, in
// the order written; "" for an empty log.
func (s *suppression) logAnchor(ctx context.Context) (string, error) {
	var anchor string
	err := s.store.FindSuppressionChanges(ctx, metrics.SuppressionQuery{ByLogged: true, Limit: 1}, func(c metrics.SuppressionChange) error {
		anchor = fmt.Sprintf("%s@%d", c.ID, c.Logged.UnixNano())
		return nil
	})
	return anchor, err
}

type snapshotHead struct {
	store, anchor string
	pos           time.Time
}

func readSnapshotHeader(r *bufio.Reader) (snapshotHead, error) {
	bad := errors.New("not a suppression snapshot of this version, or its header is damaged")
	magic := make([]byte, len(suppressionSnapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != suppressionSnapshotMagic {
		return snapshotHead{}, bad
	}
	h := []byte(suppressionSnapshotMagic)
	var strs [2]string
	for i := range strs {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 4096 {
			return snapshotHead{}, bad
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return snapshotHead{}, bad
		}
		h = binary.AppendUvarint(h, n)
		h = append(h, b...)
		strs[i] = string(b)
	}
	var rest [12]byte
	if _, err := io.ReadFull(r, rest[:]); err != nil {
		return snapshotHead{}, bad
	}
	h = append(h, rest[:8]...)
	if crc32.Checksum(h, crc32c) != binary.LittleEndian.Uint32(rest[8:]) {
		return snapshotHead{}, bad
	}
	return snapshotHead{store: strs[0], anchor: strs[1], pos: time.Unix(0, int64(binary.LittleEndian.Uint64(rest[:8]))).UTC()}, nil
}

func snapshotHeader(h snapshotHead) []byte {
	b := []byte(suppressionSnapshotMagic)
	for _, v := range []string{h.store, h.anchor} {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(h.pos.UnixNano()))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

// catchUp applies to index the changes logged at or after pos, in the
// order written, page by page.
func (s *suppression) catchUp(ctx context.Context, index *suppress.Index, pos time.Time) (int, error) {
	after := metrics.SuppressionChange{Logged: pos}
	total := 0
	for {
		n := 0
		err := s.store.FindSuppressionChanges(ctx, metrics.SuppressionQuery{
			ByLogged: true, AfterTime: after.Logged, AfterID: after.ID, Limit: suppressionCatchUpPage,
		}, func(c metrics.SuppressionChange) error {
			if err := index.Apply(suppress.FromStored(c)); err != nil {
				s.log.Warn("suppression: a change of the log cannot be applied; skipped", "change", c.ID, "err", err)
			}
			after = c
			n++
			return nil
		})
		total += n
		if err != nil || n < suppressionCatchUpPage {
			return total, err
		}
	}
}

// suppressionCatchUpPage is the page size of catchUp.
const suppressionCatchUpPage = 10_000

// snapshots writes the snapshot every suppressionSnapshotEvery until ctx
// ends.
func (s *suppression) snapshots(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(suppressionSnapshotEvery):
		}
		if err := s.saveSnapshot(ctx); err != nil {
			s.log.Error("suppression: writing the snapshot failed", "err", err)
		}
	}
}

// errSnapshotSkipped: no snapshot now, for a reason that passes.
var errSnapshotSkipped = errors.New("suppression snapshot skipped")

// saveSnapshot writes the snapshot atomically (a temporary file, fsync,
// rename, fsync of the directory). Its position is taken before the
// index's state, less suppressionSettle (a change this process logged
// before it was in the index before it was logged; one another process is
// still committing is read again at start), and for a follower no later
// than what it has read of the others' changes. It writes nothing while
// changes made in the index are not in the log (a failed write), so that
// a snapshot never holds what a replay would not, nor for an empty log.
func (s *suppression) saveSnapshot(ctx context.Context) error {
	if s.snapshotPath == "" || !s.ready.Load() {
		return nil
	}
	anchor, err := s.logAnchor(ctx)
	if err != nil {
		return fmt.Errorf("reading the beginning of the log: %w", err)
	}
	if anchor == "" {
		return nil // nothing to save
	}
	s.mu.Lock()
	pending, failures := len(s.pending), s.flushFailures
	pos := time.Now().Add(-suppressionSettle)
	if s.following.Load() && s.followed.Logged.Before(pos) {
		pos = s.followed.Logged
	}
	s.mu.Unlock()
	if pending > 0 {
		return fmt.Errorf("%w: %d changes not yet in the log", errSnapshotSkipped, pending)
	}
	start := time.Now()
	tmp := s.snapshotPath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	_, err = w.Write(snapshotHeader(snapshotHead{store: s.storeID, anchor: anchor, pos: pos}))
	var st suppress.SnapshotStats
	if err == nil {
		st, err = s.index.WriteSnapshotStats(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	s.mu.Lock()
	clean := len(s.pending) == 0 && s.flushFailures == failures
	s.mu.Unlock()
	if err == nil && !clean {
		err = fmt.Errorf("%w: a write to the log failed meanwhile", errSnapshotSkipped)
	}
	if err == nil {
		err = os.Rename(tmp, s.snapshotPath)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(s.snapshotPath)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return err
		}
	}
	if s.metrics != nil {
		s.metrics.lockSeconds.Set(st.LockHeld.Seconds())
	}
	s.log.Info("suppression snapshot written", "entries", st.Entries, "bytes", st.Bytes, "position", pos,
		"lock_held", st.LockHeld.Round(time.Microsecond), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
