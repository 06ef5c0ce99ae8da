package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

var _ metrics.RulesHistory = (*Store)(nil)

// decisionColumns are the columns of rule_decisions in table order
// (migration 0011): the Appender fills the staging table by position.
const decisionColumns = `id, seq, issued_ns, expires_ns, sender_domain, sending_ip, isp, action,
    warmup_day, daily_limit, hourly_limit, minute_limit, max_connections, source, reasons`

const decisionStaging = `CREATE TEMP TABLE IF NOT EXISTS rule_decisions_in (
    id VARCHAR, seq BIGINT, issued_ns BIGINT, expires_ns BIGINT, sender_domain VARCHAR,
    sending_ip VARCHAR, isp VARCHAR, action VARCHAR, warmup_day BIGINT, daily_limit BIGINT,
    hourly_limit BIGINT, minute_limit BIGINT, max_connections BIGINT, source VARCHAR, reasons VARCHAR)`

// flagChangeColumns are the columns of rule_flag_changes in table order.
const flagChangeColumns = `id, time_ns, rule, account, sender_domain, sending_ip, isp, campaign,
    category, severity, value, threshold, sample, time_window, raised`

const flagChangeStaging = `CREATE TEMP TABLE IF NOT EXISTS rule_flag_changes_in (
    id VARCHAR, time_ns BIGINT, rule VARCHAR, account VARCHAR, sender_domain VARCHAR,
    sending_ip VARCHAR, isp VARCHAR, campaign VARCHAR, category VARCHAR, severity VARCHAR,
    value DOUBLE, threshold DOUBLE, sample BIGINT, time_window VARCHAR, raised BOOLEAN)`

// nullInt is p as an appended value: nil (NULL) or an int64.
func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

// appendStaged fills the temporary table staging (created by create)
// through an Appender with rows, then moves the rows not stored yet into
// table with one INSERT OR IGNORE, in one transaction.
func (s *Store) appendStaged(ctx context.Context, create, staging, table, columns string, rows [][]driver.Value) error {
	return s.writeTx(ctx, func() error {
		if _, err := s.write.ExecContext(ctx, create); err != nil {
			return err
		}
		if _, err := s.write.ExecContext(ctx, "DELETE FROM "+staging); err != nil {
			return err
		}
		err := s.write.Raw(func(dc any) error {
			a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", staging)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if err := a.AppendRow(r...); err != nil {
					a.Close()
					return err
				}
			}
			return a.CloseWithCancel(ctx)
		})
		if err != nil {
			return err
		}
		_, err = s.write.ExecContext(ctx, "INSERT OR IGNORE INTO "+table+" ("+columns+") SELECT "+columns+" FROM "+staging)
		return err
	})
}

// AppendDecisions stores ds in one transaction; a decision whose (ID, Seq)
// is stored already (or repeated within the call) is left as the first
// stored.
func (s *Store) AppendDecisions(ctx context.Context, ds []metrics.StoredDecision) error {
	if len(ds) == 0 {
		return nil
	}
	type key struct {
		id  string
		seq int64
	}
	seen := make(map[key]bool, len(ds))
	rows := make([][]driver.Value, 0, len(ds))
	for _, d := range ds {
		if k := (key{d.ID, d.Seq}); !seen[k] {
			seen[k] = true
			rows = append(rows, []driver.Value{d.ID, d.Seq, unixNano(d.IssuedAt), unixNano(d.ExpiresAt),
				d.SenderDomain, d.SendingIP, d.ISP, d.Action, int64(d.WarmupDay), int64(d.DailyLimit),
				int64(d.HourlyLimit), nullInt(d.MinuteLimit), nullInt(d.MaxConnections), d.Source, d.Reasons})
		}
	}
	if err := s.appendStaged(ctx, decisionStaging, "rule_decisions_in", "rule_decisions", decisionColumns, rows); err != nil {
		return fmt.Errorf("duckdb: append %d decisions: %w", len(ds), err)
	}
	return nil
}

