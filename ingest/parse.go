package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"repute/arf"
	"repute/dsn"
)

// MaxMessageSize is the most ParseMessage reads of one input.
const MaxMessageSize = dsn.MaxMessageSize

// Result is the outcome for one recipient of a recognised report. Its
// JSON names are those of the bounce corpus labels, so output can be
// compared with them directly.
type Result struct {
	Recipient string `json:"recipient"`
	// OriginalRecipient is the Original-Recipient field of a DSN (RFC
	// 3464 §2.3.1: the ORCPT the sender gave, RFC 3461 §4.2) without its
	// address type, when the report has one.
	OriginalRecipient string `json:"original_recipient,omitempty"`
	Action            string `json:"action"`
	Status            string `json:"status"`
	ReplyCode         string `json:"replycode"`
	Reason            string `json:"reason"`
	HardBounce        bool   `json:"hardbounce"`
	DiagnosticCode    string `json:"diagnosticcode"`
	FeedbackType      string `json:"feedbacktype"`
	MessageID         string `json:"messageid"`

	// Kind is bounce, delay, success, autoreply or feedback.
	Kind      string `json:"kind"`
	RemoteMTA string `json:"remotemta,omitempty"`
	// Correlation says how the original send can be found: header (our
	// correlation header came back), verp, message_id, envid or none.
	Correlation      string `json:"correlation"`
	CorrelationID    string `json:"correlationid,omitempty"`
	VERP             string `json:"verp,omitempty"`
	ENVID            string `json:"envid,omitempty"`
	FeedbackProvider string `json:"feedbackprovider,omitempty"`
	// RecipientRecoveredFrom says where a complaint's recipient came
	// from (arf.Report.RecipientRecoveredFrom).
	RecipientRecoveredFrom string `json:"recipientrecoveredfrom,omitempty"`
	// Explain says what decided a bounce's reason, when the Parser was
	// asked (repute parse --explain).
	Explain *dsn.Evidence `json:"explain,omitempty"`
}

// Parser parses reports with options; the zero Parser is what
// ParseMessage and ParseBytes use. A Parser is safe for concurrent use.
type Parser struct {
	// Lexicon classifies bounces; nil means dsn.DefaultLexicon.
	Lexicon *dsn.Lexicon
	// Explain fills Result.Explain.
	Explain bool
}

// KindFeedback is the Result.Kind of a complaint.
const KindFeedback = "feedback"

// ParseMessage reads a message and returns one Result per recipient of
// the report it holds: a complaint (arf) or a bounce, delay, success DSN
// or automatic reply (dsn). Input in mbox form (see SplitMbox) gives the
// results of every message in order. A message that is none of these
// gives no results and no error. A non-nil error with results says what
// was odd; the results are still usable.
func ParseMessage(r io.Reader) ([]Result, error) { return Parser{}.ParseMessage(r) }

// ParseBytes is ParseMessage over input in memory.
func ParseBytes(b []byte) ([]Result, error) { return Parser{}.ParseBytes(b) }

// ParseMessage is the package's ParseMessage with p's options.
func (p Parser) ParseMessage(r io.Reader) ([]Result, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxMessageSize+1))
	if err != nil {
		return nil, fmt.Errorf("ingest: read message: %w", err)
	}
	return p.ParseBytes(b)
}

