package dsn

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// Charsets. The classifier matches phrases in UTF-8, so the text it reads
// is converted to UTF-8 from the charset its part declares (RFC 2045
// §5.1, RFC 2046 §4.1.2) and header values from their RFC 2047 encoded
// words. Both cost nothing for US-ASCII and UTF-8, which most bounces
// are.
//
// The conversions are those of golang.org/x/text, looked up the way
// github.com/emersion/go-message/charset does, but without importing that
// package: its init sets go-message's package-level CharsetReader, which
// would change how the arf package, in the same binary, reads complaints.

// lookupCharset returns the encoding of a MIME charset name, nil when the
// name is unknown or names an encoding that would lose the text.
//
// QUIRK: labels are resolved as the WHATWG Encoding Standard (which mail
// clients such as Thunderbird follow) does first, then by the IANA
// registry: text labelled iso-8859-1 or gb2312 is in practice
// windows-1252 or GBK, supersets that decode the same bytes the same way
// and the rest as their senders meant.
func lookupCharset(name string) encoding.Encoding {
	if enc, err := htmlindex.Get(name); err == nil && enc != encoding.Replacement {
		return enc
	}
	// The IANA registry knows some names WHATWG maps to its replacement
	// encoding (HZ-GB-2312) or does not list.
	if enc, err := ianaindex.MIME.Encoding(name); err == nil && enc != nil {
		return enc
	}
	if enc, err := ianaindex.MIME.Encoding("cs" + name); err == nil && enc != nil {
		return enc
	}
	return nil
}

// isUTF8Charset reports whether a charset name needs no conversion to
// UTF-8: empty (RFC 2045 §5.2 defaults to US-ASCII), US-ASCII or UTF-8.
//
// QUIRK: 8-bit text labelled US-ASCII is left alone (RFC 2046 §4.1.2
// says US-ASCII is 7-bit; such text is most often UTF-8 anyway).
func isUTF8Charset(name string) bool {
	switch {
	case name == "", equalFoldASCII(name, "utf-8"), equalFoldASCII(name, "us-ascii"),
		equalFoldASCII(name, "utf8"), equalFoldASCII(name, "ascii"):
		return true
	}
	return false
}

// asciiSame reports whether text in the named charset that holds only
// ASCII bytes other than ESC means those ASCII characters, so that it
// needs no conversion. That is so for every charset of mail but the
// UTF-16, UTF-32 and UTF-7 families and HZ-GB-2312 ("~{" shifts); the
// ISO-2022 family shifts with ESC.
func asciiSame(name string) bool {
	return !containsFold(name, "utf") && !containsFold(name, "ucs") &&
		!containsFold(name, "unicode") && !containsFold(name, "hz")
}

// plainASCII reports whether s holds only ASCII bytes other than ESC.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || c == 0x1b {
			return false
		}
	}
	return true
}

// decodeCharset returns s converted from the named charset to UTF-8, in
// the arena; s itself when the charset is US-ASCII or UTF-8, unknown, or
// when s is ASCII text that means the same in it. Bytes that do not
// decode become U+FFFD and the rest is kept: the conversion never fails.
func (a *arena) decodeCharset(s, charset string) string {
	charset = strings.Trim(charset, " \t\"'")
	if s == "" || isUTF8Charset(charset) || (plainASCII(s) && asciiSame(charset)) {
		return s
	}
	if containsFold(charset, "iso-2022-jp") && has8Bit(s) {
		// QUIRK: RFC 1468 — ISO-2022-JP is 7-bit, yet KDDI (ezweb)
		// labels EUC-JP text so; others Shift_JIS
		// or UTF-8. Take the first that decodes without error.
		if utf8.ValidString(s) {
			return s
		}
		for _, enc := range [...]encoding.Encoding{japanese.EUCJP, japanese.ShiftJIS} {
			if t := a.transcode(s, enc); !strings.ContainsRune(t, utf8.RuneError) {
				return t
			}
		}
	}
	enc := lookupCharset(charset)
	if enc == nil {
		return s
	}
	return a.transcode(s, enc)
}

// transcode returns s converted from enc to UTF-8, in the arena. Bytes
// that do not decode become U+FFFD.
func (a *arena) transcode(s string, enc encoding.Encoding) string {
	// Most conversions at most double the size (one byte of Latin or
	// Cyrillic becomes two, two bytes of CJK three); the builder grows
	// when one does more.
	start := a.reserve(2*len(s) + utf8.UTFMax)
	// QUIRK: a byte order mark overrides the label, as in the WHATWG
	// Encoding Standard's decode algorithm (§6: BOM sniffing).
	t := unicode.BOMOverride(enc.NewDecoder())
	src := unsafe.Slice(unsafe.StringData(s), len(s)) // only read
	var buf [1024]byte
	for len(src) > 0 {
		nDst, nSrc, err := t.Transform(buf[:], src, true)
		a.text.Write(buf[:nDst])
		src = src[nSrc:]
		switch {
		case err == nil:
			src = nil
		case err == transform.ErrShortDst && (nDst > 0 || nSrc > 0):
			// buf is full: go on.
		case len(src) > 0:
			// Input the decoder refuses: keep what decoded, mark the
			// byte and go on after it.
			a.text.WriteString(string(utf8.RuneError))
			src = src[1:]
		}
	}
	// UTF-16 and UTF-32 text may hold CRLF the transfer decoding did not
	// see.
	return a.lf(a.since(start))
}

// has8Bit reports whether s holds a byte outside ASCII.
func has8Bit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// charsetReader is the mime.WordDecoder CharsetReader for lookupCharset.
// An encoded word is short: it is converted at once and returned as a
// *strings.Reader, which the decoder copies from without the buffers a
// transform.Reader and io.Copy would allocate.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc := lookupCharset(charset)
	if enc == nil {
		return nil, fmt.Errorf("dsn: unknown charset %q", charset)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, input); err != nil { // input is a *bytes.Reader
		return nil, err
	}
	s, _, err := transform.String(unicode.BOMOverride(enc.NewDecoder()), b.String())
	if err != nil {
		return nil, fmt.Errorf("dsn: charset %q: %w", charset, err)
	}
	return strings.NewReader(s), nil
}

// decodeWords returns the header value v with its RFC 2047 encoded words
// decoded to UTF-8, v itself when it has none or they do not decode.
func decodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	dec := mime.WordDecoder{CharsetReader: charsetReader}
	d, err := dec.DecodeHeader(v)
	if err != nil {
		return v
	}
	return strings.ToValidUTF8(d, string(utf8.RuneError))
}

// decodeWords decodes in place the RFC 2047 encoded words of the fields of
// h whose values the parser reads as text, Subject and From (to tell a
// bounce or an automatic reply), so that every later get returns them
// decoded.
func (h header) decodeWords() {
	for i := range h {
		f := &h[i]
		if strings.Contains(f.value, "=?") && (equalFoldASCII(f.name, "subject") || equalFoldASCII(f.name, "from")) {
			f.value = decodeWords(f.unfolded())
		}
	}
}
