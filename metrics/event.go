// Package metrics owns the event model (one row per fact), the store
// interfaces and the statistics computed over events. Backends live in
// subpackages (metrics/duckdb, metrics/clickhouse) and are held to the same
// behaviour by metrics/storetest.
//
// It imports nothing of ours: parsers, intake and the sender depend on it,
// never the other way round.
package metrics

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what happened to a message.
type Kind string

// The kinds of event. Dropped means not sent at all: suppressed or paused
// (the term Tencent Cloud SES uses).
const (
	KindSent         Kind = "sent"
	KindDelivered    Kind = "delivered"
	KindDeferred     Kind = "deferred"
	KindBounced      Kind = "bounced"
	KindComplained   Kind = "complained"
	KindOpened       Kind = "opened"
	KindClicked      Kind = "clicked"
	KindUnsubscribed Kind = "unsubscribed"
	KindDropped      Kind = "dropped"
)

// Kinds lists every kind in the order of the ClickHouse Enum8 values
// (1-based); appending is the only compatible change.
var Kinds = []Kind{KindSent, KindDelivered, KindDeferred, KindBounced, KindComplained,
	KindOpened, KindClicked, KindUnsubscribed, KindDropped}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// Bounce types. An undetermined bounce counts as soft in statistics.
const (
	BounceHard         = "hard"
	BounceSoft         = "soft"
	BounceUndetermined = "undetermined"
)

