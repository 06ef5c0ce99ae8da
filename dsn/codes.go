package dsn

import "strings"

// findStatus returns the first enhanced status code (RFC 3463 §2:
// class "." subject "." detail, class 2, 4 or 5, detail of one to three
// digits) in s, "" when none. The subject is one digit 0 to 7, the only
// subjects RFC 3463 and its registry (RFC 5248) define, so that version
// numbers ("Exim 4.94.2") are no codes. The code may stand alone or in
// the notations MTAs write it in: "#5.1.1" and "(#5.1.1)" (qmail),
// "(5.1.1)", "[5.1.1]", "smtp; 550 5.1.1", and "550-5.1.1", the first
// line of a multi-line reply (RFC 5321 §4.2.1).
func findStatus(s string) string {
	for i := 0; i+4 < len(s); i++ {
		c := s[i]
		if c != '2' && c != '4' && c != '5' {
			continue
		}
		if i > 0 && !statusBoundary(s[i-1]) && !afterReplyCode(s, i) {
			continue
		}
		if s[i+1] != '.' {
			continue
		}
		j := i + 2
		n := digits(s[j:])
		if n != 1 || s[j] > '7' || j+n >= len(s) || s[j+n] != '.' {
			continue
		}
		j += n + 1
		m := digits(s[j:])
		if m == 0 || m > 3 {
			continue
		}
		j += m
		if j < len(s) && (isDigit(s[j]) || isAlpha(s[j]) ||
			(s[j] == '.' && j+1 < len(s) && isDigit(s[j+1]))) {
			continue
		}
		return s[i:j]
	}
	return ""
}

// findReplyCode returns the first SMTP reply code (RFC 5321 §4.2: three
// digits, the first 2 to 5) in s that stands as a word followed by a
// space, a hyphen or the end, "" when none.
func findReplyCode(s string) string {
	for i := 0; i+2 < len(s); i++ {
		c := s[i]
		if c < '2' || c > '5' || c == '3' {
			continue
		}
		if i > 0 && !replyBoundary(s[i-1]) {
			continue
		}
		if !isDigit(s[i+1]) || !isDigit(s[i+2]) || s[i+1] > '5' {
			continue
		}
		if i+3 < len(s) {
			n := s[i+3]
			if n != ' ' && n != '-' && n != '\n' && n != '\t' && n != ']' && n != ')' && n != ',' {
				continue
			}
		}
		return s[i : i+3]
	}
	return ""
}

// afterReplyCode reports whether s[i] follows a reply code and a hyphen,
// as in a multi-line reply "550-5.1.1 …" (RFC 5321 §4.2.1).
func afterReplyCode(s string, i int) bool {
	if i < 4 || s[i-1] != '-' {
		return false
	}
	rc := s[i-4 : i-1]
	return isDigit(rc[0]) && isDigit(rc[1]) && isDigit(rc[2]) && (i == 4 || replyBoundary(s[i-5]))
}

func statusBoundary(c byte) bool {
	return !isDigit(c) && !isAlpha(c) && c != '.' && c != '-' && c != '_' && c != '/' && c != ':' && c != '='
}

func replyBoundary(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '(' || c == '[' || c == '"' || c == ':' || c == ';' || c == '<' || c == '\''
}

func digits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// statusClass returns the class digit of a status or reply code.
func statusClass(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// lowerASCII lower-cases the ASCII letters of s and leaves every other
// byte alone, so offsets in the result match offsets in s (strings.ToLower
// may change the length of invalid UTF-8).
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && !(s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, len(s))
	copy(b, s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

// replyStatus returns the enhanced status code of the server reply in s:
// the code right after an SMTP reply code when there is one ("550 5.1.1",
// "550-'5.7.1"), otherwise the first code in s.
func replyStatus(s string) string {
	for i := 0; i+3 < len(s); i++ {
		rc := findReplyCode(s[i:])
		if rc == "" {
			break
		}
		j := i + strings.Index(s[i:], rc) + 3
		k := j
		for k < len(s) && k < j+3 && (s[k] == ' ' || s[k] == '-' || s[k] == '\'' || s[k] == '"' || s[k] == '#') {
			k++
		}
		// A positive reply in a transcript ("250 2.1.5 Ok", which
		// Postfix and Sendmail quote before the failing command) is
		// not the failure.
		if k > j && k < len(s) && (s[k] == '4' || s[k] == '5') && rc[0] != '2' {
			if st := findStatus(s[k:min(len(s), k+12)]); st != "" && strings.HasPrefix(s[k:], st) {
				return st
			}
		}
		i = j - 1
	}
	st := findStatus(s)
	if strings.HasPrefix(st, "2") {
		// Look past positive codes for a failure code.
		for i := strings.Index(s, st) + len(st); i < len(s); {
			next := findStatus(s[i:])
			if next == "" {
				break
			}
			if next[0] != '2' {
				return next
			}
			i += strings.Index(s[i:], next) + len(next)
		}
	}
	return st
}
