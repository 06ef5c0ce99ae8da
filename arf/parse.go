package arf

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on what Parse reads: complaint reports are small, and a parser that
// runs on every incoming bounce must not be made to read without end.
const (
	// MaxSize is the most Parse reads of a message; a longer one is parsed
	// truncated and reported as malformed.
	MaxSize = 10 << 20
	// maxHeaderSize bounds the top-level header and the embedded original's.
	maxHeaderSize = 1 << 20
	// maxFieldsSize bounds a message/feedback-report part or a look-alike's
	// text part.
	maxFieldsSize = 1 << 20
	// maxDepth bounds MIME nesting; maxParts the parts of a message, at
	// all depths.
	maxDepth = 8
	maxParts = 64
	// maxOdds bounds the list of oddities in the ErrMalformed error.
	maxOdds = 16
	// maxRecipients bounds Report.Recipients.
	maxRecipients = 1000
)

// Parse reads one message from r and parses it as a complaint report.
//
// When r is not a complaint report, Parse returns ErrNotFeedback, cheaply: it
// looks only at the top-level Content-Type, From and Subject fields, and
// reads no further than the header unless the message is a multipart that
// is no multipart/report of another report-type, whose body it then
// searches for a message/feedback-report part. A candidate is then parsed
// in full; if it turns out to hold no complaint, Parse returns
// ErrNotFeedback too.
//
// When the report is usable but malformed, Parse returns the best-effort
// Report together with an error wrapping ErrMalformed that says what was
// odd. Any other error comes with a nil Report.
func Parse(r io.Reader) (*Report, error) {
	buf, n, err := readHeader(r, nil, maxHeaderSize)
	if err != nil {
		return nil, fmt.Errorf("arf: reading header: %w", err)
	}
	top, verdict := scanTop(buf[:n])
	if verdict == notFeedback {
		return nil, ErrNotFeedback
	}
	buf, truncated, err := readRest(r, buf, MaxSize)
	if err != nil {
		return nil, fmt.Errorf("arf: reading message: %w", err)
	}
	if verdict == ifFeedbackPart && !hasFeedbackPart(buf[n:]) {
		return nil, ErrNotFeedback
	}
	p := parser{top: top}
	if truncated {
		p.odd("message longer than %d bytes, truncated", MaxSize)
	}
	return p.parse(skipMboxLine(buf))
}

// ParseBytes is Parse over a message in memory, which it does not copy
// unless it is a complaint report: callers that hold the message already
// (the ingest layer, which tries Parse on every bounce) avoid Parse's read
// buffer. It does not modify b.
func ParseBytes(b []byte) (*Report, error) {
	n, _ := headerEnd(b[:min(len(b), maxHeaderSize)])
	top, verdict := scanTop(b[:n])
	if verdict == notFeedback {
		return nil, ErrNotFeedback
	}
	truncated := len(b) > MaxSize
	if truncated {
		b = b[:MaxSize]
	}
	if verdict == ifFeedbackPart && !hasFeedbackPart(b[n:]) {
		return nil, ErrNotFeedback
	}
	p := parser{top: top}
	if truncated {
		p.odd("message longer than %d bytes, truncated", MaxSize)
	}
	return p.parse(skipMboxLine(b))
}

// What scanTop makes of a top-level header.
const (
	notFeedback    = iota // no complaint report
	candidate             // may be one: parse it
	ifFeedbackPart        // a multipart: one if its body has a message/feedback-report part
)

// scanTop scans the top-level header and says whether the message may be a
// complaint report.
func scanTop(hdr []byte) (topHeader, int) {
	if crOnly(hdr) {
		hdr = toLF(hdr)
	}
	var top topHeader
	top.scan(skipMboxLine(hdr))
	return top, top.verdict()
}

// hasFeedbackPart reports whether a multipart body names the media type
// message/feedback-report (RFC 5965 §2 (c)), in any letter case. It only
// searches bytes, without parsing, so that a bounce costs little.
func hasFeedbackPart(body []byte) bool {
	const name = "feedback-report"
	// Look for "-r" and "-R", rare in mail, then at the name around them.
	for _, sep := range [...]string{"-r", "-R"} {
		for b := body; ; {
			i := bytes.Index(b, []byte(sep))
			if i < 0 {
				break
			}
			if i >= 8 && i+7 <= len(b) && equalFold(b[i-8:i+7], name) {
				return true
			}
			b = b[i+2:]
		}
	}
	return false
}

// topHeader holds the top-level fields that decide whether a message may be a
// complaint report.
type topHeader struct {
	contentType, transferEncoding, from, subject []byte
}

