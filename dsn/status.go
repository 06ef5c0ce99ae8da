package dsn

import (
	"net/mail"
	"strings"
	"time"
)

// message is a parsed notification with the parts Parse cares about.
type message struct {
	a        arena    // memory of the parse
	lex      *Lexicon // classifies the recipients
	root     part
	status   *part  // message/delivery-status or message/global-delivery-status
	text     string // first human-readable part, decoded
	textPart *part
	orig     header // headers of the returned original, nil when absent
	lower    string // text in lower case, once asked for
	lowered  bool
}

// lowerText returns m.text in lower case, computing it once.
func (m *message) lowerText() string {
	if !m.lowered {
		m.lower, m.lowered = m.a.lower(m.text), true
	}
	return m.lower
}

// scan finds the delivery-status part, the first text part and the
// returned original, and decodes the text and the header values read to
// UTF-8.
func (m *message) scan() {
	m.root.header.decodeWords()
	var walk func(p *part, inOrig bool)
	walk = func(p *part, inOrig bool) {
		switch p.ctype {
		case "message/delivery-status", "message/global-delivery-status":
			// RFC 3464 §2, RFC 6533.
			if m.status == nil && !inOrig {
				m.status = p
			}
			return
		case "message/rfc822", "message/global":
			if m.orig == nil && len(p.parts) > 0 {
				m.orig = p.parts[0].header
			}
			for i := range p.parts {
				walk(&p.parts[i], true)
			}
			return
		case "text/rfc822-headers", "message/rfc822-headers", "message/global-headers":
			// RFC 6522 (text/rfc822-headers), RFC 6533 (message/global-headers).
			if m.orig == nil {
				m.orig, _ = m.a.parseHeader(p.decoded(&m.a))
			}
			return
		}
		if !inOrig && m.textPart == nil && len(p.parts) == 0 && p.ctype == "text/plain" {
			m.textPart = p
		}
		for i := range p.parts {
			walk(&p.parts[i], inOrig)
		}
	}
	walk(&m.root, false)
	if m.textPart == nil {
		// No text/plain: take the first other text leaf (HTML) outside
		// the returned original.
		m.textPart = firstText(&m.root)
	}
	if m.textPart != nil {
		m.text = m.a.decodeCharset(m.textPart.decoded(&m.a), param(m.textPart.header.get("Content-Type"), "charset"))
		if m.textPart.ctype == "text/html" {
			m.text = m.a.stripTags(m.text)
		}
	}
}

// firstText returns the first text/* leaf below p that is not inside a
// returned message, nil if none.
func firstText(p *part) *part {
	switch {
	case p.ctype == "message/rfc822" || p.ctype == "message/global":
		return nil
	case len(p.parts) == 0 && strings.HasPrefix(p.ctype, "text/") && p.ctype != "text/rfc822-headers":
		return p
	}
	for i := range p.parts {
		if t := firstText(&p.parts[i]); t != nil {
			return t
		}
	}
	return nil
}

// original fills rep.Original from the returned original's headers.
func (m *message) original(rep *Report) {
	h := m.orig
	if h == nil {
		return
	}
	rep.Original = Original{
		MessageID:     strings.Trim(strings.TrimSpace(h.get("Message-ID")), "<>"),
		CorrelationID: strings.TrimSpace(h.get(CorrelationHeader)),
		From:          decodeWords(h.get("From")),
		To:            decodeWords(h.get("To")),
		Subject:       decodeWords(h.get("Subject")),
	}
}

