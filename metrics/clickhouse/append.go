package clickhouse

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"repute/metrics"
)

// columns are the events columns in the order insert batches fill them.
// PrepareBatch must name them: 18.16 fails every Append without the list.
var columns = []string{"account", "event_id", "time", "kind", "source", "source_ref",
	"sender_domain", "sending_ip", "campaign", "category", "message_id", "recipient",
	"recipient_domain", "isp", "bounce_type", "reason", "status", "reply_code",
	"diagnostic", "remote_mta", "correlation", "feedback_type", "feedback_provider",
	"recipient_recovered_from", "user_agent", "client_ip", "machine",
	"machine_reason", "url", "evidence_id", "posted_by", "precedence"}

func insertSQL(table string) string {
	return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ")"
}

// Append stores events, idempotently on (account, event_id). It returns once
// every row is inserted, i.e. queryable; nothing is buffered past the call.
//
// Flushing: Append is the "flush on size" — it drops repeats within the call
// (the first wins), splits the rest by UTC day (one partition each: 18.16
// inserts a batch spread over several partitions several times slower) and
// sends each day in batches of at most Options.BatchSize rows, column-wise,
// with no per-row query. The "flush on time" is the caller's: the spool
// drains promptly into Append.
//
// A repeat of an event stored by an earlier call (or by another writer at
// the same moment) is inserted again; every query reads with FINAL and so
// counts it once, keeping the first stored (see README.md), and merges of
// the ReplacingMergeTree reclaim the space. A failed call may have inserted
// some of its batches; retrying it is safe.
//
// Once the events are in, Append logs the hours they fall in as dirty for
// the rule engine's roll-ups (rollup.go).
func (s *Store) Append(ctx context.Context, events []metrics.Event) error {
	if len(events) == 0 {
		return nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	events = dedup(events)
	for _, day := range splitByDay(events) {
		for len(day) > 0 {
			n := min(len(day), s.opts.BatchSize)
			if err := s.insert(ctx, conn, "events", day[:n]); err != nil {
				return err
			}
			day = day[n:]
		}
	}
	// After the events, never before: a refresh that reads the log must
	// find them (rollup.go).
	return s.markDirty(ctx, conn, events)
}

// insert sends events as one batch into table, under the call deadline.
func (s *Store) insert(ctx context.Context, conn driver.Conn, table string, events []metrics.Event) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	return sendBatch(ctx, conn, table, events, func(what string, err error) error {
		return s.errorf(what, err)
	})
}

// sendBatch inserts events as one batch, column by column (the fastest way
// clickhouse-go has: no reflection per value).
func sendBatch(ctx context.Context, conn driver.Conn, table string, events []metrics.Event, fail func(string, error) error) error {
	batch, err := conn.PrepareBatch(ctx, insertSQL(table))
	if err != nil {
		return fail("prepare insert", err)
	}
	defer batch.Abort() //nolint:errcheck // a no-op once sent
	cols, err := columnValues(events, precedence(time.Now()))
	if err != nil {
		return err
	}
	for i, values := range cols {
		if err := batch.Column(i).Append(values); err != nil {
			return fail(fmt.Sprintf("insert column %s", columns[i]), err)
		}
	}
	if err := batch.Send(); err != nil {
		return fail(fmt.Sprintf("insert %d rows", len(events)), err)
	}
	return nil
}

// kindValue maps a kind to its Enum8 value in 0001_events.sql (1-based, in
// the order of metrics.Kinds).
func kindValue(k metrics.Kind) (int8, error) {
	for i, known := range metrics.Kinds {
		if k == known {
			return int8(i + 1), nil
		}
	}
	return 0, fmt.Errorf("clickhouse: unknown kind %q", k)
}

// precedence orders the rows of one (account, event_id): FINAL keeps the
// highest, so the earlier insert wins.
func precedence(insertedAt time.Time) uint64 {
	return math.MaxUint64 - uint64(insertedAt.UnixNano())
}