func (h *topHeader) scan(hdr []byte) {
	forEachField(hdr, func(name, value []byte) bool {
		switch {
		case h.contentType == nil && equalFold(name, "content-type"):
			h.contentType = value
		case h.transferEncoding == nil && equalFold(name, "content-transfer-encoding"):
			h.transferEncoding = value
		case h.from == nil && equalFold(name, "from"):
			h.from = value
		case h.subject == nil && equalFold(name, "subject"):
			h.subject = value
		}
		return true
	})
}

// verdict says whether the message may be a complaint report.
func (h *topHeader) verdict() int {
	// RFC 5965 §2: multipart/report; report-type=feedback-report, or
	// (seen alone) message/feedback-report. Such a message is a complaint
	// whatever its From and Subject (an "Out of office" subject, say).
	if containsFold(h.contentType, "feedback-report") {
		return candidate
	}
	if h.jmrp() {
		return candidate
	}
	if containsFold(h.contentType, "multipart/report") && containsFold(h.contentType, "report-type") {
		// RFC 6522 §3: another report-type (a delivery status
		// notification, RFC 3464) is no complaint; decided on the
		// header alone, as most bounces are these.
		return notFeedback
	}
	// Look-alikes: feedback reports sent as text/plain or multipart/mixed,
	// known by their subject; the full parse then requires ARF fields (see
	// testdata/lookalike-*.eml).
	lookAlikeSubjects := [...]string{
		"abuse report",
		"feedback report",
		"feedback loop",
		"fbl report",
		"spam report",
		"spam complaint",
		"abuse complaint",
		"complaint report",
	}
	for _, s := range lookAlikeSubjects {
		if containsFold(h.subject, s) {
			return candidate
		}
	}
	// QUIRK: RFC 5965 §2 — a report re-wrapped on its way (forwarded as
	// multipart/mixed, or a multipart/report whose report-type was
	// lost) still carries its message/feedback-report part, whatever
	// its subject.
	if containsFold(h.contentType, "multipart/") {
		return ifFeedbackPart
	}
	return notFeedback
}

// jmrp reports whether the top-level header is that of a Microsoft JMRP
// report.
func (h *topHeader) jmrp() bool {
	// QUIRK: Microsoft JMRP reports are multipart/mixed from
	// staff@hotmail.com with the subject "complaint about message from
	// <IP>".
	return containsFold(h.from, "staff@hotmail.com") ||
		containsFold(h.subject, "complaint about message from")
}

// parser holds the state of one full parse.
type parser struct {
	top    topHeader
	rep    Report
	odds   []string // what was odd, for the ErrMalformed error
	arf    bool     // the message says it is a feedback report (RFC 5965 §2)
	fields bool     // a set of ARF fields was found
	orig   bool     // the original's header was found
	parts  int      // MIME parts visited, at all depths

	// what the dialects add
	rcptTo          []string // Original-Rcpt-To values
	reportMessageID string   // a Message-ID among the report fields
	removal         []string // Removal-Recipient values
	hmxmr           string   // X-HmXmrOriginalRecipient of the original
	apparentlyTo    string   // X-Apparently-To of the original
	xOriginalTo     string   // the original's first X-Original-To
	envelopeTo      string   // the original's first Envelope-To
	xEnvelopeTo     string   // the original's first X-Envelope-To
	deliveredTo     string   // the original's first Delivered-To
	xAOL            bool     // the original has X-AOL-* fields
}

func (p *parser) odd(format string, args ...any) {
	switch {
	case len(p.odds) < maxOdds:
		p.odds = append(p.odds, fmt.Sprintf(format, args...))
	case len(p.odds) == maxOdds:
		p.odds = append(p.odds, "…")
	}
}

