// Package imap reads feedback (bounces, complaints, unsubscribe requests)
// from IMAP mailboxes with github.com/emersion/go-imap/v2's client and
// hands its events to intake.
//
// A Reader serves one mailbox (Options: the server, the user, the watched
// folders, and the folders messages are filed into). Run:
//
//  1. takes the mailbox's lease (Leaser; the name is "imap:"+user+"@"+addr,
//     so two configurations naming the same mailbox share it) and renews
//     it every LeaseTTL/3; while another process holds it, it waits; a
//     holder that stops renewing is taken over within LeaseTTL; a reader
//     that loses it stops at once, finishing nothing;
//  2. connects (TLS implicit, STARTTLS, or clear text to a loopback address
//     only), logs in and creates the missing destination folders;
//  3. for each watched folder: SELECT, UID SEARCH for the messages not
//     flagged \Deleted, then in batches of BatchSize: UID FETCH of
//     RFC822.SIZE and INTERNALDATE, UID FETCH BODY.PEEK[] of those within
//     MaxMessageBytes, conversion (Processor, Concurrency at a time),
//     PutEvidence of the batch's evidence, Submit of its events, then one
//     UID MOVE per destination. The commands are pipelined so that the
//     server works while this process converts: the bodies are read as
//     they come, up to 64 MiB (or Concurrency+1 messages of
//     MaxMessageBytes) ahead of the conversions; a batch's MOVEs go out
//     behind the next batch's FETCHes; and with MOVE the next batch's
//     bodies are fetched while this one is converted and submitted;
//  4. waits for more: IDLE on the first watched folder when the server
//     offers it (re-issued every 25 minutes, RFC 2177), polling every
//     PollInterval otherwise; with several watched folders the IDLE ends
//     after PollInterval, so the others are searched at least that often.
//
// A lost connection is re-made with backoff (RetryMin to RetryMax); a
// watched folder that cannot be selected (deleted, renamed) is logged and
// counted (repute_imap_errors_total{kind="folder"}), the others are
// served, and it is tried again at the next pass.
//
// # Where a message goes
//
//   - events produced → Processed, after its evidence and events are
//     durable (PutEvidence and Submit returned nil; both are retried with
//     backoff for as long as they fail, the messages staying put);
//   - neither a bounce, a complaint nor an unsubscribe request → Ignored;
//   - unreadable (any Processor error but ingest.ErrLookup, such as
//     ingest.ErrNotMessage for what is no message at all), over
//     MaxMessageBytes (by RFC822.SIZE, not downloaded) → Quarantine, the
//     reason logged with the folder and UID and counted
//     (repute_imap_messages_total{outcome="quarantined"}); IMAP has no
//     safe way to annotate the message itself;
//   - ingest.ErrLookup (the send store failed) → stays, read again soon.
//
// Events carry source "imap", source_ref "name/folder/UIDVALIDITY/UID",
// and the INTERNALDATE as the time of last resort.
//
// # Guarantees
//
// No state survives a session: what is still in a watched folder is unread
// by construction, since every message read is moved out. So a restart
// neither reads a moved message again nor misses one, and a UIDVALIDITY
// change (the folder re-created) only changes the source_ref of the
// messages still there, which are the unread ones all the same. Reading is
// at least once: after a crash between Submit and MOVE the message is read
// again, and its events, whose ids are deterministic (metrics.DerivedID of
// the report), are duplicates intake collapses. So after kill -9 at any
// moment and a restart each message's events are stored exactly once and,
// with MOVE (atomic) on the server, each message is in exactly one folder.
//
// Without MOVE, a message is moved by UID COPY, \Deleted and UID EXPUNGE
// of its UIDs alone (UIDPLUS); a crash between COPY and EXPUNGE may leave a
// copy in both folders (the one flagged \Deleted is not read again).
// Without UIDPLUS it is copied and flagged \Deleted but not expunged — a
// plain EXPUNGE would remove every message flagged \Deleted, the user's
// too — and a warning is logged and counted (kind no_uidplus).
//
// # What it never does
//
// It never deletes a message of the user's (no EXPUNGE but UID EXPUNGE of
// the UIDs it has just copied), never sets \Seen (BODY.PEEK), and never
// moves a message whose events are not durable yet.
package imap
