package dsn

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// CorrelationHeader is the header our sender stamps on every message; a
// bounce that returns the original's headers carries it back.
const CorrelationHeader = "X-Repute-ID"

// Errors returned by Parse. ErrNotBounce is returned alone; the others
// come with a best-effort Report.
var (
	// ErrNotBounce means the message is neither a delivery status
	// notification, a bounce in a known non-standard form, nor an
	// automatic reply.
	ErrNotBounce = errors.New("dsn: not a bounce")
	// ErrTruncated means the message was longer than MaxMessageSize and
	// only its beginning was parsed.
	ErrTruncated = errors.New("dsn: message truncated")
	// ErrNoRecipient means the message looks like a bounce but no failed
	// recipient address could be found in it.
	ErrNoRecipient = errors.New("dsn: no recipient")
)

// Kind says what a report is.
type Kind string

// The kinds of report Parse recognises.
const (
	KindBounce    Kind = "bounce"    // permanent failure (Action: failed)
	KindDelay     Kind = "delay"     // temporary failure (Action: delayed)
	KindSuccess   Kind = "success"   // success DSN (Action: delivered, relayed, expanded)
	KindAutoReply Kind = "autoreply" // automatic reply (RFC 3834)
)

// Report is the parsed notification.
type Report struct {
	Kind Kind
	// Recipients lists one entry per recipient the notification is
	// about, in the order the message gives them.
	Recipients []Recipient
	// ReportingMTA is the Reporting-MTA field (RFC 3464 §2.2.2), without
	// its type.
	ReportingMTA string
	// ENVID is the Original-Envelope-Id field (RFC 3464 §2.2.1).
	ENVID string
	// ArrivalDateText is the Arrival-Date field (RFC 3464 §2.2.5): when
	// the reporting MTA received the message; see ArrivalDate.
	ArrivalDateText string
	// VERP is the token of a VERP return path (<prefix>+<token>@<domain>)
	// found in the bounce's own envelope headers, "" when none.
	VERP string
	// Original holds identifiers of the returned original message.
	Original Original
	// Structured is true when the result comes from a machine-readable
	// delivery-status part rather than from text heuristics.
	Structured bool

	// first is room for the first recipient, allocated with the report:
	// most reports have one (see addRecipient).
	first [1]Recipient
}

// ArrivalDate returns the Arrival-Date field as a time, the zero time when
// it is absent or does not parse. Dates are parsed when asked for: most
// users of a Report never need them.
func (rep *Report) ArrivalDate() time.Time { return parseDate(rep.ArrivalDateText) }

// LastAttemptDate returns the Last-Attempt-Date field as a time, the zero
// time when it is absent or does not parse.
func (rc *Recipient) LastAttemptDate() time.Time { return parseDate(rc.LastAttemptDateText) }

// addRecipient appends rc to rep.Recipients and returns it there.
func (rep *Report) addRecipient(rc Recipient) *Recipient {
	if rep.Recipients == nil {
		rep.Recipients = rep.first[:0]
	}
	rep.Recipients = append(rep.Recipients, rc)
	return &rep.Recipients[len(rep.Recipients)-1]
}

// Original holds header values of the message that bounced, as far as the
// notification returned them (RFC 3462 message/rfc822 or
// text/rfc822-headers part, or a quoted copy in the text).
type Original struct {
	MessageID     string // Message-ID, without angle brackets
	CorrelationID string // value of CorrelationHeader
	From          string
	To            string
	Subject       string
}

// Recipient is the outcome for one recipient.
type Recipient struct {
	// Address is the recipient address (Final-Recipient, RFC 3464
	// §2.3.2), without its address type.
	Address string
	// ORCPT is the Original-Recipient field (RFC 3464 §2.3.1) when given.
	ORCPT string
	// Action is failed, delayed, delivered, relayed or expanded (RFC 3464
	// §2.3.3); "" for automatic replies.
	Action string
	// Status is the enhanced status code D.S.D (RFC 3463). When the
	// message carries none it is the synthetic code of Reason (see
	// SyntheticStatus); "" for automatic replies.
	Status string
	// ReplyCode is the SMTP reply code (RFC 5321 §4.2) found in the
	// diagnostic, "" when none.
	ReplyCode string
	// Diagnostic is the diagnostic text (Diagnostic-Code without its
	// type, or the text of a non-standard bounce), white space collapsed
	// and bounded in length.
	Diagnostic string
	// RemoteMTA is the Remote-MTA field (RFC 3464 §2.3.5) without its
	// type, or the host named in a non-standard bounce.
	RemoteMTA string
	// LastAttemptDateText is the Last-Attempt-Date field (RFC 3464
	// §2.3.7): when the MTA last tried to deliver to this recipient; see
	// LastAttemptDate.
	LastAttemptDateText string
	// Reason is the classification of the failure.
	Reason Reason
	// Hard is true only for a permanent failure of the address itself.
	Hard bool
	// Evidence says what decided Reason.
	Evidence Evidence

	scratch // what classification needs, cleared once it is done
}

