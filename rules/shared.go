package rules

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"repute/metrics"
)

// Shared is the store the processes of a deployment share (both metrics
// backends): the history of decisions and flag changes, for the
// dashboards and for the processes that do not evaluate, and the
// evaluator's state and the operators' actions (issue 13: "one evaluates
// at a time (a lease in the store) and all serve the same decisions").
//
// With a Shared store the Decider is, at each cycle, either
//
//   - the evaluator (it holds the lease): it cycles, keeps what it issued
//     (decisions, flag changes, its operators' actions) and writes it at
//     the end of the cycle and every Poll, in order; what fails to be
//     written stays queued and is written again next time (logged and
//     counted in SharedStats). After a cycle whose writes all succeeded,
//     it saves its state: the warm-up, the active flags, the current
//     decisions and what cancels and pauses it remembers. It applies the
//     operators' actions other processes wrote;
//   - a follower: every Poll it reads the decisions newer than the ones
//     it has and the latest state, and serves them (its Current,
//     ActiveFlags, Store) and applies them to its pacer. An operator's
//     action on a follower is written to the store, for the evaluator to
//     apply.
//
// When a process becomes the evaluator it first reads the store: the
// latest state (so the warm-up continues where it was) and the decisions
// stored after it, so that its sequence numbers continue from the highest
// stored, and its overrides and cancels are the ones in force.
type Shared interface {
	metrics.RulesHistory
	metrics.RulesState
}

const (
	// followWindow is how much of the history a process reads when it
	// starts following: the stream's resumption reaches that far back
	// (older Last-Event-IDs get an incomplete page, as with a wrapped
	// MemoryStore).
	followWindow = 24 * time.Hour
	// actionWindow is how far back the evaluator looks for operators'
	// actions not applied yet: far more than a Poll, so that an action
	// taken during a change of evaluator is still applied.
	actionWindow = time.Hour
)

// shared is the Decider's use of the Shared store; the Decider's mu
// guards it.
type shared struct {
	leading bool  // this process held the lease at its last cycle
	synced  bool  // the store was read once (base set)
	base    int64 // the state's LastSeq at the first read: older decisions are in its Current
	version int64 // of the latest state read or saved
	flushed int64 // the highest Seq written to the store

	// Written at the next persist, in order.
	decisions []metrics.StoredDecision
	flags     []metrics.StoredFlagChange
	actions   []metrics.StoredOperatorAction

	rejected map[string]bool // operators' actions the evaluator could not apply
	stats    SharedStats
	// decided is closed once the first cycle knows whether this process
	// evaluates (see waitDecided).
	decided     chan struct{}
	decidedOnce sync.Once
}

// markDecided records that this process knows whether it evaluates.
func (d *Decider) markDecided() { d.sh.decidedOnce.Do(func() { close(d.sh.decided) }) }

// waitDecided waits, with a Shared store, until the first cycle has taken
// the lease or not: an operator's action right after the start would
// otherwise be sent through the store for a later cycle of this very
// process, and not hold at once.
func (d *Decider) waitDecided(ctx context.Context) error {
	if d.o.Shared == nil {
		return nil
	}
	select {
	case <-d.sh.decided:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rules: the engine has not started: %w", ctx.Err())
	}
}

// SharedStats count the Decider's writes to the Shared store.
type SharedStats struct {
	WriteFailures int64 // writes that failed (their rows stay queued)
	Lost          int64 // decisions issued but dropped unwritten, when the lease was lost
	Queued        int   // rows waiting for the next write
	Rejected      int64 // operators' actions of other processes that could not be applied
}

// SharedStats returns the counters of the writes to the Shared store.
func (d *Decider) SharedStats() SharedStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.sh.stats
	st.Queued = len(d.sh.decisions) + len(d.sh.flags) + len(d.sh.actions)
	return st
}

// engineState is the evaluator's state as the store keeps it
// (metrics.RulesState), in JSON.
type engineState struct {
	// LastSeq is the highest Seq stored when the state was taken:
	// Current is the current decisions up to it.
	LastSeq   int64           `json:"last_seq"`
	Warmup    WarmupSnapshot  `json:"warmup"`
	Flags     []Flag          `json:"flags"`
	Current   []numbered      `json:"current"`
	Cancelled []scopeMark     `json:"cancelled,omitempty"`
	Paused    []DecisionScope `json:"paused,omitempty"`
	Resumed   []scopeMark     `json:"resumed,omitempty"`
}