func (p *parser) parse(b []byte) (*Report, error) {
	// go-message splits lines on LF only, and its multipart reader
	// wants one kind of line end.
	b = normalizeLF(b)
	// The top-level entity is made from the fields already scanned, not
	// read again by go-message, whose header parser rejects what ours
	// skips (a line that is no field, say).
	var h textproto.Header
	if p.top.contentType != nil {
		h.Set("Content-Type", unfold(p.top.contentType))
	}
	if p.top.transferEncoding != nil {
		h.Set("Content-Transfer-Encoding", unfold(p.top.transferEncoding))
	}
	n, _ := headerEnd(b)
	// An unknown charset or transfer encoding still gives a readable
	// entity.
	e, _ := message.New(message.Header{Header: h}, bytes.NewReader(b[n:]))
	p.arf = containsFold(p.top.contentType, "feedback-report")
	var raw []byte // the top-level body, when no transfer encoding hides it
	switch strings.ToLower(unfold(p.top.transferEncoding)) {
	case "", "7bit", "8bit", "binary":
		raw = b[n:]
	}
	p.walk(e, raw, 0)

	if !p.fields {
		switch {
		case p.orig && (p.top.jmrp() || p.hmxmr != ""):
			// QUIRK: JMRP sends no message/feedback-report part; every
			// report is a user's "junk" click.
			p.rep.FeedbackType = "abuse"
			p.rep.Provider = ProviderJMRP
		case p.arf:
			p.odd("no message/feedback-report part")
			p.rep.FeedbackType = "other"
		default:
			return nil, ErrNotFeedback
		}
	}
	p.finish()
	if len(p.odds) > 0 {
		return &p.rep, fmt.Errorf("%w: %s", ErrMalformed, strings.Join(p.odds, "; "))
	}
	return &p.rep, nil
}

// walk visits the MIME tree under e. raw is e's decoded body when the
// caller has it in memory, else nil.
func (p *parser) walk(e *message.Entity, raw []byte, depth int) {
	mediaType, params, _ := e.Header.ContentType()
	switch mediaType {
	case "message/feedback-report":
		if p.fields {
			p.odd("more than one message/feedback-report part")
			return
		}
		body, err := readLimited(e.Body, maxFieldsSize)
		if err != nil && err != io.ErrUnexpectedEOF {
			// (An unexpected EOF is a multipart without its
			// closing boundary, reported by multipart.)
			p.odd("feedback-report part: %v", err)
		}
		p.fields = true
		p.reportFields(body)
	case "message/rfc822", "text/rfc822-headers", // RFC 5965 §2 (d)
		"message/global", "message/global-headers": // RFC 6532, RFC 6533
		if p.orig {
			return
		}
		buf, n, err := readHeader(e.Body, nil, maxHeaderSize)
		for i := 0; i < 8 && err == nil && n < len(buf) && isBlankLine(buf[:n]); i++ {
			// QUIRK: blank lines before the original's header —
			// see testdata/yahoo-blankline.eml.
			buf, n, err = readHeader(e.Body, buf[n:], maxHeaderSize)
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			p.odd("original message part: %v", err)
		}
		p.orig = true
		p.rep.Original.HeadersOnly = strings.HasSuffix(mediaType, "-headers")
		p.originalHeader(buf[:n])
	case "text/plain", "":
		switch {
		case p.fields && !p.orig:
			p.inlineOriginal(e)
		case !p.fields && !p.arf:
			// The human-readable part of a multipart/report is no
			// look-alike, whatever it quotes.
			p.lookAlike(e)
		}
	default:
		if !strings.HasPrefix(mediaType, "multipart/") {
			return
		}
		if depth >= maxDepth {
			p.odd("MIME nesting deeper than %d", maxDepth)
			return
		}
		if raw == nil {
			var err error
			raw, err = readLimited(e.Body, MaxSize)
			if err != nil && err != io.ErrUnexpectedEOF {
				p.odd("multipart: %v", err)
			}
		}
		p.multipart(raw, params["boundary"], depth)
	}
}

// multipart visits the parts of a multipart body.
func (p *parser) multipart(body []byte, boundary string, depth int) {
	n, err := p.eachPart(body, boundary, depth)
	if n == 0 && err != nil {
		// QUIRK: RFC 2046 §5.1.1 — the body's delimiter lines use
		// another boundary than the declared one (or none is
		// declared): take the one the body uses.
		if b := bodyBoundary(body); b != "" && b != boundary {
			p.odd("multipart boundary %q, declared %q", b, boundary)
			n, err = p.eachPart(body, b, depth)
		}
	}
	switch {
	case err == nil:
	case n > 0 && strings.HasSuffix(err.Error(), "NextPart: EOF"):
		// go-message formats (does not wrap) the EOF it meets before
		// the closing boundary; the parts before it were read.
		// QUIRK: no closing boundary (RFC 2046 §5.1.1), as some
		// reporters send.
		p.odd("multipart without closing boundary")
	default:
		p.odd("multipart: %v", err)
	}
}

// eachPart walks the parts of a multipart body split on boundary and
// returns how many it found, and the error that ended them, if not the
// closing boundary.
func (p *parser) eachPart(body []byte, boundary string, depth int) (int, error) {
	mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
	for n := 0; ; n++ {
		if p.parts == maxParts {
			p.odd("more than %d MIME parts", maxParts)
			return n, nil
		}
		p.parts++
		part, err := mr.NextPart()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		// An unknown charset or transfer encoding still gives a
		// readable part.
		e, _ := message.New(message.Header{Header: part.Header}, part)
		p.walk(e, nil, depth+1)
	}
}

