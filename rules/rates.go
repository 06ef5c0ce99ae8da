package rules

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
// isp, campaign, category); each Scope has those fields set. A Source over
// hourly roll-ups (RollupSource) widens [from, to) to whole UTC hours and
// counts each opened message in the hour of its first open.
type Source interface {
	Counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error)
}

// AdditiveSource is a Source whose counts are additive across scopes: the
// counts of a grouping are the sums of those of any finer grouping, opens
// included. The engine then reads each window once, by the finest
// grouping its rules need, and sums it into the others. RollupSource is
// additive; StatsSource is not (its unique opens are unique per group: a
// message opened by events of two scopes counts once in their union).
type AdditiveSource interface {
	Source
	Additive()
}

// NewSource returns the Source the rule engine should use over a store:
// its roll-ups when it keeps them (metrics.RuleCounter), else its
// statistics over the raw events.
func NewSource(stats metrics.StatsReader) Source {
	if rc, ok := stats.(metrics.RuleCounter); ok {
		return &RollupSource{Counter: rc}
	}
	return StatsSource{Stats: stats}
}

// StatsSource is a Source over the store's statistics (every account): one
// query over the raw events per window and grouping, exact to the second.
type StatsSource struct {
	Stats metrics.StatsReader
}

var _ Source = StatsSource{}

// Counts implements Source with one StatsQuery.
func (s StatsSource) Counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	if err := checkScopeDims(by); err != nil {
		return nil, err
	}
	res, err := s.Stats.Stats(ctx, metrics.StatsQuery{From: from, To: to, GroupBy: by})
	if err != nil {
		return nil, fmt.Errorf("rules: counts: %w", err)
	}
	return scopeCounts(res.Groups, by), nil
}

func checkScopeDims(by []metrics.GroupBy) error {
	for _, g := range by {
		if !slices.Contains(scopeDims, g) {
			return fmt.Errorf("rules: cannot group a scope by %q", g)
		}
	}
	return nil
}

func scopeCounts(groups []metrics.Group, by []metrics.GroupBy) map[Scope]metrics.Counts {
	out := make(map[Scope]metrics.Counts, len(groups))
	for _, g := range groups {
		var sc Scope
		for _, d := range by {
			setScope(&sc, d, g.Key[d])
		}
		out[sc] = out[sc].Plus(g.Counts)
	}
	return out
}

// RollupSource is a Source over the store's hourly roll-ups (issue 13: an
// evaluation over 50 million events reads pre-aggregated rows, not the raw
// events). The counts are those of Stats over whole UTC hours: every hour
// that overlaps [from, to) counts whole (metrics.RollupWindow). So the
// start of a window reaches back to the start of its hour (a 7d window is
// 7 days and up to an hour), the current hour counts up to now, and with
// min_age the deliveries run to the end of the hour holding now-min_age
// (up to an hour more of them). Each opened (clicked) message counts once,
// in the hour of its first open (metrics.FirstOpens): a message delivered
// before the window and opened again in it does not lift its open rate.
//
// Freshness: before answering a window that ends after the start of its
// last refresh, it refreshes the roll-ups (metrics.RuleCounter), so one
// evaluation at now refreshes once, before it reads a window ending at
// now, which sees every event appended before the evaluation began; its
// other windows (and evaluations of past times, as a backtest makes)
// reuse that refresh. The engine reads its windows concurrently, so a
// window ending before the last refresh began may be read while a
// refresh runs: each hour as of one refresh or the other.
type RollupSource struct {
	Counter metrics.RuleCounter

	mu        sync.Mutex
	refreshed time.Time // when the last refresh began, or the window end that asked for it if later
}

var _ AdditiveSource = (*RollupSource)(nil)

// Additive marks RollupSource as an AdditiveSource: every count of a
// roll-up is additive (metrics.RuleCounter).
func (*RollupSource) Additive() {}

// Counts implements Source with one RuleCounts, after a refresh when the
// window ends after the last one began.
func (s *RollupSource) Counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	if err := checkScopeDims(by); err != nil {
		return nil, err
	}
	if err := s.refresh(ctx, to); err != nil {
		return nil, err
	}
	groups, err := s.Counter.RuleCounts(ctx, from, to, by)
	if err != nil {
		return nil, fmt.Errorf("rules: counts: %w", err)
	}
	return scopeCounts(groups, by), nil
}

// refresh refreshes the roll-ups unless a refresh began at or after to.
func (s *RollupSource) refresh(ctx context.Context, to time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !to.After(s.refreshed) {
		return nil
	}
	began := time.Now()
	if err := s.Counter.RefreshRollups(ctx); err != nil {
		return fmt.Errorf("rules: refresh roll-ups: %w", err)
	}
	// An evaluation whose now is ahead of this clock refreshes once too.
	s.refreshed = began
	if to.After(began) {
		s.refreshed = to
	}
	return nil
}
