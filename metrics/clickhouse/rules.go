package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"repute/metrics"
)

var _ metrics.RulesHistory = (*Store)(nil)

// decisionColumns are the columns of rule_decisions
// (sql/migrations/0009_rules_history.sql) as inserts fill them and reads
// return them (precedence last, left out of reads).
const decisionColumns = "issued_ns, seq, id, expires_ns, sender_domain, sending_ip, isp, action, " +
	"warmup_day, daily_limit, hourly_limit, minute_limit, max_connections, source, reasons"

// flagChangeColumns are the columns of rule_flag_changes, as
// decisionColumns.
const flagChangeColumns = "time_ns, id, rule, account, sender_domain, sending_ip, isp, campaign, " +
	"category, severity, value, threshold, sample, time_window, raised"

// nullInt is p as a Nullable(Int64) value.
func nullInt(p *int) *int64 {
	if p == nil {
		return nil
	}
	v := int64(*p)
	return &v
}

// intPtr is p as an *int (nil for nil).
func intPtr(p *int64) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// insertRows inserts rows (each the values of columns, then the
// precedence when withPrecedence) into table in one batch.
func (s *Store) insertRows(ctx context.Context, what, table, columns string, rows [][]any, withPrecedence bool) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if withPrecedence {
		columns += ", precedence"
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
	if err != nil {
		return s.errorf("prepare "+what+" insert", err)
	}
	defer batch.Abort() //nolint:errcheck // a no-op once sent
	for _, r := range rows {
		if err := batch.Append(r...); err != nil {
			return s.errorf(what+" insert", err)
		}
	}
	if err := batch.Send(); err != nil {
		return s.errorf(fmt.Sprintf("insert %d %s", len(rows), what), err)
	}
	return nil
}

// AppendDecisions stores ds in one insert. A decision whose (ID, Seq) is
// stored already is inserted again, but reads take the first stored (FINAL
// over ReplacingMergeTree(precedence)); one repeated within the call is
// inserted once, the first.
func (s *Store) AppendDecisions(ctx context.Context, ds []metrics.StoredDecision) error {
	if len(ds) == 0 {
		return nil
	}
	type key struct {
		id  string
		seq int64
	}
	prec := precedence(time.Now())
	seen := make(map[key]bool, len(ds))
	rows := make([][]any, 0, len(ds))
	for _, d := range ds {
		if k := (key{d.ID, d.Seq}); !seen[k] {
			seen[k] = true
			rows = append(rows, []any{unixNano(d.IssuedAt), d.Seq, d.ID, unixNano(d.ExpiresAt),
				d.SenderDomain, d.SendingIP, d.ISP, d.Action, int64(d.WarmupDay), int64(d.DailyLimit),
				int64(d.HourlyLimit), nullInt(d.MinuteLimit), nullInt(d.MaxConnections), d.Source, d.Reasons, prec})
		}
	}
	return s.insertRows(ctx, "decisions", "rule_decisions", decisionColumns, rows, true)
}

// AppendFlagChanges stores cs in one insert; a change whose ID is stored
// already is read as the first stored, as AppendDecisions.
func (s *Store) AppendFlagChanges(ctx context.Context, cs []metrics.StoredFlagChange) error {
	if len(cs) == 0 {
		return nil
	}
	prec := precedence(time.Now())
	seen := make(map[string]bool, len(cs))
	rows := make([][]any, 0, len(cs))
	for _, c := range cs {
		if !seen[c.ID] {
			seen[c.ID] = true
			var raised uint8
			if c.Raised {
				raised = 1
			}
			rows = append(rows, []any{unixNano(c.Time), c.ID, c.Rule, c.Account, c.SenderDomain,
				c.SendingIP, c.ISP, c.Campaign, c.Category, c.Severity, c.Value, c.Threshold, c.Sample,
				c.Window, raised, prec})
		}
	}
	return s.insertRows(ctx, "flag changes", "rule_flag_changes", flagChangeColumns, rows, true)
}

// historyQuery is the query of columns from table FINAL between from and
// to on column (Unix ns), of a sender domain, with seq > afterSeq (when
// positive), in order, at most limit rows, and its arguments. The filtered columns are covered by the sorting key,
// so the rows FINAL collapses agree on them.
func historyQuery(columns, table, column string, from, to time.Time, domain, order string, limit int, afterSeq int64) (string, []any) {
	var (
		where []string
		args  []any
	)
	if afterSeq > 0 {
		where = append(where, "seq > ?")
		args = append(args, afterSeq)
	}
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
	query := "SELECT " + columns + " FROM " + table + " FINAL"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + order
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, uint64(limit))
	}
	return query, args
}