// AppendFlagChanges stores cs in one transaction; a change whose ID is
// stored already (or repeated within the call) is left as the first stored.
func (s *Store) AppendFlagChanges(ctx context.Context, cs []metrics.StoredFlagChange) error {
	if len(cs) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(cs))
	rows := make([][]driver.Value, 0, len(cs))
	for _, c := range cs {
		if !seen[c.ID] {
			seen[c.ID] = true
			rows = append(rows, []driver.Value{c.ID, unixNano(c.Time), c.Rule, c.Account, c.SenderDomain,
				c.SendingIP, c.ISP, c.Campaign, c.Category, c.Severity, c.Value, c.Threshold, c.Sample,
				c.Window, c.Raised})
		}
	}
	if err := s.appendStaged(ctx, flagChangeStaging, "rule_flag_changes_in", "rule_flag_changes", flagChangeColumns, rows); err != nil {
		return fmt.Errorf("duckdb: append %d flag changes: %w", len(cs), err)
	}
	return nil
}

// historyWhere is the WHERE clause (with its leading space, or "") of a
// query over column (Unix ns) between from and to and of a sender
// domain, and its arguments.
func historyWhere(column string, from, to time.Time, domain string) (string, []any) {
	var (
		where []string
		args  []any
	)
	if !from.IsZero() {
		where = append(where, column+" >= ?")
		args = append(args, from.UnixNano())
	}
	if !to.IsZero() {
		where = append(where, column+" < ?")
		args = append(args, to.UnixNano())
	}
	if domain != "" {
		where = append(where, "sender_domain = ?")
		args = append(args, domain)
	}
	if len(where) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// Decisions returns the stored decisions q selects, in (IssuedAt, Seq, ID)
// order.
func (s *Store) Decisions(ctx context.Context, q metrics.DecisionQuery) ([]metrics.StoredDecision, error) {
	where, args := historyWhere("issued_ns", q.From, q.To, q.SenderDomain)
	if q.AfterSeq > 0 {
		if where == "" {
			where = " WHERE seq > ?"
		} else {
			where += " AND seq > ?"
		}
		args = append(args, q.AfterSeq)
	}
	query := "SELECT " + decisionColumns + " FROM rule_decisions" + where + " ORDER BY issued_ns, seq, id"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, int64(q.Limit))
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb: decisions: %w", err)
	}
	defer rows.Close()
	out := []metrics.StoredDecision{}
	for rows.Next() {
		var (
			d                  metrics.StoredDecision
			issued, expires    int64
			day, daily, hourly int64
			minute, conns      *int64
		)
		if err := rows.Scan(&d.ID, &d.Seq, &issued, &expires, &d.SenderDomain, &d.SendingIP, &d.ISP,
			&d.Action, &day, &daily, &hourly, &minute, &conns, &d.Source, &d.Reasons); err != nil {
			return nil, fmt.Errorf("duckdb: decisions: %w", err)
		}
		d.IssuedAt, d.ExpiresAt = fromUnixNano(issued), fromUnixNano(expires)
		d.WarmupDay, d.DailyLimit, d.HourlyLimit = int(day), int(daily), int(hourly)
		d.MinuteLimit, d.MaxConnections = intPtr(minute), intPtr(conns)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: decisions: %w", err)
	}
	return out, nil
}

