package sender

import (
	"context"
	"fmt"
	"time"

	"repute/metrics"
)

// FirstSentLookback is how far back StoreHistory looks for a domain's
// first send. A domain whose first send is older than that is taken as
// having first sent FirstSentLookback ago (warm-up day 61 and on, where
// the schedule no longer limits anything in practice). A domain that has
// sent nothing for that long starts over at day 1: idling loses
// reputation (docs/THRESHOLDS.md).
const FirstSentLookback = 60 * 24 * time.Hour

// StoreHistory implements History over the store's statistics, so that
// every process sending for a domain sees what all of them sent. Each
// call is one StatsQuery over all accounts (a sender domain's limits hold
// whichever account sends for it).
type StoreHistory struct {
	Stats metrics.StatsReader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ History = StoreHistory{}

func (h StoreHistory) clock() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// FirstSent implements History: the earliest UTC day in the last
// FirstSentLookback with a sent event for senderDomain, then the
// earliest hour of that day. The time returned is the end of that hour,
// so the domain's warm-up day may turn up to an hour late, never early
// (a process that made the first send itself knows the exact time and
// keeps the earlier one).
func (h StoreHistory) FirstSent(ctx context.Context, senderDomain string) (time.Time, bool, error) {
	now := h.clock()
	from := now.Add(-FirstSentLookback)
	day, ok, err := h.earliest(ctx, senderDomain, from, now, metrics.GroupDay)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	if day.Before(from) {
		// the bucket began before the lookback: sent then, or earlier
		return from, true, nil
	}
	hr, ok, err := h.earliest(ctx, senderDomain, day, paceEarlier(day.Add(24*time.Hour), now), metrics.GroupHour)
	if err != nil {
		return time.Time{}, false, err
	}
	if !ok { // deleted in between: keep the day's start
		return day, true, nil
	}
	return paceEarlier(hr.Add(time.Hour), now), true, nil
}

// earliest returns the start of the first bucket (grouped by by) in
// [from, to) in which senderDomain has a sent event.
func (h StoreHistory) earliest(ctx context.Context, senderDomain string, from, to time.Time, by metrics.GroupBy) (time.Time, bool, error) {
	r, err := h.Stats.Stats(ctx, metrics.StatsQuery{From: from, To: to,
		GroupBy: []metrics.GroupBy{metrics.GroupSenderDomain, by}})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sender: first send of %s: %w", senderDomain, err)
	}
	var first time.Time
	for _, g := range r.Groups {
		if g.Key[metrics.GroupSenderDomain] != senderDomain || g.Sent == 0 {
			continue
		}
		t, err := time.Parse(time.RFC3339, g.Key[by])
		if err != nil {
			return time.Time{}, false, fmt.Errorf("sender: first send of %s: %s bucket %q: %w",
				senderDomain, by, g.Key[by], err)
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero(), nil
}

// Sent implements History: senderDomain's sent events in [since, now).
func (h StoreHistory) Sent(ctx context.Context, senderDomain string, since time.Time) (int64, error) {
	r, err := h.Stats.Stats(ctx, metrics.StatsQuery{From: since, To: h.clock(),
		GroupBy: []metrics.GroupBy{metrics.GroupSenderDomain}})
	if err != nil {
		return 0, fmt.Errorf("sender: sent by %s since %s: %w", senderDomain, since.Format(time.RFC3339), err)
	}
	for _, g := range r.Groups {
		if g.Key[metrics.GroupSenderDomain] == senderDomain {
			return g.Sent, nil
		}
	}
	return 0, nil
}

func paceEarlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
