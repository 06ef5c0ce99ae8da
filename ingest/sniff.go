package ingest

import "bytes"

// LooksLikeMessage reports whether b starts as a message (or an mbox)
// does: a header field "Name:" on its first line, after an mbox "From "
// line and blank lines, if any. RFC 5322 §2.2 allows any printable ASCII
// in a field name; letters, digits, "-" and "_" are what mail really uses,
// and are what tells a header from the first line of a JSON or binary
// file. Converter.Events returns ErrNotMessage for input that fails it, so
// every source quarantines (or dead-letters) what is no message at all
// instead of ignoring it as ordinary mail.
func LooksLikeMessage(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 BOM, as an editor may save it
	for len(b) > 0 {
		line := b
		if i := bytes.IndexAny(b, "\r\n"); i >= 0 { // CRLF, LF or (old Mac) CR
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			continue
		case bytes.HasPrefix(line, []byte("From ")):
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		name = bytes.TrimRight(name, " \t")
		if !ok || len(name) == 0 {
			return false
		}
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		return true
	}
	return false
}