// numbered is a decision with its Seq, which Decision's JSON leaves out
// (the API serves it as the SSE id).
type numbered struct {
	Decision
	Seq int64 `json:"seq"`
}

// scopeMark is an entry of the Decider's maps by scope.
type scopeMark struct {
	Scope       DecisionScope `json:"scope"`
	Fingerprint string        `json:"fingerprint,omitempty"`
	Until       time.Time     `json:"until,omitzero"`
}

// Evaluating reports whether this process evaluates: it holds the lease
// (without a Shared store: always). What only one process should do (say,
// publish the decisions elsewhere) can ask it.
func (d *Decider) Evaluating() bool { return d.leading() }

// leading reports whether this process evaluates (without a Shared store:
// always).
func (d *Decider) leading() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.o.Shared == nil || d.sh.leading
}

// following reports whether this process follows the Shared store. d.mu
// is held.
func (d *Decider) following() bool { return d.o.Shared != nil && !d.sh.leading }

// queueDecision queues an issued decision for the store. d.mu is held.
func (d *Decider) queueDecision(dec Decision) {
	if d.o.Shared != nil {
		d.sh.decisions = append(d.sh.decisions, storedDecision(dec))
	}
}

// recordFlag keeps a flag change, and queues it for the store. d.mu is
// held.
func (d *Decider) recordFlag(e FlagEvent) {
	d.store.AppendFlag(e)
	if d.o.Shared != nil {
		d.sh.flags = append(d.sh.flags, storedFlagChange(e))
	}
}

// audit keeps an operator's action that issued dec, and queues it for the
// store when it was taken here (local). d.mu is held.
func (d *Decider) audit(a AuditEntry, dec Decision, local bool) {
	d.store.AppendAudit(a)
	if local && d.o.Shared != nil {
		d.sh.actions = append(d.sh.actions, operatorAction(a, dec))
	}
}

// request writes an operator's action taken on a follower to the store,
// for the evaluator to apply: it has to be stored before the operator is
// answered.
func (d *Decider) request(ctx context.Context, a AuditEntry, dec Decision) error {
	if err := d.o.Shared.AppendOperatorActions(ctx, []metrics.StoredOperatorAction{operatorAction(a, dec)}); err != nil {
		return fmt.Errorf("rules: %s of %s not stored for the evaluator: %w", a.Action, a.Scope.SenderDomain, err)
	}
	d.mu.Lock()
	d.store.AppendAudit(a)
	d.mu.Unlock()
	d.log.Info("operator action stored for the evaluator", "action", a.Action, "decision", dec.ID, "who", a.Who)
	return nil
}

// lead makes this process the evaluator, when it was not: it reads the
// store (the latest state, the decisions after it) before its first
// cycle.
func (d *Decider) lead(ctx context.Context, now time.Time) error {
	if d.o.Shared == nil || d.leading() {
		return nil
	}
	if err := d.sync(ctx, now, true); err != nil {
		return fmt.Errorf("rules: taking over as the evaluator: %w", err)
	}
	d.mu.Lock()
	d.sh.leading = true
	d.sh.flushed = d.store.LastSeq()
	d.mu.Unlock()
	d.log.Info("rules: this process evaluates", "seq", d.store.LastSeq())
	return nil
}

// stepDown makes this process a follower, when it was the evaluator. The
// decisions it issued and could not write are dropped (and counted): the
// new evaluator numbers its own from the highest stored, and this process
// reads the store again from there.
func (d *Decider) stepDown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.sh.leading {
		return
	}
	d.sh.leading = false
	d.log.Info("rules: another process evaluates; following the store")
	if n := len(d.sh.decisions); n > 0 {
		d.sh.stats.Lost += int64(n)
		d.log.Error("rules: lost the lease with decisions not stored; dropped, the store's history is the truth",
			"dropped", n, "from_seq", d.sh.decisions[0].Seq)
		d.sh.decisions = nil
		d.store.truncate(d.sh.flushed)
		d.sh.synced = false
		clear(d.current)
		clear(d.currentFP)
	}
}

