package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"repute/correlate"
	"repute/dsn"
	"repute/metrics"
)

// The values of Source.Name: where a report was read.
const (
	SourceIMAP  = "imap"
	SourceKafka = "kafka"
	SourceHTTP  = "http"
	SourceFile  = "file"
)

// The values of metrics.Event.Correlation: how the original send was found,
// in the order the Converter tries them.
const (
	CorrelationHeader    = "header"     // the X-Repute-ID header of the returned original
	CorrelationVERP      = "verp"       // the token of a VERP (or unsubscribe) address
	CorrelationMessageID = "message_id" // the original's Message-ID, matched against sent events
	CorrelationEnvID     = "envid"      // the DSN's ENVID (RFC 3461 §4.4) with ORCPT or the recipient
	CorrelationNone      = "none"       // nothing matched: Options.Account
)

// DefaultUnsubscribePrefix is the local part our sender stamps before the
// token of the mailto unsubscribe address (unsubscribe+TOKEN@domain).
const DefaultUnsubscribePrefix = "unsubscribe"

// Errors of Converter.Events. With any of them Events returns no events:
// the caller quarantines the message with the error as its reason, except
// for ErrLookup, which says the send store failed (try again later).
var (
	// ErrUnattributed means a report matched no send and the Converter
	// has no Account to store it under.
	ErrUnattributed = errors.New("ingest: report matches no send and no account is configured for unmatched reports")
	// ErrNoTime means neither the report nor the Source gave a time the
	// event model accepts (2000-01-01 to one hour from now).
	ErrNoTime = errors.New("ingest: no usable time in the report or its source")
	// ErrNoEventRecipient means a report names no recipient an event can
	// be about (a complaint with the recipient redacted whose send was not
	// found, an unsubscribe without a From).
	ErrNoEventRecipient = errors.New("ingest: report names no recipient")
	// ErrNotMessage means the input does not start with a header field
	// (LooksLikeMessage),
	// so it is no RFC 5322 message (a binary blob, a JSON document, an
	// empty body): nothing can be made of it.
	ErrNotMessage = errors.New("ingest: not an email message: it does not start with a header field (RFC 5322 §2.2)")
	// ErrLookup wraps an error of the SendLookup: the message is fine, the
	// store is not; convert it again later.
	ErrLookup = errors.New("ingest: send lookup failed")
)

// Source says where a report was read.
type Source struct {
	// Name is SourceIMAP, SourceKafka, SourceHTTP or SourceFile; it is the
	// events' source.
	Name string
	// Ref says where exactly (mailbox/folder/UIDVALIDITY/UID,
	// topic/partition/offset, a file path); it is the events' source_ref.
	Ref string
	// Time is the time of last resort: the mailbox's INTERNALDATE, the
	// record's timestamp. Zero when the source has none.
	Time time.Time
}

// Send is what a report is attributed to: the fields of the original
// send's sent event that its feedback events carry.
type Send = metrics.Send

// SendLookup finds the send a report is about. Each method returns false
// when nothing matches; an error means the lookup itself failed. recipient
// is lower-cased, "" when the report names none; an implementation may
// ignore it when the other key is unique.
type SendLookup interface {
	// SendByRef finds a send by its correlate.Ref, in its text form.
	SendByRef(ctx context.Context, ref string) (Send, bool, error)
	// SendByMessageID finds a send by the Message-ID of the message
	// (without angle brackets) and its recipient.
	SendByMessageID(ctx context.Context, messageID, recipient string) (Send, bool, error)
	// SendByEnvID finds a send by the envelope id given at MAIL FROM (RFC
	// 3461 §4.4) and the recipient (ORCPT when the report gives it).
	SendByEnvID(ctx context.Context, envid, recipient string) (Send, bool, error)
}