// bodyBoundary returns the boundary of the first line of body that looks
// like a delimiter line (RFC 2046 §5.1.1): "--" and a boundary, followed by
// a Content-* header field of the part it starts.
func bodyBoundary(body []byte) string {
	for i := 0; i < len(body); {
		line, next := nextLine(body, i)
		if len(line) > 2 && line[0] == '-' && line[1] == '-' {
			after, _ := nextLine(body, next)
			if len(after) > 8 && equalFold(after[:8], "content-") {
				return string(bytes.TrimRight(line[2:], " \t"))
			}
		}
		i = next
	}
	return ""
}

// inlineOriginal reads the returned message from a text part that follows
// the report part.
func (p *parser) inlineOriginal(e *message.Entity) {
	body, _ := readLimited(e.Body, maxHeaderSize)
	i := 0
	for i < len(body) {
		line, next := nextLine(body, i)
		if len(bytes.TrimSpace(line)) > 0 {
			break
		}
		i = next
	}
	n, _ := headerEnd(body[i:])
	if !originalLike(body[i : i+n]) {
		return
	}
	// QUIRK: RFC 5965 §2 (d) wants message/rfc822 or
	// text/rfc822-headers; some reporters inline the returned message
	// as text/plain after the report part.
	p.odd("returned message in a text part, not message/rfc822")
	p.orig = true
	p.rep.Original.HeadersOnly = len(bytes.TrimSpace(body[i+n:])) == 0
	p.originalHeader(body[i : i+n])
}

// originalLike reports whether hdr is a message header: it starts with a
// header field and has a From, To, Subject or Message-ID.
func originalLike(hdr []byte) bool {
	line, _ := nextLine(hdr, 0)
	c := bytes.IndexByte(line, ':')
	if c <= 0 || bytes.ContainsAny(line[:c], " \t") {
		return false
	}
	found := false
	forEachField(hdr, func(name, _ []byte) bool {
		found = equalFold(name, "from") || equalFold(name, "to") ||
			equalFold(name, "subject") || equalFold(name, "message-id")
		return !found
	})
	return found
}

// lookAlike looks for ARF fields in a text part: some reporters send the
// fields and the original's header as plain text.
func (p *parser) lookAlike(e *message.Entity) {
	body, _ := readLimited(e.Body, maxFieldsSize)
	i := fieldLine(body, "feedback-type:")
	if i < 0 {
		return
	}
	// QUIRK: ARF fields in a text/plain body instead of a
	// message/feedback-report part — see testdata/lookalike-text.eml.
	p.fields = true
	p.odd("feedback report fields in a text part, not message/feedback-report")
	body = body[i:]
	n, _ := headerEnd(body)
	p.reportFields(body[:n])
	if p.orig {
		return
	}
	// The original's header, when given, follows the fields: the next
	// block that starts with a header field.
	rest := body[n:]
	for j := 0; j < len(rest); {
		line, next := nextLine(rest, j)
		if isHeaderLine(line) {
			m, _ := headerEnd(rest[j:])
			p.orig = true
			p.originalHeader(rest[j : j+m])
			return
		}
		j = next
	}
}

// isBlankLine reports whether b is an empty line with its line end.
func isBlankLine(b []byte) bool {
	return string(b) == "\n" || string(b) == "\r\n"
}

// fieldLine returns the offset in b of the first line starting with the
// lower-case field prefix (case-insensitively), or -1.
func fieldLine(b []byte, prefix string) int {
	for i := 0; i < len(b); {
		line, next := nextLine(b, i)
		if len(line) >= len(prefix) && equalFold(line[:len(prefix)], prefix) {
			return i
		}
		i = next
	}
	return -1
}

// isHeaderLine reports whether line looks like a header field that starts
// a message header: "Name: value" with a name an original message carries.
func isHeaderLine(line []byte) bool {
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return false
	}
	names := [...]string{"received", "return-path", "from", "to", "subject", "date", "message-id", "mime-version", "dkim-signature"}
	for _, n := range names {
		if equalFold(line[:c], n) {
			return true
		}
	}
	return false
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max))
	if err != nil {
		return b, err
	}
	if int64(len(b)) == max {
		return b, fmt.Errorf("part longer than %d bytes, truncated", max)
	}
	return b, nil
}