// columnValues turns events into one slice per entry of columns, with prec
// as every row's precedence.
func columnValues(events []metrics.Event, prec uint64) ([]any, error) {
	n := len(events)
	str := func(field func(e *metrics.Event) string) []string {
		out := make([]string, n)
		for i := range events {
			out[i] = field(&events[i])
		}
		return out
	}
	times := make([]time.Time, n)
	kinds := make([]int8, n)
	replyCodes := make([]uint16, n)
	machine := make([]*uint8, n) // Nullable(UInt8): nil is no verdict
	precs := make([]uint64, n)
	for i := range events {
		precs[i] = prec
		e := &events[i]
		times[i] = e.Time
		k, err := kindValue(e.Kind)
		if err != nil {
			return nil, err
		}
		kinds[i] = k
		replyCodes[i] = e.ReplyCode
		if e.Machine != nil {
			v := uint8(0)
			if *e.Machine {
				v = 1
			}
			machine[i] = &v
		}
	}
	return []any{
		str(func(e *metrics.Event) string { return e.Account }),
		str(func(e *metrics.Event) string { return e.EventID }),
		times,
		kinds,
		str(func(e *metrics.Event) string { return e.Source }),
		str(func(e *metrics.Event) string { return e.SourceRef }),
		str(func(e *metrics.Event) string { return e.SenderDomain }),
		str(func(e *metrics.Event) string { return e.SendingIP }),
		str(func(e *metrics.Event) string { return e.Campaign }),
		str(func(e *metrics.Event) string { return e.Category }),
		str(func(e *metrics.Event) string { return e.MessageID }),
		str(func(e *metrics.Event) string { return e.Recipient }),
		str(func(e *metrics.Event) string { return e.RecipientDomain }),
		str(func(e *metrics.Event) string { return e.ISP }),
		str(func(e *metrics.Event) string { return e.BounceType }),
		str(func(e *metrics.Event) string { return e.Reason }),
		str(func(e *metrics.Event) string { return e.Status }),
		replyCodes,
		str(func(e *metrics.Event) string { return e.Diagnostic }),
		str(func(e *metrics.Event) string { return e.RemoteMTA }),
		str(func(e *metrics.Event) string { return e.Correlation }),
		str(func(e *metrics.Event) string { return e.FeedbackType }),
		str(func(e *metrics.Event) string { return e.FeedbackProvider }),
		str(func(e *metrics.Event) string { return e.RecipientRecoveredFrom }),
		str(func(e *metrics.Event) string { return e.UserAgent }),
		str(func(e *metrics.Event) string { return e.ClientIP }),
		machine,
		str(func(e *metrics.Event) string { return e.MachineReason }),
		str(func(e *metrics.Event) string { return e.URL }),
		str(func(e *metrics.Event) string { return e.EvidenceID }),
		str(func(e *metrics.Event) string { return e.PostedBy }),
		precs,
	}, nil
}

// dedup returns events without repeats of an (account, event_id), keeping
// the first of each, in order. Without repeats it returns events itself.
func dedup(events []metrics.Event) []metrics.Event {
	seen := make(map[metrics.Key]struct{}, len(events))
	var out []metrics.Event // nil until the first repeat
	for i := range events {
		k := events[i].Key()
		if _, dup := seen[k]; dup {
			if out == nil {
				out = append(make([]metrics.Event, 0, len(events)), events[:i]...)
			}
			continue
		}
		seen[k] = struct{}{}
		if out != nil {
			out = append(out, events[i])
		}
	}
	if out == nil {
		return events
	}
	return out
}

// splitByDay groups events by UTC day, in ascending day order, keeping the
// order within a day. One day is one partition of the events table.
func splitByDay(events []metrics.Event) [][]metrics.Event {
	if len(events) == 0 {
		return nil
	}
	first := dayOf(events[0].Time)
	same := true
	for i := range events {
		if dayOf(events[i].Time) != first {
			same = false
			break
		}
	}
	if same {
		return [][]metrics.Event{events}
	}
	byDay := map[int64][]metrics.Event{}
	for _, e := range events {
		d := dayOf(e.Time)
		byDay[d] = append(byDay[d], e)
	}
	days := make([]int64, 0, len(byDay))
	for d := range byDay {
		days = append(days, d)
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	out := make([][]metrics.Event, len(days))
	for i, d := range days {
		out[i] = byDay[d]
	}
	return out
}

// dayOf numbers the UTC day of t (events are after 2000: no negatives).
func dayOf(t time.Time) int64 { return t.Unix() / 86400 }