// Options configure a Converter. The zero value converts reports without
// correlation: every report is unmatched and, with no Account, an error.
type Options struct {
	// Parser parses the reports; the zero Parser by default.
	Parser Parser
	// Signer verifies the tokens of the correlation header, VERP
	// addresses and unsubscribe addresses; nil trusts none of them.
	Signer *correlate.Signer
	// Sends looks up the original send; nil finds none.
	Sends SendLookup
	// Account is the account of reports that match no send; "" makes
	// such a report an error (ErrUnattributed).
	Account string
	// UnsubscribePrefix is the local part before the token of the mailto
	// unsubscribe address; DefaultUnsubscribePrefix when empty.
	UnsubscribePrefix string
	// ISPs maps recipient domains to mailbox providers (Normalize).
	ISPs metrics.ISPMap
	// Now is the clock that bounds event times from above; time.Now when
	// nil. It is never an event's time.
	Now func() time.Time
}

// Converter turns one raw report into the events it means. It is safe for
// concurrent use when its SendLookup is.
type Converter struct {
	o Options
}

// NewConverter checks o and returns a Converter.
func NewConverter(o Options) (*Converter, error) {
	if o.UnsubscribePrefix == "" {
		o.UnsubscribePrefix = DefaultUnsubscribePrefix
	}
	if len(o.UnsubscribePrefix) > correlate.MaxPrefixLen || strings.ContainsAny(o.UnsubscribePrefix, "@+ \t<>") {
		return nil, fmt.Errorf("ingest: unsubscribe prefix %q: want a local part of at most %d octets without + or @",
			o.UnsubscribePrefix, correlate.MaxPrefixLen)
	}
	if len(o.Account) > 255 {
		return nil, fmt.Errorf("ingest: account %q: longer than 255 bytes", o.Account[:32]+"…")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Converter{o: o}, nil
}

// earliest is the first time the event model accepts.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Events converts one message (raw, as read: LF or CRLF, a leading mbox
// "From " line allowed; a file in mbox form is split with SplitMbox first)
// read from src into events, normalized and ready for
// intake.Pipeline.Submit:
//
//   - a failed recipient of a bounce: bounced, with bounce_type hard or
//     soft, reason, status, reply_code, diagnostic and remote_mta;
//   - a delayed recipient: deferred; a delivered one (success DSN):
//     delivered; both with the same fields but bounce_type and reason;
//   - each recipient of a complaint: complained, with feedback_type,
//     feedback_provider and recipient_recovered_from;
//   - a message to our mailto unsubscribe address carrying a token the
//     Signer verifies: unsubscribed, for the send it names;
//   - anything else (an automatic reply, ordinary mail, a forged
//     unsubscribe token): no events and ignored true.
//
// Feedback events carry the send's account, sender_domain, campaign,
// sending_ip and message_id, found by the correlation header, the VERP
// token, the original Message-ID or the ENVID, in that order
// (correlation says which); unmatched ones go to Options.Account with
// correlation none. Ids are metrics.DerivedID of the report, the recipient
// and the kind; times are the report's (see pickTime), never the clock's.
//
// On error there are no events; see the Err variables for which errors
// mean quarantine and which mean try again.
func (c *Converter) Events(ctx context.Context, raw []byte, src Source) (events []metrics.Event, ignored bool, err error) {
	// One message: a line starting "From " inside it (a returned
	// message's, unescaped) does not split it; files in mbox form are split
	// by the caller (SplitMbox).
	msg := raw[mboxStart(raw):]
	if !LooksLikeMessage(msg) {
		return nil, false, ErrNotMessage
	}
	h := readHeader(msg)
	reportID := metrics.ReportIdentity(h.get("Message-ID"), msg)
	now := c.o.Now()
	date := headerDate(h)

	if ev, ok, err := c.unsubscribe(ctx, h, reportID, date, src, now); err != nil || ok {
		if err != nil {
			return nil, false, err
		}
		return []metrics.Event{ev}, false, nil
	}

	pr, err := c.o.Parser.parseReport(msg)
	if len(pr.results) == 0 {
		if err != nil {
			return nil, false, fmt.Errorf("ingest: %w", err)
		}
		return nil, true, nil
	}
	// An error beside results says what was odd; the results stand.

	verp := c.verpTokens(h, pr)
	for i, r := range pr.results {
		kind := eventKind(r)
		if kind == "" {
			continue
		}
		var reported []time.Time
		if pr.bounce != nil && i < len(pr.bounce.Recipients) {
			reported = append(reported, pr.bounce.Recipients[i].LastAttemptDate(), pr.bounce.ArrivalDate())
		}
		if pr.complaint != nil {
			reported = append(reported, pr.complaint.ArrivalDate)
		}
		reported = append(reported, date, src.Time)
		at, ok := pickTime(now, reported...)
		if !ok {
			return nil, false, ErrNoTime
		}
		ev := metrics.Event{
			Time:      at,
			Kind:      kind,
			Source:    src.Name,
			SourceRef: src.Ref,
			Recipient: r.Recipient,
			MessageID: r.MessageID,
		}
		switch kind {
		case metrics.KindComplained:
			ev.FeedbackType = r.FeedbackType
			ev.FeedbackProvider = r.FeedbackProvider
			ev.RecipientRecoveredFrom = r.RecipientRecoveredFrom
		default:
			if kind == metrics.KindBounced {
				ev.BounceType = metrics.BounceSoft
				if r.HardBounce {
					ev.BounceType = metrics.BounceHard
				}
			}
			if kind != metrics.KindDelivered {
				ev.Reason = r.Reason
			}
			ev.Status = r.Status
			ev.ReplyCode = replyCode(r.ReplyCode)
			ev.Diagnostic = metrics.Truncate(r.DiagnosticCode, metrics.MaxLongField)
			ev.RemoteMTA = metrics.Truncate(r.RemoteMTA, metrics.MaxShortField)
		}
		send, how, err := c.correlate(ctx, r, verp)
		if err != nil {
			return nil, false, err
		}
		if err := c.attribute(&ev, send, how); err != nil {
			return nil, false, err
		}
		if ev.Recipient == "" {
			return nil, false, fmt.Errorf("%w: the %s report's recipient is redacted or missing and no send names it", ErrNoEventRecipient, r.Kind)
		}
		ev.EventID = metrics.DerivedID(reportID, ev.Recipient, kind)
		if err := ev.Normalize(c.o.ISPs, now); err != nil {
			return nil, false, fmt.Errorf("ingest: %s event for %q: %w", kind, ev.Recipient, err)
		}
		events = append(events, ev)
	}
	return events, len(events) == 0, nil
}

// attribute gives ev the send's fields, or the configured account when
// there is no send (how is CorrelationNone).
func (c *Converter) attribute(ev *metrics.Event, send Send, how string) error {
	ev.Correlation = how
	if how == CorrelationNone {
		if c.o.Account == "" {
			return ErrUnattributed
		}
		ev.Account = c.o.Account
		return nil
	}
	ev.Account = send.Account
	ev.SenderDomain = send.SenderDomain
	ev.Campaign = send.Campaign
	ev.SendingIP = send.SendingIP
	if send.MessageID != "" {
		ev.MessageID = send.MessageID
	}
	if ev.Recipient == "" {
		ev.Recipient = send.Recipient
	}
	return nil
}

// eventKind is the kind of event a result means, "" for none.
func eventKind(r Result) metrics.Kind {
	switch r.Kind {
	case KindFeedback:
		return metrics.KindComplained
	case string(dsn.KindAutoReply), "":
		return ""
	}
	// A DSN may report recipients with different actions (RFC 3464
	// §2.3.3): each recipient's action decides its event.
	switch r.Action {
	case "delayed":
		return metrics.KindDeferred
	case "delivered", "relayed", "expanded":
		return metrics.KindDelivered
	case "failed":
		return metrics.KindBounced
	}
	switch dsn.Kind(r.Kind) {
	case dsn.KindDelay:
		return metrics.KindDeferred
	case dsn.KindSuccess:
		return metrics.KindDelivered
	case dsn.KindBounce:
		return metrics.KindBounced
	}
	return ""
}

// correlate finds the send of a result: by the correlation header, a VERP
// token, the original Message-ID, then the ENVID. A token the Signer does
// not verify is not used.
func (c *Converter) correlate(ctx context.Context, r Result, verp []string) (Send, string, error) {
	if c.o.Sends == nil {
		return Send{}, CorrelationNone, nil
	}
	rcpt := strings.ToLower(strings.TrimSpace(r.Recipient))
	if r.CorrelationID != "" {
		if s, ok, err := c.byToken(ctx, r.CorrelationID); err != nil || ok {
			return s, CorrelationHeader, lookupErr(CorrelationHeader, err)
		}
	}
	for _, tok := range verp {
		if s, ok, err := c.byToken(ctx, tok); err != nil || ok {
			return s, CorrelationVERP, lookupErr(CorrelationVERP, err)
		}
	}
	if r.MessageID != "" {
		if s, ok, err := c.o.Sends.SendByMessageID(ctx, r.MessageID, rcpt); err != nil || ok {
			return s, CorrelationMessageID, lookupErr(CorrelationMessageID, err)
		}
	}
	if r.ENVID != "" {
		if orcpt := strings.ToLower(strings.TrimSpace(r.OriginalRecipient)); orcpt != "" {
			rcpt = orcpt
		}
		if s, ok, err := c.o.Sends.SendByEnvID(ctx, r.ENVID, rcpt); err != nil || ok {
			return s, CorrelationEnvID, lookupErr(CorrelationEnvID, err)
		}
	}
	return Send{}, CorrelationNone, nil
}

func lookupErr(how string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: by %s: %w", ErrLookup, how, err)
}

// byToken verifies a token and looks its send up.
func (c *Converter) byToken(ctx context.Context, token string) (Send, bool, error) {
	if c.o.Signer == nil || c.o.Sends == nil {
		return Send{}, false, nil
	}
	ref, err := c.o.Signer.Parse(token)
	if err != nil {
		return Send{}, false, nil // forged, altered or not ours: not evidence
	}
	return c.o.Sends.SendByRef(ctx, ref.String())
}

// verpTokens returns the VERP tokens a report carries, in order: those of
// the bounce's own envelope recipient (our return path), then that of the
// returned original's Return-Path (a complaint), then the one dsn found.
func (c *Converter) verpTokens(h header, pr parsed) []string {
	var out []string
	add := func(addr string) {
		if tok, ok := correlate.VERPToken(addr); ok && !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	for _, name := range envelopeHeaders {
		for _, v := range h.all(name) {
			add(addrOf(v))
		}
	}
	if pr.complaint != nil {
		add(addrOf(pr.complaint.Original.ReturnPath))
	}
	if pr.bounce != nil && pr.bounce.VERP != "" {
		if tok := strings.ToLower(pr.bounce.VERP); !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

// envelopeHeaders hold the envelope recipient of a message as delivered:
// for a bounce our VERP return path, for an unsubscribe our mailto
// address.
var envelopeHeaders = []string{"X-Original-To", "Delivered-To", "Envelope-To", "To"}

// unsubscribe recognises a message to our mailto unsubscribe address
// (DefaultUnsubscribePrefix+TOKEN@domain, RFC 2369 List-Unsubscribe) and
// returns its unsubscribed event. ok is false for any other message,
// including one whose token does not verify.
func (c *Converter) unsubscribe(ctx context.Context, h header, reportID string, date time.Time, src Source, now time.Time) (ev metrics.Event, ok bool, err error) {
	if c.o.Signer == nil {
		return ev, false, nil
	}
	// QUIRK: RFC 3834 §5 — an automatic reply (a vacation notice sent to
	// whatever address wrote to the user) is nobody asking to leave.
	if as := strings.ToLower(strings.TrimSpace(h.get("Auto-Submitted"))); as != "" && as != "no" {
		return ev, false, nil
	}
	var ref correlate.Ref
	for _, name := range envelopeHeaders {
		for _, v := range h.all(name) {
			for _, a := range addrsOf(v) {
				tok, isVERP := correlate.VERPToken(a)
				if !isVERP || !strings.EqualFold(verpPrefix(a), c.o.UnsubscribePrefix) {
					continue
				}
				if r, err := c.o.Signer.Parse(tok); err == nil {
					ref = r
					break
				}
			}
			if !ref.IsZero() {
				break
			}
		}
		if !ref.IsZero() {
			break
		}
	}
	if ref.IsZero() {
		return ev, false, nil
	}
	at, ok := pickTime(now, date, src.Time)
	if !ok {
		return ev, false, ErrNoTime
	}
	ev = metrics.Event{
		Time:      at,
		Kind:      metrics.KindUnsubscribed,
		Source:    src.Name,
		SourceRef: src.Ref,
		Recipient: strings.ToLower(addrOf(h.get("From"))),
	}
	send, how := Send{}, CorrelationNone
	if c.o.Sends != nil {
		s, found, err := c.o.Sends.SendByRef(ctx, ref.String())
		if err != nil {
			return ev, false, lookupErr(CorrelationVERP, err)
		}
		if found {
			send, how = s, CorrelationVERP
			// The token names the send to one recipient: that address
			// leaves the list, whatever address the request came from.
			if s.Recipient != "" {
				ev.Recipient = strings.ToLower(s.Recipient)
			}
		}
	}
	if err := c.attribute(&ev, send, how); err != nil {
		return ev, false, err
	}
	if ev.Recipient == "" {
		return ev, false, fmt.Errorf("%w: unsubscribe request without a From address", ErrNoEventRecipient)
	}
	ev.EventID = metrics.DerivedID(reportID, ev.Recipient, ev.Kind)
	if err := ev.Normalize(c.o.ISPs, now); err != nil {
		return ev, false, fmt.Errorf("ingest: unsubscribed event for %q: %w", ev.Recipient, err)
	}
	return ev, true, nil
}

// verpPrefix returns the local part of addr before its token and
// separator (addr has the shape VERPToken accepts).
func verpPrefix(addr string) string {
	local, _, _ := strings.Cut(strings.Trim(strings.TrimSpace(addr), "<>"), "@")
	if len(local) <= correlate.TokenLen {
		return ""
	}
	return local[:len(local)-correlate.TokenLen-1]
}

// pickTime returns the first of times the event model accepts: between
// 2000-01-01 and one hour after now, in whole seconds.
func pickTime(now time.Time, times ...time.Time) (time.Time, bool) {
	latest := now.Add(time.Hour)
	for _, t := range times {
		t = t.UTC().Truncate(time.Second)
		if t.IsZero() || t.Before(earliest) || t.After(latest) {
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

// replyCode is the SMTP reply code of a result, 0 when none.
func replyCode(s string) uint16 {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

// headerDate is the report's Date (RFC 5322 §3.6.1), zero when absent or
// unparsable.
func headerDate(h header) time.Time {
	t, err := mail.ParseDate(strings.TrimSpace(h.get("Date")))
	if err != nil {
		return time.Time{}
	}
	return t
}

// addrOf returns the first address of a header value, lenient: the
// address of a list, or the text between angle brackets, or the value.
func addrOf(v string) string {
	if a := addrsOf(v); len(a) > 0 {
		return a[0]
	}
	return ""
}

// addrsOf returns the addresses of a header value.
func addrsOf(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	// QUIRK: RFC 5322 §3.4 — real headers break the grammar (unquoted
	// dots and commas in display names); take the bracketed address.
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return []string{strings.TrimSpace(v[i+1 : i+j])}
		}
	}
	if strings.Contains(v, "@") && !strings.ContainsAny(v, " \t") {
		return []string{v}
	}
	return nil
}

// header is a message's top-level header, read leniently: names
// case-insensitive, folded lines unfolded, lines that are no field skipped.
type header []field

type field struct{ name, value string }

// maxHeader bounds how much of a message readHeader looks at.
const maxHeader = 256 << 10

// readHeader reads the header of msg (up to the first empty line).
func readHeader(msg []byte) header {
	if len(msg) > maxHeader {
		msg = msg[:maxHeader]
	}
	var h header
	for len(msg) > 0 {
		var line []byte
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			line, msg = msg, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(h) > 0 {
				h[len(h)-1].value += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			continue
		}
		h = append(h, field{string(name), strings.TrimSpace(string(value))})
	}
	return h
}

// get returns the first value of the field, "" when absent.
func (h header) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// all returns every value of the field, in order.
func (h header) all(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}
