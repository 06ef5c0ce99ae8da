package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"repute/metrics"
	"repute/sender"
)

// fakeShared is the Shared store in memory: (ID, Seq) and IDs keep the
// first stored, as the metrics backends; fail makes the next writes fail.
type fakeShared struct {
	mu        sync.Mutex
	decisions []metrics.StoredDecision
	flags     []metrics.StoredFlagChange
	actions   []metrics.StoredOperatorAction
	version   int64
	state     []byte
	fail      int // writes still to fail
	holder    string
}

var errDown = errors.New("store down")

func (s *fakeShared) failing() bool {
	if s.fail > 0 {
		s.fail--
		return true
	}
	return false
}

func (s *fakeShared) AppendDecisions(_ context.Context, ds []metrics.StoredDecision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	if s.failing() {
		return errDown
	}
	for _, d := range ds {
		if !slices.ContainsFunc(s.decisions, func(o metrics.StoredDecision) bool { return o.ID == d.ID && o.Seq == d.Seq }) {
			s.decisions = append(s.decisions, d)
		}
	}
	return nil
}

func (s *fakeShared) Decisions(_ context.Context, q metrics.DecisionQuery) ([]metrics.StoredDecision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []metrics.StoredDecision
	for _, d := range s.decisions {
		if d.Seq > q.AfterSeq && (q.From.IsZero() || !d.IssuedAt.Before(q.From)) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (s *fakeShared) AppendFlagChanges(_ context.Context, cs []metrics.StoredFlagChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}
	if s.failing() {
		return errDown
	}
	for _, c := range cs {
		if !slices.ContainsFunc(s.flags, func(o metrics.StoredFlagChange) bool { return o.ID == c.ID }) {
			s.flags = append(s.flags, c)
		}
	}
	return nil
}

func (s *fakeShared) FlagChanges(context.Context, metrics.FlagChangeQuery) ([]metrics.StoredFlagChange, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.flags), nil
}

func (s *fakeShared) SaveRulesState(_ context.Context, version int64, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing() {
		return errDown
	}
	if version > s.version {
		s.version, s.state = version, slices.Clone(state)
	}
	return nil
}

func (s *fakeShared) LoadRulesState(context.Context) (int64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, slices.Clone(s.state), nil
}

func (s *fakeShared) AppendOperatorActions(_ context.Context, as []metrics.StoredOperatorAction) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(as) == 0 {
		return nil
	}
	if s.failing() {
		return errDown
	}
	for _, a := range as {
		if !slices.ContainsFunc(s.actions, func(o metrics.StoredOperatorAction) bool { return o.ID == a.ID }) {
			s.actions = append(s.actions, a)
		}
	}
	return nil
}

func (s *fakeShared) OperatorActions(_ context.Context, from time.Time) ([]metrics.StoredOperatorAction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []metrics.StoredOperatorAction
	for _, a := range s.actions {
		if !a.Time.Before(from) {
			out = append(out, a)
		}
	}
	return out, nil
}

// TryLease: the lease is the holder's the test names.
func (s *fakeShared) TryLease(_ context.Context, _, holder string, _ time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holder == holder, nil
}

func (s *fakeShared) seqs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, d := range s.decisions {
		out = append(out, d.Seq)
	}
	return out
}

// process is one repute serve's decider on the shared store.
type process struct {
	name  string
	d     *Decider
	w     *Warmup
	pacer *sender.WarmupPacer
	flags []Flag
	now   time.Time
	opts  RunOptions
}

func newProcess(t testing.TB, name string, sh *fakeShared, vol fakeVolumes) *process {
	t.Helper()
	p := &process{name: name}
	var err error
	if p.w, err = NewWarmup(WarmupConfig{}, vol); err != nil {
		t.Fatal(err)
	}
	if p.pacer, err = sender.NewWarmupPacer(sender.PacerOptions{}); err != nil {
		t.Fatal(err)
	}
	if p.d, err = NewDecider(DeciderOptions{Warmup: p.w, Pacer: p.pacer, Shared: sh, Providers: []string{"gmail"}}); err != nil {
		t.Fatal(err)
	}
	p.opts = RunOptions{Interval: time.Minute, Lease: sh, Holder: name, Now: func() time.Time { return p.now },
		Flags: func(context.Context, time.Time) ([]Flag, error) { return p.flags, nil }}
	return p
}

