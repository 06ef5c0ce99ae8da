package duckdb

import (
	"context"
	"fmt"
	"time"

	"repute/metrics"
)

var _ metrics.ReplyReader = (*Store)(nil)

// repliesQuery selects the replies of deferred and bounced events in a
// time range; the primary key makes each event one row already.
const repliesQuery = `SELECT time, kind, account, sender_domain, sending_ip, isp, reply_code, status, diagnostic
FROM events
WHERE time >= ? AND time < ? AND kind IN ('deferred', 'bounced')
ORDER BY time, event_id`

// Replies calls fn with the replies of the deferred and bounced events
// with from <= time < to, in (time, event_id) order, row by row as the
// query streams them; it stops at fn's first error and returns it as it is.
func (s *Store) Replies(ctx context.Context, from, to time.Time, fn func(metrics.Reply) error) error {
	// Stored times are whole seconds: round the bounds up, as Stats does.
	from, to = ceilSecond(from), ceilSecond(to)
	if !from.Before(to) {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, repliesQuery, from, to)
	if err != nil {
		return fmt.Errorf("duckdb: replies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r    metrics.Reply
			kind string
		)
		if err := rows.Scan(&r.Time, &kind, &r.Account, &r.SenderDomain, &r.SendingIP, &r.ISP, &r.ReplyCode,
			&r.Status, &r.Diagnostic); err != nil {
			return fmt.Errorf("duckdb: replies: %w", err)
		}
		r.Time, r.Kind = r.Time.UTC(), metrics.Kind(kind)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("duckdb: replies: %w", err)
	}
	return nil
}
