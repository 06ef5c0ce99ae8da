package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"repute/metrics"
)

// The roll-ups of the rule engine (metrics.RuleCounter; the tables are in
// sql/migrations/0010_rollups.sql and 0012_rollup_first_opens.sql).
//
// Why they are exact. Append logs the hours it touched in rollup_dirty
// after its events are inserted; a refresh reads the hours logged since
// its watermark and recomputes each whole from its events, as rows of a
// new version, then records (hour, version) as finished. Readers use, per
// hour, the rows of the highest finished version.
//   - Duplicates: a recompute reads each event of its hours once, the
//     first stored of its copies, from rollup_events FINAL (a copy of the
//     events' columns sorted by hour, fed by a materialized view in the
//     same insert, with the same precedence: 0013_rollup_events.sql), so
//     an event appended twice (a spool replay, a client re-posting a
//     batch, two processes) counts once, whatever merges have happened;
//     appending it again only makes its hour dirty again, and the
//     recompute gives the same rows. (A copy stored under the same id
//     with another time, in another hour, is not compared with the first:
//     each hour keeps the first stored of its own copies.)
//   - Concurrency: let an Append into hour h return. Its dirty log was
//     inserted after its events, so a refresh that starts afterwards reads
//     the log (see the watermark below), and its recompute of h, which
//     reads events after that, sees the Append's events. Its version is
//     above every finished one (the larger of the clock in nanoseconds and
//     the highest finished version + 1), so it is what readers use from
//     then on, however refreshes interleave.
//   - Which hours: a refresh counts the logs of each candidate hour
//     (ever) before it reads events, and records that count with the
//     hour. An hour is recomputed when it has more logs than the refresh
//     whose rows readers use had counted: logs are never deleted, so
//     equal counts mean that refresh saw every log there is, hence every
//     Append's events. This needs no assumption about clocks or latency.
//   - The watermark only narrows the candidates: a refresh reads the logs
//     with logged >= the watermark, and records as the next watermark the
//     server's now() as read before the logs, minus rollupSettle. logged
//     is the server's now() too (one clock, whichever process appended),
//     so a log is missed only if it became visible more than rollupSettle
//     after its now() was taken — an insert of a few rows taking minutes.
//   - Failures: a refresh that dies before it records an hour leaves its
//     rows unseen and the watermark where it was, so the next one redoes
//     it (and skips the days it finished: their counts are recorded).
//     (A merge may meanwhile replace the finished rows by the dead
//     refresh's rows of the same keys, so that until the next refresh
//     some keys count what the dead refresh computed — a complete
//     recompute too, only not recorded.) An Append that fails
//     after inserting some events may not have logged their hours: the
//     caller retries it (the spool does), and the retry logs them.
//
// Opens and clicks count once per key and kind, in the hour of the key's
// first open (metrics.FirstOpens), which needs more than the hour's own
// events. rollup_open_keys records every (kind, key, hour) a recompute has
// seen, and the version of the refresh that first recorded it there. A
// recompute of hours H first records their keys, then counts a key in H
// only if it has no earlier hour there outside H. If one of H's keys has
// only later hours outside H and was first recorded in H since H's last
// finished recompute, its first open moved into H (a late event), and the
// earliest of those later hours, which counted it, is logged dirty
// (rollup-open-marks): RefreshRollups recomputes it in a further pass. (A
// key recorded in H before, with later opens, was never counted by those
// later hours: logging them would walk every hour up to now.) Two
// refreshes recording the same key in two hours at once stay exact too:
// each records before it reads, so at least one of them sees the other's
// hour — the later hour then does not count the key, or the earlier one
// logs it dirty. So does a refresh that died after recording H's keys:
// they are still newer than H's last finished recompute.
//
// Spans: after the hours, a refresh sums every whole UTC day and 4-hour
// block that has ended and has an hour recomputed since its sums were last
// made into rollup_span, at the refresh's version, and records it in
// rollup_spans. Readers use a span's sums only if their version is at
// least that of every finished recompute of its hours (else the hours): a
// recompute of an hour finished with a lower version than the refresh
// that summed its span started before that refresh, whose own recompute
// of the hour (it had the same logs to see, or more) came first.
//
// Cost: a refresh reads the dirty hours' rows of rollup_events (three
// reads of those hours' granules), and rollup_open_keys (a narrow scan of
// the whole table for the keys of the hours, and index lookups);
// RuleCounts reads a row per scope for each whole day of the window, each
// 4-hour block at its ends, and each hour left.

// rollupSettle is how late after its now() a dirty log may become visible
// and still be read by the next refresh.
const rollupSettle = 2 * time.Minute

var _ metrics.RuleCounter = (*Store)(nil)