// scratch is what Parse gathers about a recipient to classify it.
type scratch struct {
	// context is prose about this recipient found outside the
	// diagnostic (the human-readable part of a DSN), used to classify.
	context string
	// command is the SMTP phase the bounce as a whole says failed,
	// when it does not say so per recipient.
	command Phase
	// temporary is set when prose says the failure was temporary.
	temporary bool
	// diagType is the lower-cased type of Diagnostic-Code (smtp, x-unix).
	diagType string
	// statusComment is the comment after the Status code, if any.
	statusComment string
	// prose is the whole explanation of a single-recipient bounce, in
	// lower case, searched for overrides only.
	prose string
	// lowerDiag and lowerContext are Diagnostic and context in lower
	// case; lowerContext is set early when already known.
	lowerDiag, lowerContext string
}

// maxDiagnostic bounds Recipient.Diagnostic.
const maxDiagnostic = 1024

// Parser parses notifications and classifies their recipients with a
// lexicon. The zero Parser uses the built-in lexicon; a Parser is safe for
// concurrent use.
type Parser struct {
	// Lexicon is the phrase table; nil means DefaultLexicon.
	Lexicon *Lexicon
}

func (p Parser) lexicon() *Lexicon {
	if p.Lexicon == nil {
		return defaultLexicon
	}
	return p.Lexicon
}

// Parse reads a message and returns what it reports. It returns
// ErrNotBounce when the message is not a notification, and otherwise a
// Report together with a non-nil error when something was odd
// (ErrTruncated, ErrNoRecipient). Parse is safe for concurrent use.
func Parse(r io.Reader) (*Report, error) { return Parser{}.Parse(r) }

// ParseBytes is Parse over a message already in memory.
func ParseBytes(b []byte) (*Report, error) { return Parser{}.ParseBytes(b) }

// Parse is the package's Parse with p's lexicon.
func (p Parser) Parse(r io.Reader) (*Report, error) {
	buf, err := io.ReadAll(io.LimitReader(r, MaxMessageSize+1))
	if err != nil {
		return nil, fmt.Errorf("dsn: read message: %w", err)
	}
	var odd error
	if len(buf) > MaxMessageSize {
		buf = buf[:MaxMessageSize]
		odd = ErrTruncated
	}
	rep, err := parseBytes(buf, false, p.lexicon()) // buf is ours: the Report may share it
	if err != nil {
		return rep, err
	}
	return rep, odd
}

// ParseBytes is the package's ParseBytes with p's lexicon.
func (p Parser) ParseBytes(b []byte) (*Report, error) {
	var odd error
	if len(b) > MaxMessageSize {
		b = b[:MaxMessageSize]
		odd = ErrTruncated
	}
	rep, err := parseBytes(b, true, p.lexicon())
	if err != nil {
		return rep, err
	}
	return rep, odd
}

// parseBytes parses a whole message. When shared is set, b belongs to the
// caller and the Report gets its own copy of its strings.
func parseBytes(b []byte, shared bool, lex *Lexicon) (*Report, error) {
	m := &message{lex: lex}
	m.a.init()
	msg, view := m.a.message(b)
	rep, err := m.parse(msg)
	if rep != nil && view && shared {
		// The strings of rep may point into b, which the caller is
		// free to change or reuse once we return.
		m.a.detach(rep)
	}
	return rep, err
}

// parse parses a whole message with LF line endings.
func (m *message) parse(msg string) (*Report, error) {
	w := walker{a: &m.a}
	w.parse(&m.root, msg, 0)
	root := &m.root
	m.scan()

	rep := &Report{}
	switch {
	case m.status != nil:
		parseDeliveryStatus(&m.a, m.status.decoded(&m.a), rep)
		if len(rep.Recipients) == 0 {
			parseText(m, rep)
		} else {
			rep.Structured = true
			addContext(m, rep)
		}
	case looksLikeBounce(m):
		if n := sesJSON(m.text); n != nil && parseSES(&m.a, n, rep) {
			break
		}
		if fields := pastedStatus(m.text, m.lowerText()); fields != "" {
			parseDeliveryStatus(&m.a, fields, rep)
		}
		if len(rep.Recipients) == 0 {
			parseText(m, rep)
		}
	case isAutoReply(root.header):
		parseAutoReply(m, rep)
	default:
		return nil, ErrNotBounce
	}
	m.original(rep)
	rep.VERP = verpToken(root.header)
	if len(rep.Recipients) == 0 {
		if rep.Kind == "" {
			rep.Kind = KindBounce
		}
		return rep, ErrNoRecipient
	}
	finish(&m.a, rep, m.lex)
	return rep, nil
}

