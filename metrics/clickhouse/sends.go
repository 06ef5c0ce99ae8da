package clickhouse

import (
	"context"

	"repute/metrics"
)

// The lookups of the sends indexes (sql/migrations/0005_sends.sql): each
// reads a range of one table's sorting key; of several matches the latest
// send wins.
const (
	sendColumns  = "SELECT account, sender_domain, campaign, sending_ip, message_id, recipient, time "
	sendsLatest  = " ORDER BY time DESC LIMIT 1"
	sendsByRef   = sendColumns + "FROM sends_by_ref WHERE ref = ?" + sendsLatest
	sendsByEnv   = sendColumns + "FROM sends_by_ref WHERE ref = ? AND source_ref = ?" + sendsLatest
	sendsByEnvRc = sendColumns + "FROM sends_by_ref WHERE ref = ? AND source_ref = ? AND recipient = ?" + sendsLatest
	sendsByMsg   = sendColumns + "FROM sends_by_message_id WHERE msg_key = ?" + sendsLatest
	sendsByMsgRc = sendColumns + "FROM sends_by_message_id WHERE msg_key = ? AND recipient = ?" + sendsLatest
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
		return s.findSend(ctx, "send by message id", sendsByMsg, id)
	}
	return s.findSend(ctx, "send by message id", sendsByMsgRc, id, recipient)
}

// SendByEnvID finds the latest sent event whose source_ref is envid,
// exactly, and, when recipient is not "", whose recipient is recipient.
func (s *Store) SendByEnvID(ctx context.Context, envid, recipient string) (metrics.Send, bool, error) {
	if envid == "" {
		return metrics.Send{}, false, nil
	}
	ref := metrics.NormalizeSendRef(envid)
	if recipient == "" {
		return s.findSend(ctx, "send by envid", sendsByEnv, ref, envid)
	}
	return s.findSend(ctx, "send by envid", sendsByEnvRc, ref, envid, recipient)
}

func (s *Store) findSend(ctx context.Context, what, query string, args ...any) (metrics.Send, bool, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return metrics.Send{}, false, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return metrics.Send{}, false, s.errorf(what, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return metrics.Send{}, false, s.errorf(what, err)
		}
		return metrics.Send{}, false, nil
	}
	var x metrics.Send
	if err := rows.Scan(&x.Account, &x.SenderDomain, &x.Campaign, &x.SendingIP, &x.MessageID, &x.Recipient, &x.Time); err != nil {
		return metrics.Send{}, false, s.errorf(what, err)
	}
	x.Time = x.Time.UTC()
	return x, true, nil
}
