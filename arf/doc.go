// Package arf parses complaint (feedback-loop) reports: RFC 5965 ARF,
// RFC 6591 authentication failure reports, RFC 6692 Source-Port, and the
// dialects of Microsoft JMRP, Yahoo CFL, Mail.ru and AOL.
//
// It is a pure parser: it reads an io.Reader, does no other I/O and keeps no
// package-level mutable state, so it is safe for concurrent use.
package arf
