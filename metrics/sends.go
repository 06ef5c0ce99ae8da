package metrics

import "strings"

// NormalizeMessageID returns the form in which the stores index and compare
// Message-IDs: without surrounding white space and angle brackets, so that
// "<a@b>" stored by one sender and "a@b" given by a report match. The rest
// is kept as it is (a Message-ID's left part is case-sensitive).
//
// The SQL of both stores' index backfill computes the same with the regular
// expression MessageIDTrimRE.
func NormalizeMessageID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	return strings.TrimSpace(id)
}

// MessageIDTrimRE is what NormalizeMessageID removes, as an RE2 pattern
// for a replace-all in SQL (DuckDB regexp_replace with 'g', ClickHouse
// replaceRegexpAll).
const MessageIDTrimRE = `^\s*<?\s*|\s*>?\s*$`

// NormalizeSendRef returns the form in which the stores index the
// source_ref of a sent event for SendByRef: lower-cased, as correlate.Ref's
// text is (base32 in lower case), so that a ref upper-cased in transit
// still matches.
func NormalizeSendRef(ref string) string { return strings.ToLower(ref) }