// Event is one fact about one message to one recipient. JSON and column
// names are the snake_case names of ARCHITECTURE.md's event.
type Event struct {
	// Identity. EventID is deterministic: the same fact ingested twice has
	// the same id (see ComputeID); with Account it identifies the event.
	EventID   string    `json:"event_id"`
	Time      time.Time `json:"time"`
	Kind      Kind      `json:"kind"`
	Source    string    `json:"source,omitempty"`
	SourceRef string    `json:"source_ref,omitempty"`

	// Who.
	Account         string `json:"account"`
	SenderDomain    string `json:"sender_domain,omitempty"`
	SendingIP       string `json:"sending_ip,omitempty"`
	Campaign        string `json:"campaign,omitempty"`
	MessageID       string `json:"message_id,omitempty"`
	Recipient       string `json:"recipient"`
	RecipientDomain string `json:"recipient_domain,omitempty"` // derived from Recipient
	ISP             string `json:"isp,omitempty"`              // derived from RecipientDomain

	// Bounce.
	BounceType  string `json:"bounce_type,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Status      string `json:"status,omitempty"`
	ReplyCode   uint16 `json:"reply_code,omitempty"`
	Diagnostic  string `json:"diagnostic,omitempty"`
	RemoteMTA   string `json:"remote_mta,omitempty"`
	Correlation string `json:"correlation,omitempty"`

	// Complaint.
	FeedbackType           string `json:"feedback_type,omitempty"`
	FeedbackProvider       string `json:"feedback_provider,omitempty"`
	RecipientRecoveredFrom string `json:"recipient_recovered_from,omitempty"`

	// Open and click.
	UserAgent     string `json:"user_agent,omitempty"`
	ClientIP      string `json:"client_ip,omitempty"`
	Machine       bool   `json:"machine,omitempty"`
	MachineReason string `json:"machine_reason,omitempty"`
	URL           string `json:"url,omitempty"`

	// Evidence: the stored raw message that produced the event.
	EvidenceID string `json:"evidence_id,omitempty"`
}

// Size bounds of the string fields, in bytes. Free text gets more room than
// names and addresses; an event over a bound is rejected, never truncated,
// so that what is stored is what was sent.
const (
	maxShortField = 255  // names, domains, addresses, codes
	maxLongField  = 2048 // diagnostic, URL, user agent, source reference
)

// Validation errors. ValidationError wraps one of these.
var (
	ErrUnknownKind  = errors.New("unknown kind")
	ErrMissingField = errors.New("missing field")
	ErrTimeRange    = errors.New("time out of range")
	ErrFieldTooLong = errors.New("field too long")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrInvalidValue = errors.New("invalid value")
)

// ValidationError names the field at fault and the kind of problem.
type ValidationError struct {
	Field string
	Err   error  // one of the Err* sentinels above
	Value string // the offending value, shortened; may be empty
}

func (e *ValidationError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("metrics: %s: %v: %q", e.Field, e.Err, e.Value)
	}
	return fmt.Sprintf("metrics: %s: %v", e.Field, e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// earliest is the first time an event may carry; later than now+maxSkew is
// also refused (a clock far ahead would put events in the wrong day).
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxSkew = time.Hour

// Normalize validates e and fills in its derived fields, in place: the
// recipient is lower-cased, RecipientDomain and ISP are derived from it, the
// time is converted to UTC and truncated to whole seconds (ClickHouse 18.16
// has no sub-second DateTime; both backends store the same instant), a
// bounce without a type is undetermined, and EventID is computed from the
// content when the client did not send one. now bounds the time from above.
func (e *Event) Normalize(isps ISPMap, now time.Time) error {
	if err := e.checkStrings(); err != nil {
		return err
	}
	if !e.Kind.Valid() {
		return &ValidationError{Field: "kind", Err: ErrUnknownKind, Value: short(string(e.Kind))}
	}
	if e.Account == "" {
		return &ValidationError{Field: "account", Err: ErrMissingField}
	}
	if e.Recipient == "" {
		return &ValidationError{Field: "recipient", Err: ErrMissingField}
	}
	if e.Time.IsZero() {
		return &ValidationError{Field: "time", Err: ErrMissingField}
	}
	e.Time = e.Time.UTC().Truncate(time.Second)
	if e.Time.Before(earliest) || e.Time.After(now.Add(maxSkew)) {
		return &ValidationError{Field: "time", Err: ErrTimeRange, Value: e.Time.Format(time.RFC3339)}
	}
	e.Recipient = strings.ToLower(strings.TrimSpace(e.Recipient))
	at := strings.LastIndexByte(e.Recipient, '@')
	if at <= 0 || at == len(e.Recipient)-1 {
		return &ValidationError{Field: "recipient", Err: ErrInvalidValue, Value: short(e.Recipient)}
	}
	e.RecipientDomain = e.Recipient[at+1:]
	e.ISP = isps.Lookup(e.RecipientDomain)
	switch e.BounceType {
	case "":
		if e.Kind == KindBounced {
			e.BounceType = BounceUndetermined
		}
	case BounceHard, BounceSoft, BounceUndetermined:
	default:
		return &ValidationError{Field: "bounce_type", Err: ErrInvalidValue, Value: short(e.BounceType)}
	}
	if e.EventID == "" {
		e.EventID = e.ComputeID()
	}
	return nil
}

// stringField is one string field of Event: its JSON name, where it is
// and its size bound.
type stringField struct {
	name  string
	get   func(e *Event) *string
	bound int
}

// stringFields lists every string field in the canonical order ComputeID
// hashes them. It is read-only.
var stringFields = []stringField{
	{"event_id", func(e *Event) *string { return &e.EventID }, maxShortField},
	{"kind", func(e *Event) *string { return (*string)(&e.Kind) }, maxShortField},
	{"source", func(e *Event) *string { return &e.Source }, maxShortField},
	{"source_ref", func(e *Event) *string { return &e.SourceRef }, maxLongField},
	{"account", func(e *Event) *string { return &e.Account }, maxShortField},
	{"sender_domain", func(e *Event) *string { return &e.SenderDomain }, maxShortField},
	{"sending_ip", func(e *Event) *string { return &e.SendingIP }, maxShortField},
	{"campaign", func(e *Event) *string { return &e.Campaign }, maxShortField},
	{"message_id", func(e *Event) *string { return &e.MessageID }, maxShortField * 2},
	{"recipient", func(e *Event) *string { return &e.Recipient }, maxShortField * 2},
	{"recipient_domain", func(e *Event) *string { return &e.RecipientDomain }, maxShortField},
	{"isp", func(e *Event) *string { return &e.ISP }, maxShortField},
	{"bounce_type", func(e *Event) *string { return &e.BounceType }, maxShortField},
	{"reason", func(e *Event) *string { return &e.Reason }, maxShortField},
	{"status", func(e *Event) *string { return &e.Status }, maxShortField},
	{"diagnostic", func(e *Event) *string { return &e.Diagnostic }, maxLongField},
	{"remote_mta", func(e *Event) *string { return &e.RemoteMTA }, maxShortField},
	{"correlation", func(e *Event) *string { return &e.Correlation }, maxShortField},
	{"feedback_type", func(e *Event) *string { return &e.FeedbackType }, maxShortField},
	{"feedback_provider", func(e *Event) *string { return &e.FeedbackProvider }, maxShortField},
	{"recipient_recovered_from", func(e *Event) *string { return &e.RecipientRecoveredFrom }, maxShortField},
	{"user_agent", func(e *Event) *string { return &e.UserAgent }, maxLongField},
	{"client_ip", func(e *Event) *string { return &e.ClientIP }, maxShortField},
	{"machine_reason", func(e *Event) *string { return &e.MachineReason }, maxShortField},
	{"url", func(e *Event) *string { return &e.URL }, maxLongField},
	{"evidence_id", func(e *Event) *string { return &e.EvidenceID }, maxShortField},
}

func (e *Event) checkStrings() error {
	for _, f := range stringFields {
		v := *f.get(e)
		if !utf8.ValidString(v) {
			return &ValidationError{Field: f.name, Err: ErrInvalidUTF8}
		}
		if len(v) > f.bound {
			return &ValidationError{Field: f.name, Err: ErrFieldTooLong,
				Value: fmt.Sprintf("%d bytes, at most %d", len(v), f.bound)}
		}
	}
	return nil
}

// ComputeID returns the content-derived event id: the first 16 bytes, in
// hex, of SHA-256 over a canonical encoding of every field except event_id
// and the two derived from the recipient (recipient_domain and isp, so that
// a change of the ISP map does not change identities). The encoding is, for
// each field in declaration order, its name, a NUL, its length as a varint
// and its bytes; time is RFC 3339 in UTC with whole seconds, reply_code
// decimal, machine "0" or "1". Call it on a normalized event.
func (e *Event) ComputeID() string {
	buf := make([]byte, 0, 512)
	put := func(name, value string) {
		buf = append(buf, name...)
		buf = append(buf, 0)
		buf = binary.AppendUvarint(buf, uint64(len(value)))
		buf = append(buf, value...)
	}
	put("time", e.Time.UTC().Format(time.RFC3339))
	for _, f := range stringFields {
		switch f.name {
		case "event_id", "recipient_domain", "isp":
			continue
		}
		put(f.name, *f.get(e))
	}
	put("reply_code", strconv.Itoa(int(e.ReplyCode)))
	machine := "0"
	if e.Machine {
		machine = "1"
	}
	put("machine", machine)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

// Key identifies an event across the store: ids are scoped by account, so
// one tenant can never overwrite or hide another's events.
type Key struct {
	Account string
	EventID string
}

// Key returns the identity of e.
func (e *Event) Key() Key { return Key{Account: e.Account, EventID: e.EventID} }

func short(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
