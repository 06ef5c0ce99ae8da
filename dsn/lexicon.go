package dsn

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
)

// The phrases that name a reason are data, not code: lexicon.txt, embedded
// here, is the built-in table, and operators put their own phrases in
// front of it (Lexicon.Extend) without rebuilding.

//go:embed lexicon.txt
var builtinLexicon string

// BuiltinLexiconName is the source name --explain gives for entries of the
// built-in lexicon.
const BuiltinLexiconName = "lexicon.txt"

// defaultLexicon is the built-in lexicon, compiled once. It is never
// changed after init: Extend returns a new Lexicon.
var defaultLexicon = mustLexicon(ParseLexicon(BuiltinLexiconName, strings.NewReader(builtinLexicon)))

func mustLexicon(l *Lexicon, err error) *Lexicon {
	if err != nil {
		panic(err) // the embedded file is tested (TestBuiltinLexicon)
	}
	return l
}

// DefaultLexicon returns the built-in lexicon.
func DefaultLexicon() *Lexicon { return defaultLexicon }

// Lexicon is a compiled phrase table: groups of phrases, each group naming
// one reason, tried in order; the first group with a phrase found in the
// text decides. A Lexicon is immutable and safe for concurrent use.
//
// The text format (lexicon.txt):
//
//	# a comment
//	[userunknown]           a group: the phrases below name this reason
//	no such user            a phrase, matched on word boundaries
//	throttl*                a trailing * lets the match end inside a word
//	/^5\d\d .*unknown$/     a regular expression (RE2) over the text
//	[suspend] final         a group whose words are final: tried first,
//	                        neither the status code nor the phase changes it
//
// Phrases are matched in the normalised text: lower case, every run of
// white space one space, transfer encodings and charsets decoded. A
// phrase matches only where it starts and ends at a word boundary: the
// character before its first and after its last must not be an ASCII
// letter or digit when that end of the phrase is one (so "ube" does not
// match "youtube", nor "ip is" "relationship is"). Non-ASCII phrases
// (Japanese, Chinese) have no word boundaries to respect.
type Lexicon struct {
	groups []lexGroup
	// final is the number of leading groups marked final: their
	// phrases decide before the status code and the phase are looked at.
	final int
}

// lexGroup is one group of a lexicon.
type lexGroup struct {
	reason  Reason
	final   bool
	phrases []lexPhrase
}

// lexPhrase is one phrase or pattern and where it was written.
type lexPhrase struct {
	text   string         // normalised phrase, without a trailing *
	prefix bool           // the match may end inside a word
	re     *regexp.Regexp // set for a /pattern/
	entry  string         // "source:line", for --explain
}

// LexiconGroup is a group of phrases naming one reason, as an operator
// writes it in the configuration (bounce_phrases).
type LexiconGroup struct {
	Reason Reason `yaml:"reason" json:"reason"`
	// Final makes the group decide before the status code's
	// meaning, for phrases more precise than the codes servers send.
	Final   bool     `yaml:"final" json:"final"`
	Phrases []string `yaml:"phrases" json:"phrases"`
}

// ParseLexicon reads a lexicon in the text format described at Lexicon.
// name is the source name given in explanations and errors.
func ParseLexicon(name string, r io.Reader) (*Lexicon, error) {
	var groups []LexiconGroup
	var lines [][]int // source line of each phrase, per group
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("dsn: %s:%d: group header %q lacks ]", name, n, line)
			}
			g := LexiconGroup{Reason: Reason(strings.TrimSpace(line[1:end]))}
			switch opt := strings.TrimSpace(line[end+1:]); opt {
			case "":
			case "final":
				g.Final = true
			default:
				return nil, fmt.Errorf("dsn: %s:%d: unknown group option %q (want final)", name, n, opt)
			}
			groups = append(groups, g)
			lines = append(lines, nil)
		default:
			if len(groups) == 0 {
				return nil, fmt.Errorf("dsn: %s:%d: phrase %q before any [reason] group", name, n, line)
			}
			g := &groups[len(groups)-1]
			g.Phrases = append(g.Phrases, line)
			lines[len(lines)-1] = append(lines[len(lines)-1], n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dsn: read lexicon %s: %w", name, err)
	}
	return compileLexicon(name, groups, func(g, p int) int { return lines[g][p] })
}

// NewLexicon compiles groups given as data (the configuration's
// bounce_phrases); name is the source name given in explanations.
func NewLexicon(name string, groups []LexiconGroup) (*Lexicon, error) {
	return compileLexicon(name, groups, func(g, p int) int { return 0 })
}

