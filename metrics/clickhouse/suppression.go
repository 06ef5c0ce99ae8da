package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"repute/metrics"
)

var _ metrics.SuppressionLog = (*Store)(nil)

// suppressionColumns are the columns of suppression_changes
// (sql/migrations/0007_suppression_changes.sql) as inserts fill them and
// reads return them.
const suppressionColumns = "time_ns, id, action, address, account, shared, sender_domain, list, " +
	"reason, event_id, since_ns, until_ns, changed_by, precedence"

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano, in UTC.
func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// AppendSuppressionChanges stores changes in one insert, logged now (the
// precedence column is the insert time, reversed). A change whose ID
// is stored already is inserted again, but reads take the first stored
// (FINAL over ReplacingMergeTree(precedence)); one repeated within the call
// is inserted once, the first.
func (s *Store) AppendSuppressionChanges(ctx context.Context, changes []metrics.SuppressionChange) error {
	if len(changes) == 0 {
		return nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO suppression_changes ("+suppressionColumns+")")
	if err != nil {
		return s.errorf("prepare suppression changes insert", err)
	}
	defer batch.Abort() //nolint:errcheck // a no-op once sent
	n := len(changes)
	var (
		ids, actions, addresses, accounts = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		domains, lists, reasons, events   = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		bys                               = make([]string, 0, n)
		times, sinces, untils             = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		shared                            = make([]uint8, 0, n)
		precs                             = make([]uint64, 0, n)
	)
	prec := precedence(time.Now())
	seen := make(map[string]bool, n)
	for _, c := range changes {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		times = append(times, unixNano(c.Time))
		ids = append(ids, c.ID)
		actions = append(actions, c.Action)
		addresses = append(addresses, c.Address)
		accounts = append(accounts, c.Account)
		var sh uint8
		if c.Shared {
			sh = 1
		}
		shared = append(shared, sh)
		domains = append(domains, c.SenderDomain)
		lists = append(lists, c.List)
		reasons = append(reasons, c.Reason)
		events = append(events, c.EventID)
		sinces = append(sinces, unixNano(c.Since))
		untils = append(untils, unixNano(c.Until))
		bys = append(bys, c.By)
		precs = append(precs, prec)
	}
	for i, col := range []any{times, ids, actions, addresses, accounts, shared, domains, lists,
		reasons, events, sinces, untils, bys, precs} {
		if err := batch.Column(i).Append(col); err != nil {
			return s.errorf(fmt.Sprintf("suppression changes insert column %d", i), err)
		}
	}
	if err := batch.Send(); err != nil {
		return s.errorf(fmt.Sprintf("insert %d suppression changes", len(ids)), err)
	}
	return nil
}

// SuppressionChanges calls fn with every stored change in (Time, ID) order,
// row by row as the server streams them, and stops at fn's first error,
// which it returns as it is. The read is bounded by the configured
// timeout, as every call is.
func (s *Store) SuppressionChanges(ctx context.Context, fn func(metrics.SuppressionChange) error) error {
	return s.FindSuppressionChanges(ctx, metrics.SuppressionQuery{}, fn)
}

// suppressionQuery is the query of the changes q selects, in (time_ns, id)
// order, and its arguments, bound to the ? placeholders by the driver. The
// filtered columns are covered by the id, so the rows FINAL collapses
// agree on them: filtering cannot keep one row of a change and drop
// another.
func suppressionQuery(q metrics.SuppressionQuery) (string, []any) {
	var (
		where []string
		args  []any
	)
	if q.Address != "" {
		where = append(where, "address = ?")
		args = append(args, q.Address)
	}
	if q.Account != "" {
		where = append(where, "account = ?")
		args = append(args, q.Account)
	}
	if q.ByLogged {
		// The insert time is the precedence, reversed (precedence): a
		// later insert has a lower precedence. No FINAL: the filter on
		// precedence is not covered by the id, and a change appended
		// twice may be read twice (metrics.SuppressionQuery.ByLogged).
		if !q.AfterTime.IsZero() || q.AfterID != "" {
			p := uint64(math.MaxUint64) // logged at the epoch: the log's beginning
			if !q.AfterTime.IsZero() {
				p = precedence(q.AfterTime)
			}
			where = append(where, "(precedence < ? OR (precedence = ? AND id > ?))")
			args = append(args, p, p, q.AfterID)
		}
		if !q.LoggedBefore.IsZero() {
			where = append(where, "precedence > ?")
			args = append(args, precedence(q.LoggedBefore))
		}
		query := "SELECT " + suppressionColumns + " FROM suppression_changes"
		if len(where) > 0 {
			query += " WHERE " + strings.Join(where, " AND ")
		}
		query += " ORDER BY precedence DESC, id"
		if q.Limit > 0 {
			query += " LIMIT ?"
			args = append(args, uint64(q.Limit))
		}
		return query, args
	}
	if !q.AfterTime.IsZero() || q.AfterID != "" {
		at := unixNano(q.AfterTime)
		where = append(where, "(time_ns > ? OR (time_ns = ? AND id > ?))")
		args = append(args, at, at, q.AfterID)
	}
	if !q.LoggedBefore.IsZero() {
		where = append(where, "precedence > ?")
		args = append(args, precedence(q.LoggedBefore))
	}
	query := "SELECT " + suppressionColumns + " FROM suppression_changes FINAL"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY time_ns, id"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, uint64(q.Limit))
	}
	return query, args
}

// FindSuppressionChanges calls fn with the stored changes q selects, in
// (Time, ID) order, as SuppressionChanges does.
func (s *Store) FindSuppressionChanges(ctx context.Context, q metrics.SuppressionQuery, fn func(metrics.SuppressionChange) error) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	query, args := suppressionQuery(q)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return s.errorf("suppression changes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c                metrics.SuppressionChange
			at, since, until int64
			shared           uint8
			prec             uint64
		)
		if err := rows.Scan(&at, &c.ID, &c.Action, &c.Address, &c.Account, &shared, &c.SenderDomain,
			&c.List, &c.Reason, &c.EventID, &since, &until, &c.By, &prec); err != nil {
			return s.errorf("suppression changes", err)
		}
		c.Time, c.Since, c.Until, c.Shared = fromUnixNano(at), fromUnixNano(since), fromUnixNano(until), shared == 1
		c.Logged = time.Unix(0, int64(math.MaxUint64-prec)).UTC()
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errorf("suppression changes", err)
	}
	return nil
}