// parseDeliveryStatus reads the per-message and per-recipient fields of the
// body of a delivery-status part (RFC 3464 §2.2, §2.3).
func parseDeliveryStatus(a *arena, body string, rep *Report) {
	var cur *Recipient
	// final is set once cur has its Final-Recipient: an X-Actual-Recipient
	// before it gave cur an address that Final-Recipient replaces.
	final := false
groups:
	for len(body) > 0 {
		h, rest := a.parseHeader(body)
		if len(h) == 0 {
			// Skip a blank or non-field line between groups.
			_, rest = cutLine(body)
			body = rest
			continue
		}
		body = rest
		cur, final = nil, false // each group of fields is one recipient (RFC 3464 §2.1)
		for i := range h {
			name := statusField(h[i].name)
			if name == "" {
				continue // other per-message or per-recipient fields
			}
			v := h[i].unfolded()
			switch name {
			case "reporting-mta":
				rep.ReportingMTA = typedValue(v)
				continue
			case "original-envelope-id":
				rep.ENVID = v
				continue
			case "arrival-date":
				rep.ArrivalDateText = v
				continue
			case "original-recipient", "final-recipient", "x-actual-recipient", "action",
				"status", "remote-mta", "diagnostic-code", "last-attempt-date":
			default:
				continue // other per-message or per-recipient fields
			}
			// QUIRK: RFC 3464 §2.3 — the fields of a recipient may come
			// in any order (MessageLabs puts Final-Recipient last),
			// and some MTAs run groups together
			// without a blank line; a repeated recipient field starts
			// a new recipient.
			// Sendmail's X-Actual-Recipient is no recipient field of
			// its own: before Final-Recipient it is the same recipient,
			// and Final-Recipient wins.
			if cur == nil || (name == "final-recipient" && final) ||
				(name == "original-recipient" && cur.ORCPT != "") {
				if len(rep.Recipients) >= maxRecipients {
					break groups
				}
				cur, final = newRecipient(rep), false
			}
			switch name {
			case "original-recipient":
				cur.ORCPT = cleanAddress(typedValue(v))
			case "final-recipient":
				cur.Address, final = cleanAddress(typedValue(v)), true
			case "x-actual-recipient":
				if cur.Address == "" {
					cur.Address = cleanAddress(typedValue(v))
				}
			case "action":
				cur.Action = a.lower(firstWord(v))
			case "status":
				cur.Status = findStatus(v)
				// A comment after the code explains it (RFC 3464
				// §2.3.4 allows CFWS); keep it as the diagnostic when
				// there is no other.
				if i := strings.IndexByte(v, '('); i > 0 {
					cur.statusComment = strings.Trim(v[i:], "() ")
				}
			case "remote-mta":
				cur.RemoteMTA = typedValue(v)
			case "last-attempt-date":
				cur.LastAttemptDateText = v
			case "diagnostic-code":
				cur.Diagnostic = typedValue(v)
				if i := strings.IndexByte(v, ';'); i > 0 {
					cur.diagType = a.lower(strings.TrimSpace(v[:i]))
				}
			}
		}
	}
	// Drop groups without any address; fill the address from
	// Original-Recipient when Final-Recipient is missing.
	out := rep.Recipients[:0]
	for _, rc := range rep.Recipients {
		if rc.Address == "" || !plainAddress(rc.Address) {
			// QUIRK: RFC 3464 §2.3.2 — Final-Recipient holds a source
			// route (Sun/Oracle Messaging Server) or a pipe command
			// (Exim's pipe transport); prefer Original-Recipient,
			// else the address inside.
			switch {
			case rc.ORCPT != "" && plainAddress(rc.ORCPT):
				rc.Address = rc.ORCPT
			case rc.Address != "":
				if a := firstAddress(rc.Address); a != "" {
					rc.Address = a
				}
			}
		}
		if rc.Address == "" || !strings.Contains(rc.Address, "@") {
			continue
		}
		out = append(out, rc)
	}
	clear(rep.Recipients[len(out):]) // keep nothing of the dropped groups
	rep.Recipients = out
	for i := range rep.Recipients {
		rc := &rep.Recipients[i]
		if rc.Diagnostic == "" {
			rc.Diagnostic = rc.statusComment
		}
		rc.ReplyCode = findReplyCode(rc.Diagnostic)
		// QUIRK: RFC 3464 §2.3.4 — MTAs often put a generic Status
		// (5.0.0, 4.4.7) or a wrong one while the remote server's reply
		// in Diagnostic-Code carries the precise code (Sendmail does
		// both); the reply wins.
		if d := replyStatus(rc.Diagnostic); d != "" && d != rc.Status && d[1:] != ".3.5" && d[1:] != ".4.7" {
			rc.Status = d
		}
		if rc.Action == "" {
			rc.Action = actionFromStatus(rc.Status)
		}
	}
}

