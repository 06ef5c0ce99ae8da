package arf

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"
)

// Header blocks are scanned here without go-message: the top-level header
// decides whether a message is a complaint at all, on every bounce, and must
// cost little; the feedback-report fields and the header of the reported
// original use the same lenient scanner.

// nextLine returns the line of b starting at i without its end of line
// (LF or CRLF), and the index of the next line. Messages with lone-CR line
// ends are rewritten to LF before their lines are read.
func nextLine(b []byte, i int) (line []byte, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		line, next = b[i:], len(b)
	} else {
		line, next = b[i:i+j], i+j+1
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, next
}

// headerEnd returns the length of the header block at the start of b,
// including the empty line that ends it, and whether that empty line was
// found.
func headerEnd(b []byte) (int, bool) {
	if len(b) > 0 && b[0] == '\n' {
		return 1, true
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2, true
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1, true
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2, true
		}
	}
	if bytes.IndexByte(b, '\n') < 0 {
		// QUIRK: lone-CR line ends — see the corpus's maildir/mac
		// copies.
		if len(b) > 1 && b[0] == '\r' {
			return 1, true
		}
		if k := bytes.Index(b, []byte("\r\r")); k >= 0 {
			return k + 2, true
		}
	}
	return len(b), false
}

// crOnly reports whether b has lone-CR line ends (and no LF).
func crOnly(b []byte) bool {
	return bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') >= 0
}

// toLF rewrites lone-CR line ends to LF.
func toLF(b []byte) []byte {
	// QUIRK: lone-CR line ends — see the corpus's maildir/mac copies.
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// normalizeLF returns b with every line end LF: CRLF becomes LF, and lone
// CRs become LF when b has no LF at all. It returns b itself when there is
// nothing to rewrite.
func normalizeLF(b []byte) []byte {
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	if bytes.IndexByte(b, '\n') < 0 {
		return toLF(b)
	}
	// QUIRK: RFC 5322 §2.1 wants CRLF, mail stored on Unix has LF, and
	// reports put together from both mix them — even within one part.
	// go-message's multipart reader takes the line end of the first
	// boundary line for all the others, so it must see one kind only.
	out := make([]byte, 0, len(b))
	for {
		j := bytes.Index(b, []byte("\r\n"))
		if j < 0 {
			return append(out, b...)
		}
		out = append(out, b[:j]...)
		b = b[j+1:]
	}
}

// readHeader reads from r until the end of the header block at its start, or
// until max bytes have been read. It returns everything read (which may go
// past the header) and the length of the header block, also with an error.
func readHeader(r io.Reader, buf []byte, max int) ([]byte, int, error) {
	for {
		if n, ok := headerEnd(buf); ok || len(buf) >= max {
			return buf, n, nil
		}
		if len(buf) == cap(buf) {
			size := 2 * cap(buf)
			if size == 0 {
				// Most top-level headers are shorter (the corpus: median
				// 780 bytes, 90% under 2.7 KB).
				size = 2048
			}
			nb := make([]byte, len(buf), size)
			copy(nb, buf)
			buf = nb
		}
		lim := cap(buf)
		if lim > max {
			lim = max
		}
		n, err := r.Read(buf[len(buf):lim])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			n, _ := headerEnd(buf)
			return buf, n, nil
		}
		if err != nil {
			// The header read so far, for callers that make do.
			n, _ := headerEnd(buf)
			return buf, n, err
		}
	}
}

// readRest appends the rest of r to buf, up to max bytes in all. It reports
// whether r held more than that.
func readRest(r io.Reader, buf []byte, max int) ([]byte, bool, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= max+1 {
				return buf[:max], true, nil
			}
			size := 2 * cap(buf)
			if size > max+1 {
				size = max + 1
			}
			nb := make([]byte, len(buf), size)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > max {
				return buf[:max], true, nil
			}
			return buf, false, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
}

// skipMboxLine returns b without a leading mbox "From " separator line.
func skipMboxLine(b []byte) []byte {
	// QUIRK: a message saved from an mbox may start with its "From " line,
	// which is no header field.
	if bytes.HasPrefix(b, []byte("From ")) {
		_, next := nextLine(b, 0)
		return b[next:]
	}
	return b
}

// forEachField calls fn for every field of the header block hdr, with the
// field name and its raw value (folded lines included, untrimmed). Lines that
// are neither fields nor continuations are skipped. It stops at the first
// empty line or when fn returns false.
func forEachField(hdr []byte, fn func(name, value []byte) bool) {
	var name []byte
	start, end := -1, -1 // raw value hdr[start:end]
	flush := func() bool {
		if start < 0 {
			return true
		}
		ok := fn(name, hdr[start:end])
		start = -1
		return ok
	}
	for i := 0; i < len(hdr); {
		line, next := nextLine(hdr, i)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start >= 0 {
				end = i + len(line)
			}
			i = next
			continue
		}
		if !flush() {
			return
		}
		if c := bytes.IndexByte(line, ':'); c > 0 {
			name = bytes.TrimRight(line[:c], " \t")
			start, end = i+c+1, i+len(line)
		}
		i = next
	}
	flush()
}

// unfold returns the raw header value v unfolded (RFC 5322 §2.2.3),
// trimmed of surrounding white space, with invalid UTF-8 (raw 8-bit text in
// an unknown charset) replaced.
func unfold(v []byte) string {
	v = bytes.TrimSpace(v)
	if bytes.IndexAny(v, "\r\n") < 0 {
		if utf8.Valid(v) {
			return string(v)
		}
		return string(bytes.ToValidUTF8(v, []byte("\uFFFD")))
	}
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// containsFold reports whether s contains the lower-case ASCII string sub,
// ignoring the case of s.
func containsFold(s []byte, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	first, firstUp := sub[0], upper(sub[0])
	for i := 0; i+n <= len(s); i++ {
		if c := s[i]; c != first && c != firstUp {
			continue
		}
		if equalFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// the case of b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
