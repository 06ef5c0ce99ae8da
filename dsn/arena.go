package dsn

import (
	"strings"
	"unicode"
	"unicode/utf8"
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

// lower returns s in lower case for matching, s itself when it has no
// upper-case letter. ASCII letters are lower-cased, and when s holds
// other bytes, every letter strings.ToLower would lower-case (Cyrillic,
// Greek, Latin with accents …), so that lower-case phrases match text in
// any language.
//
// Invariant: lower(s) has the length of s, and each rune of s is at the
// same offset in lower(s). Code finds offsets in the lower-case copy and
// uses them on the original (splitOriginal, parseText, paragraphOf), so
// a rune whose lower case is of another UTF-8 length ('İ', 'Ⱥ', the
// Kelvin sign) is left alone, as are bytes that are not UTF-8.
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
		var or byte // of all the bytes: its top bit says one is not ASCII
		for j, c := range buf[:n] {
			if c >= 'A' && c <= 'Z' {
				buf[j] = c + 'a' - 'A'
			}
			or |= c
		}
		if or >= utf8.RuneSelf {
			// Whole runes only: the last one may continue in the
			// next block.
			n = lowerRunes(buf[:n], len(s)-i == n)
		}
		a.text.Write(buf[:n])
		i += n
	}
	return a.since(start)
}

// lowerRunes lower-cases in place the non-ASCII letters of b whose lower
// case has the same UTF-8 length (see lower), and returns the length of
// the whole runes of b: when b is not the end of its text (last unset),
// an incomplete rune at its end is left for the next block.
func lowerRunes(b []byte, last bool) int {
	for j := 0; j < len(b); {
		if b[j] < utf8.RuneSelf {
			j++
			continue
		}
		if !last && !utf8.FullRune(b[j:]) {
			return j
		}
		r, size := utf8.DecodeRune(b[j:])
		if l := lowerSame(r, size); l != r {
			utf8.EncodeRune(b[j:], l)
		}
		j += size
	}
	return len(b)
}

// indexUpper returns the offset of the first letter of s that lower
// changes, -1 if none.
func indexUpper(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			return i
		}
		if c < utf8.RuneSelf {
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if lowerSame(r, size) != r {
			return i
		}
		i += size - 1
	}
	return -1
}

// lowerSame returns the lower case of the non-ASCII rune r, encoded in
// size bytes, when it has the same UTF-8 length, r otherwise.
func lowerSame(r rune, size int) rune {
	if l := unicode.ToLower(r); l != r && utf8.RuneLen(l) == size {
		return l
	}
	return r
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
