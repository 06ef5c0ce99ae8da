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
	"slices"
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

// Categories of mail (Event.Category). Their open rates differ:
// registration mail normally opens above 80% (docs/THRESHOLDS.md).
const (
	CategoryMarketing     = "marketing"
	CategoryTransactional = "transactional"
	CategoryRegistration  = "registration"
)

// Categories lists every category an event may carry besides none.
var Categories = []string{CategoryMarketing, CategoryTransactional, CategoryRegistration}

// Why a message was dropped (Event.Reason of a dropped event): not sent at
// all. The detail goes in Event.Diagnostic.
const (
	DropBlocklisted      = "blocklisted"       // the recipient is on the blocklist
	DropUnsubscribed     = "unsubscribed"      // the recipient unsubscribed from the sender domain
	DropPaused           = "paused"            // sending is paused (a rule, warm-up, an operator)
	DropInvalidRecipient = "invalid_recipient" // the address cannot be mailed
)

// DropReasons lists the reasons a dropped event may give.
var DropReasons = []string{DropBlocklisted, DropUnsubscribed, DropPaused, DropInvalidRecipient}

// Bounce types. An undetermined bounce counts as soft in statistics.
const (
	BounceHard         = "hard"
	BounceSoft         = "soft"
	BounceUndetermined = "undetermined"
)

