package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

// StoredDecision is a throttle decision of the rule engine (package rules,
// issue 13) as the stores keep it for the dashboards: the decision's fields
// flat, its reasons as the JSON array the API serves. A decision keeps its
// ID while nothing in its scope changes; Seq numbers each issue of it, so
// (ID, Seq) identifies a stored decision: appending one again, as a replay
// after a crash does, changes nothing.
type StoredDecision struct {
	ID        string
	Seq       int64
	IssuedAt  time.Time
	ExpiresAt time.Time // zero: no end (a pause until its flag clears)
	// The scope; "" is "all".
	SenderDomain string
	SendingIP    string
	ISP          string
	Action       string // advance, hold, slow, step_back, pause, resume
	WarmupDay    int
	DailyLimit   int
	HourlyLimit  int
	// MinuteLimit and MaxConnections are nil when unset (null in the API).
	MinuteLimit    *int
	MaxConnections *int
	Source         string // rule or operator
	Reasons        string // JSON: [{"rule", "value", "threshold", "sample", "window"}, …]
}

// StoredFlagChange is a flag of the rule engine raised or cleared, as the
// stores keep it for the dashboards.
type StoredFlagChange struct {
	// ID identifies the change (FlagChangeID): storing it again changes
	// nothing.
	ID   string
	Time time.Time // when it was raised or cleared
	Rule string
	// The scope; empty fields are not part of it.
	Account      string
	SenderDomain string
	SendingIP    string
	ISP          string
	Campaign     string
	Category     string
	Severity     string // info, warning, critical, pause
	Value        float64
	Threshold    float64
	Sample       int64
	Window       string // e.g. "7d", "24h-7d"
	Raised       bool   // raised (true) or cleared (false)
}

// FlagChangeID is the id of a flag change: the first 16 bytes, in hex, of
// SHA-256 over a label and the fields that make it what it is (its time to
// the nanosecond, rule, scope, severity and whether it was raised), each
// length-prefixed.
func FlagChangeID(c StoredFlagChange) string {
	buf := make([]byte, 0, 160)
	for _, v := range []string{"repute flag change v1", c.Time.UTC().Format(time.RFC3339Nano), c.Rule,
		c.Account, c.SenderDomain, c.SendingIP, c.ISP, c.Campaign, c.Category, c.Severity,
		strconv.FormatBool(c.Raised)} {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

// DecisionQuery selects stored decisions; the zero value selects all.
type DecisionQuery struct {
	// From (inclusive) and To (exclusive) bound IssuedAt; a zero bound is
	// open.
	From, To     time.Time
	SenderDomain string // exact; "" any
	// AfterSeq selects the decisions with Seq > AfterSeq (0: all): what
	// a follower has not read yet.
	AfterSeq int64
	// Limit caps the decisions returned (the oldest first); 0 is no cap.
	Limit int
}

// FlagChangeQuery selects stored flag changes; the zero value selects all.
type FlagChangeQuery struct {
	// From (inclusive) and To (exclusive) bound Time; a zero bound is
	// open.
	From, To     time.Time
	SenderDomain string // exact; "" any
	// Limit caps the changes returned (the oldest first); 0 is no cap.
	Limit int
}

// RulesHistory is the stores' history of the rule engine's decisions and
// flag changes (issue 13: "the history of flags and decisions is stored,
// for the dashboards"). A decision's (ID, Seq) determines its IssuedAt and
// its scope, and a flag change's ID its Time and scope (the ClickHouse
// store collapses repeated appends on them at read time).
type RulesHistory interface {
	// AppendDecisions stores decisions; one whose (ID, Seq) is stored
	// already is left as it is (the first stored wins).
	AppendDecisions(ctx context.Context, ds []StoredDecision) error
	// Decisions returns the stored decisions q selects in (IssuedAt, Seq,
	// ID) order.
	Decisions(ctx context.Context, q DecisionQuery) ([]StoredDecision, error)
	// AppendFlagChanges stores flag changes; one whose ID is stored
	// already is left as it is (the first stored wins).
	AppendFlagChanges(ctx context.Context, cs []StoredFlagChange) error
	// FlagChanges returns the stored flag changes q selects in (Time, ID)
	// order.
	FlagChanges(ctx context.Context, q FlagChangeQuery) ([]StoredFlagChange, error)
}

// StoredOperatorAction is an operator's cancel or override of the rule
// engine (POST /v1/decisions/{id}/cancel, POST /v1/overrides): the audit of
// who did what and why, and, for an action taken on a process that does
// not evaluate, the request the evaluating process applies. Decision is
// the JSON of the decision the action issues (its ID is DecisionID), so
// that the evaluator issues the very decision the operator was answered
// with.
type StoredOperatorAction struct {
	ID         string // unique: storing it again changes nothing
	Time       time.Time
	Who        string // "admin", or the account
	Action     string // cancel or override
	DecisionID string // the decision the action issues
	Target     string // the cancelled decision's id ("" for an override)
	// The scope of the decision.
	SenderDomain string
	SendingIP    string
	ISP          string
	Reason       string
	Decision     string // JSON of the decision issued (package rules' Decision)
}

// RulesState is what the rule engine keeps in the store besides its
// history, so that several processes share one engine (issue 13: "one
// evaluates at a time (a lease in the store) and all serve the same
// decisions") and a restart keeps the warm-up: the evaluator's state
// (opaque JSON: the warm-up, the active flags, the current decisions) and
// the operators' actions.
type RulesState interface {
	// SaveRulesState stores the engine's state at version (the
	// evaluator's clock in Unix nanoseconds at the end of a cycle): the
	// highest version stored wins, whatever the order of the saves.
	SaveRulesState(ctx context.Context, version int64, state []byte) error
	// LoadRulesState returns the state of the highest version (version 0
	// and nil when none is stored).
	LoadRulesState(ctx context.Context) (version int64, state []byte, err error)
	// AppendOperatorActions stores actions; one whose ID is stored
	// already is left as it is.
	AppendOperatorActions(ctx context.Context, as []StoredOperatorAction) error
	// OperatorActions returns the actions with Time ≥ from (zero: all),
	// in (Time, ID) order.
	OperatorActions(ctx context.Context, from time.Time) ([]StoredOperatorAction, error)
}