// hourList renders hours (Unix seconds) as a comma-separated list of
// numbers for the /*HOURS*/ placeholders: integers only, never input.
func hourList(hours []int64) string {
	parts := make([]string, len(hours))
	for i, h := range hours {
		parts[i] = strconv.FormatInt(h, 10)
	}
	return strings.Join(parts, ", ")
}

// markDirty logs the hours of events as dirty (Append, after inserting
// them).
func (s *Store) markDirty(ctx context.Context, conn driver.Conn, events []metrics.Event) error {
	seen := map[int64]bool{}
	var hours []int64
	for i := range events {
		h := events[i].Time.Unix() / 3600 * 3600
		if !seen[h] {
			seen[h] = true
			hours = append(hours, h)
		}
	}
	slices.Sort(hours)
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := conn.Exec(ctx, strings.Replace(s.q[qRollupMark], "/*HOURS*/", hourList(hours), 1)); err != nil {
		return s.errorf("log dirty hours", err)
	}
	return nil
}

// RefreshRollups recomputes the hours appended to since the last refresh
// (see the top of this file). Refreshes through one Store are serialised;
// through several (processes) they may overlap and stay exact. Each
// statement has the Store's Timeout: the first refresh after the
// migration recomputes every stored hour, a day per statement, and
// records each day as it finishes it, so that one cut short by its
// deadline keeps its progress.
func (s *Store) RefreshRollups(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	var (
		now, watermark time.Time
		maxVersion     uint64
	)
	qctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := conn.QueryRow(qctx, s.q[qRollupNow]).Scan(&now, &watermark, &maxVersion); err != nil {
		return s.errorf("rollup refresh", err)
	}
	hours, logs, err := s.dirtyHours(qctx, conn, watermark)
	if err != nil {
		return err
	}
	version := max(uint64(time.Now().UnixNano()), maxVersion+1)
	next := max(now.Add(-rollupSettle).Unix(), watermark.Unix())
	// A pass recomputes the dirty hours; the hours it logs dirty (where
	// a first open moved earlier) are recomputed by the next pass. They
	// are rare; what is left after a few passes is the next refresh's.
	for pass := range maxRefreshPasses {
		if len(hours) == 0 {
			break
		}
		if pass > 0 {
			// A new version: an hour of this pass may have been
			// recomputed by the last (appended to meanwhile, or logged
			// dirty after its recompute), and readers sum every row of
			// an hour's version.
			version = max(uint64(time.Now().UnixNano()), version+1)
		}
		// One day at a time: each day's statements scan the partitions
		// of its day. The watermark advances with the last day only.
		for rest := hours; len(rest) > 0; {
			day := rest[0] / 86400 * 86400
			n := 1
			for n < len(rest) && rest[n] < day+86400 {
				n++
			}
			if err := s.recompute(ctx, conn, version, day, rest[:n]); err != nil {
				return err
			}
			mark := watermark.Unix()
			if n == len(rest) {
				mark = next
			}
			if err := s.finish(ctx, conn, version, rest[:n], logs[:n], mark); err != nil {
				return err
			}
			rest, logs = rest[n:], logs[n:]
		}
		dctx, cancel := s.deadline(ctx)
		hours, logs, err = s.dirtyHours(dctx, conn, watermark)
		cancel()
		if err != nil {
			return err
		}
	}
	return s.refreshSpans(ctx, conn, version, now)
}

// maxRefreshPasses bounds the passes of one refresh.
const maxRefreshPasses = 3

// The spans of hours the roll-ups also keep sums of: whole UTC days, and
// 4-hour blocks for the ends of a window, which rarely start or end on a
// day. A 7-day window ending now reads 6 days, at most 11 blocks and 6
// hours, instead of up to 192 hours.
const (
	dayWidth   = 86400
	blockWidth = 4 * 3600
)

var spanWidths = []int64{dayWidth, blockWidth}

// span is a span of hours: [start, start+width), Unix seconds.
type span struct{ start, width int64 }

// rollupVersions returns the latest finished version of each hour in
// [from, to) and the latest version of the sums of each span starting in
// it.
func (s *Store) rollupVersions(ctx context.Context, conn driver.Conn, from, to int64) (map[int64]uint64, map[span]uint64, error) {
	hours, spans := map[int64]uint64{}, map[span]uint64{}
	rows, err := conn.Query(ctx, s.q[qRollupHourVersions], from, to)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var (
			h time.Time
			v uint64
		)
		if err := rows.Scan(&h, &v); err != nil {
			rows.Close()
			return nil, nil, err
		}
		hours[h.Unix()] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if rows, err = conn.Query(ctx, s.q[qRollupSpanVersions], from, to); err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			start time.Time
			width uint32
			v     uint64
		)
		if err := rows.Scan(&start, &width, &v); err != nil {
			return nil, nil, err
		}
		spans[span{start.Unix(), int64(width)}] = v
	}
	return hours, spans, rows.Err()
}

