package rules

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"repute/sender"
)

// DecisionScope is the scope of a decision, as issue 13 pins it: every
// field present, "" for "all".
type DecisionScope struct {
	SenderDomain string `json:"sender_domain"`
	SendingIP    string `json:"sending_ip"`
	ISP          string `json:"isp"`
}

func (s DecisionScope) String() string {
	return s.SenderDomain + "/" + s.SendingIP + "/" + s.ISP
}

// Decision sources.
const (
	SourceRule     = "rule"
	SourceOperator = "operator"
)

// Decision tells the senders how fast one scope may go. Its JSON is the
// shape issue 13 pins. A zero limit is "no limit of this kind" (a pause
// has none: it stops everything); MinuteLimit and MaxConnections are null
// when unset, ExpiresAt is null for a decision without an end (a pause
// until its flag clears).
type Decision struct {
	ID             string        `json:"id"`
	Scope          DecisionScope `json:"scope"`
	Action         Action        `json:"action"`
	WarmupDay      int           `json:"warmup_day"`
	DailyLimit     int           `json:"daily_limit"`
	HourlyLimit    int           `json:"hourly_limit"`
	MinuteLimit    *int          `json:"minute_limit"`
	MaxConnections *int          `json:"max_connections"`
	Reasons        []Reason      `json:"reasons"`
	IssuedAt       time.Time     `json:"issued_at"`
	ExpiresAt      *time.Time    `json:"expires_at"`
	Source         string        `json:"source"`
	// Seq is the decision's place in the history (the SSE id).
	Seq int64 `json:"-"`
}

// expired reports whether d no longer holds at now.
func (d *Decision) expired(now time.Time) bool {
	return d.ExpiresAt != nil && !now.Before(*d.ExpiresAt)
}

// fingerprint is what makes two decisions the same decision: everything
// but the id, the time of issue and the reasons' changing values.
func (d *Decision) fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%d|%d|%d|%s", d.Scope, d.Action, d.WarmupDay, d.DailyLimit, d.HourlyLimit, d.Source)
	for _, p := range []*int{d.MinuteLimit, d.MaxConnections} {
		if p == nil {
			b.WriteString("|-")
		} else {
			fmt.Fprintf(&b, "|%d", *p)
		}
	}
	if d.ExpiresAt != nil {
		fmt.Fprintf(&b, "|%d", d.ExpiresAt.UnixNano())
	}
	for _, r := range d.Reasons {
		b.WriteString("|" + r.Rule)
	}
	return b.String()
}