// cycle runs one cycle at now (evaluating or following, by the lease).
func (p *process) cycle(t *testing.T, now time.Time) error {
	t.Helper()
	p.now = now
	return p.d.runOnce(context.Background(), p.opts)
}

func (p *process) mustCycle(t *testing.T, now time.Time) {
	t.Helper()
	if err := p.cycle(t, now); err != nil {
		t.Fatalf("%s: cycle at %s: %v", p.name, now, err)
	}
}

// poll runs the work between cycles at now.
func (p *process) poll(t *testing.T, now time.Time) {
	t.Helper()
	p.now = now
	if err := p.d.poll(context.Background(), p.opts); err != nil {
		t.Fatalf("%s: poll at %s: %v", p.name, now, err)
	}
}

// current is the process's current decisions as "scope action day #id".
func (p *process) current(now time.Time) []string {
	var out []string
	for _, d := range p.d.Current(now, DecisionScope{}) {
		out = append(out, fmt.Sprintf("%s %s day=%d daily=%d %s", d.Scope, d.Action, d.WarmupDay, d.DailyLimit, d.ID))
	}
	return out
}

func seqsOf(ds []Decision) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.Seq)
	}
	return out
}

var pauseFlag = Flag{Rule: "complaint_rate", Scope: Scope{SenderDomain: "a.example"}, Severity: SeverityPause,
	Value: 0.004, Threshold: 0.003, Sample: 5000, Window: "24h", Since: dT0}

// A decision the evaluator issues is written to the store and served by
// the follower, with its flags, sequence numbers and pacer override.
func TestSharedFollowerServesTheLeadersDecisions(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a, b := newProcess(t, "a", sh, vol), newProcess(t, "b", sh, vol)
	a.flags = []Flag{pauseFlag}
	a.mustCycle(t, dT0)
	b.mustCycle(t, dT0.Add(time.Second))

	if got := sh.seqs(); !slices.Equal(got, []int64{1}) {
		t.Fatalf("stored seqs = %v, want [1]", got)
	}
	if len(sh.flags) != 1 || !sh.flags[0].Raised || sh.flags[0].Rule != "complaint_rate" {
		t.Errorf("stored flag changes = %+v, want complaint_rate raised", sh.flags)
	}
	now := dT0.Add(2 * time.Second)
	if ca, cb := a.current(now), b.current(now); !slices.Equal(ca, cb) || len(ca) != 1 {
		t.Errorf("current: leader %q, follower %q; want the same one pause", ca, cb)
	}
	if fa, fb := a.d.ActiveFlags(), b.d.ActiveFlags(); len(fb) != 1 || fb[0].Rule != fa[0].Rule || !fb[0].Since.Equal(fa[0].Since) {
		t.Errorf("follower's flags = %+v, want the leader's %+v", fb, fa)
	}
	ds, latest, complete, _ := b.d.Store().Page(0)
	if !slices.Equal(seqsOf(ds), []int64{1}) || latest != 1 || !complete {
		t.Errorf("follower's page = %v latest %d complete %v, want [1] 1 true", seqsOf(ds), latest, complete)
	}
	k := sender.PaceKey{SenderDomain: "a.example", SendingIP: "192.0.2.1", Provider: "gmail"}
	if ok, _ := b.pacer.Take(k, now); ok {
		t.Error("the follower's pacer lets a.example send; the pause should apply to it too")
	}
}

