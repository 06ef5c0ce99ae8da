package sender

import (
	"context"
	"time"

	"repute/correlate"
	"repute/metrics"
)

// Message is one message as POST /v1/messages and repute send accept it:
// one body for every recipient, its text/template and html/template
// placeholders filled per recipient from Data.
type Message struct {
	From     string            `json:"from"`
	To       []string          `json:"to"`
	Subject  string            `json:"subject"`
	HTML     string            `json:"html,omitempty"`
	Text     string            `json:"text,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Campaign string            `json:"campaign,omitempty"`
	Category string            `json:"category,omitempty"` // marketing | transactional | registration, or none
	// Data holds each recipient's template values, keyed by the recipient
	// as given in To.
	Data map[string]map[string]any `json:"data,omitempty"`
}

// Item is one composed message to one recipient, as the queue keeps it
// until the relay has answered for good.
type Item struct {
	Ref          correlate.Ref // the send's reference: ENVID, correlation header, VERP token
	Account      string
	SenderDomain string
	SendingIP    string // the IP or pool it goes out from ("" = the relay's choice)
	Campaign     string
	Category     string
	MessageID    string // with angle brackets
	Recipient    string
	EnvelopeFrom string // MAIL FROM: the VERP address, or the From address
	Data         []byte // the message as it goes to the relay: stamped, signed, CRLF

	Queued      time.Time // when it was accepted
	Attempts    int
	NextAttempt time.Time
	LastError   string // the last temporary failure, for GET /v1/queue
}

// EventSink records events durably: Record returns once they are in the
// spool (intake's Submit), so an event the sender was told is recorded
// survives a crash.
type EventSink interface {
	Record(ctx context.Context, events []metrics.Event) error
}

// PaceKey is what pacing counts by: a sender domain, the IP (or pool) it
// sends from, and the recipient's mailbox provider (the ISP map's name, or
// the recipient domain when the map has none).
type PaceKey struct {
	SenderDomain string
	SendingIP    string
	Provider     string
}

// Pacer hands out delivery slots. The queue asks before every delivery.
type Pacer interface {
	// Take reserves one message and one connection for k at now. When ok
	// is false nothing is reserved and retry says when a slot can be
	// free; the message waits in the queue until then, never dropped and
	// never sent early.
	Take(k PaceKey, now time.Time) (ok bool, retry time.Time)
	// Done returns the connection Take reserved. sent is false when the
	// message did not leave (the relay refused it before DATA, the
	// connection failed): its slot is given back.
	Done(k PaceKey, sent bool)
}
