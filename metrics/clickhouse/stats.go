package clickhouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"

	"repute/metrics"
)

// groupExpr is the SQL of each dimension: a String, or for day and hour the
// DateTime of the bucket start (the column is DateTime('UTC')), turned into
// RFC 3339 when scanned.
var groupExpr = map[metrics.GroupBy]string{
	metrics.GroupAccount:      "account",
	metrics.GroupSenderDomain: "sender_domain",
	metrics.GroupISP:          "isp",
	metrics.GroupCampaign:     "campaign",
	metrics.GroupSendingIP:    "sending_ip",
	metrics.GroupCategory:     "category",
	metrics.GroupDay:          "toStartOfDay(time)",
	metrics.GroupHour:         "toStartOfHour(time)",
}

// Stats computes the counts of the events with q.From <= time < q.To, of
// q.Account (all accounts when empty), grouped by q.GroupBy, in one query.
// Every event is counted once however often it was stored (read with FINAL).
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
	account, keys, group := "", "", ""
	if q.Account != "" {
		account = "AND account = ?"
		args = append(args, q.Account)
	}
	if len(q.GroupBy) > 0 {
		names := make([]string, len(q.GroupBy))
		for i, g := range q.GroupBy {
			names[i] = "k" + strconv.Itoa(i)
			keys += groupExpr[g] + " AS " + names[i] + ",\n    "
		}
		group = "GROUP BY " + strings.Join(names, ", ") + " WITH TOTALS"
		if q.MaxGroups > 0 {
			// The totals are computed before LIMIT, over every group;
			// one group more than the cap tells the result was cut.
			group += "\nORDER BY " + strings.Join(names, ", ") + "\nLIMIT " + strconv.Itoa(q.MaxGroups+1)
		}
	}
	query := strings.NewReplacer("/*KEYS*/", keys, "/*ACCOUNT*/", account, "/*GROUP*/", group).Replace(s.q[qStats])

	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, s.errorf("stats", err)
	}
	defer rows.Close()
	keyVals := make([]string, len(q.GroupBy))
	keyTimes := make([]time.Time, len(q.GroupBy))
	var counts [12]uint64 // the server's UInt64, in the order of the query
	dest := make([]any, 0, len(keyVals)+len(counts))
	for i, g := range q.GroupBy {
		if isBucket(g) {
			dest = append(dest, &keyTimes[i])
		} else {
			dest = append(dest, &keyVals[i])
		}
	}
	for i := range counts {
		dest = append(dest, &counts[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.errorf("stats", err)
		}
		if len(q.GroupBy) == 0 {
			res.Totals = toCounts(counts)
			continue
		}
		g := metrics.Group{Key: make(map[metrics.GroupBy]string, len(q.GroupBy)), Counts: toCounts(counts)}
		for i, by := range q.GroupBy {
			if isBucket(by) {
				g.Key[by] = keyTimes[i].UTC().Format(time.RFC3339)
			} else {
				g.Key[by] = keyVals[i]
			}
		}
		if q.MaxGroups > 0 && len(res.Groups) == q.MaxGroups {
			res.Truncated = true
			continue
		}
		res.Groups = append(res.Groups, g)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("stats", err)
	}
	if len(q.GroupBy) > 0 {
		// No groups: the server may send no totals at all, and zero is right.
		if err := rows.Totals(dest...); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, s.errorf("stats totals", err)
		}
		if len(res.Groups) > 0 {
			res.Totals = toCounts(counts)
		}
	}
	sort.Slice(res.Groups, func(i, j int) bool {
		for _, g := range q.GroupBy {
			if a, b := res.Groups[i].Key[g], res.Groups[j].Key[g]; a != b {
				return a < b
			}
		}
		return false
	})
	return res, nil
}

// toCounts turns the counts as selected, in the order of the stats query,
// into metrics.Counts.
func toCounts(v [12]uint64) metrics.Counts {
	n := func(i int) int64 { return int64(v[i]) }
	return metrics.Counts{Sent: n(0), Delivered: n(1), Deferred: n(2), BouncedHard: n(3),
		BouncedSoft: n(4), Complained: n(5), OpenedHuman: n(6), OpenedMachine: n(7),
		OpenedUnverified: n(8), Clicked: n(9), Unsubscribed: n(10), Dropped: n(11)}
}

// isBucket tells the time dimensions, whose keys are DateTime.
func isBucket(g metrics.GroupBy) bool { return g == metrics.GroupDay || g == metrics.GroupHour }

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