// A write that fails is kept and retried at the next cycle: nothing is
// lost, nothing stored twice, the failure counted.
func TestSharedFailedWritesAreRetried(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a := newProcess(t, "a", sh, vol)
	a.flags = []Flag{pauseFlag}
	sh.fail = 1 // the decisions' write
	if err := a.cycle(t, dT0); err == nil {
		t.Fatal("cycle with the store down: no error")
	}
	if got := sh.seqs(); len(got) != 0 {
		t.Fatalf("stored seqs = %v after a failed write", got)
	}
	if st := a.d.SharedStats(); st.WriteFailures != 1 || st.Queued != 1 {
		t.Errorf("stats = %+v, want 1 failure, 1 decision queued", st)
	}
	if sh.version != 0 {
		t.Error("the state was saved though the decisions were not written")
	}
	a.flags = nil // the flag clears: a resume follows
	a.mustCycle(t, dT0.Add(time.Minute))
	if got := sh.seqs(); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("stored seqs = %v, want [1 2]", got)
	}
	if len(sh.flags) != 2 {
		t.Errorf("stored flag changes = %d, want 2 (raised, cleared)", len(sh.flags))
	}
	if st := a.d.SharedStats(); st.Queued != 0 {
		t.Errorf("stats = %+v, want nothing queued", st)
	}
	if sh.version == 0 {
		t.Error("no state saved after a cycle whose writes succeeded")
	}
}

