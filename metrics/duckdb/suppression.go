package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

var _ metrics.SuppressionLog = (*Store)(nil)

// suppressionColumns are the columns of suppression_changes in table order
// (migrations 0008 and 0010): the Appender fills the staging table by
// position.
const suppressionColumns = `id, time_ns, action, address, account, shared, sender_domain,
    list, reason, event_id, since_ns, until_ns, changed_by, logged_ns`

// suppressionStaging is the temporary table (of the write connection) that
// AppendSuppressionChanges fills through an Appender before one INSERT OR
// IGNORE moves the changes not stored yet into suppression_changes, as
// PutEvidence does.
const suppressionStaging = `CREATE TEMP TABLE IF NOT EXISTS suppression_changes_in (
    id VARCHAR, time_ns BIGINT, action VARCHAR, address VARCHAR, account VARCHAR,
    shared BOOLEAN, sender_domain VARCHAR, list VARCHAR, reason VARCHAR,
    event_id VARCHAR, since_ns BIGINT, until_ns BIGINT, changed_by VARCHAR, logged_ns BIGINT)`

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

// AppendSuppressionChanges stores changes in one transaction, logged now;
// a change whose ID is stored already (or repeated within the call) is left
// as the first stored.
func (s *Store) AppendSuppressionChanges(ctx context.Context, changes []metrics.SuppressionChange) error {
	if len(changes) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func() error {
		if _, err := s.write.ExecContext(ctx, suppressionStaging); err != nil {
			return err
		}
		if _, err := s.write.ExecContext(ctx, "DELETE FROM suppression_changes_in"); err != nil {
			return err
		}
		seen := make(map[string]bool, len(changes))
		logged := time.Now().UnixNano()
		err := s.write.Raw(func(dc any) error {
			a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", "suppression_changes_in")
			if err != nil {
				return err
			}
			for _, c := range changes {
				if seen[c.ID] {
					continue
				}
				seen[c.ID] = true
				if err := a.AppendRow(c.ID, unixNano(c.Time), c.Action, c.Address, c.Account, c.Shared,
					c.SenderDomain, c.List, c.Reason, c.EventID, unixNano(c.Since), unixNano(c.Until), c.By, logged); err != nil {
					a.Close()
					return err
				}
			}
			return a.CloseWithCancel(ctx)
		})
		if err != nil {
			return err
		}
		_, err = s.write.ExecContext(ctx, "INSERT OR IGNORE INTO suppression_changes ("+suppressionColumns+
			") SELECT "+suppressionColumns+" FROM suppression_changes_in")
		return err
	})
	if err != nil {
		return fmt.Errorf("duckdb: append %d suppression changes: %w", len(changes), err)
	}
	return nil
}

// SuppressionChanges calls fn with every stored change in (Time, ID) order,
// row by row as the query streams them, and stops at fn's first error,
// which it returns as it is.
func (s *Store) SuppressionChanges(ctx context.Context, fn func(metrics.SuppressionChange) error) error {
	return s.FindSuppressionChanges(ctx, metrics.SuppressionQuery{}, fn)
}

// suppressionQuery is the query of the changes q selects, in (time_ns, id)
// order or (logged_ns, id) with q.ByLogged, and its arguments: every value is a bound parameter.
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
	order := "time_ns"
	if q.ByLogged {
		order = "logged_ns"
	}
	if !q.AfterTime.IsZero() || q.AfterID != "" {
		at := unixNano(q.AfterTime)
		where = append(where, "("+order+" > ? OR ("+order+" = ? AND id > ?))")
		args = append(args, at, at, q.AfterID)
	}
	if !q.LoggedBefore.IsZero() {
		where = append(where, "logged_ns < ?")
		args = append(args, unixNano(q.LoggedBefore))
	}
	query := "SELECT " + suppressionColumns + " FROM suppression_changes"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + order + ", id"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, int64(q.Limit))
	}
	return query, args
}

// FindSuppressionChanges calls fn with the stored changes q selects, in
// (Time, ID) order (or (Logged, ID)), as SuppressionChanges does.
func (s *Store) FindSuppressionChanges(ctx context.Context, q metrics.SuppressionQuery, fn func(metrics.SuppressionChange) error) error {
	query, args := suppressionQuery(q)
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("duckdb: suppression changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c                        metrics.SuppressionChange
			at, since, until, logged int64
		)
		if err := rows.Scan(&c.ID, &at, &c.Action, &c.Address, &c.Account, &c.Shared, &c.SenderDomain,
			&c.List, &c.Reason, &c.EventID, &since, &until, &c.By, &logged); err != nil {
			return fmt.Errorf("duckdb: suppression changes: %w", err)
		}
		c.Time, c.Since, c.Until, c.Logged = fromUnixNano(at), fromUnixNano(since), fromUnixNano(until), fromUnixNano(logged)
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("duckdb: suppression changes: %w", err)
	}
	return nil
}