func intp(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// Pacer is what decisions are applied to: the built-in sender's
// sender.WarmupPacer.
type Pacer interface {
	SetOverride(scope sender.Scope, o sender.Override)
	ClearOverride(scope sender.Scope)
}

var _ Pacer = (*sender.WarmupPacer)(nil)

// DefaultProviders are the recipient providers whose share of a domain's
// day is set on the pacer (metrics' ISP map names).
var DefaultProviders = []string{"gmail", "microsoft", "yahoo", "apple", "tencent", "netease"}

// DefaultResumeFor is how long a resume decision stands before the
// scope's ordinary decision takes over.
const DefaultResumeFor = time.Hour

// DeciderOptions configure a Decider.
type DeciderOptions struct {
	Warmup *Warmup      // required
	Store  *MemoryStore // nil: a new MemoryStore
	// Shared is the store the processes share (see Shared); nil: this
	// process decides alone, in memory.
	Shared Shared
	Pacer  Pacer        // nil: decisions are not applied to a pacer
	Logger *slog.Logger // nil: silent
	// Providers get ProviderShare of their domain's limits on the pacer;
	// nil: DefaultProviders.
	Providers []string
	ResumeFor time.Duration // 0: DefaultResumeFor
}

// Errors of operator actions.
var (
	ErrNoDecision = errors.New("rules: no such current decision")
	ErrInvalid    = errors.New("rules: invalid request")
)

// OverrideRequest is an operator's decision for a scope until ExpiresAt.
type OverrideRequest struct {
	Scope          DecisionScope
	Action         Action
	DailyLimit     int
	HourlyLimit    int
	MinuteLimit    int
	MaxConnections int
	ExpiresAt      time.Time
	Reason         string
}

// Decider turns the warm-up states and the flags into the current
// decisions, once per Cycle: a scope keeps its decision (and its id) as
// long as nothing in it changes; every new decision goes to the Store's
// history (and so to the stream) and to the Pacer.
//
// What it decides, per scope:
//   - every warm-up state (a sender domain that has sent, each of its
//     IPs): its day's limits, until the next day boundary, with the
//     warm-up's last action (advance, hold, step_back);
//   - a pause flag that applies: pause, without an end; when the flag
//     clears, resume (with the day's limits) for ResumeFor;
//   - a response-pattern flag (Action set): its action for its scope
//     (sender domain, IP, provider) until Since+For, with its minute and
//     connection limits; a hold for a provider is a suspension of that
//     provider;
//   - an operator override replaces all of that for its scope until it
//     expires; an operator's cancel drops an automatic decision until its
//     inputs change, with a resume in its place.
//
// A decision that ends before its expiry (its flag cleared) is followed by
// a resume. With a Shared store, several processes share one Decider's
// work: one evaluates, the others follow the store (see Shared). Decider
// is safe for concurrent use.
type Decider struct {
	o     DeciderOptions
	store *MemoryStore
	log   *slog.Logger

	mu        sync.Mutex
	current   map[DecisionScope]Decision
	currentFP map[DecisionScope]string
	cancelled map[DecisionScope]string // fingerprint of the cancelled automatic decision
	overrides map[DecisionScope]Decision
	paused    map[DecisionScope]bool
	resumed   map[DecisionScope]time.Time // resume until
	flags     map[string]Flag             // active, by flagKey
	applied   map[sender.Scope]sender.Override

	sh shared // the state of the shared store's use; d.mu guards it
}

// NewDecider returns a Decider.
func NewDecider(o DeciderOptions) (*Decider, error) {
	if o.Warmup == nil {
		return nil, errors.New("rules: the decider needs a Warmup")
	}
	if o.Store == nil {
		o.Store = NewMemoryStore(0)
	}
	if o.Providers == nil {
		o.Providers = DefaultProviders
	}
	if o.ResumeFor <= 0 {
		o.ResumeFor = DefaultResumeFor
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Decider{o: o, store: o.Store, log: log,
		current: map[DecisionScope]Decision{}, currentFP: map[DecisionScope]string{}, cancelled: map[DecisionScope]string{},
		overrides: map[DecisionScope]Decision{}, paused: map[DecisionScope]bool{},
		resumed: map[DecisionScope]time.Time{}, flags: map[string]Flag{},
		applied: map[sender.Scope]sender.Override{}, sh: shared{rejected: map[string]bool{}, decided: make(chan struct{})}}, nil
}

// Store is the decider's history.
func (d *Decider) Store() *MemoryStore { return d.store }

// flagID names a flag by its rule and scope.
func flagID(f Flag) string {
	return fmt.Sprintf("%s|%+v", f.Rule, f.Scope)
}

// Cycle evaluates at now with the flags active now: it steps the warm-up,
// records the flags that were raised or cleared, and returns the new
// decisions (none when nothing changed).
func (d *Decider) Cycle(ctx context.Context, now time.Time, flags []Flag) ([]Decision, error) {
	if err := d.o.Warmup.Step(ctx, now, flags); err != nil {
		return nil, err
	}
	states := d.o.Warmup.States()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recordFlags(now, flags)

	rateFlags := byDomain(flags)
	desired := make(map[DecisionScope]Decision, len(states)+len(flags))
	limitsOf := make(map[string]sender.Limits, len(states)) // domain → its limits
	dayOf := make(map[string]int, len(states))
	for _, st := range states {
		ds := DecisionScope{SenderDomain: st.Scope.SenderDomain, SendingIP: st.Scope.SendingIP}
		if ds.SendingIP == "" {
			limitsOf[ds.SenderDomain], dayOf[ds.SenderDomain] = st.Limits, st.Day
		}
		next := d.o.Warmup.NextDay(now)
		dec := Decision{Scope: ds, Action: st.Action, WarmupDay: st.Day, DailyLimit: st.Limits.PerDay,
			HourlyLimit: st.Limits.PerHour, Reasons: []Reason{st.Why}, ExpiresAt: &next, Source: SourceRule}
		var pauses []Reason
		for _, f := range rateFlags[st.Scope.SenderDomain] {
			if f.Severity == SeverityPause && flagApplies(f, st.Scope) {
				pauses = append(pauses, flagReason(f))
			}
		}
		switch {
		case len(pauses) > 0:
			dec = Decision{Scope: ds, Action: ActionPause, WarmupDay: st.Day, Reasons: pauses, Source: SourceRule}
			d.paused[ds] = true
			delete(d.resumed, ds)
		case d.paused[ds]:
			delete(d.paused, ds)
			d.resumed[ds] = now.Add(d.o.ResumeFor)
			fallthrough
		case now.Before(d.resumed[ds]):
			until := d.resumed[ds]
			dec.Action, dec.ExpiresAt = ActionResume, &until
		default:
			delete(d.resumed, ds)
		}
		desired[ds] = dec
	}
	// A pause flag of a domain (or a domain's IP) the warm-up does not
	// keep — a warmed domain, or one whose sends the warm-up has not seen
	// on a day it judged — pauses it all the same: the rates say the mail
	// is not welcome, whatever the schedule.
	orphan := map[DecisionScope][]Reason{}
	for _, f := range flags {
		if f.Action != "" || f.Severity != SeverityPause || f.Scope.SenderDomain == "" {
			continue
		}
		ds := DecisionScope{SenderDomain: f.Scope.SenderDomain, SendingIP: f.Scope.SendingIP}
		if _, ok := desired[ds]; ok {
			continue
		}
		if _, ok := desired[DecisionScope{SenderDomain: ds.SenderDomain}]; ok {
			continue // the domain's warm-up decision pauses it whole
		}
		orphan[ds] = append(orphan[ds], flagReason(f))
	}
	for ds, reasons := range orphan {
		desired[ds] = Decision{Scope: ds, Action: ActionPause, Reasons: reasons, Source: SourceRule}
	}
	// Response patterns: the strictest per scope.
	for _, f := range flags {
		if f.Action == "" || f.Scope.SenderDomain == "" {
			continue
		}
		ds := DecisionScope{SenderDomain: f.Scope.SenderDomain, SendingIP: f.Scope.SendingIP, ISP: f.Scope.ISP}
		var exp *time.Time
		if f.For > 0 {
			e := f.Since.Add(f.For)
			if !now.Before(e) {
				continue
			}
			exp = &e
		}
		l := limitsOf[ds.SenderDomain]
		if ds.ISP != "" {
			l = d.o.Warmup.ProviderLimits(l)
		}
		dec := Decision{Scope: ds, Action: f.Action, WarmupDay: max(dayOf[ds.SenderDomain], 1),
			DailyLimit: l.PerDay, HourlyLimit: l.PerHour, MinuteLimit: intp(f.MinuteLimit),
			MaxConnections: intp(f.MaxConnections), Reasons: []Reason{flagReason(f)}, ExpiresAt: exp, Source: SourceRule}
		if f.Action == ActionPause {
			dec.DailyLimit, dec.HourlyLimit = 0, 0
		}
		// It replaces the warm-up's decision of its scope, unless that is
		// a pause; of two patterns, the stricter action wins.
		if old, ok := desired[ds]; !ok || old.Action != ActionPause && actionRank(dec.Action) >= actionRank(old.Action) {
			desired[ds] = dec
		}
	}
	for ds, dec := range desired {
		if fp, ok := d.cancelled[ds]; ok {
			if fp == dec.fingerprint() {
				delete(desired, ds)
			} else {
				delete(d.cancelled, ds)
			}
		}
	}
	for ds, o := range d.overrides {
		if o.expired(now) {
			delete(d.overrides, ds)
			continue
		}
		desired[ds] = o
	}

	var issued []Decision
	changed := false
	for _, ds := range sortedScopes(desired) {
		dec := desired[ds]
		if _, ok := d.current[ds]; ok && d.currentFP[ds] == dec.fingerprint() {
			continue
		}
		issued = append(issued, d.issue(dec, now))
	}
	for _, ds := range sortedScopes(d.current) {
		cur := d.current[ds]
		if _, ok := desired[ds]; ok {
			continue
		}
		switch {
		case cur.expired(now):
			delete(d.current, ds)
			delete(d.currentFP, ds)
			changed = true
		case cur.Action == ActionResume:
		default:
			issued = append(issued, d.issue(d.resumeOf(cur, now, SourceRule, Reason{Rule: "cleared", Window: ""}), now))
		}
	}
	// The pacer expires what ends by itself; it hears again only of
	// changes.
	if changed || len(issued) > 0 {
		d.apply(now)
	}
	return issued, nil
}

func actionRank(a Action) int {
	switch a {
	case ActionPause:
		return 4
	case ActionHold:
		return 3
	case ActionSlow:
		return 2
	}
	return 1
}

func sortedScopes(m map[DecisionScope]Decision) []DecisionScope {
	out := make([]DecisionScope, 0, len(m))
	for ds := range m {
		out = append(out, ds)
	}
	slices.SortFunc(out, func(a, b DecisionScope) int {
		return cmp.Or(cmp.Compare(a.SenderDomain, b.SenderDomain), cmp.Compare(a.SendingIP, b.SendingIP), cmp.Compare(a.ISP, b.ISP))
	})
	return out
}

// resumeOf is the resume that follows cur, with the scope's warm-up
// limits.
func (d *Decider) resumeOf(cur Decision, now time.Time, source string, why Reason) Decision {
	until := now.Add(d.o.ResumeFor)
	r := Decision{Scope: cur.Scope, Action: ActionResume, WarmupDay: cur.WarmupDay, Reasons: []Reason{why},
		ExpiresAt: &until, Source: source}
	if st, ok := d.o.Warmup.State(Scope{SenderDomain: cur.Scope.SenderDomain, SendingIP: cur.Scope.SendingIP}); ok {
		l := st.Limits
		if cur.Scope.ISP != "" {
			l = d.o.Warmup.ProviderLimits(l)
		}
		r.WarmupDay, r.DailyLimit, r.HourlyLimit = st.Day, l.PerDay, l.PerHour
	}
	return r
}

// decisionID is the id of dec issued at now.
func decisionID(dec Decision, now time.Time) string {
	h := sha256.Sum256([]byte(dec.fingerprint() + "|" + now.Format(time.RFC3339Nano)))
	return "dec_" + hex.EncodeToString(h[:10])
}

// issue numbers dec, stores it and makes it current. d.mu is held.
func (d *Decider) issue(dec Decision, now time.Time) Decision {
	dec.IssuedAt = now
	if dec.ID == "" {
		dec.ID = decisionID(dec, now)
	}
	dec = d.store.AppendDecision(dec)
	d.queueDecision(dec)
	d.current[dec.Scope] = dec
	d.currentFP[dec.Scope] = dec.fingerprint()
	d.log.Info("decision", "id", dec.ID, "scope", dec.Scope.String(), "action", dec.Action, "source", dec.Source)
	return dec
}

// recordFlags keeps the flags raised and cleared since the last cycle.
func (d *Decider) recordFlags(now time.Time, flags []Flag) {
	seen := map[string]bool{}
	for _, f := range flags {
		k := flagID(f)
		seen[k] = true
		if old, ok := d.flags[k]; !ok || old.Severity != f.Severity {
			d.recordFlag(FlagEvent{Flag: f, Active: true, At: now})
		}
		d.flags[k] = f
	}
	for k, f := range d.flags {
		if !seen[k] {
			d.recordFlag(FlagEvent{Flag: f, Active: false, At: now})
			delete(d.flags, k)
		}
	}
}

// ActiveFlags returns the flags of the last cycle, sorted by rule and
// scope.
func (d *Decider) ActiveFlags() []Flag {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.flags))
	for k := range d.flags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]Flag, 0, len(keys))
	for _, k := range keys {
		out = append(out, d.flags[k])
	}
	return out
}

