package dsn

import (
	"encoding/base64"
	"strings"
)

// The MIME layer here is deliberately small: it parses a message held in
// one string once, and every header value and body is a substring of it
// unless it had to be unfolded or decoded, in which case it is built in
// the parse's arena. That keeps allocation per message low (see the
// ingest benchmark).

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

// field is one header field.
type field struct {
	name, value string
	// a is set while value is still folded. Most folded fields
	// (Received, DKIM-Signature) are never read, so a value is
	// unfolded, in a's memory, the first time it is (see unfolded).
	a *arena
}

// unfolded returns the value of f, unfolded.
func (f *field) unfolded() string {
	if f.a != nil {
		f.value, f.a = f.a.unfold(f.value), nil
	}
	return f.value
}

// header is a parsed header block in message order.
type header []field

// get returns the first value of the named field, unfolded, "" when
// absent. Names compare case-insensitively.
func (h header) get(name string) string {
	for i := range h {
		if strings.EqualFold(h[i].name, name) {
			return h[i].unfolded()
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
// once, when first read (RFC 5322 §2.2.3), so that a field of many
// continuation lines costs linear time. The fields are appended to
// a.fields and the header is the slice of them, capped so that nothing
// appends to it.
func (a *arena) parseHeader(s string) (header, string) {
	first := len(a.fields)
	reading := false     // whether the last field's value is being read
	vstart, vend := 0, 0 // its value's span in s
	flush := func() {
		if reading {
			f := &a.fields[len(a.fields)-1]
			if v := s[vstart:vend]; strings.IndexByte(v, '\n') < 0 {
				f.value = strings.TrimSpace(v)
			} else {
				f.value, f.a = v, a
			}
		}
		reading = false
	}
	done := func() header {
		return a.fields[first:len(a.fields):len(a.fields)]
	}
	for pos := 0; pos < len(s); {
		line, rest := cutLine(s[pos:])
		next := len(s) - len(rest)
		switch {
		case line == "":
			flush()
			return done(), rest
		case line[0] == ' ' || line[0] == '\t':
			if reading {
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
			return done(), s[pos:]
		}
		flush()
		if len(a.fields)-first < maxHeaderFields {
			if len(a.fields) == cap(a.fields) {
				// Start a new chunk and move there the fields of this
				// header read so far; the headers before keep the old
				// one.
				n := len(a.fields) - first
				chunk := make([]field, n, max(2*n, 64))
				copy(chunk, a.fields[first:])
				a.fields, first = chunk, 0
			}
			a.fields = append(a.fields, field{name: strings.TrimSpace(line[:colon])})
			reading = true
			vstart, vend = pos+colon+1, pos+len(line)
		}
		pos = next
	}
	flush()
	return done(), ""
}

// unfold joins the lines of a folded header value with single spaces.
func (a *arena) unfold(v string) string {
	start := a.reserve(len(v))
	for v != "" {
		var line string
		line, v = cutLine(v)
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if a.text.Len() > start {
			a.text.WriteByte(' ')
		}
		a.text.WriteString(line)
	}
	return a.since(start)
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
func (a *arena) mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if ct == "" {
		return "text/plain"
	}
	return a.lower(ct)
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
	parts  []part
}

// walker parses a message into parts, counting them against maxParts.
type walker struct {
	a *arena
	n int
}

// parse parses the entity s (header and body) at nesting depth d into p.
func (w *walker) parse(p *part, s string, d int) {
	h, body := w.a.parseHeader(s)
	*p = part{header: h, ctype: w.a.mediaType(h.get("Content-Type")), body: body}
	w.n++
	if d >= maxDepth || w.n >= maxParts {
		return
	}
	switch {
	case strings.HasPrefix(p.ctype, "multipart/"):
		b := param(h.get("Content-Type"), "boundary")
		if b == "" {
			return
		}
		// The bodies go on a stack shared by the whole walk: the parts
		// below push theirs above these and pop them when done.
		first := len(w.a.subs)
		w.a.subs = splitMultipart(w.a.subs, body, b)
		if len(w.a.subs) == first {
			// QUIRK: RFC 2046 §5.1.1 — the parts use another boundary
			// than the header declares (MTAs that rewrite a body
			// do this); take
			// the first delimiter-like line.
			if g := guessBoundary(body); g != "" {
				w.a.subs = splitMultipart(w.a.subs, body, g)
			}
		}
		subs := w.a.subs[first:]
		p.parts = w.a.takeParts(len(subs))
		for i, sub := range subs {
			if w.n >= maxParts {
				p.parts = p.parts[:i]
				break
			}
			w.parse(&p.parts[i], sub, d+1)
		}
		w.a.subs = w.a.subs[:first]
	case p.ctype == "message/rfc822" || p.ctype == "message/global":
		body := p.decoded(w.a)
		p.parts = w.a.takeParts(1)
		w.parse(&p.parts[0], body, d+1)
	}
}

// atLineStart reports whether offset i of s starts a line, allowing
// leading blanks.
// QUIRK: RFC 2046 §5.1.1 — some MTAs indent delimiters (e.g. rfc3464-35).
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

// splitMultipart appends to parts the bodies between the delimiter lines
// of a multipart body (RFC 2046 §5.1.1). A missing close delimiter ends
// the last part at the end of input.
func splitMultipart(parts []string, body, boundary string) []string {
	first := len(parts)
	start := -1
	for pos := 0; pos < len(body); {
		i := indexDelimiter(body[pos:], boundary)
		if i < 0 {
			break
		}
		i += pos
		pos = i + 2 + len(boundary)
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
		if len(parts)-first >= maxParts {
			return parts
		}
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// indexDelimiter returns the offset in s of the first "--" followed by
// boundary, -1 if none. It saves building "--"+boundary.
func indexDelimiter(s, boundary string) int {
	for pos := 0; ; {
		i := strings.Index(s[pos:], boundary)
		if i < 0 {
			return -1
		}
		i += pos
		if i >= 2 && s[i-2] == '-' && s[i-1] == '-' {
			return i - 2
		}
		pos = i + 1
	}
}

// decoded returns the body with its Content-Transfer-Encoding undone
// (RFC 2045 §6). Undecodable input is returned as far as it decoded.
func (p *part) decoded(a *arena) string {
	cte := strings.TrimSpace(p.header.get("Content-Transfer-Encoding"))
	switch {
	case equalFoldASCII(cte, "base64"):
		return a.decodeBase64(p.body)
	case equalFoldASCII(cte, "quoted-printable"):
		return a.decodeQP(p.body)
	}
	return p.body
}

// decodeQP decodes quoted-printable text (RFC 2045 §6.7) leniently: an
// "=" not followed by two hex digits or a line break is kept as is.
func (a *arena) decodeQP(s string) string {
	if strings.IndexByte(s, '=') < 0 {
		return s
	}
	start := a.reserve(len(s))
	for {
		// Copy the run up to the next "=" as it is.
		i := strings.IndexByte(s, '=')
		if i < 0 {
			a.text.WriteString(s)
			break
		}
		a.text.WriteString(s[:i])
		s = s[i:]
		switch {
		case len(s) > 1 && s[1] == '\n':
			s = s[2:] // soft line break
		case len(s) > 2 && s[1] == '\r' && s[2] == '\n':
			s = s[3:]
		case len(s) > 2 && isHex(s[1]) && isHex(s[2]):
			a.text.WriteByte(unhex(s[1])<<4 | unhex(s[2]))
			s = s[3:]
		default:
			// QUIRK: RFC 2045 §6.7 — a soft break followed by trailing
			// white space (which some gateways, amavis among
			// them, leave), or a stray "="; keep
			// what is readable.
			j := 1
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			if j < len(s) && s[j] == '\n' {
				s = s[j+1:]
				continue
			}
			a.text.WriteByte('=')
			s = s[1:]
		}
	}
	return a.lf(a.since(start))
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
func (a *arena) decodeBase64(s string) string {
	start := a.reserve(base64.RawStdEncoding.DecodedLen(len(s)))
	// Decode in blocks through buffers on the stack: a block is a
	// multiple of 4 characters, so it decodes as it would within the
	// whole text.
	var clean [1024]byte
	var out [768]byte
	n := 0
	flush := func() {
		if n%4 == 1 {
			n-- // a lone last character carries no whole byte
		}
		m, _ := base64.RawStdEncoding.Decode(out[:], clean[:n])
		a.text.Write(out[:m])
		n = 0
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean[n] = c
			n++
			if n == len(clean) {
				flush()
			}
		case c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t':
		default:
			i = len(s)
		}
	}
	flush()
	return a.lf(a.since(start))
}

// equalFoldASCII reports whether s and t are equal ignoring the case of
// ASCII letters only, as comparing their lowerASCII forms would.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerByte(s[i]) != lowerByte(t[i]) {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether lowerASCII(s) starts with the lower-case
// prefix p.
func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && equalFoldASCII(s[:len(p)], p)
}

// hasSuffixFold reports whether lowerASCII(s) ends with the lower-case
// suffix p.
func hasSuffixFold(s, p string) bool {
	return len(s) >= len(p) && equalFoldASCII(s[len(s)-len(p):], p)
}

// containsFold reports whether lowerASCII(s) contains the lower-case
// pattern p, without building the lower-case copy. It is meant for short
// texts such as header values.
func containsFold(s, p string) bool {
	if p == "" {
		return true
	}
	for i := 0; i+len(p) <= len(s); i++ {
		if lowerByte(s[i]) == p[0] && equalFoldASCII(s[i:i+len(p)], p) {
			return true
		}
	}
	return false
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