// An override posted to a follower is applied by the evaluator, with the
// id the operator was answered with, and served by both; a cancel too.
func TestSharedOperatorActionsOnAFollower(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a, b := newProcess(t, "a", sh, vol), newProcess(t, "b", sh, vol)
	a.mustCycle(t, dT0)
	b.mustCycle(t, dT0)
	t1 := dT0.Add(time.Second)
	o, err := b.d.Override(context.Background(), OverrideRequest{Scope: aDom, Action: ActionPause,
		ExpiresAt: dT0.Add(time.Hour), Reason: "list import under review"}, "admin", t1)
	if err != nil {
		t.Fatal(err)
	}
	if len(sh.actions) != 1 || sh.actions[0].DecisionID != o.ID || sh.actions[0].Reason != "list import under review" {
		t.Fatalf("stored actions = %+v, want the override %s", sh.actions, o.ID)
	}
	if cur, _ := find(b.d.Current(t1, aDom), aDom); cur.ID == o.ID {
		t.Error("the follower serves the override before the evaluator issued it")
	}
	a.poll(t, dT0.Add(2*time.Second))
	b.poll(t, dT0.Add(3*time.Second))
	now := dT0.Add(4 * time.Second)
	for _, p := range []*process{a, b} {
		cur, ok := find(p.d.Current(now, aDom), aDom)
		if !ok || cur.ID != o.ID || cur.Action != ActionPause || cur.Seq != 2 {
			t.Errorf("%s: current %+v, want the override %s as seq 2", p.name, cur, o.ID)
		}
	}
	if audit := a.d.Store().Audit(); len(audit) != 1 || audit[0].Who != "admin" || audit[0].Decision != o.ID {
		t.Errorf("leader's audit = %+v", audit)
	}
	// Another poll applies nothing again.
	a.poll(t, dT0.Add(5*time.Second))
	if got := sh.seqs(); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("stored seqs = %v, want [1 2]", got)
	}

	res, err := b.d.Cancel(context.Background(), o.ID, "admin", "review done", dT0.Add(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a.poll(t, dT0.Add(7*time.Second))
	b.poll(t, dT0.Add(8*time.Second))
	for _, p := range []*process{a, b} {
		cur, _ := find(p.d.Current(dT0.Add(9*time.Second), aDom), aDom)
		if cur.ID != res.ID || cur.Action != ActionResume || cur.Source != SourceOperator {
			t.Errorf("%s: current %+v, want the cancel's resume %s", p.name, cur, res.ID)
		}
	}
	// A cancel of what is no longer current is rejected by the evaluator.
	if _, err := b.d.Cancel(context.Background(), res.ID, "admin", "again", dT0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.d.mu.Lock()
	delete(a.d.current, aDom) // as if it expired on the evaluator meanwhile
	a.d.mu.Unlock()
	a.poll(t, dT0.Add(11*time.Second))
	if st := a.d.SharedStats(); st.Rejected != 1 {
		t.Errorf("stats = %+v, want 1 rejected", st)
	}
}

// A restart (a new process on the store) keeps the warm-up day, the
// overrides and the sequence; so does a change of evaluator.
func TestSharedRestartKeepsWarmupSeqAndOverrides(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for i := range 4 {
		vol.add(day.AddDate(0, 0, i), Scope{SenderDomain: "a.example"}, 1_000_000)
	}
	a := newProcess(t, "a", sh, vol)
	for i := range 4 {
		a.mustCycle(t, dT0.AddDate(0, 0, i))
	}
	st, _ := a.w.State(Scope{SenderDomain: "a.example"})
	if st.Day < 3 {
		t.Fatalf("warm-up day %d after 4 days of full volume, want ≥ 3", st.Day)
	}
	t3 := dT0.AddDate(0, 0, 3)
	o, err := a.d.Override(context.Background(), OverrideRequest{Scope: DecisionScope{SenderDomain: "a.example", ISP: "gmail"},
		Action: ActionHold, ExpiresAt: t3.Add(time.Hour), Reason: "Gmail asked"}, "admin", t3.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a.poll(t, t3.Add(2*time.Second))
	last := a.d.Store().LastSeq()

	// The restart: a new process, the same holder.
	a2 := newProcess(t, "a", sh, vol)
	a2.mustCycle(t, t3.Add(time.Minute))
	st2, ok := a2.w.State(Scope{SenderDomain: "a.example"})
	if !ok || st2.Day != st.Day {
		t.Errorf("after the restart: warm-up day %d (%v), want %d", st2.Day, ok, st.Day)
	}
	if got := a2.current(t3.Add(time.Minute)); !slices.Equal(got, a.current(t3.Add(time.Minute))) {
		t.Errorf("after the restart, current:\n%q\nwant\n%q", got, a.current(t3.Add(time.Minute)))
	}
	if got := a2.d.Store().LastSeq(); got != last {
		t.Errorf("after the restart, last seq %d, want %d (nothing changed)", got, last)
	}
	// The override holds across the restart, then expires; the next
	// decision is numbered after the last stored.
	next := t3.Add(2 * time.Hour)
	a2.flags = []Flag{pauseFlag}
	a2.mustCycle(t, next)
	ds, _ := a2.d.Store().DecisionsSince(last)
	if len(ds) == 0 || ds[0].Seq != last+1 {
		t.Fatalf("after the restart: decisions %v, want seq %d on", seqsOf(ds), last+1)
	}
	for _, d := range a2.d.Current(next, DecisionScope{}) {
		if d.ID == o.ID {
			t.Errorf("the override %s is current after its expiry", o.ID)
		}
	}
	seqs := sh.seqs()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("stored seqs %v: not 1, 2, 3, … across the restart", seqs)
			break
		}
	}

	// A change of evaluator: b takes over and numbers on.
	b := newProcess(t, "b", sh, vol)
	b.mustCycle(t, next.Add(time.Second)) // follows
	sh.holder = "b"
	b.flags = nil                          // the pause clears: b issues the resume
	a2.mustCycle(t, next.Add(time.Minute)) // steps down
	b.mustCycle(t, next.Add(time.Minute))
	stB, _ := b.w.State(Scope{SenderDomain: "a.example"})
	if stB.Day != st.Day {
		t.Errorf("new evaluator's warm-up day %d, want %d", stB.Day, st.Day)
	}
	before := a2.d.Store().LastSeq()
	seqs = sh.seqs()
	if len(seqs) == 0 || seqs[len(seqs)-1] <= before {
		t.Errorf("stored seqs %v after the change of evaluator, want some after %d", seqs, before)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("stored seqs %v: not 1, 2, 3, … across the change of evaluator", seqs)
			break
		}
	}
	a2.mustCycle(t, next.Add(time.Minute+time.Second)) // follows
	if ca, cb := a2.current(next.Add(2*time.Minute)), b.current(next.Add(2*time.Minute)); !slices.Equal(ca, cb) {
		t.Errorf("after the change: old evaluator serves\n%q\nnew one\n%q", ca, cb)
	}
}

