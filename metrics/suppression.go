package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// SuppressionChange is one change of the suppression lists (package
// suppress, issue 10) as the stores keep it: an append-only log that is
// both the audit (who, when, why, which event) and what the lists are
// rebuilt from at start, replayed in (Time, ID) order.
type SuppressionChange struct {
	// ID identifies the change (SuppressionChangeID): storing a change
	// again, as a replay after a crash does, changes nothing.
	ID           string
	Time         time.Time // when it took effect
	Action       string    // added, extended, counted, expired, lifted, lift_refused, unsubscribed, resubscribed
	Address      string    // normalised
	Account      string
	Shared       bool // a blocklist entry for every account, not only Account
	SenderDomain string
	List         string // blocklist or unsubscribe
	Reason       string
	EventID      string // the event that caused it, when one did
	Since, Until time.Time
	By           string // who: the poster of the event, or the principal of an API call
	// Logged is when the store took the change, set by the store on
	// append (the caller's value is ignored). It orders the log as it was
	// written, which readers that follow it need: a change about an old
	// event is written late, after changes with later Times.
	Logged time.Time
}

// SuppressionChangeID is the id of a change: the first 16 bytes, in hex,
// of SHA-256 over a label and the fields that make it what it is (its
// time to the nanosecond, action, address, account, sender domain, list
// and event id), each length-prefixed.
func SuppressionChangeID(c SuppressionChange) string {
	buf := make([]byte, 0, 160)
	for _, v := range []string{"repute suppression change v1", c.Time.UTC().Format(time.RFC3339Nano), c.Action,
		c.Address, c.Account, c.SenderDomain, c.List, c.EventID} {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

// SuppressionQuery selects changes of the log; the zero value selects all.
type SuppressionQuery struct {
	Address string // normalised; "" any
	Account string // the change's account; "" any
	// After, when not zero, selects the changes after (AfterTime,
	// AfterID) in (Time, ID) order: what a reader that has seen up to
	// there has not seen yet.
	AfterTime time.Time
	AfterID   string
	// Limit caps the changes given to fn; 0 is no cap.
	Limit int
	// ByLogged orders by (Logged, ID) instead of (Time, ID), and After
	// then compares (Logged, ID): a reader following the log (a webhook,
	// another repute serve) sees each change once, however late it was
	// written about however old an event. Followers may see a change that
	// was appended twice (a replay after a crash) twice; applying one is
	// idempotent, and webhook receivers dedupe on its id.
	ByLogged bool
	// LoggedBefore, when not zero, selects only changes logged before it:
	// a follower reads up to a moment a little in the past, leaving the
	// changes other writers are still committing for its next read.
	LoggedBefore time.Time
}

// SuppressionLog is the stores' log of suppression changes.
type SuppressionLog interface {
	// AppendSuppressionChanges stores changes; one whose ID is stored
	// already is left as it is.
	AppendSuppressionChanges(ctx context.Context, changes []SuppressionChange) error
	// SuppressionChanges calls fn with every stored change in (Time, ID)
	// order, stopping at fn's first error, which it returns.
	SuppressionChanges(ctx context.Context, fn func(SuppressionChange) error) error
	// FindSuppressionChanges is SuppressionChanges for the changes q
	// selects, in the same order.
	FindSuppressionChanges(ctx context.Context, q SuppressionQuery, fn func(SuppressionChange) error) error
}
