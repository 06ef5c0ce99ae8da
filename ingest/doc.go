// Package ingest turns feedback sources (IMAP mailboxes, Kafka topics, HTTP
// uploads, files) into events: it parses each message with dsn or arf,
// correlates it to the original send, and acknowledges the source only after
// the events are durable.
//
// # What a report becomes
//
// Converter.Events maps one message to events, pure apart from its
// SendLookup (no I/O of its own, an injected clock):
//
//   - a failed recipient of a bounce → bounced (bounce_type hard when the
//     failure is permanent for the address itself, soft otherwise; reason,
//     status, reply_code, diagnostic, remote_mta); a delayed one → deferred;
//     a delivered one (success DSN) → delivered; each recipient decides by
//     its own Action (RFC 3464 §2.3.3);
//   - each recipient of a complaint (ARF) → complained (feedback_type,
//     feedback_provider, recipient_recovered_from);
//   - a message to our mailto unsubscribe address
//     (unsubscribe+TOKEN@bounce domain in To, Delivered-To, X-Original-To or
//     Envelope-To) whose token the correlate.Signer verifies → unsubscribed,
//     for the send the token names (its recipient when the store knows it,
//     else the From address), unless it is an automatic reply (RFC 3834);
//   - anything else (automatic replies, ordinary mail, forged tokens) → no
//     events, ignored.
//
// The event's time is the first the event model accepts (2000-01-01 to one
// hour after the injected now) of: the recipient's Last-Attempt-Date (RFC
// 3464 §2.3.7), the DSN's Arrival-Date (§2.2.5) or the complaint's
// Arrival-Date (RFC 5965 §3.2), the report's Date, and Source.Time (the
// INTERNALDATE, the record's timestamp) — never the clock at reading. Its id
// is metrics.DerivedID of the report's Message-ID (or bytes), the recipient
// and the kind, so neither the source, the account nor the correlation
// changes it.
//
// Correlation tries, in order: the X-Repute-ID header of the returned
// original (header), a VERP token in the bounce's envelope recipient or the
// complained-about message's Return-Path (verp) — both verified by the
// Signer, a token that fails is no evidence — then the original's
// Message-ID (message_id) and the ENVID with ORCPT (envid) through
// SendLookup. A report that matches nothing is stored under
// Options.Account with correlation none; without an account it is
// ErrUnattributed, for the caller to quarantine.
//
// # Errors
//
// With an error Events returns no events. ErrLookup means the send store
// failed: convert the message again later. Any other error (ErrNotMessage, dsn.ErrNoRecipient,
// ErrUnattributed, ErrNoTime, ErrNoEventRecipient, an event the model
// refuses) is a reason to quarantine the message. Oddities the parsers
// report beside usable results (arf.ErrMalformed, dsn.ErrTruncated) do not
// stop the conversion.
//
// # Deliberate divergences
//
//   - An unsubscribe request unsubscribes the address the token's send went
//     to when the store knows it, not the From address (a forwarded or
//     aliased mailbox writes from another address than the one on the
//     list); correlation is verp, as the token is the one of the VERP
//     format.
//   - A line starting "From " inside a message does not split it: Events
//     takes one message; files in mbox form are split by the caller with
//     SplitMbox (ParseBytes splits, as repute parse reads files).
package ingest
