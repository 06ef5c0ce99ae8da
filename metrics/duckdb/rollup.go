package duckdb

import (
	"context"
	"crypto/md5"
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// The roll-ups of the rule engine (metrics.RuleCounter; the table is in
// migrations/0012_rollups.sql).
//
// Why they are exact: Append adds the roll-up rows of exactly the events
// it found new, in the transaction that stores them, and appends are
// serialised (one Store's by its mutex, two Stores' over one file by the
// append_lock row). An event appended again is not new, so it adds
// nothing; a batch is in both the events and the roll-up or in neither.
// Unlike ClickHouse's, this roll-up needs no recompute: RefreshRollups
// only compacts it.

var _ metrics.RuleCounter = (*Store)(nil)

// rollupKey is the key of a roll-up row.
type rollupKey struct {
	hour                                         time.Time
	account, domain, ip, isp, campaign, category string
	class                                        uint8
	key                                          uint64
}

// rollupCounts are the additive counts of a class 0 row.
type rollupCounts struct {
	sent, delivered, deferred, hard, soft, complained, unsubscribed, dropped int64
}

// openKey is the key of an open or a click: what makes it unique in
// Stats. It must equal the expression of 0012_rollups.sql.
func openKey(e *metrics.Event) uint64 {
	var s string
	if e.MessageID != "" {
		s = "m\x00" + e.Account + "\x00" + e.MessageID + "\x00" + e.Recipient
	} else {
		s = "e\x00" + e.Account + "\x00" + e.EventID
	}
	sum := md5.Sum([]byte(s))
	return binary.LittleEndian.Uint64(sum[8:])
}

// rollupRows aggregates events into roll-up rows.
func rollupRows(events []metrics.Event) map[rollupKey]*rollupCounts {
	rows := map[rollupKey]*rollupCounts{}
	for i := range events {
		e := &events[i]
		k := rollupKey{hour: e.Time.UTC().Truncate(time.Hour), account: e.Account, domain: e.SenderDomain,
			ip: e.SendingIP, isp: e.ISP, campaign: e.Campaign, category: e.Category}
		switch e.Kind {
		case metrics.KindOpened:
			switch {
			case e.Machine == nil:
				k.class = 2
			case *e.Machine:
				k.class = 3
			default:
				k.class = 1
			}
			k.key = openKey(e)
		case metrics.KindClicked:
			k.class, k.key = 4, openKey(e)
		}
		c := rows[k]
		if c == nil {
			c = &rollupCounts{}
			rows[k] = c
		}
		switch e.Kind {
		case metrics.KindSent:
			c.sent++
		case metrics.KindDelivered:
			c.delivered++
		case metrics.KindDeferred:
			c.deferred++
		case metrics.KindBounced:
			if e.BounceType == metrics.BounceHard {
				c.hard++
			} else {
				c.soft++
			}
		case metrics.KindComplained:
			c.complained++
		case metrics.KindUnsubscribed:
			c.unsubscribed++
		case metrics.KindDropped:
			c.dropped++
		}
	}
	return rows
}

// appendRollup appends the roll-up rows of fresh (the events an append
// found new) as deltas, on the append's connection and transaction.
func appendRollup(ctx context.Context, dc driver.Conn, fresh []metrics.Event) error {
	a, err := duckdb.NewAppender(dc, "", "", "rollup")
	if err != nil {
		return err
	}
	for k, c := range rollupRows(fresh) {
		if err := a.AppendRow(k.hour, k.account, k.domain, k.ip, k.isp, k.campaign, k.category, k.class, k.key,
			c.sent, c.delivered, c.deferred, c.hard, c.soft, c.complained, c.unsubscribed, c.dropped, false); err != nil {
			a.Close()
			return err
		}
	}
	return a.CloseWithCancel(ctx)
}

// compactRollup sums the delta rows of every hour that has any into one
// row per key. Counts do not change. It takes the append_lock row first,
// as Append does, so that it and an append through another Store over the
// file never overlap (one of them conflicts and is retried).
const compactRollup = `
UPDATE append_lock SET appends = appends + 1;
CREATE TEMP TABLE rollup_compacted AS
SELECT hour, account, sender_domain, sending_ip, isp, campaign, category, class, key,
    sum(sent)::BIGINT, sum(delivered)::BIGINT, sum(deferred)::BIGINT, sum(bounced_hard)::BIGINT,
    sum(bounced_soft)::BIGINT, sum(complained)::BIGINT, sum(unsubscribed)::BIGINT, sum(dropped)::BIGINT,
    true
FROM rollup
WHERE hour IN (SELECT DISTINCT hour FROM rollup WHERE NOT compacted)
GROUP BY ALL;
DELETE FROM rollup WHERE hour IN (SELECT DISTINCT hour FROM rollup_compacted);
INSERT INTO rollup SELECT * FROM rollup_compacted;
DROP TABLE rollup_compacted;`

// RefreshRollups compacts the hours appended to since the last refresh.
// The counts are exact without it; it keeps RuleCounts reading about one
// row per scope and hour.
func (s *Store) RefreshRollups(ctx context.Context) error {
	err := s.writeTx(ctx, func() error {
		_, err := s.write.ExecContext(ctx, compactRollup)
		return err
	})
	if err != nil {
		return fmt.Errorf("duckdb: refresh roll-ups: %w", err)
	}
	return nil
}

// ruleCountsQuery counts the roll-up rows of the hours [$1, $2): the sums
// of the class 0 rows (o = 0), then, with opens, /*opens*/ is
// ruleCountsOpens. /*keys*/ (with a trailing comma) is filled from
// dimensions.
const ruleCountsQuery = `
WITH w AS (SELECT * FROM rollup WHERE hour >= $1 AND hour < $2)
SELECT /*keys*/ 0 AS o,
    coalesce(sum(sent), 0)::BIGINT, coalesce(sum(delivered), 0)::BIGINT, coalesce(sum(deferred), 0)::BIGINT,
    coalesce(sum(bounced_hard), 0)::BIGINT, coalesce(sum(bounced_soft), 0)::BIGINT,
    coalesce(sum(complained), 0)::BIGINT, coalesce(sum(unsubscribed), 0)::BIGINT, coalesce(sum(dropped), 0)::BIGINT
FROM w WHERE class = 0
GROUP BY ALL
/*opens*/`

// ruleCountsOpens adds to ruleCountsQuery the distinct keys of the rows of
// class > 0 per count they enter (o: 1 human, 2 machine, 3 unverified, 4
// clicked; an open without verdict enters both human and unverified). The
// distinct keys are found first and counted after: DuckDB's
// count(DISTINCT) FILTER, one per count, was several times slower.
const ruleCountsOpens = `UNION ALL
SELECT * EXCLUDE (key), count(*), 0, 0, 0, 0, 0, 0, 0
FROM (SELECT DISTINCT /*keys*/ unnest(CASE class WHEN 1 THEN [1] WHEN 2 THEN [1, 3] WHEN 3 THEN [2] ELSE [4] END) AS o, key
      FROM w WHERE class > 0)
GROUP BY ALL`

// RuleCounts implements metrics.RuleCounter.
func (s *Store) RuleCounts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) ([]metrics.Group, error) {
	var keys strings.Builder
	for i, g := range by {
		if !slices.Contains(metrics.RollupDims, g) {
			return nil, fmt.Errorf("duckdb: rule counts: cannot group by %q", g)
		}
		fmt.Fprintf(&keys, "%s AS k%d, ", dimensions[g], i)
	}
	groups := []metrics.Group{}
	start, end := metrics.RollupWindow(from, to)
	if !start.Before(end) {
		return groups, nil
	}
	query := ruleCountsQuery
	if opens := true; opens {
		query = strings.Replace(query, "/*opens*/", ruleCountsOpens, 1)
	}
	query = strings.ReplaceAll(query, "/*keys*/", keys.String())
	rows, err := s.db.QueryContext(ctx, query, start, end)
	if err != nil {
		return nil, fmt.Errorf("duckdb: rule counts: %w", err)
	}
	defer rows.Close()
	index := map[string]int{} // group by its keys joined with NUL
	keyVals := make([]string, len(by))
	var (
		o int
		v [8]int64
	)
	dest := make([]any, 0, len(by)+9)
	for i := range keyVals {
		dest = append(dest, &keyVals[i])
	}
	dest = append(dest, &o)
	for i := range v {
		dest = append(dest, &v[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("duckdb: rule counts: %w", err)
		}
		id := strings.Join(keyVals, "\x00")
		i, ok := index[id]
		if !ok {
			i = len(groups)
			index[id] = i
			g := metrics.Group{Key: make(map[metrics.GroupBy]string, len(by))}
			for j, d := range by {
				g.Key[d] = keyVals[j]
			}
			groups = append(groups, g)
		}
		c := &groups[i].Counts
		switch o {
		case 0:
			c.Sent, c.Delivered, c.Deferred, c.BouncedHard = v[0], v[1], v[2], v[3]
			c.BouncedSoft, c.Complained, c.Unsubscribed, c.Dropped = v[4], v[5], v[6], v[7]
		case 1:
			c.OpenedHuman = v[0]
		case 2:
			c.OpenedMachine = v[0]
		case 3:
			c.OpenedUnverified = v[0]
		case 4:
			c.Clicked = v[0]
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: rule counts: %w", err)
	}
	if len(by) == 0 && len(groups) == 1 && groups[0].Counts == (metrics.Counts{}) {
		return groups[:0], nil // no events: no group, as with groups
	}
	return groups, nil
}
