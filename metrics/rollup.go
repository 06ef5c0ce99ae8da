package metrics

import (
	"context"
	"time"
)

// RuleCounter is what a store offers the rule engine (package rules) beside
// Stats: the counts of whole UTC hours from roll-ups, so that an
// evaluation reads pre-aggregated rows instead of scanning (and, on
// ClickHouse, deduplicating with FINAL) every raw event of its windows
// (issue 13).
//
// Every count is additive: the counts of a grouping are the sums of those
// of any finer grouping, and of a window the sums of its hours. So the
// rule engine asks for its finest grouping once per window and sums it
// into the others.
//
// The counts other than opens and clicks are those of Stats over the same
// hours: every event once however often it was appended. Opens and clicks
// differ from Stats on purpose (see FirstOpens): each distinct open key
// counts once, in the hour and scope of its first open.
type RuleCounter interface {
	// RefreshRollups brings the roll-ups up to date with every Append
	// that returned before the call. It is cheap when nothing changed;
	// the rule engine calls it once per evaluation, before its
	// RuleCounts.
	RefreshRollups(ctx context.Context) error
	// RuleCounts returns the counts of the events of every account in
	// the hours RollupWindow(from, to) gives, as of the last refresh,
	// grouped by by (dimensions of RollupDims only), one Group per
	// combination of values (Key holds each dimension of by), in no
	// particular order; no totals.
	RuleCounts(ctx context.Context, from, to time.Time, by []GroupBy) ([]Group, error)
}

// FirstOpens documents how a RuleCounter counts opens and clicks; it is
// the reference model the conformance tests compare stores with.
//
// Stats counts the distinct opened messages of its range. A roll-up cannot
// do that cheaply: distinctness over a 7-day window needs every open key
// of the window at read time (measured on ClickHouse: 1.2–4.7 s per
// grouping over 10 M keys). So a roll-up counts each open key (the key of
// Stats: account, message_id and recipient, or the event for an open
// without message_id) once, in the first hour it was opened — by a person
// (OpenedHuman, an open with no verdict included), by a machine
// (OpenedMachine), with no verdict (OpenedUnverified) or clicked
// (Clicked), each on its own — and in the scope (dimensions) of that first
// open event (the earliest by time, then event id).
//
// For the rule engine's open rate this is what it wants, more so than
// Stats: the rate is over a cohort of messages delivered in a window, and
// a message is opened after it is delivered, so its first open falls in
// the window too. Stats also counts a message delivered long before the
// window that is opened again in it; first-open counting does not.
//
// A late open, earlier than the key's known first, moves the key to its
// hour: the counts stay exact, as of the last refresh.
func FirstOpens(events []Event) map[FirstOpen]Event {
	first := map[FirstOpen]Event{}
	for _, e := range events {
		for _, kind := range openKinds(&e) {
			k := FirstOpen{Kind: kind, Account: e.Account, MessageID: e.MessageID, Recipient: e.Recipient}
			if e.MessageID == "" {
				k.MessageID, k.Recipient, k.EventID = "", "", e.EventID
			}
			if f, ok := first[k]; !ok || e.Time.Before(f.Time) || (e.Time.Equal(f.Time) && e.EventID < f.EventID) {
				first[k] = e
			}
		}
	}
	return first
}

// FirstOpen is the key FirstOpens counts: which count (Kind) of which
// open key.
type FirstOpen struct {
	Kind                                   OpenKind
	Account, MessageID, Recipient, EventID string
}

// OpenKind says which of the unique counts an open or click enters.
type OpenKind uint8

// The kinds of FirstOpen, numbered as the stores' roll-ups number them.
const (
	OpenHuman      OpenKind = 1 // Counts.OpenedHuman: a person's open, or one with no verdict
	OpenMachine    OpenKind = 2 // Counts.OpenedMachine
	OpenUnverified OpenKind = 3 // Counts.OpenedUnverified: no verdict (also OpenHuman)
	OpenClick      OpenKind = 4 // Counts.Clicked
)

// openKinds returns the counts e enters, as Stats counts them.
func openKinds(e *Event) []OpenKind {
	switch {
	case e.Kind == KindClicked:
		return []OpenKind{OpenClick}
	case e.Kind != KindOpened:
		return nil
	case e.Machine == nil:
		return []OpenKind{OpenHuman, OpenUnverified}
	case *e.Machine:
		return []OpenKind{OpenMachine}
	}
	return []OpenKind{OpenHuman}
}

// RollupDims are the dimensions roll-ups keep: those of a rules.Scope.
// Time buckets (day, hour) are not among them.
var RollupDims = []GroupBy{GroupAccount, GroupSenderDomain, GroupSendingIP, GroupISP,
	GroupCampaign, GroupCategory}

// RollupWindow returns the range of event times RuleCounts(from, to)
// counts: every UTC hour that overlaps [from, to), whole, that is
// [from rounded down to the hour, to rounded up to the hour). The start
// hour is counted whole (the window is up to an hour longer than asked);
// so is the hour containing to, which for to = now is the current hour up
// to now: the latest events count. A range ending on an hour boundary
// ends there.
func RollupWindow(from, to time.Time) (start, end time.Time) {
	start = from.UTC().Truncate(time.Hour)
	end = to.UTC().Truncate(time.Hour)
	if end.Before(to) {
		end = end.Add(time.Hour)
	}
	return start, end
}