// Current returns the current decisions at now that match the filter
// (empty fields match all), sorted by scope.
func (d *Decider) Current(now time.Time, filter DecisionScope) []Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []Decision{}
	for _, ds := range sortedScopes(d.current) {
		dec := d.current[ds]
		if dec.expired(now) ||
			filter.SenderDomain != "" && ds.SenderDomain != filter.SenderDomain ||
			filter.SendingIP != "" && ds.SendingIP != filter.SendingIP ||
			filter.ISP != "" && ds.ISP != filter.ISP {
			continue
		}
		out = append(out, dec)
	}
	return out
}

// Cancel ends the current decision id on an operator's word: an automatic
// decision stays cancelled until its inputs change, an override ends. A
// resume (source operator) takes its place at once; the action is
// audited. On a process that follows the shared store (not the
// evaluator), the cancel is written to the store for the evaluator to
// apply, and the resume it will issue is returned.
func (d *Decider) Cancel(ctx context.Context, id, who, reason string, now time.Time) (Decision, error) {
	if strings.TrimSpace(reason) == "" {
		return Decision{}, fmt.Errorf("%w: a cancel needs a reason", ErrInvalid)
	}
	if err := d.waitDecided(ctx); err != nil {
		return Decision{}, err
	}
	d.mu.Lock()
	var cur Decision
	found := false
	for _, dec := range d.current {
		if dec.ID == id && !dec.expired(now) {
			cur, found = dec, true
			break
		}
	}
	if !found {
		d.mu.Unlock()
		return Decision{}, fmt.Errorf("%w: %q", ErrNoDecision, id)
	}
	res := d.resumeOf(cur, now, SourceOperator, Reason{Rule: "operator_cancel"})
	res.IssuedAt, res.ID = now, decisionID(res, now)
	audit := AuditEntry{At: now, Who: who, Action: "cancel", Decision: res.ID, Target: id,
		Scope: Scope{SenderDomain: cur.Scope.SenderDomain, SendingIP: cur.Scope.SendingIP, ISP: cur.Scope.ISP}, Reason: reason}
	if d.following() {
		d.mu.Unlock()
		return res, d.request(ctx, audit, res)
	}
	defer d.mu.Unlock()
	res = d.cancel(cur, res, now)
	d.audit(audit, res, true)
	return res, nil
}

