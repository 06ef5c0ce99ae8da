package metrics

import (
	"context"
	"time"
)

// RuleCounter is what a store offers the rule engine (package rules) beside
// Stats: the counts of whole UTC hours from roll-ups kept per hour, so that
// an evaluation reads pre-aggregated rows instead of scanning (and, on
// ClickHouse, deduplicating with FINAL) every raw event of its windows
// (issue 13).
//
// The counts follow Counts exactly, as Stats would give them over the same
// hours: every event once however often it was appended, opens and clicks
// unique per (account, message_id, recipient) over the whole range asked —
// not summed per hour, which would count a message opened in two hours
// twice. What differs from Stats is only the range: see RollupWindow.
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
	// particular order; no totals. With WithoutOpens the unique counts
	// (OpenedHuman, OpenedMachine, OpenedUnverified, Clicked) are zero
	// and every other count is what WithOpens gives; a group that has
	// only opens or clicks is then absent.
	RuleCounts(ctx context.Context, from, to time.Time, by []GroupBy, opens Opens) ([]Group, error)
}

// Opens says whether RuleCounts counts the unique opens and clicks. They
// are the costly part: the roll-ups keep one row per open key and hour,
// to count them unique over the window, against one row per scope and
// hour for the other counts, so a rule whose rate needs no opens (a
// bounce or complaint rate, or a min_age rule's sent and delivered) asks
// WithoutOpens.
type Opens bool

// The values of Opens.
const (
	WithoutOpens Opens = false
	WithOpens    Opens = true
)

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
