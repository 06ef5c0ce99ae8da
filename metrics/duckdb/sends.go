package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// appendSends adds the sent events among fresh (events just appended, each
// new) to the sends index (migrations/0006_sends.sql), through an Appender
// on the same connection and so in the same transaction.
func appendSends(ctx context.Context, dc driver.Conn, fresh []metrics.Event) error {
	var a *duckdb.Appender
	for i := range fresh {
		e := &fresh[i]
		if e.Kind != metrics.KindSent || e.SourceRef == "" && e.MessageID == "" {
			continue
		}
		if a == nil {
			var err error
			if a, err = duckdb.NewAppender(dc, "", "", "sends"); err != nil {
				return err
			}
		}
		if err := a.AppendRow(metrics.NormalizeSendRef(e.SourceRef), e.SourceRef,
			metrics.NormalizeMessageID(e.MessageID), e.MessageID, e.Recipient, e.Account,
			e.SenderDomain, e.Campaign, e.SendingIP, e.Time.UTC()); err != nil {
			a.Close()
			return err
		}
	}
	if a == nil {
		return nil
	}
	return a.CloseWithCancel(ctx)
}

// The lookups of the sends index; of several matches the latest send wins,
// chosen here: with ORDER BY time DESC LIMIT 1, DuckDB 1.5 plans a top-N
// that reads the table twice. The indexes are on ref and msg_key; DuckDB
// 1.5.6 was measured not to use them for these filters (a lookup scans the
// column of sends, which is still far smaller than events).
const (
	sendColumns  = "account, sender_domain, campaign, sending_ip, message_id, recipient, time"
	sendsByRef   = "SELECT " + sendColumns + " FROM sends WHERE ref = $1"
	sendsByMsgID = "SELECT " + sendColumns + " FROM sends WHERE msg_key = $1"
	sendsByMsgRc = "SELECT " + sendColumns + " FROM sends WHERE msg_key = $1 AND recipient = $2"
	sendsByEnv   = "SELECT " + sendColumns + " FROM sends WHERE ref = lower($1) AND source_ref = $1"
	sendsByEnvRc = "SELECT " + sendColumns + " FROM sends WHERE ref = lower($1) AND source_ref = $1 AND recipient = $2"
)

// SendByRef finds the latest sent event whose source_ref is ref, compared
// case-insensitively: repute's sender stores a send's correlate.Ref there
// (docs/events.md).
func (s *Store) SendByRef(ctx context.Context, ref string) (metrics.Send, bool, error) {
	if ref == "" {
		return metrics.Send{}, false, nil
	}
	return s.findSend(ctx, "send by ref", sendsByRef, metrics.NormalizeSendRef(ref))
}

// SendByMessageID finds the latest sent event with the Message-ID
// messageID (compared without white space and angle brackets, see
// metrics.NormalizeMessageID) and, when recipient is not "", that
// recipient (lower-cased).
func (s *Store) SendByMessageID(ctx context.Context, messageID, recipient string) (metrics.Send, bool, error) {
	id := metrics.NormalizeMessageID(messageID)
	if id == "" {
		return metrics.Send{}, false, nil
	}
	if recipient == "" {
		return s.findSend(ctx, "send by message id", sendsByMsgID, id)
	}
	return s.findSend(ctx, "send by message id", sendsByMsgRc, id, recipient)
}

// SendByEnvID finds the latest sent event whose source_ref is envid,
// exactly, and, when recipient is not "", whose recipient is recipient.
func (s *Store) SendByEnvID(ctx context.Context, envid, recipient string) (metrics.Send, bool, error) {
	if envid == "" {
		return metrics.Send{}, false, nil
	}
	if recipient == "" {
		return s.findSend(ctx, "send by envid", sendsByEnv, envid)
	}
	return s.findSend(ctx, "send by envid", sendsByEnvRc, envid, recipient)
}

func (s *Store) findSend(ctx context.Context, what, query string, args ...any) (metrics.Send, bool, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return metrics.Send{}, false, fmt.Errorf("duckdb: %s: %w", what, err)
	}
	defer rows.Close()
	var best metrics.Send
	var bestAt time.Time
	found := false
	for rows.Next() {
		var x metrics.Send
		var at time.Time
		if err := rows.Scan(&x.Account, &x.SenderDomain, &x.Campaign, &x.SendingIP, &x.MessageID, &x.Recipient, &at); err != nil {
			return metrics.Send{}, false, fmt.Errorf("duckdb: %s: %w", what, err)
		}
		if !found || at.After(bestAt) {
			best, bestAt, found = x, at, true
		}
	}
	if err := rows.Err(); err != nil {
		return metrics.Send{}, false, fmt.Errorf("duckdb: %s: %w", what, err)
	}
	return best, found, nil
}
