package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// appendSends adds the sent events among fresh (events just appended, each
// new) to the sends index (migrations/0006_sends.sql), through an Appender
// on the same connection and so in the same transaction.
func (s *Store) appendSends(ctx context.Context, dc driver.Conn, fresh []metrics.Event) error {
	var a *duckdb.Appender
	for i := range fresh {
		e := &fresh[i]
		if e.Kind != metrics.KindSent || e.SourceRef == "" && e.MessageID == "" {
			continue
		}
		s.sends.add(refKey(metrics.NormalizeSendRef(e.SourceRef)), msgKeyKey(metrics.NormalizeMessageID(e.MessageID)))
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

// The lookups of the sends index, each by one indexed key (ref or
// msg_key) alone: the other conditions (recipient, the exact source_ref)
// are checked here, so that the filter stays a single equality DuckDB can
// answer from its ART index. Of several matches the latest send wins,
// chosen here too: with ORDER BY time DESC LIMIT 1, DuckDB 1.5 plans a
// top-N that reads the table twice.
const (
	sendColumns  = "account, sender_domain, campaign, sending_ip, message_id, recipient, time, source_ref"
	sendsByRef   = "SELECT " + sendColumns + " FROM sends WHERE ref = $1"
	sendsByMsgID = "SELECT " + sendColumns + " FROM sends WHERE msg_key = $1"
)

// SendByRef finds the latest sent event whose source_ref is ref, compared
// case-insensitively: repute's sender stores a send's correlate.Ref there
// (docs/events.md).
func (s *Store) SendByRef(ctx context.Context, ref string) (metrics.Send, bool, error) {
	if ref == "" {
		return metrics.Send{}, false, nil
	}
	ref = metrics.NormalizeSendRef(ref)
	if !s.sends.mayHold(refKey(ref)) {
		return metrics.Send{}, false, nil
	}
	return s.findSend(ctx, "send by ref", s.sendByRef, ref, nil)
}

// SendByMessageID finds the latest sent event with the Message-ID
// messageID (compared without white space and angle brackets, see
// metrics.NormalizeMessageID) and, when recipient is not "", that
// recipient (lower-cased).
func (s *Store) SendByMessageID(ctx context.Context, messageID, recipient string) (metrics.Send, bool, error) {
	id := metrics.NormalizeMessageID(messageID)
	if id == "" || !s.sends.mayHold(msgKeyKey(id)) {
		return metrics.Send{}, false, nil
	}
	return s.findSend(ctx, "send by message id", s.sendByMsgID, id, func(x metrics.Send, _ string) bool {
		return recipient == "" || x.Recipient == recipient
	})
}

// SendByEnvID finds the latest sent event whose source_ref is envid,
// exactly, and, when recipient is not "", whose recipient is recipient.
func (s *Store) SendByEnvID(ctx context.Context, envid, recipient string) (metrics.Send, bool, error) {
	if envid == "" || !s.sends.mayHold(refKey(metrics.NormalizeSendRef(envid))) {
		return metrics.Send{}, false, nil
	}
	return s.findSend(ctx, "send by envid", s.sendByRef, metrics.NormalizeSendRef(envid), func(x metrics.Send, sourceRef string) bool {
		return sourceRef == envid && (recipient == "" || x.Recipient == recipient)
	})
}

// findSend runs a lookup by key and returns the latest row that keep
// accepts (nil: any).
func (s *Store) findSend(ctx context.Context, what string, query *sql.Stmt, key string, keep func(x metrics.Send, sourceRef string) bool) (metrics.Send, bool, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := query.QueryContext(ctx, key)
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
		var sourceRef string
		if err := rows.Scan(&x.Account, &x.SenderDomain, &x.Campaign, &x.SendingIP, &x.MessageID, &x.Recipient, &at, &sourceRef); err != nil {
			return metrics.Send{}, false, fmt.Errorf("duckdb: %s: %w", what, err)
		}
		if keep != nil && !keep(x, sourceRef) {
			continue
		}
		if !found || at.After(bestAt) {
			x.Time = at.UTC()
			best, bestAt, found = x, at, true
		}
	}
	if err := rows.Err(); err != nil {
		return metrics.Send{}, false, fmt.Errorf("duckdb: %s: %w", what, err)
	}
	return best, found, nil
}
