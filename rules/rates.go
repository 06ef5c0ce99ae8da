package rules

import (
	"context"
	"fmt"
	"slices"
	"time"

	"repute/metrics"
)

// Rates of one scope over one window, computed from metrics.Counts. A
// rate whose denominator is zero is 0; Sample says how much it rests on,
// and rules ignore a rate under their min_sample.
//
// Denominators (docs/THRESHOLDS.md):
//   - HardBounceRate = bounced_hard / sent. AWS SES's bounce rate is over
//     the mail sent; a hard bounce may come back without a delivered event.
//   - ComplaintRate = complained / delivered. Gmail's and Yahoo's spam rate
//     (0.1% / 0.3%) is over mail delivered to the inbox; we cannot see the
//     folder, so all delivered mail is the denominator — which understates
//     the providers' own figure when much lands in spam (and so do the
//     thresholds, which is why the warning sits at 0.1%).
//   - HumanOpenRate = unique human opens / delivered. Human opens are the
//     opens not known to be a machine's (metrics.Counts.OpenedHuman, which
//     counts an open with no verdict as human); machine opens never enter it.
//   - MachineOpenShare = machine opens / (human + machine opens).
//   - DeferralRate = deferred events / sent: every retry is an event, so it
//     can exceed 1 (it measures resistance, not lost mail).
//   - UnsubscribeRate = unsubscribed / delivered.
type Rates struct {
	Delivered, Sent  int64
	HardBounceRate   float64
	ComplaintRate    float64
	HumanOpenRate    float64
	MachineOpenShare float64
	DeferralRate     float64
	UnsubscribeRate  float64
	// Counts the rates come from.
	Counts metrics.Counts
}

// Rate names, as rules files write them.
const (
	RateHardBounce       = "hard_bounce_rate"
	RateComplaint        = "complaint_rate"
	RateHumanOpen        = "human_open_rate"
	RateMachineOpenShare = "machine_open_share"
	RateDeferral         = "deferral_rate"
	RateUnsubscribe      = "unsubscribe_rate"
)

// RateNames lists the rates a rule may name.
var RateNames = []string{RateHardBounce, RateComplaint, RateHumanOpen, RateMachineOpenShare,
	RateDeferral, RateUnsubscribe}

// RatesOf computes the rates of c.
func RatesOf(c metrics.Counts) Rates {
	return Rates{
		Delivered:        c.Delivered,
		Sent:             c.Sent,
		HardBounceRate:   frac(c.BouncedHard, c.Sent),
		ComplaintRate:    frac(c.Complained, c.Delivered),
		HumanOpenRate:    frac(c.OpenedHuman, c.Delivered),
		MachineOpenShare: frac(c.OpenedMachine, c.OpenedHuman+c.OpenedMachine),
		DeferralRate:     frac(c.Deferred, c.Sent),
		UnsubscribeRate:  frac(c.Unsubscribed, c.Delivered),
		Counts:           c,
	}
}

// Value returns the rate a rule names and its sample (the denominator).
func (r Rates) Value(name string) (value float64, sample int64) {
	c := r.Counts
	switch name {
	case RateHardBounce:
		return r.HardBounceRate, c.Sent
	case RateComplaint:
		return r.ComplaintRate, c.Delivered
	case RateHumanOpen:
		return r.HumanOpenRate, c.Delivered
	case RateMachineOpenShare:
		return r.MachineOpenShare, c.OpenedHuman + c.OpenedMachine
	case RateDeferral:
		return r.DeferralRate, c.Sent
	case RateUnsubscribe:
		return r.UnsubscribeRate, c.Delivered
	}
	return 0, 0
}

func frac(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// Source gives the event counts per scope of events with from <= time <
// to, grouped by the dimensions by (of account, sender_domain, sending_ip,
// isp, campaign, category); each Scope has those fields set.
type Source interface {
	Counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error)
}

// StatsSource is a Source over the store's statistics (every account).
type StatsSource struct {
	Stats metrics.StatsReader
}

var _ Source = StatsSource{}

// Counts implements Source with one StatsQuery.
func (s StatsSource) Counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	for _, g := range by {
		if !slices.Contains(scopeDims, g) {
			return nil, fmt.Errorf("rules: cannot group a scope by %q", g)
		}
	}
	res, err := s.Stats.Stats(ctx, metrics.StatsQuery{From: from, To: to, GroupBy: by})
	if err != nil {
		return nil, fmt.Errorf("rules: counts: %w", err)
	}
	out := make(map[Scope]metrics.Counts, len(res.Groups))
	for _, g := range res.Groups {
		var sc Scope
		for _, d := range by {
			setScope(&sc, d, g.Key[d])
		}
		out[sc] = addCounts(out[sc], g.Counts)
	}
	return out, nil
}

func addCounts(a, b metrics.Counts) metrics.Counts {
	a.Sent += b.Sent
	a.Delivered += b.Delivered
	a.Deferred += b.Deferred
	a.BouncedHard += b.BouncedHard
	a.BouncedSoft += b.BouncedSoft
	a.Complained += b.Complained
	a.OpenedHuman += b.OpenedHuman
	a.OpenedMachine += b.OpenedMachine
	a.OpenedUnverified += b.OpenedUnverified
	a.Clicked += b.Clicked
	a.Unsubscribed += b.Unsubscribed
	a.Dropped += b.Dropped
	return a
}
