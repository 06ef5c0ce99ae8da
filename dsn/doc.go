// Package dsn parses delivery status notifications (RFC 3464, RFC 6533) and
// the non-standard bounces real MTAs send, and classifies each failed
// recipient into the reason taxonomy of the bounce corpus.
//
// It is a pure parser: it reads an io.Reader, does no other I/O and keeps no
// package-level mutable state, so it is safe for concurrent use.
package dsn
