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

// The roll-ups of the rule engine (metrics.RuleCounter; the tables are in
// migrations/0014_rollup_first_opens.sql): additive counts per UTC hour and
// scope, opens and clicks counted once per open key in the hour and scope
// of its first open (metrics.FirstOpens), and each key's first open.
//
// Why they are exact: Append adds the roll-up deltas of exactly the events
// it found new, in the transaction that stores them, and appends are
// serialised (one Store's by its mutex, two Stores' over one file by the
// append_lock row). An event appended again is not new, so it adds
// nothing; a batch is in both the events and the roll-up or in neither.
// For opens, the append reads the stored first opens of its batch's keys
// in that transaction, so it compares each key's earliest new open with
// the earliest of all the opens stored before it: an earlier one replaces
// it, and its +1 moves from the old row to the new one. Whatever the order
// of arrival, a key's first open is thus the earliest stored and counts in
// exactly one row. Unlike ClickHouse's, this roll-up needs no recompute:
// RefreshRollups only compacts it.
//
// What it costs: per append, one lookup of the batch's open keys (a scan
// of rollup_first_opens's key column, 8 bytes a key), an insert per new
// key, an update per key moved (late opens only), and one delta row per
// (hour, scope) the batch touches. A reader sums about one row per scope
// and hour of its window, whatever the number of opens.

var _ metrics.RuleCounter = (*Store)(nil)

// rollupKey is the key of a roll-up row: an hour and a scope.
type rollupKey struct {
	hour                                         time.Time
	account, domain, ip, isp, campaign, category string
}

// rollupCounts are the counts of a roll-up row, in the table's order:
// sent … dropped, then the first opens of each metrics.OpenKind at
// index openCount+kind-1.
type rollupCounts [12]int64

// openCount is the index of OpenHuman's count in rollupCounts.
const openCount = 8

// openID identifies a first open: the kind, and the open key.
type openID struct {
	kind metrics.OpenKind
	key  uint64
}

// firstOpen is a row of rollup_first_opens: when the first open of a key
// was, and the roll-up row it counts in.
type firstOpen struct {
	time    time.Time // truncated to microseconds, as DuckDB stores it
	eventID string
	row     rollupKey
}

// before reports whether f is earlier than g: by time, then event id.
func (f *firstOpen) before(g *firstOpen) bool {
	return f.time.Before(g.time) || (f.time.Equal(g.time) && f.eventID < g.eventID)
}

// openKey is the key of an open or a click: what makes it unique in
// Stats. It must equal the expression of 0014_rollup_first_opens.sql.
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

// scopeOf returns the roll-up row of e.
func scopeOf(e *metrics.Event) rollupKey {
	return rollupKey{hour: e.Time.UTC().Truncate(time.Hour), account: e.Account, domain: e.SenderDomain,
		ip: e.SendingIP, isp: e.ISP, campaign: e.Campaign, category: e.Category}
}

// rollupPlan is what an append writes to the roll-ups.
type rollupPlan struct {
	rows    map[rollupKey]*rollupCounts
	inserts map[openID]*firstOpen // keys with no first open stored
	updates map[openID]*firstOpen // keys whose stored first open is later
}

func (p *rollupPlan) add(k rollupKey, i int, d int64) {
	c := p.rows[k]
	if c == nil {
		c = &rollupCounts{}
		p.rows[k] = c
	}
	c[i] += d
}

// lookupFirstOpens returns the stored first opens of the keys of ids.
const lookupFirstOpens = `
SELECT kind, key, time, event_id, account, sender_domain, sending_ip, isp, campaign, category
FROM rollup_first_opens
WHERE key IN (SELECT unnest($1::UBIGINT[]))`

