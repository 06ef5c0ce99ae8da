package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"repute/sender"
)

var dT0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

type deciderFixture struct {
	vol   fakeVolumes
	w     *Warmup
	d     *Decider
	pacer *sender.WarmupPacer
}

func newDeciderFixture(t *testing.T) *deciderFixture {
	t.Helper()
	f := &deciderFixture{vol: fakeVolumes{}}
	f.w = mustWarmup(t, WarmupConfig{}, f.vol)
	p, err := sender.NewWarmupPacer(sender.PacerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.pacer = p
	f.d, err = NewDecider(DeciderOptions{Warmup: f.w, Pacer: p, Providers: []string{"gmail", "yahoo"}})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	f.vol.add(day, Scope{SenderDomain: "a.example"}, 10)
	f.vol.add(day, Scope{SenderDomain: "a.example", SendingIP: "192.0.2.1"}, 10)
	return f
}

func (f *deciderFixture) cycle(t *testing.T, now time.Time, flags ...Flag) []Decision {
	t.Helper()
	ds, err := f.d.Cycle(context.Background(), now, flags)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func find(ds []Decision, s DecisionScope) (Decision, bool) {
	for _, d := range ds {
		if d.Scope == s {
			return d, true
		}
	}
	return Decision{}, false
}

var aDom = DecisionScope{SenderDomain: "a.example"}

// A sender domain that sends and has no decision gets its warm-up day's
// limits, in exactly the shape issue 13 pins; ids stay while nothing
// changes.
func TestDeciderWarmupDecisionShape(t *testing.T) {
	f := newDeciderFixture(t)
	ds := f.cycle(t, dT0)
	if len(ds) != 2 {
		t.Fatalf("first cycle: %d decisions, want 2 (the domain and its IP): %+v", len(ds), ds)
	}
	dec, ok := find(ds, aDom)
	if !ok {
		t.Fatal("no decision for a.example")
	}
	got, _ := json.Marshal(dec)
	want := `{"id":"` + dec.ID + `","scope":{"sender_domain":"a.example","sending_ip":"","isp":""},"action":"hold",` +
		`"warmup_day":1,"daily_limit":1000,"hourly_limit":200,"minute_limit":null,"max_connections":null,` +
		`"reasons":[{"rule":"warmup_new","value":0,"threshold":0,"sample":0,"window":"1d"}],` +
		`"issued_at":"2026-03-02T09:30:00Z","expires_at":"2026-03-03T00:00:00Z","source":"rule"}`
	if string(got) != want {
		t.Errorf("decision JSON\n got %s\nwant %s", got, want)
	}
	if dec.Seq == 0 {
		t.Error("decision without a sequence number")
	}
	if again := f.cycle(t, dT0.Add(time.Minute)); len(again) != 0 {
		t.Errorf("unchanged inputs issued %+v", again)
	}
	if cur, _ := find(f.d.Current(dT0.Add(time.Minute), aDom), aDom); cur.ID != dec.ID {
		t.Errorf("Current = %+v, want the same id %s", cur, dec.ID)
	}
	// The next day is a new decision (a new expiry; the day held: 10 sent).
	next := f.cycle(t, dT0.Add(24*time.Hour))
	if d2, ok := find(next, aDom); !ok || d2.ID == dec.ID || d2.Action != ActionHold || d2.Reasons[0].Rule != RuleWarmupSent {
		t.Errorf("next day: %+v", next)
	}
}

// A pause flag stops the pacer's Take at once; when it clears, a resume
// restarts it.
func TestDeciderPauseStopsPacerAndResumeRestarts(t *testing.T) {
	f := newDeciderFixture(t)
	k := sender.PaceKey{SenderDomain: "a.example", SendingIP: "192.0.2.1", Provider: "gmail"}
	f.cycle(t, dT0)
	if ok, _ := f.pacer.Take(k, dT0); !ok {
		t.Fatal("Take refused before any pause")
	}
	f.pacer.Done(k, true)

	pause := Flag{Rule: "complaint_rate", Scope: Scope{SenderDomain: "a.example"}, Severity: SeverityPause,
		Value: 0.006, Threshold: 0.005, Sample: 2000, Window: "7d", Since: dT0.Add(time.Minute)}
	t1 := dT0.Add(2 * time.Minute)
	ds := f.cycle(t, t1, pause)
	dec, ok := find(ds, aDom)
	if !ok || dec.Action != ActionPause || dec.ExpiresAt != nil || dec.DailyLimit != 0 || dec.Reasons[0].Rule != "complaint_rate" {
		t.Fatalf("pause flag: %+v", ds)
	}
	if ok, retry := f.pacer.Take(k, t1.Add(time.Minute)); ok {
		t.Fatal("Take admitted during a pause")
	} else if retry.Before(t1.Add(time.Minute)) {
		t.Fatalf("paused retry %v", retry)
	}
	if again := f.cycle(t, t1.Add(time.Minute), pause); len(again) != 0 {
		t.Errorf("a standing pause issued %+v", again)
	}

	t2 := t1.Add(10 * time.Minute)
	ds = f.cycle(t, t2) // the flag cleared
	res, ok := find(ds, aDom)
	if !ok || res.Action != ActionResume || res.DailyLimit != 1000 || res.ExpiresAt == nil || !res.ExpiresAt.Equal(t2.Add(time.Hour)) {
		t.Fatalf("flag cleared: %+v", ds)
	}
	if ok, _ := f.pacer.Take(k, t2); !ok {
		t.Fatal("Take refused after resume")
	}
	f.pacer.Done(k, true)
	// The flag history holds the raise and the clear.
	h := f.d.Store().Flags()
	if len(h) != 2 || !h[0].Active || h[1].Active || h[0].Flag.Rule != "complaint_rate" {
		t.Errorf("flag history %+v", h)
	}
	// After ResumeFor, the ordinary warm-up decision again.
	ds = f.cycle(t, t2.Add(time.Hour))
	if d, ok := find(ds, aDom); !ok || d.Action != ActionHold {
		t.Errorf("after the resume: %+v", ds)
	}
}

// A pause flag of a domain the warm-up does not keep (here one that sent
// nothing the warm-up saw; a warmed domain is the same) pauses it all the
// same, and the pacer with it; when the flag clears, a resume follows.
func TestDeciderPausesDomainWithoutWarmup(t *testing.T) {
	f := newDeciderFixture(t)
	bDom := DecisionScope{SenderDomain: "b.example"}
	k := sender.PaceKey{SenderDomain: "b.example", Provider: "gmail"}
	f.cycle(t, dT0)
	pause := Flag{Rule: "hard_bounce_rate", Scope: Scope{SenderDomain: "b.example"}, Severity: SeverityPause,
		Value: 0.12, Threshold: 0.10, Sample: 500, Window: "7d", Since: dT0}
	warn := Flag{Rule: "complaint_rate", Scope: Scope{SenderDomain: "c.example"}, Severity: SeverityWarning,
		Value: 0.002, Threshold: 0.001, Sample: 5000, Window: "7d", Since: dT0}
	t1 := dT0.Add(time.Minute)
	ds := f.cycle(t, t1, pause, warn)
	dec, ok := find(ds, bDom)
	if !ok || dec.Action != ActionPause || dec.ExpiresAt != nil || len(dec.Reasons) != 1 || dec.Reasons[0].Rule != "hard_bounce_rate" {
		t.Fatalf("pause flag of b.example: %+v", ds)
	}
	if _, ok := find(ds, DecisionScope{SenderDomain: "c.example"}); ok {
		t.Errorf("a warning made a decision for a domain without warm-up: %+v", ds)
	}
	if ok, _ := f.pacer.Take(k, t1); ok {
		t.Error("Take admitted b.example during its pause")
	}
	t2 := t1.Add(10 * time.Minute)
	ds = f.cycle(t, t2) // cleared
	if res, ok := find(ds, bDom); !ok || res.Action != ActionResume {
		t.Fatalf("flag cleared: %+v", ds)
	}
	if ok, _ := f.pacer.Take(k, t2); !ok {
		t.Error("Take refused b.example after the resume")
	}
}

// Response patterns: Yahoo's TSS04 suspends Yahoo for 2 h (the other
// providers still go); Gmail's "unusual rate" slows it to 10 a minute
// over one connection.
func TestDeciderResponsePatterns(t *testing.T) {
	f := newDeciderFixture(t)
	yahoo := Flag{Rule: "yahoo_tss04", Scope: Scope{SenderDomain: "a.example", ISP: "yahoo"}, Severity: SeverityWarning,
		Sample: 1, Window: "1h", Action: ActionHold, For: 2 * time.Hour, Since: dT0}
	gmail := Flag{Rule: "gmail_unusual_rate", Scope: Scope{SenderDomain: "a.example", ISP: "gmail"}, Severity: SeverityWarning,
		Value: 2, Threshold: 2, Sample: 2, Window: "1h", Action: ActionSlow, For: 30 * time.Minute, MinuteLimit: 10,
		MaxConnections: 1, Since: dT0}
	ds := f.cycle(t, dT0, yahoo, gmail)
	y, ok := find(ds, DecisionScope{SenderDomain: "a.example", ISP: "yahoo"})
	if !ok || y.Action != ActionHold || y.ExpiresAt == nil || !y.ExpiresAt.Equal(dT0.Add(2*time.Hour)) || y.DailyLimit != 500 {
		t.Fatalf("yahoo: %+v", y)
	}
	g, ok := find(ds, DecisionScope{SenderDomain: "a.example", ISP: "gmail"})
	if !ok || g.Action != ActionSlow || g.MinuteLimit == nil || *g.MinuteLimit != 10 || g.MaxConnections == nil || *g.MaxConnections != 1 {
		t.Fatalf("gmail: %+v", g)
	}
	ky := sender.PaceKey{SenderDomain: "a.example", SendingIP: "192.0.2.1", Provider: "yahoo"}
	kg := sender.PaceKey{SenderDomain: "a.example", SendingIP: "192.0.2.1", Provider: "gmail"}
	now := dT0.Add(time.Minute)
	if ok, retry := f.pacer.Take(ky, now); ok || !retry.Equal(dT0.Add(2*time.Hour)) {
		t.Errorf("yahoo Take = %v, retry %v; want refused until the suspension ends", ok, retry)
	}
	if ok, _ := f.pacer.Take(kg, now); !ok {
		t.Fatal("gmail refused")
	}
	// one connection: a second Take before Done is refused
	if ok, _ := f.pacer.Take(kg, now.Add(10*time.Second)); ok {
		t.Error("gmail admitted a second connection under max_connections 1")
	}
	f.pacer.Done(kg, true)
	// 10 a minute: one every 6 s
	if ok, _ := f.pacer.Take(kg, now.Add(5*time.Second)); ok {
		t.Error("gmail admitted 5 s after the last, under 10 a minute")
	}
	// After 2 h the suspension has expired: no resume is issued (it ended
	// when it said), and Yahoo goes again.
	later := dT0.Add(2*time.Hour + time.Minute)
	ds = f.cycle(t, later, yahoo, gmail)
	if _, ok := find(ds, DecisionScope{SenderDomain: "a.example", ISP: "yahoo"}); ok {
		t.Errorf("an expired suspension issued %+v", ds)
	}
	if cur := f.d.Current(later, DecisionScope{ISP: "yahoo"}); len(cur) != 0 {
		t.Errorf("current after expiry: %+v", cur)
	}
	if ok, _ := f.pacer.Take(ky, later); !ok {
		t.Error("yahoo still refused after its suspension")
	}
}

// A response flag that clears before its end is followed by a resume.
func TestDeciderEarlyClearResumes(t *testing.T) {
	f := newDeciderFixture(t)
	ms := Flag{Rule: "microsoft_throttle", Scope: Scope{SenderDomain: "a.example", ISP: "microsoft"}, Severity: SeverityWarning,
		Action: ActionPause, For: 24 * time.Hour, Since: dT0}
	f.cycle(t, dT0, ms)
	ds := f.cycle(t, dT0.Add(time.Hour))
	if d, ok := find(ds, DecisionScope{SenderDomain: "a.example", ISP: "microsoft"}); !ok || d.Action != ActionResume || d.DailyLimit != 500 {
		t.Errorf("cleared early: %+v", ds)
	}
}

func TestDeciderCancelAndOverride(t *testing.T) {
	f := newDeciderFixture(t)
	yahoo := Flag{Rule: "yahoo_tss04", Scope: Scope{SenderDomain: "a.example", ISP: "yahoo"}, Severity: SeverityWarning,
		Action: ActionHold, For: 2 * time.Hour, Since: dT0}
	ys := DecisionScope{SenderDomain: "a.example", ISP: "yahoo"}
	ds := f.cycle(t, dT0, yahoo)
	y, _ := find(ds, ys)
	if _, err := f.d.Cancel(context.Background(), y.ID, "admin", "", dT0); !errors.Is(err, ErrInvalid) {
		t.Errorf("cancel without a reason: %v", err)
	}
	if _, err := f.d.Cancel(context.Background(), "dec_nope", "admin", "x", dT0); !errors.Is(err, ErrNoDecision) {
		t.Errorf("cancel of an unknown id: %v", err)
	}
	t1 := dT0.Add(time.Minute)
	res, err := f.d.Cancel(context.Background(), y.ID, "admin", "Yahoo confirmed the block is lifted", t1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionResume || res.Source != SourceOperator || res.Scope != ys {
		t.Errorf("cancel issued %+v", res)
	}
	ky := sender.PaceKey{SenderDomain: "a.example", Provider: "yahoo"}
	if ok, _ := f.pacer.Take(ky, t1); !ok {
		t.Error("yahoo refused after the cancel")
	}
	f.pacer.Done(ky, true)
	// The flag still stands: the cancelled decision does not come back.
	if again := f.cycle(t, t1.Add(time.Minute), yahoo); len(again) != 0 {
		t.Errorf("a cancelled decision came back: %+v", again)
	}
	audit := f.d.Store().Audit()
	if len(audit) != 1 || audit[0].Who != "admin" || audit[0].Action != "cancel" || audit[0].Target != y.ID ||
		audit[0].Reason != "Yahoo confirmed the block is lifted" || !audit[0].At.Equal(t1) {
		t.Errorf("audit %+v", audit)
	}

	// An override replaces the domain's warm-up decision until it expires.
	t2 := t1.Add(time.Hour)
	if _, err := f.d.Override(context.Background(), OverrideRequest{Scope: aDom, Action: ActionSlow, ExpiresAt: t2, Reason: "x"}, "admin", t1); !errors.Is(err, ErrInvalid) {
		t.Errorf("slow without limits: %v", err)
	}
	if _, err := f.d.Override(context.Background(), OverrideRequest{Scope: aDom, Action: ActionPause, ExpiresAt: t1, Reason: "x"}, "admin", t1); !errors.Is(err, ErrInvalid) {
		t.Errorf("expiry in the past: %v", err)
	}
	o, err := f.d.Override(context.Background(), OverrideRequest{Scope: aDom, Action: ActionPause, ExpiresAt: t2, Reason: "list import under review"}, "admin", t1)
	if err != nil {
		t.Fatal(err)
	}
	if o.Source != SourceOperator || o.Action != ActionPause || !o.ExpiresAt.Equal(t2) {
		t.Errorf("override %+v", o)
	}
	kg := sender.PaceKey{SenderDomain: "a.example", Provider: "gmail"}
	if ok, _ := f.pacer.Take(kg, t1.Add(time.Second)); ok {
		t.Error("Take admitted under an operator pause")
	}
	if again := f.cycle(t, t1.Add(2*time.Minute), yahoo); len(again) != 0 {
		t.Errorf("the override was replaced: %+v", again)
	}
	if cur, _ := find(f.d.Current(t1.Add(2*time.Minute), aDom), aDom); cur.ID != o.ID {
		t.Errorf("current %+v, want the override", cur)
	}
	if a := f.d.Store().Audit(); len(a) != 2 || a[1].Action != "override" || a[1].Decision != o.ID || a[1].Reason != "list import under review" {
		t.Errorf("audit %+v", a)
	}
	// After its expiry the warm-up decision is back and the pacer admits.
	ds = f.cycle(t, t2)
	if d, ok := find(ds, aDom); !ok || d.Source != SourceRule {
		t.Errorf("after the override: %+v", ds)
	}
	if ok, _ := f.pacer.Take(kg, t2); !ok {
		t.Error("Take refused after the override expired")
	}
}

// The domain's providers get their share of its day on the pacer.
func TestDeciderProviderShareOnPacer(t *testing.T) {
	f := newDeciderFixture(t)
	f.cycle(t, dT0)
	k := sender.PaceKey{SenderDomain: "a.example", SendingIP: "192.0.2.1", Provider: "gmail"}
	now := dT0
	n := 0
	for range 2000 {
		ok, retry := f.pacer.Take(k, now)
		if ok {
			n++
			f.pacer.Done(k, true)
			continue
		}
		if !retry.Before(dT0.Add(24 * time.Hour)) {
			break
		}
		now = retry
	}
	if n != 500 {
		t.Errorf("gmail got %d of a.example's first day, want 500 (half of 1000)", n)
	}
}

func TestMemoryStoreBounded(t *testing.T) {
	m := NewMemoryStore(3)
	for range 5 {
		m.AppendDecision(Decision{ID: "x"})
	}
	if ds, complete := m.DecisionsSince(1); complete || len(ds) != 3 || ds[0].Seq != 3 {
		t.Errorf("since 1: %d decisions, complete %v", len(ds), complete)
	}
	if ds, complete := m.DecisionsSince(2); !complete || len(ds) != 3 {
		t.Errorf("since 2: %d decisions, complete %v", len(ds), complete)
	}
	if ds, complete := m.DecisionsSince(5); !complete || len(ds) != 0 {
		t.Errorf("since 5: %d decisions, complete %v", len(ds), complete)
	}
	w := m.Watch()
	m.AppendDecision(Decision{})
	select {
	case <-w:
	default:
		t.Error("Watch not woken")
	}
}

type fakeLease struct{ held bool }

func (l *fakeLease) TryLease(context.Context, string, string, time.Duration) (bool, error) {
	return l.held, nil
}

func TestDeciderRunNeedsLease(t *testing.T) {
	f := newDeciderFixture(t)
	calls := 0
	o := RunOptions{Interval: time.Minute, Lease: &fakeLease{}, Holder: "n1", Now: func() time.Time { return dT0 },
		Flags: func(context.Context, time.Time) ([]Flag, error) { calls++; return nil, nil }}
	if err := f.d.runOnce(context.Background(), o); err != nil || calls != 0 {
		t.Errorf("without the lease: err %v, %d evaluations", err, calls)
	}
	o.Lease = &fakeLease{held: true}
	if err := f.d.runOnce(context.Background(), o); err != nil || calls != 1 || len(f.d.Current(dT0, aDom)) != 2 {
		t.Errorf("with the lease: err %v, %d evaluations", err, calls)
	}
}

func TestMemoryStorePage(t *testing.T) {
	m := NewMemoryStore(0)
	m.AppendDecision(Decision{ID: "a"})
	ds, latest, complete, watch := m.Page(0)
	if len(ds) != 1 || latest != 1 || !complete {
		t.Fatalf("Page(0) = %d decisions, latest %d, complete %v", len(ds), latest, complete)
	}
	m.AppendDecision(Decision{ID: "b"})
	select {
	case <-watch:
	default:
		t.Error("Page's watch not woken by the next decision")
	}
}

// One cycle for 10,000 sender domains (one IP each) with a flag on every
// tenth, nothing changed since the last cycle: the steady state.
func BenchmarkDeciderCycle10k(b *testing.B) {
	vol := fakeVolumes{}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var flags []Flag
	for i := range 10000 {
		d := fmt.Sprintf("d%05d.example", i)
		vol.add(day, Scope{SenderDomain: d}, 100)
		vol.add(day, Scope{SenderDomain: d, SendingIP: "192.0.2.1"}, 100)
		if i%10 == 0 {
			flags = append(flags, Flag{Rule: "yahoo_tss04", Scope: Scope{SenderDomain: d, ISP: "yahoo"},
				Severity: SeverityWarning, Action: ActionHold, For: 2 * time.Hour, Since: dT0})
		}
	}
	w, _ := NewWarmup(WarmupConfig{}, vol)
	p, _ := sender.NewWarmupPacer(sender.PacerOptions{})
	d, _ := NewDecider(DeciderOptions{Warmup: w, Pacer: p})
	if _, err := d.Cycle(context.Background(), dT0, flags); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Cycle(context.Background(), dT0.Add(time.Duration(i+1)*time.Second), flags); err != nil {
			b.Fatal(err)
		}
	}
}