// cancel ends cur with res in its place. d.mu is held.
func (d *Decider) cancel(cur, res Decision, now time.Time) Decision {
	if cur.Source == SourceOperator {
		delete(d.overrides, cur.Scope)
	} else {
		d.cancelled[cur.Scope] = cur.fingerprint()
	}
	res = d.issue(res, now)
	d.apply(now)
	return res
}

// Override sets an operator's decision for a scope until its expiry; it
// replaces every automatic decision of the scope meanwhile, and is
// audited. On a process that follows the shared store, it is written to
// the store for the evaluator to issue, as Cancel.
func (d *Decider) Override(ctx context.Context, req OverrideRequest, who string, now time.Time) (Decision, error) {
	switch {
	case req.Scope.SenderDomain == "":
		return Decision{}, fmt.Errorf("%w: an override needs scope.sender_domain", ErrInvalid)
	case !req.ExpiresAt.After(now):
		return Decision{}, fmt.Errorf("%w: expires_at must be in the future", ErrInvalid)
	case strings.TrimSpace(req.Reason) == "":
		return Decision{}, fmt.Errorf("%w: an override needs a reason", ErrInvalid)
	case req.DailyLimit < 0 || req.HourlyLimit < 0 || req.MinuteLimit < 0 || req.MaxConnections < 0:
		return Decision{}, fmt.Errorf("%w: limits must not be negative", ErrInvalid)
	}
	switch req.Action {
	case ActionPause, ActionHold, ActionAdvance, ActionStepBack, ActionResume:
	case ActionSlow:
		if req.DailyLimit+req.HourlyLimit+req.MinuteLimit+req.MaxConnections == 0 {
			return Decision{}, fmt.Errorf("%w: slow needs a limit", ErrInvalid)
		}
	default:
		return Decision{}, fmt.Errorf("%w: action %q (one of advance, hold, slow, step_back, pause, resume)", ErrInvalid, req.Action)
	}
	exp := req.ExpiresAt
	dec := Decision{Scope: req.Scope, Action: req.Action, DailyLimit: req.DailyLimit, HourlyLimit: req.HourlyLimit,
		MinuteLimit: intp(req.MinuteLimit), MaxConnections: intp(req.MaxConnections),
		Reasons: []Reason{{Rule: RuleOperatorOverride}}, ExpiresAt: &exp, Source: SourceOperator, WarmupDay: 1}
	if st, ok := d.o.Warmup.State(Scope{SenderDomain: req.Scope.SenderDomain, SendingIP: req.Scope.SendingIP}); ok {
		dec.WarmupDay = st.Day
	}
	dec.IssuedAt, dec.ID = now, decisionID(dec, now)
	audit := AuditEntry{At: now, Who: who, Action: "override", Decision: dec.ID,
		Scope: Scope{SenderDomain: req.Scope.SenderDomain, SendingIP: req.Scope.SendingIP, ISP: req.Scope.ISP}, Reason: req.Reason}
	if err := d.waitDecided(ctx); err != nil {
		return Decision{}, err
	}
	d.mu.Lock()
	if d.following() {
		d.mu.Unlock()
		return dec, d.request(ctx, audit, dec)
	}
	defer d.mu.Unlock()
	dec = d.override(dec, now)
	d.audit(audit, dec, true)
	return dec, nil
}

