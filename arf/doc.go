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
// a look at its top-level Content-Type, From and Subject — and, for a
// multipart that is no multipart/report of another report-type, a byte
// search of its body for a message/feedback-report part. A report that says
// it is one (multipart/report; report-type=feedback-report) is a complaint
// whatever its From and Subject, even when it looks like an automatic reply.
//
// # Recipients
//
// Report.RecipientRecoveredFrom says where the complained-about recipient
// was found. The sources are tried in this order of trust, and the first
// that names an address not redacted wins:
//
//  1. the report's Original-Rcpt-To fields (RFC 5965 §3.2; all of them);
//  2. the report's Removal-Recipient fields (the ARF drafts' name, still
//     in RFC 5965 Appendix B.2);
//  3. in the returned message's header, the fields the receiving side
//     adds: X-HmXmrOriginalRecipient (Microsoft JMRP), X-Original-To
//     (Postfix), Envelope-To (Exim), X-Envelope-To, X-Apparently-To
//     (Yahoo), Delivered-To (Postfix, qmail, Gmail), the topmost of each;
//  4. the returned message's To (all that Yahoo CFL leaves).
//
// Addresses the reporter redacted (RFC 6590: a local part of x's or stars,
// "redacted", a hex hash, or none) are never reported; they set
// Report.RecipientRedacted, and when no other source names the recipient
// Recipients stays empty rather than holding a guess.
//
// # Dialects
//
// Report.Provider names the dialect. Every workaround for a reporter's
// deviation is marked "QUIRK:" in the source with the RFC or the sample
// that shows it.
//
// # Deviations from the RFCs
//
// The parser is lenient where reporters are not conformant, and says so
// with an error wrapping ErrMalformed next to the best-effort Report:
//
//   - A report without Feedback-Type (RFC 5965 §3.1) gets "other"; missing
//     User-Agent or Version are reported but change nothing.
//   - JMRP reports carry no message/feedback-report part, or one without
//     Feedback-Type: they are taken as Feedback-Type abuse without an
//     error, as that is what JMRP sends.
//   - Received-Date, an ARF draft's name still used by Yahoo and AOL, is
//     read as Arrival-Date.
//   - ARF fields in a text/plain part ("look-alikes") are read when the
//     message is no multipart/report, reported as malformed.
//   - A multipart without its closing boundary is read up to its end;
//     its last part too, even a header that ends without its blank line.
//   - A multipart whose body uses another boundary than the declared one
//     (or none) is split on the boundary the body uses.
//   - A returned message inlined as text/plain after the report part is
//     read as if it were text/rfc822-headers.
//   - A message/feedback-report part inside a multipart/mixed, or in a
//     multipart/report without report-type, is read (a report re-wrapped
//     on its way).
//   - CRLF and LF line ends may be mixed, even within one part; lone-CR
//     line ends and a leading mbox "From " line are accepted.
//   - The obsolete zone names of RFC 5322 §4.3 (EST, PDT, …) in dates are
//     given their offsets.
package arf
