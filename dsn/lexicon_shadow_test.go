package dsn

import "testing"

// TestLexiconShadow fails when a phrase of the built-in lexicon can never
// decide: a phrase of an earlier group, naming another reason, is found
// on word boundaries inside it, so the earlier group always wins. Such a
// row is either dead or in the wrong group order.
func TestLexiconShadow(t *testing.T) {
	groups := defaultLexicon.groups
	for j := range groups {
		for _, p := range groups[j].phrases {
			if p.re != nil {
				continue
			}
			for i := 0; i < j; i++ {
				if groups[i].reason == groups[j].reason {
					continue
				}
				for _, q := range groups[i].phrases {
					if q.re != nil {
						continue
					}
					if containsPhrase(p.text, q.text, q.prefix) {
						t.Errorf("%s %q (%s) is shadowed by %s %q (%s)",
							groups[j].reason, p.text, p.entry, groups[i].reason, q.text, q.entry)
					}
				}
			}
		}
	}
}

// TestLexiconDuplicates fails when a phrase is written twice in the
// built-in lexicon: the second row can never decide.
func TestLexiconDuplicates(t *testing.T) {
	seen := map[string]string{}
	for _, g := range defaultLexicon.groups {
		for _, p := range g.phrases {
			key := p.text
			if p.prefix {
				key += "*"
			}
			if prev, ok := seen[key]; ok {
				t.Errorf("%s %q (%s) is written before at %s", g.reason, key, p.entry, prev)
				continue
			}
			seen[key] = p.entry
		}
	}
}