// RuleOperatorOverride is the reason of an operator's override.
const RuleOperatorOverride = "operator_override"

// override issues the operator's dec. d.mu is held.
func (d *Decider) override(dec Decision, now time.Time) Decision {
	dec = d.issue(dec, now)
	d.overrides[dec.Scope] = dec
	d.apply(now)
	return dec
}

// senderScope is the pacer scope of a decision scope. The pacer has no
// (IP, provider) scope: a decision for both applies to the provider for
// the whole domain, the stricter choice.
func senderScope(ds DecisionScope) sender.Scope {
	switch {
	case ds.ISP != "":
		return sender.ProviderScope(ds.SenderDomain, ds.ISP)
	case ds.SendingIP != "":
		return sender.IPScope(ds.SenderDomain, ds.SendingIP)
	}
	return sender.DomainScope(ds.SenderDomain)
}

// overrideOf is the pacer's override for dec: pause (and a hold of a
// provider, which suspends it) stops the scope; every other action caps
// it at the decision's limits.
func overrideOf(dec Decision) sender.Override {
	o := sender.Override{Reason: fmt.Sprintf("%s %s (%s)", dec.Action, dec.ID, dec.Source)}
	if dec.ExpiresAt != nil {
		o.Until = *dec.ExpiresAt
	}
	if dec.Action == ActionPause || dec.Action == ActionHold && dec.Scope.ISP != "" {
		o.Pause = true
		return o
	}
	o.Limits = sender.Limits{PerDay: dec.DailyLimit, PerHour: dec.HourlyLimit}
	if dec.MinuteLimit != nil {
		o.Limits.PerMinute = *dec.MinuteLimit
	}
	if dec.MaxConnections != nil {
		o.Limits.Connections = *dec.MaxConnections
	}
	return o
}