// ParseBytes is the package's ParseBytes with p's options.
func (p Parser) ParseBytes(b []byte) ([]Result, error) {
	if start := mboxStart(b); nextSeparator(b, start) < 0 {
		// One message (or none), as SplitMbox would find, without
		// building its slice: an allocation less per message counts
		// when parsing in parallel.
		if start < len(b) {
			return p.parseOne(b[start:])
		}
		return nil, nil
	}
	msgs := SplitMbox(b)
	if len(msgs) == 1 {
		return p.parseOne(msgs[0])
	}
	var out []Result
	var errs []error
	for _, msg := range msgs {
		res, err := p.parseOne(msg)
		out = append(out, res...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// parseOne parses a single message.
func (p Parser) parseOne(b []byte) ([]Result, error) {
	pr, err := p.parseReport(b)
	return pr.results, err
}

// parsed is what parseReport found in one message: the results, and the
// report they came from (at most one of complaint and bounce is set).
type parsed struct {
	results   []Result
	complaint *arf.Report
	bounce    *dsn.Report
}

// parseReport parses a single message, keeping the report behind the
// results: the Converter needs its dates.
func (p Parser) parseReport(b []byte) (parsed, error) {
	// arf rules out a non-complaint from the top-level header alone, so
	// trying it first costs bounces little.
	fb, err := arf.ParseBytes(b)
	if fb != nil {
		// err, if any, says what was odd
		return parsed{results: feedbackResults(fb), complaint: fb}, err
	}
	// Not a usable complaint (ErrNotFeedback or worse): it may still be
	// a bounce.
	rep, err := dsn.Parser{Lexicon: p.Lexicon}.ParseBytes(b)
	switch {
	case errors.Is(err, dsn.ErrNotBounce):
		return parsed{}, nil
	case rep == nil:
		return parsed{}, err
	}
	// With dsn.ErrNoRecipient there are no results but an error: the
	// caller quarantines the message instead of dropping it silently.
	return parsed{results: bounceResults(rep, p.Explain), bounce: rep}, err
}

// SplitMbox splits input holding several messages in mbox form: a line
// starting with "From " followed by a sender and a date begins the next
// message after the first. The separator lines themselves are dropped.
// Lines may end in LF, CRLF or CR alone. Input that is a single message is
// returned as is.
func SplitMbox(b []byte) [][]byte {
	var out [][]byte
	start := mboxStart(b)
	for {
		i := nextSeparator(b, start)
		if i < 0 {
			break
		}
		out = append(out, b[start:i])
		start = i + lineEnd(b[i:])
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// mboxStart returns the offset of the first message of b: after the
// separator line when b starts with one.
func mboxStart(b []byte) int {
	if isMboxFrom(b) {
		return lineEnd(b)
	}
	return 0
}

// nextSeparator returns the offset of the first separator line at or
// after pos that begins a message after the first, -1 if none.
func nextSeparator(b []byte, pos int) int {
	for pos < len(b) {
		i := bytes.Index(b[pos:], []byte("From "))
		if i < 0 {
			break
		}
		i += pos
		pos = i + 5
		if i == 0 || (b[i-1] != '\n' && b[i-1] != '\r') || !isMboxFrom(b[i:]) {
			continue
		}
		return i
	}
	return -1
}

// lineEnd returns the offset just after the first line of b.
func lineEnd(b []byte) int {
	i := bytes.IndexAny(b, "\r\n")
	if i < 0 {
		return len(b)
	}
	if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
		return i + 2
	}
	return i + 1
}

// isMboxFrom reports whether the line at the start of b is an mbox
// separator rather than a body line starting with "From ": "From ", a
// sender and a date (at least three words, with a time or a year).
func isMboxFrom(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("From ")) {
		return false
	}
	line := b[:lineEnd(b)]
	if len(bytes.Fields(line)) < 3 {
		return false
	}
	run := 0
	for i, c := range line {
		switch {
		case c >= '0' && c <= '9':
			run++
			if run >= 4 {
				return true // a year
			}
		case c == ':' && run > 0 && i+1 < len(line) && line[i+1] >= '0' && line[i+1] <= '9':
			return true // a time
		default:
			run = 0
		}
	}
	return false
}

func feedbackResults(fb *arf.Report) []Result {
	base := Result{
		Reason:                 string(dsn.Feedback),
		FeedbackType:           fb.FeedbackType,
		MessageID:              fb.Original.MessageID,
		Kind:                   KindFeedback,
		CorrelationID:          fb.Original.CorrelationID,
		ENVID:                  fb.OriginalEnvelopeID,
		FeedbackProvider:       fb.Provider,
		RecipientRecoveredFrom: fb.RecipientRecoveredFrom,
	}
	base.Correlation = correlation(base)
	if len(fb.Recipients) == 0 {
		return []Result{base}
	}
	out := make([]Result, 0, len(fb.Recipients))
	for _, rcpt := range fb.Recipients {
		r := base
		r.Recipient = rcpt
		out = append(out, r)
	}
	return out
}

func bounceResults(rep *dsn.Report, explain bool) []Result {
	out := make([]Result, 0, len(rep.Recipients))
	for _, rc := range rep.Recipients {
		r := Result{
			Recipient:         rc.Address,
			OriginalRecipient: rc.ORCPT,
			Action:            rc.Action,
			Status:            rc.Status,
			ReplyCode:         rc.ReplyCode,
			Reason:            string(rc.Reason),
			HardBounce:        rc.Hard,
			DiagnosticCode:    rc.Diagnostic,
			MessageID:         rep.Original.MessageID,
			Kind:              string(rep.Kind),
			RemoteMTA:         rc.RemoteMTA,
			CorrelationID:     rep.Original.CorrelationID,
			VERP:              rep.VERP,
			ENVID:             rep.ENVID,
		}
		r.Correlation = correlation(r)
		if explain {
			ev := rc.Evidence
			r.Explain = &ev
		}
		out = append(out, r)
	}
	return out
}

// correlation names the strongest identifier a result carries back to
// the original send.
func correlation(r Result) string {
	switch {
	case r.CorrelationID != "":
		return "header"
	case r.VERP != "":
		return "verp"
	case r.MessageID != "":
		return "message_id"
	case r.ENVID != "":
		return "envid"
	}
	return "none"
}