// planRollup computes the roll-up changes of fresh (the events an append
// found new), reading the stored first opens of their keys through q (the
// append's transaction).
func planRollup(ctx context.Context, q querier, fresh []metrics.Event) (*rollupPlan, error) {
	p := &rollupPlan{rows: map[rollupKey]*rollupCounts{}, inserts: map[openID]*firstOpen{},
		updates: map[openID]*firstOpen{}}
	for i := range fresh {
		e := &fresh[i]
		k := scopeOf(e)
		switch e.Kind {
		case metrics.KindSent:
			p.add(k, 0, 1)
		case metrics.KindDelivered:
			p.add(k, 1, 1)
		case metrics.KindDeferred:
			p.add(k, 2, 1)
		case metrics.KindBounced:
			if e.BounceType == metrics.BounceHard {
				p.add(k, 3, 1)
			} else {
				p.add(k, 4, 1)
			}
		case metrics.KindComplained:
			p.add(k, 5, 1)
		case metrics.KindUnsubscribed:
			p.add(k, 6, 1)
		case metrics.KindDropped:
			p.add(k, 7, 1)
		}
	}
	// The batch's earliest open of each key (FirstOpens, the reference
	// model), by openID: two keys whose hashes collide are one.
	batch := map[openID]*firstOpen{}
	for f, e := range metrics.FirstOpens(fresh) {
		id := openID{kind: f.Kind, key: openKey(&e)}
		n := &firstOpen{time: e.Time.UTC().Truncate(time.Microsecond), eventID: e.EventID, row: scopeOf(&e)}
		if o := batch[id]; o == nil || n.before(o) {
			batch[id] = n
		}
	}
	if len(batch) == 0 {
		return p, nil
	}
	keys := make([]uint64, 0, len(batch))
	seen := map[uint64]bool{}
	for id := range batch {
		if !seen[id.key] {
			seen[id.key] = true
			keys = append(keys, id.key)
		}
	}
	stored := make(map[openID]*firstOpen, len(keys))
	rows, err := q.QueryContext(ctx, lookupFirstOpens, keys)
	if err != nil {
		return nil, fmt.Errorf("first opens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id openID
			f  firstOpen
		)
		if err := rows.Scan(&id.kind, &id.key, &f.time, &f.eventID, &f.row.account, &f.row.domain, &f.row.ip,
			&f.row.isp, &f.row.campaign, &f.row.category); err != nil {
			return nil, fmt.Errorf("first opens: %w", err)
		}
		f.time = f.time.UTC()
		f.row.hour = f.time.Truncate(time.Hour)
		stored[id] = &f
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("first opens: %w", err)
	}
	for id, n := range batch {
		col := openCount + int(id.kind) - 1
		switch o := stored[id]; {
		case o == nil:
			p.inserts[id] = n
			p.add(n.row, col, 1)
		case n.before(o):
			p.updates[id] = n
			p.add(o.row, col, -1)
			p.add(n.row, col, 1)
		}
	}
	return p, nil
}

// updateFirstOpens moves the first opens of keys to earlier opens; the
// lists ($1 kinds, $2 keys, $3 times in Unix microseconds, $4 event ids,
// $5… the dimensions) are parallel.
const updateFirstOpens = `
UPDATE rollup_first_opens AS f
SET time = u.time, event_id = u.event_id, account = u.account, sender_domain = u.sender_domain,
    sending_ip = u.sending_ip, isp = u.isp, campaign = u.campaign, category = u.category
FROM (SELECT unnest($1::BIGINT[]) AS kind, unnest($2::UBIGINT[]) AS key,
        make_timestamp(unnest($3::BIGINT[])) AS time, unnest($4::VARCHAR[]) AS event_id,
        unnest($5::VARCHAR[]) AS account, unnest($6::VARCHAR[]) AS sender_domain,
        unnest($7::VARCHAR[]) AS sending_ip, unnest($8::VARCHAR[]) AS isp,
        unnest($9::VARCHAR[]) AS campaign, unnest($10::VARCHAR[]) AS category) AS u
WHERE f.kind = u.kind AND f.key = u.key`

// updateArgs returns the arguments of updateFirstOpens for p's updates.
func (p *rollupPlan) updateArgs() []any {
	n := len(p.updates)
	kinds, keys, micros := make([]int64, 0, n), make([]uint64, 0, n), make([]int64, 0, n)
	strs := make([][]string, 7)
	for id, f := range p.updates {
		kinds, keys, micros = append(kinds, int64(id.kind)), append(keys, id.key), append(micros, f.time.UnixMicro())
		for i, v := range []string{f.eventID, f.row.account, f.row.domain, f.row.ip, f.row.isp, f.row.campaign, f.row.category} {
			strs[i] = append(strs[i], v)
		}
	}
	args := []any{kinds, keys, micros}
	for _, s := range strs {
		args = append(args, s)
	}
	return args
}

// appendRollup writes p on the append's driver connection (in its
// transaction): the new first opens and the delta rows by appender.
func appendRollup(ctx context.Context, dc driver.Conn, p *rollupPlan) error {
	if len(p.inserts) > 0 {
		a, err := duckdb.NewAppender(dc, "", "", "rollup_first_opens")
		if err != nil {
			return err
		}
		for id, f := range p.inserts {
			if err := a.AppendRow(uint8(id.kind), id.key, f.time, f.eventID, f.row.account, f.row.domain,
				f.row.ip, f.row.isp, f.row.campaign, f.row.category); err != nil {
				a.Close()
				return err
			}
		}
		if err := a.CloseWithCancel(ctx); err != nil {
			return err
		}
	}
	a, err := duckdb.NewAppender(dc, "", "", "rollup")
	if err != nil {
		return err
	}
	row := make([]driver.Value, 0, 20)
	for k, c := range p.rows {
		if *c == (rollupCounts{}) {
			continue // a key moved within its row
		}
		row = append(row[:0], k.hour, k.account, k.domain, k.ip, k.isp, k.campaign, k.category)
		for _, v := range c {
			row = append(row, v)
		}
		if err := a.AppendRow(append(row, false)...); err != nil {
			a.Close()
			return err
		}
	}
	return a.CloseWithCancel(ctx)
}