// latestHour returns the highest of the versions of sp's hours.
func latestHour(hours map[int64]uint64, sp span) uint64 {
	var v uint64
	for h := sp.start; h < sp.start+sp.width; h += 3600 {
		v = max(v, hours[h])
	}
	return v
}

// refreshSpans sums into rollup_span the spans ended by now whose hours
// were recomputed since their sums were made, at version, the refresh's;
// a span with an hour finished at a later version (a later refresh's) is
// left to a later refresh.
func (s *Store) refreshSpans(ctx context.Context, conn driver.Conn, version uint64, now time.Time) error {
	qctx, cancel := s.deadline(ctx)
	hours, spans, err := s.rollupVersions(qctx, conn, 0, now.Unix())
	cancel()
	if err != nil {
		return s.errorf("rollup refresh: versions", err)
	}
	stale := map[span]bool{}
	for h := range hours {
		for _, w := range spanWidths {
			sp := span{h / w * w, w}
			if sp.start+w > now.Unix() || stale[sp] {
				continue
			}
			if hv := latestHour(hours, sp); spans[sp] < hv && hv <= version {
				stale[sp] = true
			}
		}
	}
	todo := slices.SortedFunc(maps.Keys(stale), func(a, b span) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(b.width, a.width))
	})
	for _, sp := range todo {
		end := sp.start + sp.width
		sctx, cancel := s.deadline(ctx)
		err := conn.Exec(sctx, s.q[qRollupSpanCompute], sp.start, sp.width, version, sp.start, end, sp.start, end)
		if err == nil {
			err = conn.Exec(sctx, s.q[qRollupSpanFinish], sp.start, sp.width, version)
		}
		cancel()
		if err != nil {
			return s.errorf(fmt.Sprintf("rollup refresh: sum the %d hours from %s", sp.width/3600,
				time.Unix(sp.start, 0).UTC().Format(time.RFC3339)), err)
		}
	}
	return nil
}

// cover returns the spans within the hours [start, end) whose sums are
// current (at least as recent as every finished recompute of their
// hours), the widest first, with their versions; the hours left are read
// from their own rows.
func cover(start, end int64, hours map[int64]uint64, spans map[span]uint64) map[span]uint64 {
	out := map[span]uint64{}
	for t := start; t < end; {
		next := t + 3600
		for _, w := range spanWidths {
			sp := span{t, w}
			v, ok := spans[sp]
			if t%w != 0 || t+w > end || !ok || v < latestHour(hours, sp) {
				continue
			}
			out[sp], next = v, t+w
			break
		}
		t = next
	}
	return out
}

// coverLists renders spans (of cover) as the /*SPANS*/ and /*BLOCKS*/ of
// the rollup-counts query.
func coverLists(spans map[span]uint64) (spanList, blockList string) {
	tuples := []string{"(0, 0, 0)"}
	blocks := []int64{0}
	for sp, v := range spans {
		tuples = append(tuples, fmt.Sprintf("(%d, %d, %d)", sp.start, sp.width, v))
		for b := sp.start; b < sp.start+sp.width; b += blockWidth {
			blocks = append(blocks, b)
		}
	}
	return strings.Join(tuples, ", "), hourList(blocks)
}

// finish records the recompute of version of hours as finished, with the
// number of logs of each hour counted before it.
func (s *Store) finish(ctx context.Context, conn driver.Conn, version uint64, hours []int64, logs []uint64, watermark int64) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	seen := make([]string, len(logs))
	for i, n := range logs {
		seen[i] = strconv.FormatUint(n, 10)
	}
	q := strings.NewReplacer("/*HOURS*/", hourList(hours), "/*SEEN*/", strings.Join(seen, ", ")).Replace(s.q[qRollupFinish])
	if err := conn.Exec(ctx, q, version, watermark); err != nil {
		return s.errorf("rollup refresh: record hours", err)
	}
	return nil
}

