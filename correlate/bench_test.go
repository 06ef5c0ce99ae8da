package correlate

import "testing"

func BenchmarkToken(b *testing.B) {
	s := mustNew(b, Keys{Sign: keyA})
	ref := seqRef(0)
	b.ReportAllocs()
	for b.Loop() {
		s.Token(ref)
	}
}

func BenchmarkParse(b *testing.B) {
	s := mustNew(b, Keys{Sign: keyA})
	tok := s.Token(seqRef(0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseOldKey: a token signed with the last of three keys, the
// worst case during a rotation.
func BenchmarkParseOldKey(b *testing.B) {
	s := mustNew(b, Keys{Sign: keyA, Verify: [][]byte{keyB, keyC}})
	tok := mustNew(b, Keys{Sign: keyC}).Token(seqRef(0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewRef(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewRef()
	}
}