// Extend returns a lexicon that tries the groups of front first, then
// those of l; l is not changed. Operators' phrases thus win over the
// built-in ones.
func (l *Lexicon) Extend(front *Lexicon) *Lexicon {
	if front == nil || len(front.groups) == 0 {
		return l
	}
	out := &Lexicon{}
	// Over-status groups stay ahead of the others whatever their source.
	out.groups = append(out.groups, front.groups[:front.final]...)
	out.groups = append(out.groups, l.groups[:l.final]...)
	out.final = len(out.groups)
	out.groups = append(out.groups, front.groups[front.final:]...)
	out.groups = append(out.groups, l.groups[l.final:]...)
	return out
}

// compileLexicon checks and normalises groups; line gives the source line
// of phrase p of group g (0 when there are none).
func compileLexicon(name string, groups []LexiconGroup, line func(g, p int) int) (*Lexicon, error) {
	l := &Lexicon{}
	var over, rest []lexGroup
	for gi, g := range groups {
		if !knownReason(g.Reason) {
			return nil, fmt.Errorf("dsn: %s: group %d: unknown reason %q", name, gi+1, g.Reason)
		}
		lg := lexGroup{reason: g.Reason, final: g.Final}
		for pi, p := range g.Phrases {
			entry := name
			if n := line(gi, pi); n > 0 {
				entry = fmt.Sprintf("%s:%d", name, n)
			}
			ph, err := compilePhrase(p)
			if err != nil {
				return nil, fmt.Errorf("dsn: %s: %s: %w", entry, g.Reason, err)
			}
			ph.entry = entry
			lg.phrases = append(lg.phrases, ph)
		}
		if lg.final {
			over = append(over, lg)
		} else {
			rest = append(rest, lg)
		}
	}
	l.groups = append(over, rest...)
	l.final = len(over)
	return l, nil
}

// compilePhrase normalises one phrase or compiles one /pattern/.
func compilePhrase(p string) (lexPhrase, error) {
	p = strings.TrimSpace(p)
	if len(p) > 2 && p[0] == '/' && p[len(p)-1] == '/' {
		re, err := regexp.Compile(p[1 : len(p)-1])
		if err != nil {
			return lexPhrase{}, fmt.Errorf("pattern %s: %w", p, err)
		}
		return lexPhrase{text: p, re: re}, nil
	}
	ph := lexPhrase{}
	if strings.HasSuffix(p, "*") {
		ph.prefix = true
		p = strings.TrimSuffix(p, "*")
	}
	p = strings.Join(strings.Fields(lowerText(p)), " ")
	if p == "" {
		return lexPhrase{}, fmt.Errorf("empty phrase")
	}
	ph.text = p
	return ph, nil
}

// lowerText lower-cases s the way the parser lower-cases text.
func lowerText(s string) string {
	return strings.Map(func(r rune) rune {
		if l := unicode.ToLower(r); len(string(l)) == len(string(r)) {
			return l
		}
		return r
	}, s)
}

// knownReason reports whether r is one of the reasons of the taxonomy a
// failure can have.
func knownReason(r Reason) bool {
	if r == OnHold || r == Undefined || r == Expired {
		return true
	}
	_, ok := syntheticCodes[r]
	return ok
}

// lexMatch is what a lexicon found in a text.
type lexMatch struct {
	reason Reason
	phrase string // the phrase or /pattern/ as normalised
	entry  string // where it is written
	final  bool
}

// match returns the first group with a phrase in the normalised text.
// When finalOnly is set only the final groups are tried.
func (l *Lexicon) match(text string, grams *gramSet, finalOnly bool) (lexMatch, bool) {
	if text == "" {
		return lexMatch{}, false
	}
	groups := l.groups
	if finalOnly {
		groups = groups[:l.final]
	}
	for gi := range groups {
		g := &groups[gi]
		for pi := range g.phrases {
			p := &g.phrases[pi]
			if p.re != nil {
				if !p.re.MatchString(text) {
					continue
				}
			} else if !grams.mayContain(p.text) || !containsPhrase(text, p.text, p.prefix) {
				continue
			}
			return lexMatch{reason: g.reason, phrase: p.text, entry: p.entry, final: g.final}, true
		}
	}
	return lexMatch{}, false
}

// containsPhrase reports whether text holds p on word boundaries (see
// Lexicon); with prefix set the match may end inside a word.
func containsPhrase(text, p string, prefix bool) bool {
	checkStart := isWordByte(p[0])
	checkEnd := !prefix && isWordByte(p[len(p)-1])
	for off := 0; ; {
		i := strings.Index(text[off:], p)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(p)
		if (!checkStart || i == 0 || !isWordByte(text[i-1])) &&
			(!checkEnd || end == len(text) || !isWordByte(text[end])) {
			return true
		}
		off = i + 1
	}
}

// isWordByte reports whether c is an ASCII letter or digit.
func isWordByte(c byte) bool { return isDigit(c) || isAlpha(c) }

// textGrams summarises a text for Lexicon.match.
func textGrams(text string) *gramSet {
	g := new(gramSet)
	g.add(text)
	return g
}