// merge combines two overrides of one pacer scope: a pause wins, limits
// tighten.
func merge(a, b sender.Override) sender.Override {
	if a.Pause {
		return a
	}
	if b.Pause {
		return b
	}
	f := func(x, y int) int {
		switch {
		case x == 0:
			return y
		case y == 0:
			return x
		}
		return min(x, y)
	}
	a.Limits = sender.Limits{PerDay: f(a.Limits.PerDay, b.Limits.PerDay), PerHour: f(a.Limits.PerHour, b.Limits.PerHour),
		PerMinute: f(a.Limits.PerMinute, b.Limits.PerMinute), Connections: f(a.Limits.Connections, b.Limits.Connections)}
	if !b.Until.IsZero() && (a.Until.IsZero() || b.Until.Before(a.Until)) {
		a.Until = b.Until
	}
	a.Reason += "; " + b.Reason
	return a
}

// apply brings the pacer's overrides in line with the current decisions,
// and each domain's providers to their share of its limits. d.mu is held.
func (d *Decider) apply(now time.Time) {
	if d.o.Pacer == nil {
		return
	}
	want := map[sender.Scope]sender.Override{}
	put := func(s sender.Scope, o sender.Override) {
		if old, ok := want[s]; ok {
			o = merge(old, o)
		}
		want[s] = o
	}
	for _, ds := range sortedScopes(d.current) {
		dec := d.current[ds]
		if dec.expired(now) {
			continue
		}
		put(senderScope(ds), overrideOf(dec))
		if ds.SendingIP == "" && ds.ISP == "" && dec.Action != ActionPause {
			for _, p := range d.o.Providers {
				l := d.o.Warmup.ProviderLimits(sender.Limits{PerDay: dec.DailyLimit, PerHour: dec.HourlyLimit})
				if l != (sender.Limits{}) {
					put(sender.ProviderScope(ds.SenderDomain, p), sender.Override{Limits: l, Until: overrideOf(dec).Until,
						Reason: fmt.Sprintf("provider share of %s", dec.ID)})
				}
			}
		}
	}
	for s := range d.applied {
		if _, ok := want[s]; !ok {
			d.o.Pacer.ClearOverride(s)
			delete(d.applied, s)
		}
	}
	for s, o := range want {
		if old, ok := d.applied[s]; ok && old == o {
			continue
		}
		d.o.Pacer.SetOverride(s, o)
		d.applied[s] = o
	}
}

