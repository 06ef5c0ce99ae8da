package clickhouse

import (
	"context"
	"time"

	"repute/metrics"
)

var _ metrics.ReplyReader = (*Store)(nil)

// repliesQuery selects the replies of deferred and bounced events in a
// time range; FINAL collapses the repeats of an event (see the events
// table's migration). The time bounds prune the day partitions.
const repliesQuery = `SELECT time, toString(kind), account, sender_domain, sending_ip, isp, reply_code, status, diagnostic
FROM events FINAL
WHERE time >= toDateTime(?) AND time < toDateTime(?) AND kind IN ('deferred', 'bounced')
ORDER BY time, event_id`

// Replies calls fn with the replies of the deferred and bounced events
// with from <= time < to, in (time, event_id) order, as the query streams
// them; it stops at fn's first error and returns it as it is. The whole
// read is bounded by the store's timeout, fn's time included.
func (s *Store) Replies(ctx context.Context, from, to time.Time, fn func(metrics.Reply) error) error {
	lo, hi := ceilSeconds(from), ceilSeconds(to)
	if lo >= hi {
		return nil
	}
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := conn.Query(ctx, repliesQuery, lo, hi)
	if err != nil {
		return s.errorf("replies", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r    metrics.Reply
			kind string
		)
		if err := rows.Scan(&r.Time, &kind, &r.Account, &r.SenderDomain, &r.SendingIP, &r.ISP, &r.ReplyCode,
			&r.Status, &r.Diagnostic); err != nil {
			return s.errorf("replies", err)
		}
		r.Time, r.Kind = r.Time.UTC(), metrics.Kind(kind)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errorf("replies", err)
	}
	return nil
}