// Decisions returns the stored decisions q selects, in (IssuedAt, Seq, ID)
// order.
func (s *Store) Decisions(ctx context.Context, q metrics.DecisionQuery) ([]metrics.StoredDecision, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	query, args := historyQuery(decisionColumns, "rule_decisions", "issued_ns", q.From, q.To, q.SenderDomain,
		"issued_ns, seq, id", q.Limit, q.AfterSeq)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, s.errorf("decisions", err)
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
		if err := rows.Scan(&issued, &d.Seq, &d.ID, &expires, &d.SenderDomain, &d.SendingIP, &d.ISP,
			&d.Action, &day, &daily, &hourly, &minute, &conns, &d.Source, &d.Reasons); err != nil {
			return nil, s.errorf("decisions", err)
		}
		d.IssuedAt, d.ExpiresAt = fromUnixNano(issued), fromUnixNano(expires)
		d.WarmupDay, d.DailyLimit, d.HourlyLimit = int(day), int(daily), int(hourly)
		d.MinuteLimit, d.MaxConnections = intPtr(minute), intPtr(conns)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("decisions", err)
	}
	return out, nil
}

// FlagChanges returns the stored flag changes q selects, in (Time, ID)
// order.
func (s *Store) FlagChanges(ctx context.Context, q metrics.FlagChangeQuery) ([]metrics.StoredFlagChange, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	query, args := historyQuery(flagChangeColumns, "rule_flag_changes", "time_ns", q.From, q.To, q.SenderDomain,
		"time_ns, id", q.Limit, 0)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, s.errorf("flag changes", err)
	}
	defer rows.Close()
	out := []metrics.StoredFlagChange{}
	for rows.Next() {
		var (
			c      metrics.StoredFlagChange
			at     int64
			raised uint8
		)
		if err := rows.Scan(&at, &c.ID, &c.Rule, &c.Account, &c.SenderDomain, &c.SendingIP, &c.ISP,
			&c.Campaign, &c.Category, &c.Severity, &c.Value, &c.Threshold, &c.Sample, &c.Window, &raised); err != nil {
			return nil, s.errorf("flag changes", err)
		}
		c.Time, c.Raised = fromUnixNano(at), raised == 1
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("flag changes", err)
	}
	return out, nil
}

var _ metrics.RulesState = (*Store)(nil)

// rulesStateName is the row of rule_engine_state the engine keeps.
const rulesStateName = "rules"

// SaveRulesState inserts state at version: reads take the highest version
// (ReplacingMergeTree(version) keeps it in merges).
func (s *Store) SaveRulesState(ctx context.Context, version int64, state []byte) error {
	return s.insertRows(ctx, "rules state", "rule_engine_state", "name, version, state",
		[][]any{{rulesStateName, version, string(state)}}, false)
}

// LoadRulesState returns the state of the highest version (0, nil when
// none).
func (s *Store) LoadRulesState(ctx context.Context) (int64, []byte, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT version, state FROM rule_engine_state WHERE name = ? ORDER BY version DESC LIMIT 1",
		rulesStateName)
	if err != nil {
		return 0, nil, s.errorf("rules state", err)
	}
	defer rows.Close()
	var (
		version int64
		state   string
	)
	if rows.Next() {
		if err := rows.Scan(&version, &state); err != nil {
			return 0, nil, s.errorf("rules state", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, s.errorf("rules state", err)
	}
	if version == 0 {
		return 0, nil, nil
	}
	return version, []byte(state), nil
}

// operatorActionColumns are the columns of rule_operator_actions, as
// decisionColumns.
const operatorActionColumns = "time_ns, id, who, action, decision_id, target, sender_domain, sending_ip, isp, " +
	"reason, decision"

// AppendOperatorActions stores as in one insert; an action whose ID is
// stored already is read as the first stored, as AppendDecisions.
func (s *Store) AppendOperatorActions(ctx context.Context, as []metrics.StoredOperatorAction) error {
	if len(as) == 0 {
		return nil
	}
	prec := precedence(time.Now())
	seen := make(map[string]bool, len(as))
	rows := make([][]any, 0, len(as))
	for _, a := range as {
		if !seen[a.ID] {
			seen[a.ID] = true
			rows = append(rows, []any{unixNano(a.Time), a.ID, a.Who, a.Action, a.DecisionID, a.Target,
				a.SenderDomain, a.SendingIP, a.ISP, a.Reason, a.Decision, prec})
		}
	}
	return s.insertRows(ctx, "operator actions", "rule_operator_actions", operatorActionColumns, rows, true)
}

// OperatorActions returns the actions at or after from, in (Time, ID)
// order.
func (s *Store) OperatorActions(ctx context.Context, from time.Time) ([]metrics.StoredOperatorAction, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	query, args := historyQuery(operatorActionColumns, "rule_operator_actions", "time_ns", from, time.Time{}, "",
		"time_ns, id", 0, 0)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, s.errorf("operator actions", err)
	}
	defer rows.Close()
	out := []metrics.StoredOperatorAction{}
	for rows.Next() {
		var (
			a  metrics.StoredOperatorAction
			at int64
		)
		if err := rows.Scan(&at, &a.ID, &a.Who, &a.Action, &a.DecisionID, &a.Target, &a.SenderDomain,
			&a.SendingIP, &a.ISP, &a.Reason, &a.Decision); err != nil {
			return nil, s.errorf("operator actions", err)
		}
		a.Time = fromUnixNano(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("operator actions", err)
	}
	return out, nil
}