// Event is one fact about one message to one recipient. JSON and column
// names are the snake_case names of docs/events.md, which describes every
// field: its type, its columns, who fills it, how it is validated and
// whether it enters the id.
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
	Category        string `json:"category,omitempty"` // one of Categories, or none
	MessageID       string `json:"message_id,omitempty"`
	Recipient       string `json:"recipient"`
	RecipientDomain string `json:"recipient_domain,omitempty"` // derived from Recipient
	ISP             string `json:"isp,omitempty"`              // derived from RecipientDomain

	// Bounce (and drop: Reason and Diagnostic say why a message was not
	// sent, Reason one of DropReasons).
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
	UserAgent string `json:"user_agent,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
	// Machine is the machine-open verdict, in three states: nil, no verdict
	// (absent or null in JSON); false, a person; true, a machine, with
	// MachineReason saying which (apple_mpp, google_proxy, scanner,
	// prefetch, …). Neither enters the id: a verdict filled in later, by
	// repute or a client, leaves the event the same event.
	Machine       *bool  `json:"machine,omitempty"`
	MachineReason string `json:"machine_reason,omitempty"`
	URL           string `json:"url,omitempty"`

	// Evidence: the stored raw message that produced the event.
	EvidenceID string `json:"evidence_id,omitempty"`

	// PostedBy is the account whose key posted the event through the API;
	// empty when repute produced the event itself (a parsed report, its
	// sender) or the admin key posted it. It decides whether a blocklist
	// entry the event causes is shared with every account (empty) or
	// limited to that account. The API sets it from the key; it is not
	// part of the id (ComputeID).
	PostedBy string `json:"posted_by,omitempty"`
}

// Verdict returns a machine-open verdict for Event.Machine: true for a
// machine, false for a person. No verdict is nil.
func Verdict(machine bool) *bool { return &machine }

// Size bounds of the string fields, in bytes. Free text gets more room than
// names and addresses; an event over a bound is rejected, never truncated,
// so that what is stored is what was sent.
const (
	maxShortField = 255  // names, domains, addresses, codes
	maxLongField  = 2048 // diagnostic, URL, user agent, source reference
)

// Bounds a source that derives events from text it did not write (a
// bounce's diagnostic, a remote MTA's name) applies with Truncate, so that
// the event is not rejected for what a remote server said.
const (
	MaxShortField = maxShortField
	MaxLongField  = maxLongField
)

// Truncate returns s cut to at most n bytes, on a UTF-8 character
// boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Validation errors. ValidationError wraps one of these.
var (
	ErrUnknownKind  = errors.New("unknown kind")
	ErrMissingField = errors.New("missing field")
	ErrBadTime      = errors.New("not a time")
	ErrTimeRange    = errors.New("time out of range")
	ErrFieldTooLong = errors.New("field too long")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrInvalidValue = errors.New("invalid value")
)

// ValidationError names the field at fault, the kind of problem and, where
// it helps, what would have been accepted. Its message is written for the
// person who posted the event:
//
//	metrics: time "yesterday": not a time: want RFC 3339, e.g. 2026-11-29T10:00:00Z, between 2000-01-01 and one hour from now
//	metrics: reason "spam": invalid value: want blocklisted, unsubscribed, paused or invalid_recipient for a dropped event
type ValidationError struct {
	Field string
	Err   error  // one of the Err* sentinels above
	Value string // the offending value, shortened; may be empty
	Want  string // what is accepted, in the user's words; may be empty
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("metrics: ")
	b.WriteString(e.Field)
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Want != "" {
		b.WriteString(": want ")
		b.WriteString(e.Want)
	}
	return b.String()
}

func (e *ValidationError) Unwrap() error { return e.Err }

// earliest is the first time an event may carry; later than now+maxSkew is
// also refused (a clock far ahead would put events in the wrong day).
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxSkew = time.Hour

// timeWant says which times are accepted, for error messages; it must
// agree with earliest and maxSkew.
const timeWant = "RFC 3339, e.g. 2026-11-29T10:00:00Z, between 2000-01-01 and one hour from now"

// Normalize validates e and fills in its derived fields, in place: the
// recipient is lower-cased, RecipientDomain and ISP are derived from it, the
// time is converted to UTC and truncated to whole seconds (ClickHouse 18.16
// has no sub-second DateTime; both backends store the same instant), a
// bounce without a type is undetermined, and EventID is computed from the
// content when the client did not send one. now bounds the time from above.
//
// Beyond the presence and size of fields it checks the closed vocabularies:
// kind, bounce_type, category, the reason of a dropped event (required), and
// that machine_reason comes only with "machine": true.
func (e *Event) Normalize(isps ISPMap, now time.Time) error {
	if err := e.checkStrings(); err != nil {
		return err
	}
	if !e.Kind.Valid() {
		return &ValidationError{Field: "kind", Err: ErrUnknownKind, Value: short(string(e.Kind)),
			Want: oneOf(kindNames())}
	}
	if e.Account == "" {
		return &ValidationError{Field: "account", Err: ErrMissingField}
	}
	if e.Recipient == "" {
		return &ValidationError{Field: "recipient", Err: ErrMissingField}
	}
	if e.Time.IsZero() {
		return &ValidationError{Field: "time", Err: ErrMissingField, Want: timeWant}
	}
	e.Time = e.Time.UTC().Truncate(time.Second)
	if e.Time.Before(earliest) || e.Time.After(now.Add(maxSkew)) {
		return &ValidationError{Field: "time", Err: ErrTimeRange, Value: e.Time.Format(time.RFC3339),
			Want: "a time between 2000-01-01 and one hour from now (" +
				now.Add(maxSkew).UTC().Truncate(time.Second).Format(time.RFC3339) + ")"}
	}
	e.Recipient = strings.ToLower(strings.TrimSpace(e.Recipient))
	at := strings.LastIndexByte(e.Recipient, '@')
	if at <= 0 || at == len(e.Recipient)-1 {
		return &ValidationError{Field: "recipient", Err: ErrInvalidValue, Value: short(e.Recipient),
			Want: "an address, local@domain"}
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
		return &ValidationError{Field: "bounce_type", Err: ErrInvalidValue, Value: short(e.BounceType),
			Want: oneOf([]string{BounceHard, BounceSoft, BounceUndetermined})}
	}
	if e.Category != "" && !slices.Contains(Categories, e.Category) {
		return &ValidationError{Field: "category", Err: ErrInvalidValue, Value: short(e.Category),
			Want: oneOf(Categories) + ", or no category"}
	}
	if e.Kind == KindDropped {
		want := oneOf(DropReasons) + " for a dropped event (the detail goes in diagnostic)"
		if e.Reason == "" {
			return &ValidationError{Field: "reason", Err: ErrMissingField, Want: want}
		}
		if !slices.Contains(DropReasons, e.Reason) {
			return &ValidationError{Field: "reason", Err: ErrInvalidValue, Value: short(e.Reason), Want: want}
		}
	}
	if e.MachineReason != "" && (e.Machine == nil || !*e.Machine) {
		return &ValidationError{Field: "machine_reason", Err: ErrInvalidValue, Value: short(e.MachineReason),
			Want: `"machine": true beside it (a reason comes only with a machine verdict)`}
	}
	if e.EventID == "" {
		e.EventID = e.ComputeID()
	}
	return nil
}

// oneOf words a closed list for an error message: "a, b or c".
func oneOf(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

func kindNames() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = string(k)
	}
	return out
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
	// Added after the first release: appended, so that the spool's older
	// encodings stay prefixes of the newer (codec.go), and hashed only when
	// set, so that the ids of events without it are what they were.
	{"category", func(e *Event) *string { return &e.Category }, maxShortField},
	// Who posted the event: never hashed (ComputeID).
	{"posted_by", func(e *Event) *string { return &e.PostedBy }, maxShortField},
}

func (e *Event) checkStrings() error {
	for _, f := range stringFields {
		v := *f.get(e)
		if !utf8.ValidString(v) {
			return &ValidationError{Field: f.name, Err: ErrInvalidUTF8}
		}
		if len(v) > f.bound {
			return &ValidationError{Field: f.name, Err: ErrFieldTooLong,
				Want: fmt.Sprintf("at most %d bytes, not %d", f.bound, len(v))}
		}
	}
	return nil
}

// ComputeID returns the content-derived event id: the first 16 bytes, in
// hex, of SHA-256 over a canonical encoding of what was posted, after
// normalisation. The encoding is, for each field, its name, a NUL, its
// length as a varint and its bytes: time (RFC 3339 in UTC, whole seconds),
// then every string field in stringFields order, then reply_code (decimal),
// then machine.
//
// Left out, or rather hashed as a constant: event_id itself; recipient_domain
// and isp (derived, so a change of the ISP map changes no id); and the
// machine verdict, machine and machine_reason, hashed as "0" and "" whatever
// they hold, so that a verdict filled in later — by repute's detection or a
// client's second look — never makes the same open another event. (They
// keep their place in the encoding so that ids computed before the verdict
// became three-state are unchanged.) category enters only when set, for
// the same reason. posted_by never enters: who posted a fact does not make
// it another fact. Call it on a normalized event.
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
		case "event_id", "recipient_domain", "isp", "category", "posted_by":
			continue
		case "machine_reason":
			put(f.name, "")
			continue
		}
		put(f.name, *f.get(e))
	}
	put("reply_code", strconv.Itoa(int(e.ReplyCode)))
	put("machine", "0")
	if e.Category != "" {
		put("category", e.Category)
	}
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