// Lease is the store's lease (metrics backends: TryLease): one evaluator
// at a time.
type Lease interface {
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// FlagSource evaluates the rules at now into the active flags.
type FlagSource func(ctx context.Context, now time.Time) ([]Flag, error)

// LeaseName is the lease the evaluator holds.
const LeaseName = "rules-evaluator"

// RunOptions configure Run.
type RunOptions struct {
	Interval time.Duration // 0: time.Minute (rules_interval)
	// Poll is how often, between cycles, the evaluator takes the
	// operators' actions from the shared store and writes what it issued,
	// and a follower reads the store; 0: DefaultPoll, at most Interval.
	Poll   time.Duration
	Flags  FlagSource // required
	Lease  Lease      // nil: this process evaluates alone
	Holder string     // this process's name in the lease
	Now    func() time.Time
}

// DefaultPoll is RunOptions' default Poll: "every few seconds".
const DefaultPoll = 5 * time.Second

// Run evaluates every Interval while this process holds the lease (taken
// for 3 intervals, renewed each cycle) until ctx ends; while another
// process holds it, this one follows the shared store every Poll. A
// cycle's error is logged and the next cycle tries again.
func (d *Decider) Run(ctx context.Context, o RunOptions) error {
	if o.Flags == nil {
		return errors.New("rules: Run needs a FlagSource")
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	o.Poll = min(o.Poll, o.Interval)
	if o.Now == nil {
		o.Now = time.Now
	}
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	var next time.Time // of the next cycle
	for {
		var err error
		if now := o.Now(); !now.Before(next) {
			next = now.Add(o.Interval)
			err = d.runOnce(ctx, o)
		} else {
			err = d.poll(ctx, o)
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn("rules cycle failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// cycleFloor is the least time a cycle is given, and the least a lease
// is taken for.
const cycleFloor = 30 * time.Second

func (d *Decider) runOnce(ctx context.Context, o RunOptions) error {
	// A cycle may take its interval, and never less than cycleFloor: a
	// loaded store answers slower than a short interval (tests use
	// milliseconds), and a cycle cut short raises no flag at all.
	ctx, cancel := context.WithTimeout(ctx, max(o.Interval, cycleFloor))
	defer cancel()
	// Whatever the outcome, the first attempt decides the role the
	// operators' actions see (waitDecided).
	defer d.markDecided()
	if o.Lease != nil {
		held, err := o.Lease.TryLease(ctx, LeaseName, o.Holder, max(3*o.Interval, cycleFloor))
		if err != nil {
			return err
		}
		if !held {
			d.stepDown()
			return d.follow(ctx, o.Now())
		}
	}
	err := d.lead(ctx, o.Now())
	d.markDecided()
	if err != nil {
		return err
	}
	now := o.Now()
	flags, err := o.Flags(ctx, now)
	if err != nil {
		return err
	}
	if _, err = d.Cycle(ctx, now, flags); err != nil {
		return err
	}
	return d.persist(ctx, now, true)
}

// poll is the work between cycles: the evaluator applies the operators'
// actions taken on other processes and writes what it issued; a follower
// reads the store.
func (d *Decider) poll(ctx context.Context, o RunOptions) error {
	ctx, cancel := context.WithTimeout(ctx, max(o.Poll, cycleFloor))
	defer cancel()
	if d.leading() {
		return d.persist(ctx, o.Now(), false)
	}
	return d.follow(ctx, o.Now())
}