// dirtyHours returns the hours (Unix seconds, ascending) to recompute:
// those logged dirty at or after watermark that have more logs than the
// refresh readers use had counted; and the number of logs of each.
func (s *Store) dirtyHours(ctx context.Context, conn driver.Conn, watermark time.Time) ([]int64, []uint64, error) {
	fail := func(err error) ([]int64, []uint64, error) {
		return nil, nil, s.errorf("rollup refresh: dirty hours", err)
	}
	rows, err := conn.Query(ctx, s.q[qRollupDirty], watermark.Unix())
	if err != nil {
		return fail(err)
	}
	var candidates []int64
	for rows.Next() {
		var h time.Time
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return fail(err)
		}
		candidates = append(candidates, h.Unix())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if len(candidates) == 0 {
		return nil, nil, nil
	}
	type hourLogs struct {
		hour int64
		logs uint64
	}
	var dirty []hourLogs
	// In chunks: the lists are in the query text, which the server caps
	// (max_query_size, 256 KiB by default); a year of hours is 8,760.
	for chunk := range slices.Chunk(candidates, 1000) {
		rows, err := conn.Query(ctx, strings.ReplaceAll(s.q[qRollupLogs], "/*HOURS*/", hourList(chunk)))
		if err != nil {
			return fail(err)
		}
		for rows.Next() {
			var (
				h          time.Time
				logs, seen uint64
			)
			if err := rows.Scan(&h, &logs, &seen); err != nil {
				rows.Close()
				return fail(err)
			}
			if logs > seen {
				dirty = append(dirty, hourLogs{h.Unix(), logs})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fail(err)
		}
	}
	slices.SortFunc(dirty, func(a, b hourLogs) int { return int(a.hour - b.hour) })
	hours, logs := make([]int64, len(dirty)), make([]uint64, len(dirty))
	for i, d := range dirty {
		hours[i], logs[i] = d.hour, d.logs
	}
	return hours, logs, nil
}

// recompute writes the roll-up rows of version of hours, all within the
// UTC day starting at day (Unix seconds): it records their open keys,
// logs dirty the hours whose first opens moved into them, and counts.
func (s *Store) recompute(ctx context.Context, conn driver.Conn, version uint64, day int64, hours []int64) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	list := hourList(hours)
	times := make([]string, len(hours))
	for i, h := range hours {
		times[i] = "toDateTime(" + strconv.FormatInt(h, 10) + ")"
	}
	// As DateTimes, so that rollup_events' sorting key (the hour) selects
	// the hours' granules.
	hourTimes := strings.Join(times, ", ")
	in := strings.NewReplacer("/*HOURS*/", list, "/*HOURTIMES*/", hourTimes)
	fail := func(step string, err error) error {
		return s.errorf(fmt.Sprintf("rollup refresh: %s of %d hours of %s", step, len(hours),
			time.Unix(day, 0).UTC().Format(time.DateOnly)), err)
	}
	if err := conn.Exec(ctx, in.Replace(s.q[qRollupOpenKeys]), version, day, day+86400); err != nil {
		return fail("record the open keys", err)
	}
	if err := conn.Exec(ctx, in.Replace(s.q[qRollupOpenMarks])); err != nil {
		return fail("log moved first opens", err)
	}
	q := in.Replace(s.q[qRollupCompute])
	if err := conn.Exec(ctx, q, version, day, day+86400, day, day+86400, day+86400); err != nil {
		return fail("recompute", err)
	}
	return nil
}

// RuleCounts implements metrics.RuleCounter over the roll-ups as of the
// last refresh: the whole days and 4-hour blocks of the window from their
// sums where those are current, the other hours from the hours' rows.
func (s *Store) RuleCounts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) ([]metrics.Group, error) {
	for _, g := range by {
		if !slices.Contains(metrics.RollupDims, g) {
			return nil, fmt.Errorf("clickhouse: rule counts: cannot group by %q", g)
		}
	}
	groups := []metrics.Group{}
	start, end := metrics.RollupWindow(from, to)
	if !start.Before(end) {
		return groups, nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	hours, spans, err := s.rollupVersions(ctx, conn, start.Unix(), end.Unix())
	if err != nil {
		return nil, s.errorf("rule counts: versions", err)
	}
	spanList, blockList := coverLists(cover(start.Unix(), end.Unix(), hours, spans))
	keys, group := "", ""
	if len(by) > 0 {
		names := make([]string, len(by))
		for i, g := range by {
			names[i] = "k" + strconv.Itoa(i)
			keys += groupExpr[g] + " AS " + names[i] + ",\n    "
		}
		group = "GROUP BY " + strings.Join(names, ", ")
	}
	query := strings.NewReplacer("/*KEYS*/", keys, "/*GROUP*/", group,
		"/*SPANS*/", spanList, "/*BLOCKS*/", blockList).Replace(s.q[qRollupCounts])
	rows, err := conn.Query(ctx, query, start.Unix(), end.Unix(), start.Unix(), end.Unix())
	if err != nil {
		return nil, s.errorf("rule counts", err)
	}
	defer rows.Close()
	keyVals := make([]string, len(by))
	var counts [12]uint64
	dest := make([]any, 0, len(by)+len(counts))
	for i := range keyVals {
		dest = append(dest, &keyVals[i])
	}
	for i := range counts {
		dest = append(dest, &counts[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.errorf("rule counts", err)
		}
		g := metrics.Group{Key: make(map[metrics.GroupBy]string, len(by)), Counts: toCounts(counts)}
		for i, d := range by {
			g.Key[d] = keyVals[i]
		}
		if len(by) == 0 && g.Counts == (metrics.Counts{}) {
			continue // no events: no group, as with groups
		}
		groups = append(groups, g)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("rule counts", err)
	}
	return groups, nil
}
