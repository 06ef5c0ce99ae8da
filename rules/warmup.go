package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"repute/sender"
)

// Volumes reads what was sent on one day (the 24 hours from day, a day
// boundary), per scope: the sender domains ({SenderDomain}) and their
// sending IPs ({SenderDomain, SendingIP}). Other scopes are ignored.
type Volumes interface {
	Volumes(ctx context.Context, day time.Time) (map[Scope]int64, error)
}

// Warm-up defaults (WarmupConfig's zero fields).
const (
	// DefaultMaxIPMultiplier: "With several IPs the limits may rise, but
	// never beyond 5× the table" (docs/THRESHOLDS.md).
	DefaultMaxIPMultiplier = 5
	// DefaultProviderShare is the largest share of a domain's day one
	// recipient provider may take. THRESHOLDS.md asks to lower a
	// provider's share "where many recipients share one mailbox domain"
	// and names no number; product choice: half. A consumer list is
	// typically 30–60% Gmail, so half lets the largest provider take its
	// natural share while a new IP never shows one provider its whole day.
	DefaultProviderShare = 0.5
	// DefaultAdvanceShare: the day advances only when at least this share
	// of the previous day's cap was sent (product choice: a day mostly
	// unused proves nothing to the providers).
	DefaultAdvanceShare = 0.8
	// DefaultMinSendDays in DefaultIdleWindow days: "A warmed sender should
	// send a stable volume on at least 3 days a week" (THRESHOLDS.md);
	// fewer sending days in the last week step the warm-up back one day
	// per idle day.
	DefaultMinSendDays = 3
	DefaultIdleWindow  = 7
	// DefaultSkipDailyLimit is the upper limit of a skip_warmup sender:
	// "senders under 10,000/day … may skip warm-up" (THRESHOLDS.md).
	DefaultSkipDailyLimit = 10000
	// maxCatchUp bounds the completed days one Step replays (after a
	// long stop of the evaluator).
	maxCatchUp = 30
)

// WarmupConfig configures a Warmup. The zero value works.
type WarmupConfig struct {
	// Schedule gives one IP's limits on a warm-up day; nil:
	// sender.WarmupLimits (docs/THRESHOLDS.md's table).
	Schedule        func(day int) sender.Limits
	MaxIPMultiplier int     // 0: DefaultMaxIPMultiplier
	ProviderShare   float64 // (0,1]; 0: DefaultProviderShare
	AdvanceShare    float64 // (0,1]; 0: DefaultAdvanceShare
	MinSendDays     int     // 0: DefaultMinSendDays
	IdleWindow      int     // days; 0: DefaultIdleWindow
	// SkipWarmup reports whether a sender domain belongs to an account
	// with skip_warmup: no schedule, SkipDailyLimit per day. nil: none.
	SkipWarmup func(senderDomain string) bool
	// Warmed reports whether a sender domain is warm already (the
	// sender's warmed_domains: an established domain moved to repute):
	// it has no warm-up at all, no schedule and no daily cap; its rate
	// flags still pause or slow it. nil: none.
	Warmed         func(senderDomain string) bool
	SkipDailyLimit int // 0: DefaultSkipDailyLimit
	// Location puts the day boundaries (midnight); nil: UTC.
	Location *time.Location
}