// An evaluator that loses the lease with decisions it could not write
// drops them (counted) and follows the store from what is stored: no seq
// is served twice with two meanings.
func TestSharedLostLeaseDropsUnwritten(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a, b := newProcess(t, "a", sh, vol), newProcess(t, "b", sh, vol)
	a.mustCycle(t, dT0)
	a.flags = []Flag{pauseFlag}
	sh.fail = 1
	if err := a.cycle(t, dT0.Add(time.Minute)); err == nil {
		t.Fatal("no error with the store down")
	}
	if a.d.Store().LastSeq() != 2 {
		t.Fatalf("a's last seq %d, want 2 (issued, not stored)", a.d.Store().LastSeq())
	}
	sh.holder = "b"
	b.flags = []Flag{{Rule: "bounce_rate", Scope: Scope{SenderDomain: "a.example"}, Severity: SeverityPause, Since: dT0}}
	b.mustCycle(t, dT0.Add(2*time.Minute))
	a.mustCycle(t, dT0.Add(3*time.Minute))
	if st := a.d.SharedStats(); st.Lost != 1 {
		t.Errorf("a's stats = %+v, want 1 lost", st)
	}
	ds, _ := a.d.Store().DecisionsSince(1)
	db, _ := b.d.Store().DecisionsSince(1)
	if len(ds) != 1 || len(db) != 1 || ds[0].ID != db[0].ID || ds[0].Seq != 2 {
		t.Errorf("after the change, seq 2 is %+v on a and %+v on b; want b's", ds, db)
	}
}

// A process that starts after the history window still serves what is in
// force, from the state, with its sequence numbers.
func TestSharedFollowerStartsFromTheState(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a := newProcess(t, "a", sh, vol)
	a.flags = []Flag{pauseFlag}
	a.mustCycle(t, dT0)
	later := dT0.Add(2 * followWindow)
	c := newProcess(t, "c", sh, vol)
	c.mustCycle(t, later)
	cur, ok := find(c.d.Current(later, DecisionScope{}), aDom)
	if !ok || cur.Action != ActionPause || cur.Seq != 1 {
		t.Errorf("late follower's current for a.example: %+v (%v), want the pause as seq 1", cur, ok)
	}
	if ds, latest, complete, _ := c.d.Store().Page(0); len(ds) != 0 || latest != 1 || complete {
		t.Errorf("late follower's page from 0: %v latest %d complete %v; want none, 1, incomplete", seqsOf(ds), latest, complete)
	}
}

// An operator's cancel on the evaluator survives its restart right after:
// the poll that writes the cancel saves the state that remembers it.
func TestSharedCancelSurvivesRestart(t *testing.T) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	vol.add(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scope{SenderDomain: "a.example"}, 10)
	a := newProcess(t, "a", sh, vol)
	a.flags = []Flag{pauseFlag}
	a.mustCycle(t, dT0)
	p, ok := find(a.d.Current(dT0, aDom), aDom)
	if !ok || p.Action != ActionPause {
		t.Fatalf("no pause: %+v", a.d.Current(dT0, aDom))
	}
	res, err := a.d.Cancel(context.Background(), p.ID, "admin", "false alarm", dT0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a.poll(t, dT0.Add(2*time.Second))

	a2 := newProcess(t, "a", sh, vol)
	a2.flags = []Flag{pauseFlag} // the same flag: the cancel holds
	a2.mustCycle(t, dT0.Add(time.Minute))
	if cur, _ := find(a2.d.Current(dT0.Add(time.Minute), aDom), aDom); cur.ID != res.ID {
		t.Errorf("after the restart: current %+v, want the cancel's resume %s", cur, res.ID)
	}
	if audit := sh.actions; len(audit) != 1 || audit[0].Action != "cancel" || audit[0].Target != p.ID || audit[0].Reason != "false alarm" {
		t.Errorf("stored operator actions = %+v, want the cancel of %s", audit, p.ID)
	}
}

// BenchmarkSharedFollow is a follower's poll after each cycle of the
// evaluator (a new state to read, parse and restore) with 1,000 sender
// domains warming up and nothing new in the history.
func BenchmarkSharedFollow(b *testing.B) {
	sh := &fakeShared{holder: "a"}
	vol := fakeVolumes{}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		vol.add(day, Scope{SenderDomain: fmt.Sprintf("d%d.example", i)}, 10)
	}
	a, c := newProcess(b, "a", sh, vol), newProcess(b, "c", sh, vol)
	a.now = dT0
	if err := a.d.runOnce(context.Background(), a.opts); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sh.mu.Lock()
		sh.version++ // as if the evaluator saved again
		sh.mu.Unlock()
		if err := c.d.follow(ctx, dT0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(sh.state)), "state-bytes")
}
