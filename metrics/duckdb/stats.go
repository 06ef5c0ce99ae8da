package duckdb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"repute/metrics"
)

// dimensions maps each metrics.GroupBy to its column expression: the only
// SQL that enters the statistics query besides queries/stats.sql.
var dimensions = map[metrics.GroupBy]string{
	metrics.GroupAccount:      "account",
	metrics.GroupSenderDomain: "sender_domain",
	metrics.GroupISP:          "isp",
	metrics.GroupCampaign:     "campaign",
	metrics.GroupSendingIP:    "sending_ip",
	metrics.GroupCategory:     "category",
	metrics.GroupDay:          "date_trunc('day', time)",
	metrics.GroupHour:         "date_trunc('hour', time)",
}

// statsQuery fills the placeholders of queries/stats.sql for the given
// dimensions, which must all be known. With maxGroups > 0 it returns the
// totals row first and at most maxGroups+1 groups: one more than the cap
// tells the result was cut.
func statsQuery(tmpl string, by []metrics.GroupBy, maxGroups int) (string, error) {
	if len(by) == 0 {
		return strings.NewReplacer("/*keys*/", "", "/*group_by*/", "", "/*order_by*/", "").Replace(tmpl), nil
	}
	exprs := make([]string, len(by))
	for i, g := range by {
		expr, ok := dimensions[g]
		if !ok {
			return "", fmt.Errorf("duckdb: unknown group_by %q", g)
		}
		exprs[i] = expr
	}
	list := strings.Join(exprs, ", ")
	var keys, order strings.Builder
	fmt.Fprintf(&keys, "grouping(%s) <> 0 AS is_total,", list)
	order.WriteString("ORDER BY is_total DESC")
	for i, expr := range exprs {
		fmt.Fprintf(&keys, "\n    %s AS k%d,", expr, i)
		fmt.Fprintf(&order, ", k%d", i)
	}
	if maxGroups > 0 {
		fmt.Fprintf(&order, "\nLIMIT %d", maxGroups+2)
	}
	return strings.NewReplacer(
		"/*keys*/", keys.String(),
		"/*group_by*/", "GROUP BY GROUPING SETS (("+list+"), ())",
		"/*order_by*/", order.String(),
	).Replace(tmpl), nil
}

// Stats counts the events q selects, in one statement.
func (s *Store) Stats(ctx context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	query, err := statsQuery(s.sql.stats, q.GroupBy, q.MaxGroups)
	if err != nil {
		return nil, err
	}
	// Stored times are whole seconds, so a bound inside a second selects
	// the same events as the next whole second; TIMESTAMP keeps only
	// microseconds, so round up here rather than let DuckDB truncate.
	from, to := ceilSecond(q.From), ceilSecond(q.To)
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, query, from, to, q.Account)
	if err != nil {
		return nil, fmt.Errorf("duckdb: stats: %w", err)
	}
	defer rows.Close()

	res := &metrics.StatsResult{Groups: []metrics.Group{}}
	n := len(q.GroupBy)
	for rows.Next() {
		var (
			isTotal bool
			c       metrics.Counts
			keys    = make([]any, n)
			dest    = make([]any, 0, n+13)
		)
		if n > 0 {
			dest = append(dest, &isTotal)
			for i, g := range q.GroupBy {
				if g == metrics.GroupDay || g == metrics.GroupHour {
					keys[i] = new(*time.Time)
				} else {
					keys[i] = new(*string)
				}
				dest = append(dest, keys[i])
			}
		}
		dest = append(dest, &c.Sent, &c.Delivered, &c.Deferred, &c.BouncedHard, &c.BouncedSoft,
			&c.Complained, &c.OpenedHuman, &c.OpenedMachine, &c.OpenedUnverified, &c.Clicked,
			&c.Unsubscribed, &c.Dropped)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("duckdb: stats: %w", err)
		}
		if n == 0 || isTotal {
			res.Totals = c
			continue
		}
		key := make(map[metrics.GroupBy]string, n)
		for i, g := range q.GroupBy {
			switch k := keys[i].(type) {
			case **time.Time:
				if *k != nil {
					key[g] = (*k).UTC().Format(time.RFC3339)
				}
			case **string:
				if *k != nil {
					key[g] = **k
				}
			}
		}
		if q.MaxGroups > 0 && len(res.Groups) == q.MaxGroups {
			res.Truncated = true
			continue
		}
		res.Groups = append(res.Groups, metrics.Group{Key: key, Counts: c})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: stats: %w", err)
	}
	return res, nil
}

// ceilSecond returns t in UTC rounded up to a whole second.
func ceilSecond(t time.Time) time.Time {
	t = t.UTC()
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}