// compactRollup sums the delta rows of every hour that has any into one
// row per scope, leaving out scopes whose counts sum to zero (the rows a
// moved first open emptied). Counts do not change. It takes the
// append_lock row first, as Append does, so that it and an append through
// another Store over the file never overlap (one of them conflicts and is
// retried).
const compactRollup = `
UPDATE append_lock SET appends = appends + 1;
CREATE TEMP TABLE rollup_compacted AS
SELECT hour, account, sender_domain, sending_ip, isp, campaign, category,
    sum(sent)::BIGINT AS sent, sum(delivered)::BIGINT AS delivered, sum(deferred)::BIGINT AS deferred,
    sum(bounced_hard)::BIGINT AS bounced_hard, sum(bounced_soft)::BIGINT AS bounced_soft,
    sum(complained)::BIGINT AS complained, sum(unsubscribed)::BIGINT AS unsubscribed,
    sum(dropped)::BIGINT AS dropped, sum(opened_human)::BIGINT AS opened_human,
    sum(opened_machine)::BIGINT AS opened_machine, sum(opened_unverified)::BIGINT AS opened_unverified,
    sum(clicked)::BIGINT AS clicked, true AS compacted
FROM rollup
WHERE hour IN (SELECT DISTINCT hour FROM rollup WHERE NOT compacted)
GROUP BY hour, account, sender_domain, sending_ip, isp, campaign, category;
DELETE FROM rollup WHERE hour IN (SELECT DISTINCT hour FROM rollup_compacted);
INSERT INTO rollup SELECT * FROM rollup_compacted
WHERE sent <> 0 OR delivered <> 0 OR deferred <> 0 OR bounced_hard <> 0 OR bounced_soft <> 0
    OR complained <> 0 OR unsubscribed <> 0 OR dropped <> 0 OR opened_human <> 0
    OR opened_machine <> 0 OR opened_unverified <> 0 OR clicked <> 0;
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

// ruleCountsQuery sums the roll-up rows of the hours [$1, $2); /*keys*/
// (with a trailing comma) is filled from dimensions.
const ruleCountsQuery = `
SELECT /*keys*/
    coalesce(sum(sent), 0)::BIGINT, coalesce(sum(delivered), 0)::BIGINT, coalesce(sum(deferred), 0)::BIGINT,
    coalesce(sum(bounced_hard), 0)::BIGINT, coalesce(sum(bounced_soft), 0)::BIGINT,
    coalesce(sum(complained), 0)::BIGINT, coalesce(sum(unsubscribed), 0)::BIGINT, coalesce(sum(dropped), 0)::BIGINT,
    coalesce(sum(opened_human), 0)::BIGINT, coalesce(sum(opened_machine), 0)::BIGINT,
    coalesce(sum(opened_unverified), 0)::BIGINT, coalesce(sum(clicked), 0)::BIGINT
FROM rollup
WHERE hour >= $1 AND hour < $2
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
	query := strings.ReplaceAll(ruleCountsQuery, "/*keys*/", keys.String())
	rows, err := s.db.QueryContext(ctx, query, start, end)
	if err != nil {
		return nil, fmt.Errorf("duckdb: rule counts: %w", err)
	}
	defer rows.Close()
	keyVals := make([]string, len(by))
	var v rollupCounts
	dest := make([]any, 0, len(by)+len(v))
	for i := range keyVals {
		dest = append(dest, &keyVals[i])
	}
	for i := range v {
		dest = append(dest, &v[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("duckdb: rule counts: %w", err)
		}
		g := metrics.Group{Key: make(map[metrics.GroupBy]string, len(by))}
		for j, d := range by {
			g.Key[d] = keyVals[j]
		}
		c := &g.Counts
		c.Sent, c.Delivered, c.Deferred, c.BouncedHard = v[0], v[1], v[2], v[3]
		c.BouncedSoft, c.Complained, c.Unsubscribed, c.Dropped = v[4], v[5], v[6], v[7]
		c.OpenedHuman, c.OpenedMachine = v[openCount+int(metrics.OpenHuman)-1], v[openCount+int(metrics.OpenMachine)-1]
		c.OpenedUnverified, c.Clicked = v[openCount+int(metrics.OpenUnverified)-1], v[openCount+int(metrics.OpenClick)-1]
		groups = append(groups, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: rule counts: %w", err)
	}
	if len(by) == 0 && len(groups) == 1 && groups[0].Counts == (metrics.Counts{}) {
		return groups[:0], nil // no events: no group, as with groups
	}
	return groups, nil
}
