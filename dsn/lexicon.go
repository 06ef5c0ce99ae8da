package dsn

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
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
//	[userunknown] weak      a group of vague words (the standard texts of
//	                        RFC 5321 replies): they decide only when no
//	                        enhanced status code does
//
// Phrases are matched in the normalised text: lower case, every run of
// white space one space, transfer encodings and charsets decoded. A
// phrase matches only where it starts and ends at a word boundary: the
// character before its first and after its last must not be an ASCII
// letter or digit when that end of the phrase is one (so "ube" does not
// match "youtube", nor "ip is" "relationship is"); a phrase ending in a
// letter also matches its plural in "s". Non-ASCII phrases
// (Japanese, Chinese) have no word boundaries to respect.
type Lexicon struct {
	// groups are in the order they are tried: final, then normal, then
	// weak groups, each tier in file order.
	groups []lexGroup

	// entries are the phrases of all groups in the order they are
	// tried; tierEnd[t] is the end of tier t's entries.
	entries []lexEntry
	tierEnd [tiers]int32
	// index finds the entries that may start at a position of a text
	// from the text's next three bytes, so that a text is matched in
	// one pass whatever the size of the lexicon; patterns lists the
	// /pattern/ entries, which the index cannot hold.
	index    *trigramIndex
	patterns []int32
}

// tier is when a group's phrases are tried (see Lexicon).
type tier int

const (
	tierFinal  tier = iota // before the status code and the phase
	tierNormal             // after a precise status code, adjusted by the phase
	tierWeak               // only when no enhanced status code decides
	tiers
)

// lexEntry is one phrase of a lexicon with its group's reason.
type lexEntry struct {
	*lexPhrase
	reason Reason
}

// lexGroup is one group of a lexicon.
type lexGroup struct {
	reason  Reason
	tier    tier
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
	// Final makes the group's reason final: it is tried first, and
	// neither the status code nor the SMTP phase changes it. For words
	// more precise than the codes servers send with them.
	Final bool `yaml:"final" json:"final"`
	// Weak makes the group decide only when no enhanced status code
	// does: for vague words servers send whatever the cause.
	Weak    bool     `yaml:"weak" json:"weak"`
	Phrases []string `yaml:"phrases" json:"phrases"`
}

