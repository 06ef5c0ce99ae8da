package clickhouse

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"repute/metrics"
)

// groupExpr is the SQL of each dimension, as a String. Day and hour are the
// Unix seconds of the bucket start (the column is DateTime('UTC')), turned
// into RFC 3339 by keyValue.
var groupExpr = map[metrics.GroupBy]string{
	metrics.GroupAccount:      "account",
	metrics.GroupSenderDomain: "sender_domain",
	metrics.GroupISP:          "isp",
	metrics.GroupCampaign:     "campaign",
	metrics.GroupSendingIP:    "sending_ip",
	metrics.GroupDay:          "toString(toUInt32(toStartOfDay(time)))",
	metrics.GroupHour:         "toString(toUInt32(toStartOfHour(time)))",
}

// Stats computes the counts of the events with q.From <= time < q.To, of
// q.Account (all accounts when empty), grouped by q.GroupBy. Every event is
// counted once however often it was stored (read-time LIMIT 1 BY).
func (s *Store) Stats(ctx context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	res := &metrics.StatsResult{Groups: []metrics.Group{}}
	for _, g := range q.GroupBy {
		if groupExpr[g] == "" {
			return nil, fmt.Errorf("clickhouse: unknown group_by %q", g)
		}
	}
	from, to := ceilSeconds(q.From), ceilSeconds(q.To)
	if from >= to {
		return res, nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()

	args := []any{from, to}
	account := ""
	if q.Account != "" {
		account = "AND account = ?"
		args = append(args, q.Account)
	}
	build := func(groupBy []metrics.GroupBy) string {
		sql := strings.Replace(s.q[qStats], "/*ACCOUNT*/", account, 1)
		if len(groupBy) == 0 {
			return strings.NewReplacer("/*KEYS*/", "", "/*GROUP*/", "").Replace(sql)
		}
		keys := make([]string, len(groupBy))
		names := make([]string, len(groupBy))
		for i, g := range groupBy {
			names[i] = "k" + strconv.Itoa(i)
			keys[i] = groupExpr[g] + " AS " + names[i] + ",\n   "
		}
		return strings.NewReplacer("/*KEYS*/", strings.Join(keys, ""),
			"/*GROUP*/", "GROUP BY "+strings.Join(names, ", ")).Replace(sql)
	}

	// Totals: uniqueness over the whole range, so not the sum of the groups.
	totals, err := s.statsRows(ctx, conn, build(nil), args, nil)
	if err != nil {
		return nil, err
	}
	if len(totals) == 1 {
		res.Totals = totals[0].Counts
	}
	if len(q.GroupBy) == 0 {
		return res, nil
	}
	groups, err := s.statsRows(ctx, conn, build(q.GroupBy), args, q.GroupBy)
	if err != nil {
		return nil, err
	}
	sort.Slice(groups, func(i, j int) bool {
		for _, g := range q.GroupBy {
			if a, b := groups[i].Key[g], groups[j].Key[g]; a != b {
				return a < b
			}
		}
		return false
	})
	res.Groups = groups
	return res, nil
}

// statsRows runs a stats query and scans its rows: the group keys first (as
// many as groupBy), then the counts in the order of metrics.Counts.
func (s *Store) statsRows(ctx context.Context, conn driver.Conn, sql string, args []any, groupBy []metrics.GroupBy) ([]metrics.Group, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.errorf("stats", err)
	}
	defer rows.Close()
	out := []metrics.Group{}
	keys := make([]string, len(groupBy))
	var counts [11]uint64
	dest := make([]any, 0, len(keys)+len(counts))
	for i := range keys {
		dest = append(dest, &keys[i])
	}
	for i := range counts {
		dest = append(dest, &counts[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.errorf("stats", err)
		}
		g := metrics.Group{Key: make(map[metrics.GroupBy]string, len(groupBy))}
		for i, by := range groupBy {
			v, err := keyValue(by, keys[i])
			if err != nil {
				return nil, err
			}
			g.Key[by] = v
		}
		c := &g.Counts
		for i, p := range []*int64{&c.Sent, &c.Delivered, &c.Deferred, &c.BouncedHard,
			&c.BouncedSoft, &c.Complained, &c.OpenedHuman, &c.OpenedMachine, &c.Clicked,
			&c.Unsubscribed, &c.Dropped} {
			*p = int64(counts[i])
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("stats", err)
	}
	return out, nil
}

// keyValue turns a group key as selected into its API form: RFC 3339 for
// day and hour buckets, the value itself otherwise.
func keyValue(g metrics.GroupBy, v string) (string, error) {
	if g != metrics.GroupDay && g != metrics.GroupHour {
		return v, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return "", fmt.Errorf("clickhouse: %s bucket %q: %w", g, v, err)
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339), nil
}

// ceilSeconds returns t as Unix seconds rounded up, clamped to the range of
// DateTime. Stored times are whole seconds, so time >= t and time < t hold
// exactly when they hold for the rounded-up value.
func ceilSeconds(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return max(0, min(sec, math.MaxUint32))
}

// Known returns the keys among events that are already stored. It searches
// only between the earliest and the latest time of the events: a stored
// event with the same key but another time is not found. Content-derived
// event ids include the time, so a repeat of the same content always has
// the same time.
func (s *Store) Known(ctx context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	known := map[metrics.Key]bool{}
	if len(events) == 0 {
		return known, nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()

	candidates, err := ext.NewTable("candidates", ext.Column("account", "String"), ext.Column("event_id", "String"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: known: %w", err)
	}
	lo, hi := events[0].Time, events[0].Time
	for _, e := range dedup(events) {
		if err := candidates.Append(e.Account, e.EventID); err != nil {
			return nil, fmt.Errorf("clickhouse: known: %w", err)
		}
		if e.Time.Before(lo) {
			lo = e.Time
		}
		if e.Time.After(hi) {
			hi = e.Time
		}
	}
	ctx = ch.Context(ctx, ch.WithExternalTable(candidates))
	rows, err := conn.Query(ctx, s.q[qKnown], lo.Unix(), hi.Unix())
	if err != nil {
		return nil, s.errorf("known", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k metrics.Key
		if err := rows.Scan(&k.Account, &k.EventID); err != nil {
			return nil, s.errorf("known", err)
		}
		known[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("known", err)
	}
	return known, nil
}