// intPtr is p as an *int (nil for nil).
func intPtr(p *int64) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// FlagChanges returns the stored flag changes q selects, in (Time, ID)
// order.
func (s *Store) FlagChanges(ctx context.Context, q metrics.FlagChangeQuery) ([]metrics.StoredFlagChange, error) {
	where, args := historyWhere("time_ns", q.From, q.To, q.SenderDomain)
	query := "SELECT " + flagChangeColumns + " FROM rule_flag_changes" + where + " ORDER BY time_ns, id"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, int64(q.Limit))
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb: flag changes: %w", err)
	}
	defer rows.Close()
	out := []metrics.StoredFlagChange{}
	for rows.Next() {
		var (
			c  metrics.StoredFlagChange
			at int64
		)
		if err := rows.Scan(&c.ID, &at, &c.Rule, &c.Account, &c.SenderDomain, &c.SendingIP, &c.ISP,
			&c.Campaign, &c.Category, &c.Severity, &c.Value, &c.Threshold, &c.Sample, &c.Window, &c.Raised); err != nil {
			return nil, fmt.Errorf("duckdb: flag changes: %w", err)
		}
		c.Time = fromUnixNano(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: flag changes: %w", err)
	}
	return out, nil
}

var _ metrics.RulesState = (*Store)(nil)

// rulesStateName is the row of rule_engine_state the engine keeps.
const rulesStateName = "rules"

// SaveRulesState keeps state at version unless a higher version is stored
// already.
func (s *Store) SaveRulesState(ctx context.Context, version int64, state []byte) error {
	err := s.writeTx(ctx, func() error {
		_, err := s.write.ExecContext(ctx, `INSERT INTO rule_engine_state (name, version, state) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET version = excluded.version, state = excluded.state
WHERE excluded.version > rule_engine_state.version`, rulesStateName, version, string(state))
		return err
	})
	if err != nil {
		return fmt.Errorf("duckdb: save rules state: %w", err)
	}
	return nil
}

// LoadRulesState returns the stored state (0, nil when none).
func (s *Store) LoadRulesState(ctx context.Context) (int64, []byte, error) {
	var (
		version int64
		state   string
	)
	err := s.db.QueryRowContext(ctx, "SELECT version, state FROM rule_engine_state WHERE name = ?", rulesStateName).
		Scan(&version, &state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil, nil
	case err != nil:
		return 0, nil, fmt.Errorf("duckdb: load rules state: %w", err)
	}
	return version, []byte(state), nil
}

// operatorActionColumns are the columns of rule_operator_actions.
const operatorActionColumns = `id, time_ns, who, action, decision_id, target, sender_domain, sending_ip, isp,
    reason, decision`

// AppendOperatorActions stores as in one transaction; an action whose ID
// is stored already is left as the first stored.
func (s *Store) AppendOperatorActions(ctx context.Context, as []metrics.StoredOperatorAction) error {
	if len(as) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func() error {
		for _, a := range as {
			if _, err := s.write.ExecContext(ctx, "INSERT OR IGNORE INTO rule_operator_actions ("+operatorActionColumns+
				") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", a.ID, unixNano(a.Time), a.Who, a.Action, a.DecisionID,
				a.Target, a.SenderDomain, a.SendingIP, a.ISP, a.Reason, a.Decision); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("duckdb: append %d operator actions: %w", len(as), err)
	}
	return nil
}

// OperatorActions returns the actions at or after from, in (Time, ID)
// order.
func (s *Store) OperatorActions(ctx context.Context, from time.Time) ([]metrics.StoredOperatorAction, error) {
	where, args := historyWhere("time_ns", from, time.Time{}, "")
	rows, err := s.db.QueryContext(ctx, "SELECT "+operatorActionColumns+" FROM rule_operator_actions"+where+
		" ORDER BY time_ns, id", args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb: operator actions: %w", err)
	}
	defer rows.Close()
	out := []metrics.StoredOperatorAction{}
	for rows.Next() {
		var (
			a  metrics.StoredOperatorAction
			at int64
		)
		if err := rows.Scan(&a.ID, &at, &a.Who, &a.Action, &a.DecisionID, &a.Target, &a.SenderDomain,
			&a.SendingIP, &a.ISP, &a.Reason, &a.Decision); err != nil {
			return nil, fmt.Errorf("duckdb: operator actions: %w", err)
		}
		a.Time = fromUnixNano(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: operator actions: %w", err)
	}
	return out, nil
}