func (c *WarmupConfig) defaults() error {
	if c.Schedule == nil {
		c.Schedule = sender.WarmupLimits
	}
	if c.MaxIPMultiplier == 0 {
		c.MaxIPMultiplier = DefaultMaxIPMultiplier
	}
	if c.ProviderShare == 0 {
		c.ProviderShare = DefaultProviderShare
	}
	if c.AdvanceShare == 0 {
		c.AdvanceShare = DefaultAdvanceShare
	}
	if c.MinSendDays == 0 {
		c.MinSendDays = DefaultMinSendDays
	}
	if c.IdleWindow == 0 {
		c.IdleWindow = DefaultIdleWindow
	}
	if c.SkipDailyLimit == 0 {
		c.SkipDailyLimit = DefaultSkipDailyLimit
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	switch {
	case c.MaxIPMultiplier < 1:
		return errors.New("rules: warm-up max IP multiplier must be ≥ 1")
	case c.ProviderShare < 0 || c.ProviderShare > 1:
		return errors.New("rules: warm-up provider share must be in (0,1]")
	case c.AdvanceShare < 0 || c.AdvanceShare > 1:
		return errors.New("rules: warm-up advance share must be in (0,1]")
	case c.IdleWindow < 1 || c.MinSendDays < 0 || c.MinSendDays > c.IdleWindow:
		return fmt.Errorf("rules: warm-up needs 0 ≤ min send days (%d) ≤ idle window (%d)", c.MinSendDays, c.IdleWindow)
	case c.SkipDailyLimit < 0:
		return errors.New("rules: skip_warmup daily limit must be ≥ 0")
	}
	return nil
}

// WarmupState is the warm-up of one scope: a sender domain
// ({SenderDomain}) or one of its sending IPs ({SenderDomain, SendingIP}).
type WarmupState struct {
	Scope Scope
	Day   int // the warm-up day, ≥ 1
	// LastAdvanced is the day boundary at which Day last changed (or the
	// state began).
	LastAdvanced time.Time
	DaysSent     int // days with at least one send
	// Recent says, for the last IdleWindow completed days (oldest first),
	// whether the scope sent.
	Recent []bool
	// Action is what the last day boundary did: advance, hold or
	// step_back (hold for a new state); Why is the reason behind it.
	Action Action
	Why    Reason
	// IPs is, for a domain, how many of its IPs sent in the idle window
	// (the multiplier of its limits, up to MaxIPMultiplier).
	IPs  int
	Skip bool // skip_warmup: no schedule, SkipDailyLimit
	// Limits are the scope's limits on Day (for a domain, times its IPs).
	Limits sender.Limits
}

// Reason is one input of a decision.
type Reason struct {
	Rule      string  `json:"rule"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Sample    int64   `json:"sample"`
	Window    string  `json:"window"`
}

// Rules of the warm-up's own reasons.
const (
	RuleWarmupSent = "warmup_sent" // the day's volume against the share of its cap that advances
	RuleWarmupIdle = "warmup_idle" // sending days in the idle window against MinSendDays
	RuleWarmupNew  = "warmup_new"  // a scope's first day
	RuleSkipWarmup = "skip_warmup" // an account that skips warm-up
)

// Warmup keeps the warm-up of every sender domain and sending IP, moved
// one day at a time by Step at day boundaries:
//
//   - a pause flag holds the day (the Decider pauses the scope at once);
//   - a critical flag steps back one day (never below 1);
//   - fewer than MinSendDays sending days in the last IdleWindow steps back
//     one day (idling loses reputation; judged once the scope is
//     IdleWindow days old);
//   - a warning holds;
//   - otherwise the day advances when the day just ended sent at least
//     AdvanceShare of its cap, and holds when not.
//
// Flags that apply to a scope are rate flags (no Action) of the same
// sender domain whose sending IP is the scope's or unset; an IP's flag
// also applies to its domain (the domain's volume includes it).
// Response-pattern flags are the Decider's. Warmup is safe for concurrent
// use.
type Warmup struct {
	cfg WarmupConfig
	vol Volumes

	mu     sync.Mutex
	last   time.Time // the last completed day processed
	states map[Scope]*WarmupState
}

// NewWarmup returns a Warmup reading volumes from vol.
func NewWarmup(cfg WarmupConfig, vol Volumes) (*Warmup, error) {
	if vol == nil {
		return nil, errors.New("rules: warm-up needs Volumes")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Warmup{cfg: cfg, vol: vol, states: map[Scope]*WarmupState{}}, nil
}

// dayStart is the day boundary at or before t.
func (w *Warmup) dayStart(t time.Time) time.Time {
	t = t.In(w.cfg.Location)
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, w.cfg.Location)
}

// NextDay is the day boundary after t.
func (w *Warmup) NextDay(t time.Time) time.Time {
	s := w.dayStart(t)
	y, m, d := s.Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, w.cfg.Location)
}

func (w *Warmup) addDays(day time.Time, n int) time.Time {
	y, m, d := day.Date()
	return time.Date(y, m, d+n, 0, 0, 0, 0, w.cfg.Location)
}

// Step brings the warm-up up to now: each day completed since the last
// Step (at most 30; on the first Step, yesterday) is judged with flags
// (the flags active now), then the scopes sending today that have no
// state yet start at day 1.
func (w *Warmup) Step(ctx context.Context, now time.Time, flags []Flag) error {
	today := w.dayStart(now)
	w.mu.Lock()
	last := w.last
	w.mu.Unlock()
	first := w.addDays(today, -1)
	if !last.IsZero() {
		first = w.addDays(last, 1)
		if limit := w.addDays(today, -maxCatchUp); first.Before(limit) {
			first = limit
		}
	}
	for d := first; d.Before(today); d = w.addDays(d, 1) {
		vols, err := w.vol.Volumes(ctx, d)
		if err != nil {
			return fmt.Errorf("rules: warm-up volumes of %s: %w", d.Format(time.DateOnly), err)
		}
		w.mu.Lock()
		w.judgeDay(d, vols, flags)
		w.last = d
		w.mu.Unlock()
	}
	vols, err := w.vol.Volumes(ctx, today)
	if err != nil {
		return fmt.Errorf("rules: warm-up volumes of %s: %w", today.Format(time.DateOnly), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for s, n := range vols {
		if n > 0 && warmupScope(s) && (w.cfg.Warmed == nil || !w.cfg.Warmed(s.SenderDomain)) {
			w.state(s, today)
		}
	}
	w.refreshLimits()
	return nil
}

// warmupScope reports whether s is a scope the warm-up keeps.
func warmupScope(s Scope) bool {
	return s.SenderDomain != "" && s.ISP == "" && s.Account == "" && s.Campaign == "" && s.Category == ""
}

func (w *Warmup) state(s Scope, day time.Time) *WarmupState {
	st := w.states[s]
	if st == nil {
		st = &WarmupState{Scope: s, Day: 1, LastAdvanced: day, Action: ActionHold,
			Why: Reason{Rule: RuleWarmupNew, Window: "1d"}}
		w.states[s] = st
	}
	return st
}

// judgeDay moves every state at the end of day d, which sent vols.
func (w *Warmup) judgeDay(d time.Time, vols map[Scope]int64, flags []Flag) {
	for s, n := range vols {
		if n > 0 && warmupScope(s) {
			w.state(s, d)
		}
	}
	w.refreshLimits() // the caps of day d, with d's IPs
	next := w.addDays(d, 1)
	rate := byDomain(flags)
	for s, st := range w.states {
		sent := vols[s]
		st.Recent = append(st.Recent, sent > 0)
		if len(st.Recent) > w.cfg.IdleWindow {
			st.Recent = st.Recent[len(st.Recent)-w.cfg.IdleWindow:]
		}
		if sent > 0 {
			st.DaysSent++
		}
		sendDays := 0
		for _, b := range st.Recent {
			if b {
				sendDays++
			}
		}
		sev, worst := worstFlag(s, rate[s.SenderDomain])
		switch {
		case st.Skip:
			st.Action = ActionHold
			st.Why = Reason{Rule: RuleSkipWarmup, Value: float64(sent), Threshold: float64(w.cfg.SkipDailyLimit), Sample: sent, Window: "1d"}
		case sev == SeverityPause:
			st.Action, st.Why = ActionHold, flagReason(worst)
		case sev == SeverityCritical:
			w.stepBack(st, next)
			st.Why = flagReason(worst)
		case len(st.Recent) == w.cfg.IdleWindow && sendDays < w.cfg.MinSendDays && sent == 0:
			w.stepBack(st, next)
			st.Why = Reason{Rule: RuleWarmupIdle, Value: float64(sendDays), Threshold: float64(w.cfg.MinSendDays),
				Sample: int64(len(st.Recent)), Window: fmt.Sprintf("%dd", w.cfg.IdleWindow)}
		case sev == SeverityWarning:
			st.Action, st.Why = ActionHold, flagReason(worst)
		default:
			need := int64(math.Ceil(w.cfg.AdvanceShare * float64(st.Limits.PerDay)))
			st.Why = Reason{Rule: RuleWarmupSent, Value: float64(sent), Threshold: float64(need), Sample: sent, Window: "1d"}
			if sent > 0 && sent >= need {
				st.Day++
				st.LastAdvanced = next
				st.Action = ActionAdvance
			} else {
				st.Action = ActionHold
			}
		}
	}
}

func (w *Warmup) stepBack(st *WarmupState, next time.Time) {
	st.Action = ActionStepBack
	if st.Day > 1 {
		st.Day--
		st.LastAdvanced = next
	}
}

// worstFlag returns the highest severity of the rate flags that apply to
// s, and that flag.
func worstFlag(s Scope, flags []Flag) (Severity, Flag) {
	var best Flag
	rank := -1
	for _, f := range flags {
		if !flagApplies(f, s) {
			continue
		}
		if r := severityRank(f.Severity); r > rank {
			rank, best = r, f
		}
	}
	if rank < 0 {
		return "", Flag{}
	}
	return best.Severity, best
}

// byDomain indexes the rate flags (no Action) by sender domain.
func byDomain(flags []Flag) map[string][]Flag {
	m := map[string][]Flag{}
	for _, f := range flags {
		if f.Action == "" && f.Scope.SenderDomain != "" {
			m[f.Scope.SenderDomain] = append(m[f.Scope.SenderDomain], f)
		}
	}
	return m
}

func flagApplies(f Flag, s Scope) bool {
	if f.Action != "" || f.Scope.SenderDomain != s.SenderDomain {
		return false
	}
	return s.SendingIP == "" || f.Scope.SendingIP == "" || f.Scope.SendingIP == s.SendingIP
}

func flagReason(f Flag) Reason {
	return Reason{Rule: f.Rule, Value: f.Value, Threshold: f.Threshold, Sample: f.Sample, Window: f.Window}
}

// refreshLimits recomputes every state's limits (a domain's IP count may
// have changed).
func (w *Warmup) refreshLimits() {
	ips := map[string]int{}
	for s, st := range w.states {
		if s.SendingIP == "" {
			continue
		}
		recent := len(st.Recent) == 0 // a new IP sends today
		for _, b := range st.Recent {
			recent = recent || b
		}
		if recent {
			ips[s.SenderDomain]++
		}
	}
	for s, st := range w.states {
		st.Skip = w.cfg.SkipWarmup != nil && w.cfg.SkipWarmup(s.SenderDomain)
		if st.Skip {
			st.Limits = sender.Limits{PerDay: w.cfg.SkipDailyLimit}
			continue
		}
		l := w.cfg.Schedule(st.Day)
		if s.SendingIP == "" {
			st.IPs = ips[s.SenderDomain]
			m := min(max(st.IPs, 1), w.cfg.MaxIPMultiplier)
			l = sender.Limits{PerDay: l.PerDay * m, PerHour: l.PerHour * m, PerMinute: l.PerMinute * m,
				Connections: l.Connections}
		}
		st.Limits = l
	}
}

// States returns a copy of every state, domains before their IPs, sorted.
func (w *Warmup) States() []WarmupState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WarmupState, 0, len(w.states))
	for _, st := range w.states {
		c := *st
		c.Recent = append([]bool(nil), st.Recent...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Scope, out[j].Scope
		if a.SenderDomain != b.SenderDomain {
			return a.SenderDomain < b.SenderDomain
		}
		return a.SendingIP < b.SendingIP
	})
	return out
}

// State returns the state of s.
func (w *Warmup) State(s Scope) (WarmupState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.states[s]
	if !ok {
		return WarmupState{}, false
	}
	c := *st
	c.Recent = append([]bool(nil), st.Recent...)
	return c, true
}

// ProviderLimits are the limits of one recipient provider within a domain
// whose limits are l: ProviderShare of each (rounded up; 0 stays 0).
func (w *Warmup) ProviderLimits(l sender.Limits) sender.Limits {
	f := func(n int) int {
		if n == 0 {
			return 0
		}
		return int(math.Ceil(w.cfg.ProviderShare * float64(n)))
	}
	return sender.Limits{PerDay: f(l.PerDay), PerHour: f(l.PerHour), PerMinute: f(l.PerMinute)}
}

// WarmupSnapshot is everything a Warmup knows, for keeping it across
// restarts (cmd writes it to the data directory; without it a restart
// starts every scope over at day 1, the strictest reading).
type WarmupSnapshot struct {
	// Last is the last completed day judged; zero: none.
	Last   time.Time     `json:"last"`
	States []WarmupState `json:"states"`
}

// Snapshot returns the warm-up's state.
func (w *Warmup) Snapshot() WarmupSnapshot {
	states := w.States()
	w.mu.Lock()
	defer w.mu.Unlock()
	return WarmupSnapshot{Last: w.last, States: states}
}

// Restore replaces the warm-up's state with s (taken by Snapshot): the
// next Step judges the days completed since s.Last.
func (w *Warmup) Restore(s WarmupSnapshot) error {
	states := make(map[Scope]*WarmupState, len(s.States))
	for i := range s.States {
		st := s.States[i]
		if !warmupScope(st.Scope) || st.Day < 1 {
			return fmt.Errorf("rules: warm-up snapshot: bad state %+v", st.Scope)
		}
		if _, dup := states[st.Scope]; dup {
			return fmt.Errorf("rules: warm-up snapshot: %+v twice", st.Scope)
		}
		st.Recent = append([]bool(nil), st.Recent...)
		states[st.Scope] = &st
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.states = states
	w.last = s.Last
	if !w.last.IsZero() {
		w.last = w.dayStart(w.last)
	}
	w.refreshLimits()
	return nil
}