// follow writes what is queued (flag changes and actions of the time this
// process evaluated) and reads the store.
func (d *Decider) follow(ctx context.Context, now time.Time) error {
	if d.o.Shared == nil {
		return nil
	}
	return errors.Join(d.flush(ctx), d.sync(ctx, now, false))
}

// sync reads the latest state and the decisions after the last one this
// process has; a follower applies them to its pacer. takeover also takes
// the state's memory of cancels, pauses and resumes, and the overrides in
// force.
func (d *Decider) sync(ctx context.Context, now time.Time, takeover bool) error {
	version, raw, err := d.o.Shared.LoadRulesState(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	first, after := !d.sh.synced, d.store.LastSeq()
	seen := d.sh.version
	d.mu.Unlock()
	var st *engineState
	if version > 0 && (version > seen || takeover || first) {
		st = new(engineState)
		if err := json.Unmarshal(raw, st); err != nil {
			return fmt.Errorf("rules: the stored state (version %d) does not parse: %w", version, err)
		}
	}
	// The window bounds every read (ClickHouse's sorting key starts with
	// the time of issue): a decision newer than the last read was issued
	// within it.
	q := metrics.DecisionQuery{AfterSeq: after, From: now.Add(-followWindow)}
	stored, err := d.o.Shared.Decisions(ctx, q)
	if err != nil {
		return err
	}
	// Several evaluators' clocks: the store's (IssuedAt, Seq) order is not
	// the Seq order.
	slices.SortFunc(stored, func(a, b metrics.StoredDecision) int { return cmp.Compare(a.Seq, b.Seq) })

	d.mu.Lock()
	defer d.mu.Unlock()
	if st != nil {
		d.sh.version = max(d.sh.version, version)
		if err := d.o.Warmup.Restore(st.Warmup); err != nil {
			return fmt.Errorf("rules: the stored state (version %d): %w", version, err)
		}
		clear(d.flags)
		for _, f := range st.Flags {
			d.flags[flagID(f)] = f
		}
		if first {
			d.sh.base = st.LastSeq
			for _, n := range st.Current {
				dec := n.Decision
				dec.Seq = n.Seq
				d.current[dec.Scope], d.currentFP[dec.Scope] = dec, dec.fingerprint()
			}
		}
		if takeover {
			clear(d.cancelled)
			clear(d.paused)
			clear(d.resumed)
			for _, m := range st.Cancelled {
				d.cancelled[m.Scope] = m.Fingerprint
			}
			for _, s := range st.Paused {
				d.paused[s] = true
			}
			for _, m := range st.Resumed {
				d.resumed[m.Scope] = m.Until
			}
		}
	}
	for _, sd := range stored {
		dec, err := decisionOf(sd)
		if err != nil {
			return err
		}
		d.store.put(dec)
		if dec.Seq > d.sh.base {
			d.current[dec.Scope], d.currentFP[dec.Scope] = dec, dec.fingerprint()
		}
	}
	if st != nil {
		d.store.advance(st.LastSeq)
	}
	d.sh.synced = true
	if takeover {
		// The overrides in force are the current decisions an operator
		// set: they come from the history, which is never older than the
		// state.
		clear(d.overrides)
		for ds, dec := range d.current {
			if dec.Source == SourceOperator && len(dec.Reasons) > 0 && dec.Reasons[0].Rule == RuleOperatorOverride && !dec.expired(now) {
				d.overrides[ds] = dec
			}
		}
		return nil
	}
	d.apply(now)
	return nil
}

// persist is the evaluator's end of a cycle (withState) and of a poll: it
// applies the operators' actions other processes wrote, writes what is
// queued and, when all of it is written, saves the state. A poll saves it
// too when it wrote decisions (an operator's cancel changes what the state
// remembers: it should not wait for the next cycle).
func (d *Decider) persist(ctx context.Context, now time.Time, withState bool) error {
	if d.o.Shared == nil {
		return nil
	}
	errApply := d.applyActions(ctx, now)
	d.mu.Lock()
	wrote := len(d.sh.decisions) > 0
	d.mu.Unlock()
	if err := d.flush(ctx); err != nil || !withState && !wrote {
		return errors.Join(errApply, err)
	}
	return errors.Join(errApply, d.saveState(ctx, now))
}

// flush writes the queued decisions, flag changes and actions, in that
// order; what fails stays queued, before what is queued meanwhile.
func (d *Decider) flush(ctx context.Context) error {
	d.mu.Lock()
	ds, fs, as := d.sh.decisions, d.sh.flags, d.sh.actions
	d.sh.decisions, d.sh.flags, d.sh.actions = nil, nil, nil
	d.mu.Unlock()
	var errs []error
	failed := func(what string, n int, err error) {
		d.sh.stats.WriteFailures++
		d.log.Warn("rules: history write failed; kept for the next cycle", "what", what, "rows", n, "err", err)
		errs = append(errs, fmt.Errorf("rules: writing %d %s: %w", n, what, err))
	}
	errD := d.o.Shared.AppendDecisions(ctx, ds)
	errF := d.o.Shared.AppendFlagChanges(ctx, fs)
	errA := d.o.Shared.AppendOperatorActions(ctx, as)
	d.mu.Lock()
	defer d.mu.Unlock()
	if errD != nil {
		failed("decisions", len(ds), errD)
		d.sh.decisions = append(ds, d.sh.decisions...)
	} else if len(ds) > 0 {
		d.sh.flushed = max(d.sh.flushed, ds[len(ds)-1].Seq)
	}
	if errF != nil {
		failed("flag changes", len(fs), errF)
		d.sh.flags = append(fs, d.sh.flags...)
	}
	if errA != nil {
		failed("operator actions", len(as), errA)
		d.sh.actions = append(as, d.sh.actions...)
	}
	return errors.Join(errs...)
}

// saveState saves the evaluator's state, unless a decision issued since
// the flush is not written yet (the state's Current would be ahead of the
// history; the next cycle saves it).
func (d *Decider) saveState(ctx context.Context, now time.Time) error {
	d.mu.Lock()
	if d.store.LastSeq() != d.sh.flushed {
		d.mu.Unlock()
		return nil
	}
	st := engineState{LastSeq: d.sh.flushed, Warmup: d.o.Warmup.Snapshot(), Flags: []Flag{}, Current: []numbered{}}
	for _, ds := range sortedScopes(d.current) {
		st.Current = append(st.Current, numbered{Decision: d.current[ds], Seq: d.current[ds].Seq})
	}
	for _, k := range slices.Sorted(mapKeys(d.flags)) {
		st.Flags = append(st.Flags, d.flags[k])
	}
	for ds, fp := range d.cancelled {
		st.Cancelled = append(st.Cancelled, scopeMark{Scope: ds, Fingerprint: fp})
	}
	for ds := range d.paused {
		st.Paused = append(st.Paused, ds)
	}
	for ds, until := range d.resumed {
		st.Resumed = append(st.Resumed, scopeMark{Scope: ds, Until: until})
	}
	version := max(now.UnixNano(), d.sh.version+1)
	d.sh.version = version
	d.mu.Unlock()
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("rules: encoding the state: %w", err)
	}
	if err := d.o.Shared.SaveRulesState(ctx, version, raw); err != nil {
		d.mu.Lock()
		d.sh.stats.WriteFailures++
		d.mu.Unlock()
		return fmt.Errorf("rules: saving the state: %w", err)
	}
	return nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// applyActions applies the operators' actions taken on other processes
// in the last actionWindow that are not applied yet: their decision is
// not in the history. A cancel whose decision is no longer current is
// rejected (logged, counted, and not tried again).
func (d *Decider) applyActions(ctx context.Context, now time.Time) error {
	acts, err := d.o.Shared.OperatorActions(ctx, now.Add(-actionWindow))
	if err != nil {
		return fmt.Errorf("rules: reading the operators' actions: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range acts {
		if d.sh.rejected[a.ID] {
			continue
		}
		if _, done := d.store.Decision(a.DecisionID); done {
			continue
		}
		reject := func(why string) {
			d.sh.rejected[a.ID] = true
			d.sh.stats.Rejected++
			d.log.Warn("rules: operator action not applied", "action", a.Action, "decision", a.DecisionID, "who", a.Who, "why", why)
		}
		var dec Decision
		if err := json.Unmarshal([]byte(a.Decision), &dec); err != nil || dec.ID != a.DecisionID {
			reject(fmt.Sprintf("its decision does not parse (%v)", err))
			continue
		}
		switch a.Action {
		case "cancel":
			cur, ok := Decision{}, false
			for _, c := range d.current {
				if c.ID == a.Target && !c.expired(now) {
					cur, ok = c, true
				}
			}
			if !ok {
				reject("the cancelled decision " + a.Target + " is no longer current")
				continue
			}
			dec = d.cancel(cur, dec, dec.IssuedAt)
		case "override":
			dec = d.override(dec, dec.IssuedAt)
		default:
			reject("unknown action")
			continue
		}
		d.audit(AuditEntry{At: a.Time, Who: a.Who, Action: a.Action, Decision: a.DecisionID, Target: a.Target,
			Scope: Scope{SenderDomain: a.SenderDomain, SendingIP: a.SendingIP, ISP: a.ISP}, Reason: a.Reason}, dec, false)
	}
	return nil
}

// storedDecision is dec as the store keeps it.
func storedDecision(dec Decision) metrics.StoredDecision {
	reasons := dec.Reasons
	if reasons == nil {
		reasons = []Reason{}
	}
	raw, _ := json.Marshal(reasons) // plain fields: cannot fail
	sd := metrics.StoredDecision{ID: dec.ID, Seq: dec.Seq, IssuedAt: dec.IssuedAt, SenderDomain: dec.Scope.SenderDomain,
		SendingIP: dec.Scope.SendingIP, ISP: dec.Scope.ISP, Action: string(dec.Action), WarmupDay: dec.WarmupDay,
		DailyLimit: dec.DailyLimit, HourlyLimit: dec.HourlyLimit, MinuteLimit: dec.MinuteLimit,
		MaxConnections: dec.MaxConnections, Source: dec.Source, Reasons: string(raw)}
	if dec.ExpiresAt != nil {
		sd.ExpiresAt = *dec.ExpiresAt
	}
	return sd
}

// decisionOf is the decision sd stores.
func decisionOf(sd metrics.StoredDecision) (Decision, error) {
	dec := Decision{ID: sd.ID, Seq: sd.Seq, IssuedAt: sd.IssuedAt,
		Scope:  DecisionScope{SenderDomain: sd.SenderDomain, SendingIP: sd.SendingIP, ISP: sd.ISP},
		Action: Action(sd.Action), WarmupDay: sd.WarmupDay, DailyLimit: sd.DailyLimit, HourlyLimit: sd.HourlyLimit,
		MinuteLimit: sd.MinuteLimit, MaxConnections: sd.MaxConnections, Source: sd.Source}
	if !sd.ExpiresAt.IsZero() {
		e := sd.ExpiresAt
		dec.ExpiresAt = &e
	}
	if err := json.Unmarshal([]byte(sd.Reasons), &dec.Reasons); err != nil {
		return Decision{}, fmt.Errorf("rules: stored decision %s#%d: reasons: %w", sd.ID, sd.Seq, err)
	}
	return dec, nil
}

// storedFlagChange is e as the store keeps it.
func storedFlagChange(e FlagEvent) metrics.StoredFlagChange {
	f := e.Flag
	c := metrics.StoredFlagChange{Time: e.At, Rule: f.Rule, Account: f.Scope.Account, SenderDomain: f.Scope.SenderDomain,
		SendingIP: f.Scope.SendingIP, ISP: f.Scope.ISP, Campaign: f.Scope.Campaign, Category: f.Scope.Category,
		Severity: string(f.Severity), Value: f.Value, Threshold: f.Threshold, Sample: f.Sample, Window: f.Window,
		Raised: e.Active}
	c.ID = metrics.FlagChangeID(c)
	return c
}

// operatorAction is the operator's action a that issues dec, as the store
// keeps it.
func operatorAction(a AuditEntry, dec Decision) metrics.StoredOperatorAction {
	raw, _ := json.Marshal(dec) // plain fields: cannot fail
	return metrics.StoredOperatorAction{ID: a.Action + "_" + dec.ID, Time: a.At, Who: a.Who, Action: a.Action,
		DecisionID: dec.ID, Target: a.Target, SenderDomain: a.Scope.SenderDomain, SendingIP: a.Scope.SendingIP,
		ISP: a.Scope.ISP, Reason: a.Reason, Decision: string(raw)}
}
