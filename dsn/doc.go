// Package dsn parses delivery status notifications (RFC 3464, RFC 6533) and
// the non-standard bounces real MTAs send, and classifies each failed
// recipient into the reason taxonomy of the bounce corpus.
//
// It is a pure parser: it reads an io.Reader, does no other I/O and keeps no
// package-level mutable state, so it is safe for concurrent use. Input is
// capped at MaxMessageSize and MIME nesting at a fixed depth; Parse never
// panics.
//
// # How a message is read
//
// The MIME structure is parsed once, in place: header values and bodies are
// substrings of the message unless they had to be unfolded or decoded.
// When the message has a message/delivery-status (or
// message/global-delivery-status) part, its per-recipient fields are the
// source of truth (Report.Structured). Otherwise the human-readable part is
// read as prose: the failed addresses are those it names (X-Failed-Recipients
// when present), each with the text from the line naming it to the line
// naming the next one. Text heuristics are a labelled fallback; every
// workaround for a real-world deviation is marked "QUIRK:" in the source
// with the corpus sample behind it.
//
// # Charsets
//
// Text reaches the classifier in UTF-8: the human-readable part is
// converted from its Content-Type charset (golang.org/x/text), HTML is
// reduced to text (html.go), and the Subject and From of the bounce and
// the Subject, From and To of the returned original have their RFC 2047
// encoded words decoded. US-ASCII and UTF-8 cost nothing. Text is matched
// in lower case, non-ASCII letters included, with every rune kept at its
// offset (see arena.lower).
//
// # Classification
//
// A recipient's Reason comes from, in order: a specific enhanced status
// code (RFC 3463: 5.1.1, 5.2.2, 5.7.26, …); the phrases of the remote
// server's reply, then of the whole diagnostic, then of the prose about the
// recipient; the subject of the status code; the SMTP command that failed
// (a refusal of MAIL FROM is about the sender, one before any command about
// the connecting host); and the action (a delay with no cause has expired).
// ClassifyReply applies the same rules to a bare SMTP reply.
//
// Hard is true only for a permanent failure of the address itself:
// UserUnknown, HostUnknown, HasMoved, and NotAccept with a 5xx status.
// Policy and reputation refusals are soft, whatever their code.
//
// # Deliberate divergences
//
//   - When Status is generic or wrong and the Diagnostic-Code reply holds
//     another enhanced code, the reply's code is reported (RFC 3464 says
//     Status is authoritative; real MTAs put 5.0.0 or 4.4.7 there).
//   - A recipient whose message was refused after DATA, or with a generic
//     status, for "user unknown" is reported Filtered, not UserUnknown: the
//     address was accepted at RCPT TO.
//   - An Expired failure is reported with Action "delayed" (the MTA retried
//     until it gave up), as the corpus labels do.
//   - When a message carries no status code, Status is the corpus'
//     synthetic code for the reason (SyntheticStatus: 5.0.9NN or 4.0.9NN).
//   - Charset labels are resolved as the WHATWG Encoding Standard does
//     (iso-8859-1 is read as windows-1252, gb2312 as GBK), and a byte order
//     mark overrides the label; 8-bit text labelled ISO-2022-JP is read as
//     UTF-8, EUC-JP or Shift_JIS, whichever decodes; 8-bit text labelled
//     US-ASCII is left as it is. message/global-delivery-status is UTF-8
//     whatever its parameters say (RFC 6533).
package dsn
