package dsn

import (
	"encoding/base64"
	"strings"
)

// The MIME layer here is deliberately small: it parses a message held in
// one string once, and every header value and body is a substring of it
// unless it had to be unfolded or decoded. That keeps allocation per
// message low (see the ingest benchmark).

// Limits applied to every message (STYLE.md §1: parsers cap their input).
const (
	// MaxMessageSize is the number of bytes Parse reads; the rest of a
	// longer message is ignored and ErrTruncated is returned with the
	// result.
	MaxMessageSize = 10 << 20
	// maxDepth caps MIME nesting (multipart within message/rfc822 within
	// multipart …).
	maxDepth = 8
	// maxParts caps the number of MIME parts walked in one message.
	maxParts = 256
	// maxHeaderFields caps the header fields kept per header block.
	maxHeaderFields = 512
	// maxRecipients caps the recipients reported for one message.
	maxRecipients = 1000
)

// field is one header field, its value unfolded.
type field struct {
	name, value string
}

// header is a parsed header block in message order.
type header []field

// get returns the first value of the named field, "" when absent. Names
// compare case-insensitively.
func (h header) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// has reports whether the named field is present.
func (h header) has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// parseHeader parses the header block at the start of s (LF line endings)
// and returns it with the rest of s after the blank line that ends it. A
// line that is neither a field nor a continuation ends the block, the way
// lenient readers treat a missing blank line. Folded values are unfolded
// once, at the end of the field (RFC 5322 §2.2.3), so that a field of many
// continuation lines costs linear time.
func parseHeader(s string) (header, string) {
	h := make(header, 0, 16)
	cur := -1            // index in h of the field being read
	vstart, vend := 0, 0 // its value's span in s
	flush := func() {
		if cur >= 0 {
			h[cur].value = unfold(s[vstart:vend])
		}
		cur = -1
	}
	for pos := 0; pos < len(s); {
		line, rest := cutLine(s[pos:])
		next := len(s) - len(rest)
		switch {
		case line == "":
			flush()
			return h, rest
		case line[0] == ' ' || line[0] == '\t':
			if cur >= 0 {
				vend = pos + len(line)
			}
			pos = next
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isFieldName(line[:colon]) {
			// Lenient: RFC 5322 §2.1 wants an empty line before the
			// body; a line that is no field ends the header anyway.
			flush()
			return h, s[pos:]
		}
		flush()
		if len(h) < maxHeaderFields {
			h = append(h, field{name: strings.TrimSpace(line[:colon])})
			cur = len(h) - 1
			vstart, vend = pos+colon+1, pos+len(line)
		}
		pos = next
	}
	flush()
	return h, ""
}

// unfold joins the lines of a folded header value with single spaces.
func unfold(v string) string {
	if strings.IndexByte(v, '\n') < 0 {
		return strings.TrimSpace(v)
	}
	var b strings.Builder
	b.Grow(len(v))
	for v != "" {
		var line string
		line, v = cutLine(v)
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(line)
	}
	return b.String()
}

// isFieldName reports whether s is a plausible header field name (RFC 5322
// §3.6.8: printable ASCII except colon; we also reject spaces inside).
func isFieldName(s string) bool {
	s = strings.TrimRight(s, " \t")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}

// cutLine splits s at the first LF.
func cutLine(s string) (line, rest string) {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// mediaType returns the lower-cased type/subtype of a Content-Type value,
// "text/plain" when absent (RFC 2045 §5.2).
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if ct == "" {
		return "text/plain"
	}
	return lowerASCII(ct)
}

// param returns the value of a Content-Type parameter (RFC 2045 §5.1),
// quoted or not, matching the name case-insensitively. It is lenient on
// purpose: mime.ParseMediaType rejects values real MTAs send.
func param(ct, name string) string {
	for {
		i := strings.IndexByte(ct, ';')
		if i < 0 {
			return ""
		}
		ct = strings.TrimLeft(ct[i+1:], " \t")
		if len(ct) <= len(name) || !strings.EqualFold(ct[:len(name)], name) {
			continue
		}
		v := strings.TrimLeft(ct[len(name):], " \t")
		if v == "" || v[0] != '=' {
			continue
		}
		v = strings.TrimLeft(v[1:], " \t")
		if strings.HasPrefix(v, `"`) {
			if j := strings.IndexByte(v[1:], '"'); j >= 0 {
				return v[1 : j+1]
			}
			return v[1:]
		}
		if j := strings.IndexAny(v, "; \t"); j >= 0 {
			v = v[:j]
		}
		return v
	}
}

// part is one MIME entity.
type part struct {
	header header
	ctype  string // lower-cased media type
	body   string // raw body, still transfer-encoded
	parts  []*part
}

// walker parses a message into parts, counting them against maxParts.
type walker struct {
	n int
}

// parse parses the entity s (header and body) at nesting depth d.
func (w *walker) parse(s string, d int) *part {
	h, body := parseHeader(s)
	p := &part{header: h, ctype: mediaType(h.get("Content-Type")), body: body}
	w.n++
	if d >= maxDepth || w.n >= maxParts {
		return p
	}
	switch {
	case strings.HasPrefix(p.ctype, "multipart/"):
		b := param(h.get("Content-Type"), "boundary")
		if b == "" {
			return p
		}
		subs := splitMultipart(body, b)
		if len(subs) == 0 {
			// QUIRK: RFC 2046 §5.1.1 — the parts use another boundary
			// than the header declares (see rhost-franceptt-07); take
			// the first delimiter-like line.
			if g := guessBoundary(body); g != "" {
				subs = splitMultipart(body, g)
			}
		}
		for _, sub := range subs {
			if w.n >= maxParts {
				break
			}
			p.parts = append(p.parts, w.parse(sub, d+1))
		}
	case p.ctype == "message/rfc822" || p.ctype == "message/global":
		p.parts = append(p.parts, w.parse(p.decoded(), d+1))
	}
	return p
}

// atLineStart reports whether offset i of s starts a line, allowing
// leading blanks.
// QUIRK: RFC 2046 §5.1.1 — some delimiters are indented (see rfc3464-35).
func atLineStart(s string, i int) bool {
	for i > 0 && (s[i-1] == ' ' || s[i-1] == '\t') {
		i--
	}
	return i == 0 || s[i-1] == '\n'
}

// guessBoundary returns the boundary of the first line that looks like a
// multipart delimiter ("--" and at least 8 more characters), "" if none.
func guessBoundary(body string) string {
	for pos := 0; pos < len(body); {
		line, rest := cutLine(body[pos:])
		if strings.HasPrefix(line, "--") && len(line) >= 10 && !strings.ContainsAny(line, " \t") {
			return strings.TrimSuffix(line[2:], "--")
		}
		pos = len(body) - len(rest)
	}
	return ""
}

// splitMultipart returns the bodies between the delimiter lines of a
// multipart body (RFC 2046 §5.1.1). A missing close delimiter ends the
// last part at the end of input.
func splitMultipart(body, boundary string) []string {
	delim := "--" + boundary
	var parts []string
	start := -1
	for pos := 0; pos < len(body); {
		i := strings.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		pos = i + len(delim)
		if !atLineStart(body, i) {
			continue
		}
		closing := strings.HasPrefix(body[pos:], "--")
		if start >= 0 {
			end := i
			if end > start && body[end-1] == '\n' {
				end-- // the line break belongs to the delimiter
			}
			if end < start {
				end = start
			}
			parts = append(parts, body[start:end])
		}
		if closing {
			return parts
		}
		_, rest := cutLine(body[pos:])
		start = len(body) - len(rest)
		if len(parts) >= maxParts {
			return parts
		}
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// decoded returns the body with its Content-Transfer-Encoding undone
// (RFC 2045 §6). Undecodable input is returned as far as it decoded.
func (p *part) decoded() string {
	switch lowerASCII(strings.TrimSpace(p.header.get("Content-Transfer-Encoding"))) {
	case "base64":
		return decodeBase64(p.body)
	case "quoted-printable":
		return decodeQP(p.body)
	}
	return p.body
}

// decodeQP decodes quoted-printable text (RFC 2045 §6.7) leniently: an
// "=" not followed by two hex digits or a line break is kept as is.
func decodeQP(s string) string {
	if strings.IndexByte(s, '=') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '=' {
			b = append(b, c)
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\n':
			i++ // soft line break
		case i+2 < len(s) && s[i+1] == '\r' && s[i+2] == '\n':
			i += 2
		case i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			// QUIRK: RFC 2045 §6.7 — a soft break followed by trailing
			// white space (see lhost-amavis-03), or a stray "="; keep
			// what is readable.
			j := i + 1
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			if j < len(s) && s[j] == '\n' {
				i = j
				continue
			}
			b = append(b, c)
		}
	}
	return normalizeNewlines(string(b))
}

func isHex(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// decodeBase64 decodes base64 text, skipping white space and stopping at
// the first character outside the alphabet.
func decodeBase64(s string) string {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t':
		default:
			i = len(s)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return normalizeNewlines(string(out[:n]))
}

// normalizeNewlines turns CRLF and lone CR into LF.
func normalizeNewlines(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}