func (g LexiconGroup) tier() tier {
	switch {
	case g.Final:
		return tierFinal
	case g.Weak:
		return tierWeak
	}
	return tierNormal
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
			case "weak":
				g.Weak = true
			default:
				return nil, fmt.Errorf("dsn: %s:%d: unknown group option %q (want final or weak)", name, n, opt)
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
// those of l, tier by tier; l is not changed. Operators' phrases thus win
// over the built-in ones.
func (l *Lexicon) Extend(front *Lexicon) *Lexicon {
	if front == nil || len(front.groups) == 0 {
		return l
	}
	out := &Lexicon{groups: append(slices.Clone(front.groups), l.groups...)}
	slices.SortStableFunc(out.groups, func(a, b lexGroup) int { return int(a.tier) - int(b.tier) })
	out.build()
	return out
}

// compileLexicon checks and normalises groups; line gives the source line
// of phrase p of group g (0 when there are none).
func compileLexicon(name string, groups []LexiconGroup, line func(g, p int) int) (*Lexicon, error) {
	l := &Lexicon{}
	for gi, g := range groups {
		if !knownReason(g.Reason) {
			return nil, fmt.Errorf("dsn: %s: group %d: unknown reason %q", name, gi+1, g.Reason)
		}
		if g.Final && g.Weak {
			return nil, fmt.Errorf("dsn: %s: group %d (%s): final and weak at once", name, gi+1, g.Reason)
		}
		lg := lexGroup{reason: g.Reason, tier: g.tier()}
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
		l.groups = append(l.groups, lg)
	}
	slices.SortStableFunc(l.groups, func(a, b lexGroup) int { return int(a.tier) - int(b.tier) })
	l.build()
	return l, nil
}

// build lays the groups out as entries and indexes them.
func (l *Lexicon) build() {
	l.entries, l.patterns = nil, nil
	l.index = new(trigramIndex)
	for gi := range l.groups {
		g := &l.groups[gi]
		for pi := range g.phrases {
			id := int32(len(l.entries))
			p := &g.phrases[pi]
			l.entries = append(l.entries, lexEntry{lexPhrase: p, reason: g.reason})
			if p.re != nil {
				l.patterns = append(l.patterns, id)
			} else {
				l.index.add(p.text, id)
			}
		}
		for t := g.tier; t < tiers; t++ {
			l.tierEnd[t] = int32(len(l.entries))
		}
	}
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
	if len(p) < 3 {
		// The index keys a phrase by its first three bytes; a shorter
		// one would match inside too many words anyway.
		return lexPhrase{}, fmt.Errorf("phrase %q shorter than 3 bytes", p)
	}
	ph.text = p
	return ph, nil
}

// lowerText lower-cases s the way the parser lower-cases text (see
// arena.lower).
func lowerText(s string) string {
	var a arena
	a.init()
	return a.lower(s)
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
}

// tierBest holds, per tier, the id of the first entry found in a text,
// noMatch when none was.
type tierBest [tiers]int32

const noMatch = int32(-1)

// scan finds, in one pass over the normalised text, the first entry of
// each tier (in lexicon order) that the text holds.
func (l *Lexicon) scan(text string) tierBest {
	best := tierBest{noMatch, noMatch, noMatch}
	found := func(id int32) bool { // whether id would not improve on best
		t := l.tierOf(id)
		return best[t] != noMatch && best[t] <= id
	}
	for i := 0; i+3 <= len(text); i++ {
		h := trigramKey(text[i], text[i+1], text[i+2])
		if !l.index.has(h) {
			continue
		}
		for _, id := range l.index.buckets[h] {
			if found(id) {
				continue
			}
			e := &l.entries[id]
			if strings.HasPrefix(text[i:], e.text) && onBoundaries(text, i, e.text, e.prefix) {
				best[l.tierOf(id)] = id
			}
		}
	}
	for _, id := range l.patterns {
		if !found(id) && l.entries[id].re.MatchString(text) {
			best[l.tierOf(id)] = id
		}
	}
	return best
}

// tierOf returns the tier of entry id.
func (l *Lexicon) tierOf(id int32) tier {
	t := tierFinal
	for t < tiers-1 && id >= l.tierEnd[t] {
		t++
	}
	return t
}

// matchOf returns what entry id says.
func (l *Lexicon) matchOf(id int32) lexMatch {
	e := &l.entries[id]
	return lexMatch{reason: e.reason, phrase: e.text, entry: e.entry}
}

// match returns the first entry of tier t, in lexicon order, found in the
// normalised text.
func (l *Lexicon) match(text string, t tier) (lexMatch, bool) {
	if text == "" {
		return lexMatch{}, false
	}
	if id := l.scan(text)[t]; id != noMatch {
		return l.matchOf(id), true
	}
	return lexMatch{}, false
}

// onBoundaries reports whether phrase p found at offset i of text starts
// and ends on word boundaries (see Lexicon); with prefix set it may end
// inside a word.
func onBoundaries(text string, i int, p string, prefix bool) bool {
	if isWordByte(p[0]) && i > 0 && isWordByte(text[i-1]) {
		return false
	}
	end := i + len(p)
	if end < len(text) && text[end] == 's' && isAlpha(p[len(p)-1]) {
		end++ // an English plural: "spf record" matches "spf records"
	}
	return prefix || !isWordByte(p[len(p)-1]) || end == len(text) || !isWordByte(text[end])
}

// trigramIndex maps the first three bytes of each phrase, hashed, to the
// ids of the phrases that start with them, in ascending order.
type trigramIndex struct {
	filter  [trigramSlots / 64]uint64
	buckets [trigramSlots][]int32
}

// trigramSlots is the number of hash slots of a trigramIndex.
const trigramSlots = 1 << 12

func trigramKey(a, b, c byte) uint32 {
	return (uint32(a)*961 + uint32(b)*31 + uint32(c)) & (trigramSlots - 1)
}

func (x *trigramIndex) add(p string, id int32) {
	h := trigramKey(p[0], p[1], p[2])
	x.filter[h>>6] |= 1 << (h & 63)
	x.buckets[h] = append(x.buckets[h], id)
}

func (x *trigramIndex) has(h uint32) bool { return x.filter[h>>6]&(1<<(h&63)) != 0 }

// containsPhrase reports whether text holds p on word boundaries (see
// Lexicon); with prefix set the match may end inside a word.
func containsPhrase(text, p string, prefix bool) bool {
	for off := 0; ; {
		i := strings.Index(text[off:], p)
		if i < 0 {
			return false
		}
		i += off
		if onBoundaries(text, i, p, prefix) {
			return true
		}
		off = i + 1
	}
}

// isWordByte reports whether c is an ASCII letter or digit.
func isWordByte(c byte) bool { return isDigit(c) || isAlpha(c) }
