package dsn

import (
	"strings"
	"unsafe"
)

// arena is the memory one parse builds its strings and slices in: the
// message with LF line endings, unfolded header values, decoded bodies,
// lower-case copies, header fields and MIME parts. It turns what would be
// an allocation per field, part or copy into a few per message: the
// benchmark in ../ingest shows that allocation, its count first and then
// its bytes (how often the collector runs), is what keeps the parser from
// scaling across cores.
//
// An arena belongs to a single Parse call and is never shared, so the
// parser keeps no mutable state beyond the call. It is append-only: what
// it has handed out is never written again, so strings and slices stay
// valid (and immutable) when it moves on to a new chunk. The strings of a
// Report point into it (or into the message, when Parse read it itself).
type arena struct {
	// text holds the bytes of the strings built so far in the current
	// chunk; strings.Builder guarantees that the strings it returned are
	// not changed by later writes.
	text strings.Builder
	// fields backs every header; a header is a sub-slice of it.
	fields []field
	// parts is the rest of the current chunk of MIME parts.
	parts []part
	// subs is a stack of the multipart bodies being walked.
	subs []string

	// First chunks, enough for most messages, allocated with the arena.
	fieldBuf [48]field
	partBuf  [8]part
	subsBuf  [16]string
}

// init points the slices of a at its first chunks. An arena must not be
// copied once initialised.
func (a *arena) init() {
	a.fields = a.fieldBuf[:0]
	a.parts = a.partBuf[:]
	a.subs = a.subsBuf[:0]
}

// minChunk is the smallest chunk of string bytes the arena allocates.
const minChunk = 2 << 10

// reserve makes room for n more bytes of text, starting a new chunk when
// the current one is too small, and returns the offset writing starts at.
func (a *arena) reserve(n int) int {
	if a.text.Cap()-a.text.Len() < n {
		a.text = strings.Builder{} // the old chunk lives on in its strings
		a.text.Grow(max(n, minChunk))
	}
	return a.text.Len()
}

// since returns the text written from offset start on.
func (a *arena) since(start int) string {
	return a.text.String()[start:]
}

// takeParts returns n zero parts.
func (a *arena) takeParts(n int) []part {
	if len(a.parts) < n {
		a.parts = make([]part, max(n, 16))
	}
	p := a.parts[:n:n]
	a.parts = a.parts[n:]
	return p
}

// lower returns s with its ASCII letters in lower case (see lowerASCII),
// s itself when it has no upper-case letter.
func (a *arena) lower(s string) string {
	i := indexUpper(s)
	if i < 0 {
		return s
	}
	start := a.reserve(len(s))
	a.text.WriteString(s[:i])
	// Lower-case through a buffer on the stack: a byte at a time would
	// be slow on long texts.
	var buf [512]byte
	for i < len(s) {
		n := copy(buf[:], s[i:])
		for j, c := range buf[:n] {
			if c >= 'A' && c <= 'Z' {
				buf[j] = c + 'a' - 'A'
			}
		}
		a.text.Write(buf[:n])
		i += n
	}
	return a.since(start)
}

// indexUpper returns the offset of the first ASCII upper-case letter of s,
// -1 if none.
func indexUpper(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return i
		}
	}
	return -1
}

// message returns b as a string with CRLF and lone CR turned into LF (see
// lf). When b has no CR, the string is b itself rather than a copy of it,
// and view is set: the parse only reads b, and whatever outlives the parse
// must be copied out of it (see detach), since b is the caller's to change
// afterwards. Otherwise b is copied into a chunk with room to spare for
// the strings the parse builds next.
func (a *arena) message(b []byte) (s string, view bool) {
	s = unsafe.String(unsafe.SliceData(b), len(b))
	if strings.IndexByte(s, '\r') < 0 {
		// Most of what the parse builds is a lower-case copy of part
		// of the text; make room for it.
		a.reserve(len(b)/4 + 256)
		return s, true
	}
	// Room for the copy and, as above, for what the parse builds next;
	// lf then writes into it. s is read only until lf returns.
	a.reserve(len(b) + len(b)/4 + 256)
	return a.lf(s), false
}

// lf returns s with CRLF and lone CR turned into LF, s itself when it has
// no CR.
func (a *arena) lf(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	start := a.reserve(len(s))
	for len(s) > 0 {
		i := strings.IndexByte(s, '\r')
		if i < 0 {
			a.text.WriteString(s)
			break
		}
		a.text.WriteString(s[:i])
		a.text.WriteByte('\n')
		s = s[i+1:]
		if len(s) > 0 && s[0] == '\n' {
			s = s[1:]
		}
	}
	return a.since(start)
}
