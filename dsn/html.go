package dsn

import (
	"html"
	"strings"
)

// HTML bounces. Some MTAs (Exchange and Office 365 among them) send a
// notification whose only human-readable part is text/html; its text is
// what the prose heuristics and the classifier read. The conversion is
// deliberately simple, not an HTML parser: it drops tags, comments and the
// contents of script and style elements, breaks lines at block elements
// and decodes character references.

// blockElements are the elements that start and end a line of text.
var blockElements = []string{
	"address", "blockquote", "br", "dd", "div", "dl", "dt", "h1", "h2", "h3", "h4", "h5", "h6",
	"hr", "li", "ol", "p", "pre", "table", "title", "tr", "ul",
}

// stripTags returns the text of the HTML document s, in the arena: tags
// and comments removed, a line break at the start and end of each block
// element (see blockElements), a space before each table cell, the
// contents of script and style elements dropped and character references
// decoded (html.UnescapeString, which knows every named and numeric one).
// A no-break space becomes a plain space, so that white space collapses
// and phrases match across it.
func (a *arena) stripTags(s string) string {
	start := a.reserve(len(s))
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			a.writeHTMLText(s[i:])
			break
		}
		a.writeHTMLText(s[i : i+j])
		i += j
		if strings.HasPrefix(s[i:], "<!--") {
			// A comment (HTML §13.2.5.43) ends at the first "-->".
			end := strings.Index(s[i+4:], "-->")
			if end < 0 {
				break
			}
			i += 4 + end + 3
			continue
		}
		name, closing, ok := tagName(s[i+1:])
		if !ok {
			// "<" that starts no tag is text ("a < b").
			a.text.WriteByte('<')
			i++
			continue
		}
		i = tagEnd(s, i+1)
		switch {
		case !closing && (equalFoldASCII(name, "script") || equalFoldASCII(name, "style")):
			// Raw text up to the end tag (HTML §13.1.2.1).
			i = rawTextEnd(s, i, name)
		case isBlockElement(name):
			a.text.WriteByte('\n')
		case !closing && (equalFoldASCII(name, "td") || equalFoldASCII(name, "th")):
			a.text.WriteByte(' ')
		}
	}
	return a.since(start)
}

// tagName returns the element name of the tag whose "<" precedes s and
// whether it is an end tag. ok is false when the "<" starts no tag: a tag
// name starts with a letter (HTML §13.2.5.6); declarations ("<!DOCTYPE")
// and processing instructions ("<?xml") count as tags without a name.
func tagName(s string) (name string, closing, ok bool) {
	if s == "" {
		return "", false, false
	}
	if s[0] == '!' || s[0] == '?' {
		return "", false, true
	}
	if s[0] == '/' {
		closing = true
		s = s[1:]
	}
	n := 0
	for n < len(s) && (isAlpha(s[n]) || (n > 0 && isDigit(s[n]))) {
		n++
	}
	return s[:n], closing, n > 0
}

// tagEnd returns the offset after the ">" that ends the tag whose content
// starts at offset i of s, skipping quoted attribute values; len(s) when
// the tag is not closed.
func tagEnd(s string, i int) int {
	var quote byte
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i + 1
		}
	}
	return len(s)
}

// rawTextEnd returns the offset after the end tag of the named element
// whose contents start at offset i of s, len(s) when there is none.
func rawTextEnd(s string, i int, name string) int {
	for {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return len(s)
		}
		i += j + 2
		if hasPrefixFold(s[i:], name) {
			return tagEnd(s, i)
		}
	}
}

// isBlockElement reports whether the element name is one of
// blockElements, in any case.
func isBlockElement(name string) bool {
	for _, b := range blockElements {
		if equalFoldASCII(name, b) {
			return true
		}
	}
	return false
}

// writeHTMLText writes the text between two tags with its character
// references decoded and no-break spaces turned into spaces.
func (a *arena) writeHTMLText(s string) {
	if strings.IndexByte(s, '&') >= 0 {
		// A copy, but of this text only: entities cannot span tags.
		s = html.UnescapeString(s)
	}
	const nbsp = "\u00a0"
	for {
		i := strings.Index(s, nbsp)
		if i < 0 {
			a.text.WriteString(s)
			return
		}
		a.text.WriteString(s[:i])
		a.text.WriteByte(' ')
		s = s[i+len(nbsp):]
	}
}
