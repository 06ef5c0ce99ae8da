// Package suppress keeps the two suppression lists — the blocklist and the
// per-sender-domain unsubscribe list — in memory, and answers the check
// every send must pass (issue 10; the numbers are docs/THRESHOLDS.md,
// "Suppression"). It is built on events (metrics.Event), whatever their
// source, and imports nothing of ours but the event model.
//
// This package is the core only: it persists nothing and serves nothing
// (a snapshot is written to the io.Writer the caller gives).
// Every call that changes a list returns its changes (Change), in order,
// and keeps no copy: the caller appends them to the store's log
// (Change.Stored, metrics.SuppressionLog), serves that log as the audit,
// and rebuilds the index from it at start (see Persistence).
//
// # The blocklist
//
// An address goes on the blocklist when a bounced event says the address
// itself failed permanently, or its mailbox refused repeatedly (Classify;
// Rules holds the numbers, zero meaning the default):
//
//   - hard: reason userunknown, hostunknown or hasmoved, or notaccept with
//     a 5xx enhanced status or reply code — one bounce is enough;
//   - soft: reason mailboxfull, suspend or exceedlimit, counted:
//     SoftThreshold (3) distinct events within SoftWindow (7 days, by the
//     events' times, inclusive);
//   - never: every other reason. The rule is an allow-list of
//     recipient-side reasons, so that a policy or reputation refusal —
//     blocked, badreputation, spamdetected, policyviolation, authfailure,
//     rejected, requireptr, toomanyconn, speeding, securityerror,
//     contenterror, virusdetected, syntaxerror, … — and any reason added
//     to the taxonomy later never blocklists the recipient: "a policy or
//     reputation rejection (e.g. Gmail 550 5.7.1 … low reputation, block
//     lists, auth failures) is the sender's problem, not the recipient's"
//     (THRESHOLDS.md). The reason decides, not bounce_type, which a poster
//     may set by rules of its own.
//
// Only bounced events count. An entry blocks until BlocklistDays (14)
// after the time of the latest qualifying event — for a soft count, the
// latest event of the window that reached the threshold — so events that
// arrive out of order or twice never shorten an entry. It blocks while
// now < until, to the second, whatever the clock of the store; Check
// needs no sweep for that. An entry names the event that set its expiry,
// the reason, and the account whose send caused it (that event's
// account); Since is the time of the event that put it on the list.
//
// Scope: events repute produced itself or that were posted with the admin
// key (Trust.Shared) make entries shared with every account; events posted
// with an account key make entries for that account only, so that one
// tenant cannot blocklist addresses for the others.
//
// Lift: an account may lift an entry its own sends caused (and its own
// entries); another account's needs the admin key, and the refusal is a
// *ForbiddenError and an ActionLiftRefused change. After a lift only an
// event dated after it puts the address back, and soft bounces are counted
// afresh.
//
// # The unsubscribe list
//
// Per (account, sender domain, address), from unsubscribed and complained
// events and from Unsubscribe; permanent until Resubscribe, with a reason.
// Events dated at or before a re-subscription do not count again.
// Deliberate choice: an unsubscribe or complaint event without a sender
// domain applies to every sender domain of its account (a complaint is
// never dropped for want of a scope).
//
// # Addresses
//
// One normal form for every lookup (NormalizeAddress): trimmed,
// lower-cased, IDN domains as A-labels (IDNA Lookup profile), plus tags
// kept, since whether "+tag" is a sub-address is the receiving domain's
// own rule (RFC 5233). Event ids are stored as given.
//
// # Persistence
//
// The store keeps an append-only log of changes; the index is its fold.
// Replay applies the log in (Time, ID) order and rebuilds the exact
// state, including what no entry shows: every soft bounce counted is an
// ActionCounted change (the one that completes a window too, since replay
// needs every hit), a lift restores its marker, a re-subscription its
// own. The order of the log is the order of the changes of one entry: a
// lift or a re-subscription takes effect after the evidence it undoes,
// even evidence dated ahead of the clock (Change.Time is moved a
// nanosecond past it if need be), and an addition that sorts before the
// expiry of the entry it replaces wins by its later expiry. An account's
// own entry names that account (its scope) as the one whose send caused
// it. Replay keeps entries past their expiry until the log (or a Sweep)
// says they expired, as the index that made them did.
//
// Intake replays the last batch after a crash, so Observe is idempotent:
// soft hits are keyed by event id, an expiry only ever moves later, an
// unsubscribe in force is not repeated, and evidence dated at or before
// a lift or re-subscription does not count again. Load, which takes
// entries rather than changes, restores none of the markers.
//
// # Snapshots
//
// WriteSnapshot writes the whole state — both blocklists with their event
// ids (odd ones too), soft counts, lift markers, the unsubscribe list with
// its re-subscriptions, the interned accounts and reasons — in a compact
// versioned binary form ending in a CRC-32C; ReadSnapshot reads it back
// into the same index, so that a process need not replay the whole log at
// start, only what was logged after the snapshot (Apply is idempotent and
// order-independent). A torn, truncated or corrupt snapshot, or one of
// another version, is refused (ErrSnapshot), never half-read. The rules
// are the reader's: entries keep the expiry they were given, and the
// rules only decide what future events do, as after a Replay.
//
// # The index
//
// Blocklist entries are 36-byte structs in a slice, found through an
// open-addressing table of 8-byte slots keyed by a maphash of the address
// (a seed per index), the addresses kept once in a byte arena and compared
// on a match; reasons and accounts are interned. Event ids of 32
// lower-case hex digits (metrics.Event.ComputeID, DerivedID) are kept as
// 16 bytes, others as given in a side map. Measured at 10 million
// entries: about 80 bytes per entry (BenchmarkLoad). Soft counts, lift
// markers and the unsubscribe list live in ordinary maps: they are small
// beside the blocklist.
//
// One sync.RWMutex guards the index: Check takes the read lock for a
// batch, Observe, Lift, Unsubscribe, Resubscribe, Sweep, Load and Replay
// the write lock; WriteSnapshot the read lock while it copies the entries
// (not the addresses, which never move in the arena), and none while it
// encodes. Sweep walks the whole index: call it periodically, not per
// check.
package suppress