// statusFields are the names of the delivery-status fields
// parseDeliveryStatus reads, in lower case.
var statusFields = []string{
	"reporting-mta", "original-envelope-id", "original-recipient", "final-recipient",
	"x-actual-recipient", "action", "status", "remote-mta", "diagnostic-code",
	"arrival-date", "last-attempt-date",
}

// parseDate parses a date-time field of a DSN (RFC 3464 §2.2.5, §2.3.7:
// RFC 5322 date-time) with net/mail.ParseDate; the zero time when it does
// not parse. The obsolete zone names of RFC 5322 §4.3 (EST, PDT, …) get
// their offsets here: time.Parse knows only the local zone's
// abbreviations, which would make the result depend on the machine.
func parseDate(v string) time.Time {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, ' '); i > 0 {
		for _, z := range [...]struct{ name, offset string }{
			{"UT", "+0000"}, {"GMT", "+0000"}, {"UTC", "+0000"},
			{"EST", "-0500"}, {"EDT", "-0400"},
			{"CST", "-0600"}, {"CDT", "-0500"},
			{"MST", "-0700"}, {"MDT", "-0600"},
			{"PST", "-0800"}, {"PDT", "-0700"},
		} {
			if strings.EqualFold(v[i+1:], z.name) {
				v = v[:i+1] + z.offset
				break
			}
		}
	}
	t, err := mail.ParseDate(v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// statusField returns the lower-case name of a field parseDeliveryStatus
// reads, "" for any other field. It saves a lower-case copy of every name.
func statusField(name string) string {
	for _, f := range statusFields {
		if equalFoldASCII(name, f) {
			return f
		}
	}
	return ""
}

func newRecipient(rep *Report) *Recipient {
	return rep.addRecipient(Recipient{})
}

// typedValue strips the type prefix of a DSN field ("rfc822; a@b",
// "smtp; 550 …", "dns; host").
func typedValue(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 && i < 16 && !strings.ContainsAny(v[:i], " <@") {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// cleanAddress strips angle brackets, quotes and white space from an
// address.
func cleanAddress(a string) string {
	a = strings.TrimSpace(a)
	if i := strings.IndexByte(a, '<'); i >= 0 {
		if j := strings.IndexByte(a[i:], '>'); j > 0 {
			a = a[i+1 : i+j]
		}
	}
	a = strings.Trim(a, " \t<>'")
	if strings.HasPrefix(a, `"`) && strings.HasSuffix(a, `"`) && len(a) > 1 {
		a = a[1 : len(a)-1]
	}
	return a
}

func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t;("); i >= 0 {
		s = s[:i]
	}
	return s
}

// actionFromStatus guesses the action from the status class (RFC 3463
// §2: 2 success, 4 persistent transient failure, 5 permanent failure)
// when the Action field is missing.
func actionFromStatus(st string) string {
	switch {
	case strings.HasPrefix(st, "2"):
		return "delivered"
	case strings.HasPrefix(st, "4"):
		return "delayed"
	}
	return "failed"
}

// plainAddress reports whether a looks like a plain local@domain address.
func plainAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	return at > 0 && at < len(a)-1 && a[0] != '@' && a[0] != '|' && a[0] != '/' &&
		!strings.ContainsAny(a, " \t:") && strings.IndexByte(a[at:], '.') > 0
}

// pastedStatus returns the delivery-status fields pasted into the text of
// a bounce, from the line where they start, "" when there are none.
// QUIRK: Amazon WorkMail sends a text part with a "Technical report" that
// holds the fields of a DSN instead of a message/delivery-status part.
func pastedStatus(text, lower string) string {
	i := strings.Index(lower, "\nfinal-recipient:")
	if i < 0 || !strings.Contains(lower[i:], "\nstatus:") {
		return ""
	}
	if j := strings.LastIndex(lower[:i], "\nreporting-mta:"); j >= 0 && !strings.Contains(lower[j:i], "\n\n") {
		i = j
	}
	return text[i+1:]
}
