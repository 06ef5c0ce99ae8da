package metrics

import (
	"context"
	"time"
)

// Reply is the SMTP reply of a stored deferred or bounced event, with the
// event's scope: what the rule engine's response-pattern rules match.
type Reply struct {
	Time         time.Time
	Kind         Kind // KindDeferred or KindBounced
	Account      string
	SenderDomain string
	SendingIP    string
	ISP          string
	ReplyCode    uint16
	Status       string
	Diagnostic   string
}

// ReplyReader reads the replies of stored deferred and bounced events
// (repute rules backtest, and the rule engine's memory of replies after a
// restart).
type ReplyReader interface {
	// Replies calls fn with the reply of every deferred or bounced event
	// with from <= time < to, each event once however often it was
	// stored, in time order (events of one second in event-id order),
	// stopping at fn's first error, which it returns as it is.
	Replies(ctx context.Context, from, to time.Time, fn func(Reply) error) error
}
