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
// with the behaviour it encodes (a corpus sample may be named as an example).
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
// Each recipient's Reason is decided from the evidence in a fixed order,
// and Recipient.Evidence records what decided (`repute parse --explain`):
//
//  1. the structure: Action and Status (RFC 3464), and the reply code and
//     RFC 3463 enhanced code found in the diagnostic; a success is
//     Delivered, an X-Unix diagnostic a local delivery agent's failure;
//  2. the lexicon's final phrases (words more precise than any code);
//  3. an enhanced code whose meaning is precise (5.1.1, 5.2.2, 5.7.26, …);
//  4. the SMTP phase the refusal answered, recognised from the way each
//     MTA reports it (Postfix "in reply to RCPT TO command", Exim "after
//     end of data", Sendmail ">>> DATA", qmail "does not like
//     recipient", …) or given by the caller of ClassifyReply; an unknown
//     phase changes nothing;
//  5. the lexicon's phrases in the remote server's reply, then the whole
//     diagnostic, then the prose about the recipient, adjusted by the
//     phase: "user unknown" refused after DATA is Filtered (the address
//     had been accepted), a refusal at MAIL FROM is about the sender
//     (Rejected), one before any recipient about the host (Blocked);
//  6. the enhanced code's class.subject.detail (RFC 3463 and the IANA
//     registry), then the basic reply code where RFC 5321 gives it one
//     meaning, then the phase alone;
//  7. a delay that says nothing more has Expired; words that nothing
//     recognised are OnHold; nothing but codes and addresses is Undefined.
//
// The lexicon is data (lexicon.txt, embedded; see Lexicon), extended by
// operators through Parser.Lexicon without rebuilding.
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
//   - A recipient whose message was refused after DATA for "user unknown"
//     is reported Filtered, not UserUnknown: the address was accepted at
//     RCPT TO. Without evidence of the phase, "user unknown" is UserUnknown.
//   - An Expired failure (the MTA retried until it gave up) is reported
//     with Action "failed" and Kind bounce, as RFC 3464 §2.3.3 means it,
//     although the corpus labels give such rows Action "delayed". Only a
//     warning that delivery is still being tried (Action "delayed", or a
//     prose delay warning) makes a KindDelay report.
//   - When a message carries no status code, Status is the corpus'
//     synthetic code for the reason (SyntheticStatus: 5.0.9NN or 4.0.9NN).
//   - Charset labels are resolved as the WHATWG Encoding Standard does
//     (iso-8859-1 is read as windows-1252, gb2312 as GBK), and a byte order
//     mark overrides the label; 8-bit text labelled ISO-2022-JP is read as
//     UTF-8, EUC-JP or Shift_JIS, whichever decodes; 8-bit text labelled
//     US-ASCII is left as it is. message/global-delivery-status is UTF-8
//     whatever its parameters say (RFC 6533).
package dsn
