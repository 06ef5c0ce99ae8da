// Package arf parses complaint (feedback-loop) reports: RFC 5965 ARF,
// RFC 6591 authentication failure reports, RFC 6692 Source-Port, and the
// dialects of Microsoft JMRP, Yahoo CFL, Mail.ru and AOL.
//
// It is a pure parser: it reads an io.Reader (or a byte slice, ParseBytes),
// does no other I/O and keeps no package-level mutable state, so it is safe
// for concurrent use. It reads at most MaxSize bytes, follows MIME nesting
// eight levels deep and at most 64 MIME parts in all, and never panics.
//
// Parse is meant to run on every incoming bounce before the bounce parser:
// a message that is no complaint is turned away with ErrNotFeedback after
// a look at its top-level Content-Type, From and Subject only.
//
// # Dialects
//
// Report.Provider names the dialect, and Report.RecipientRecoveredFrom where
// the complained-about recipient was found: the RFC 5965 Original-Rcpt-To
// fields first, then X-HmXmrOriginalRecipient (JMRP) and X-Apparently-To
// (Yahoo) in the original's header, then the original's To. Addresses that
// the reporter redacted are left out and set Report.RecipientRedacted.
// Every workaround for a reporter's deviation is marked "QUIRK:" in the
// source with the sample that shows it.
//
// # Deviations from the RFCs
//
// The parser is lenient where reporters are not conformant, and says so
// with an error wrapping ErrMalformed next to the best-effort Report:
//
//   - A report without Feedback-Type (RFC 5965 §3.1) gets "other"; missing
//     User-Agent or Version are reported but change nothing.
//   - JMRP reports carry no message/feedback-report part: they are taken
//     as Feedback-Type abuse without an error, as that is what JMRP sends.
//   - Received-Date, an ARF draft's name still used by Yahoo and AOL, is
//     read as Arrival-Date.
//   - ARF fields in a text/plain part ("look-alikes") are read when the
//     message is no multipart/report, reported as malformed.
//   - A multipart without its closing boundary is read up to its end.
//   - Lone-CR line ends and a leading mbox "From " line are accepted.
//   - The obsolete zone names of RFC 5322 §4.3 (EST, PDT, …) in dates are
//     given their offsets.
package arf