// finish classifies every recipient that still lacks a reason and sets the
// report kind from the actions.
func finish(a *arena, rep *Report, lex *Lexicon) {
	failed, delayed, ok := 0, 0, 0
	for i := range rep.Recipients {
		rc := &rep.Recipients[i]
		rc.Diagnostic = a.bounded(rc.Diagnostic)
		if rep.Kind == KindAutoReply {
			rc.Reason = Vacation
			continue
		}
		if rc.Reason == "" {
			// The texts are classified with their white space
			// collapsed, so that phrases match across line breaks.
			// Addresses are masked: a mailbox called
			// expired@ or spam-reports@ says nothing of why
			// mail to it failed.
			rc.lowerDiag = a.maskAddresses(a.lower(rc.Diagnostic))
			if rc.lowerContext == "" {
				rc.lowerContext = a.lower(rc.context)
			}
			classify(rc, rc.lowerDiag, a.maskAddresses(a.collapseSpace(rc.lowerContext)), lex)
			if rc.Diagnostic == "" {
				rc.Diagnostic = a.bounded(rc.context)
			}
		}
		if rc.Status == "" {
			rc.Status = a.syntheticStatus(rc.Reason, rc.Action == "delayed" || rc.temporary || strings.HasPrefix(rc.ReplyCode, "4"))
		}
		rc.Hard = isHard(rc.Reason, rc.Status)
		// A message that expired in the queue (Reason Expired) was
		// delayed until the MTA gave up: that is a final failure, and
		// its Action stays "failed" (RFC 3464 §2.3.3: "delayed" is only
		// for a message still being tried), so the report is a bounce.
		// Only a warning that delivery goes on is a delay.
		switch rc.Action {
		case "delayed":
			delayed++
		case "delivered", "relayed", "expanded":
			ok++
		default:
			failed++
		}
		rc.scratch = scratch{} // do not keep the message's texts alive
	}
	if rep.Kind == "" {
		switch {
		case failed > 0:
			rep.Kind = KindBounce
		case delayed > 0:
			rep.Kind = KindDelay
		case ok > 0:
			rep.Kind = KindSuccess
		default:
			rep.Kind = KindBounce
		}
	}
}

// detach copies the strings of rep into the arena, so that none points
// into the message any more.
func (a *arena) detach(rep *Report) {
	n := 0
	rep.eachString(func(s *string) { n += len(*s) })
	a.reserve(n)
	rep.eachString(func(s *string) {
		start := a.text.Len()
		a.text.WriteString(*s)
		*s = a.since(start)
	})
}

// eachString calls f with every string field of rep but the kinds and
// reasons, which are constants.
func (rep *Report) eachString(f func(*string)) {
	f(&rep.ReportingMTA)
	f(&rep.ENVID)
	f(&rep.ArrivalDateText)
	f(&rep.VERP)
	o := &rep.Original
	f(&o.MessageID)
	f(&o.CorrelationID)
	f(&o.From)
	f(&o.To)
	f(&o.Subject)
	for i := range rep.Recipients {
		rc := &rep.Recipients[i]
		f(&rc.Address)
		f(&rc.ORCPT)
		f(&rc.Action)
		f(&rc.Status)
		f(&rc.ReplyCode)
		f(&rc.Diagnostic)
		f(&rc.RemoteMTA)
		f(&rc.LastAttemptDateText)
		// The other strings of Evidence are the lexicon's or
		// constants.
		f(&rc.Evidence.Status)
		f(&rc.Evidence.ReplyCode)
	}
}

// bounded collapses white space and caps the length of a diagnostic.
func (a *arena) bounded(s string) string {
	s = a.collapseSpace(s)
	if len(s) > maxDiagnostic {
		n := maxDiagnostic
		for n > 0 && s[n]&0xC0 == 0x80 {
			n-- // do not cut a UTF-8 sequence
		}
		s = s[:n]
	}
	return s
}

// collapseSpace replaces every run of white space with one space and trims
// the ends; it returns s itself when nothing changes.
func (a *arena) collapseSpace(s string) string {
	s = strings.TrimSpace(s)
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\t' || c == '\r' || (c == ' ' && i+1 < len(s) && s[i+1] == ' ') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	// s is trimmed: every run of white space is between two words.
	start := a.reserve(len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && !isCollapsed(s[j]) {
			j++
		}
		a.text.WriteString(s[i:j])
		if j == len(s) {
			break
		}
		a.text.WriteByte(' ')
		for j < len(s) && isCollapsed(s[j]) {
			j++
		}
		i = j
	}
	return a.since(start)
}

// isCollapsed reports whether collapseSpace turns c into a space.
func isCollapsed(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r'
}

// maskAddresses returns s with every email address in it replaced by
// underscores of the same length, s itself when it holds none. Phrases are
// matched in what is left, so that no local part or domain name decides a
// reason.
func (a *arena) maskAddresses(s string) string {
	addr, pos, next := nextAddress(s, 0)
	if addr == "" {
		return s
	}
	start := a.reserve(len(s))
	done := 0
	for addr != "" {
		// An address found from next may start before it, inside
		// the one masked already ("a@b.c@d.e").
		end := pos + len(addr)
		pos = max(pos, done)
		if end > pos {
			a.text.WriteString(s[done:pos])
			for range end - pos {
				a.text.WriteByte('_')
			}
			done = end
		}
		addr, pos, next = nextAddress(s, next)
	}
	a.text.WriteString(s[done:])
	return a.since(start)
}
