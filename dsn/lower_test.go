package dsn

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLower(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"mailbox full", "mailbox full"},
		{"Mailbox FULL", "mailbox full"},
		{"ПОЧТОВЫЙ ЯЩИК ПЕРЕПОЛНЕН", "почтовый ящик переполнен"},
		{"Boîte Pleine", "boîte pleine"},
		{"BOÎTE AUX LETTRES PLEINE", "boîte aux lettres pleine"},
		{"ΓΡΑΜΜΑΤΟΚΙΒΩΤΙΟ ΓΕΜΑΤΟ", "γραμματοκιβωτιο γεματο"},
		{"宛先不明 User Unknown", "宛先不明 user unknown"},
		{"宛先不明", "宛先不明"},
		// Runes whose lower case has another UTF-8 length stay.
		{"İSTANBUL", "İstanbul"},
		{"Ⱥ 5 \u212A", "Ⱥ 5 \u212A"},
		// Bytes that are not UTF-8 stay.
		{"\xff\xfeABC\xc3", "\xff\xfeabc\xc3"},
	} {
		a := newTestArena()
		if got := a.lower(tc.in); got != tc.want {
			t.Errorf("lower(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestLowerKeepsLength checks the invariant of lower: every rune keeps its
// offset, and where it is lowered, it is lowered as strings.ToLower would.
func TestLowerKeepsLength(t *testing.T) {
	var b strings.Builder
	for r := rune(0); r <= 0x2FFFF; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		b.WriteRune(r)
	}
	// Long enough to cross the blocks lower works in at every rune
	// length.
	s := b.String()
	a := newTestArena()
	got := a.lower(s)
	if len(got) != len(s) {
		t.Fatalf("len(lower(s)) = %d, want %d", len(got), len(s))
	}
	for i, r := range s {
		l, size := utf8.DecodeRuneInString(got[i:])
		if size != utf8.RuneLen(r) {
			t.Fatalf("rune %U at %d: lower has a rune of %d bytes there", r, i, size)
		}
		want := unicode.ToLower(r)
		if utf8.RuneLen(want) != size {
			want = r
		}
		if l != want {
			t.Fatalf("lower(%q) = %q, want %q", r, l, want)
		}
	}
	// Each rune alone, at every offset of a block.
	for r := rune(0x80); r <= 0x1FFFF; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		in := strings.Repeat("x", int(r%600)) + string(r)
		if out := a.lower(in); len(out) != len(in) {
			t.Fatalf("lower(%q) has %d bytes, want %d", in, len(out), len(in))
		}
	}
}

func newTestArena() *arena {
	a := &arena{}
	a.init()
	return a
}
