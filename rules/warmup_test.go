package rules

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"repute/sender"
)

// fakeVolumes is what was sent per day.
type fakeVolumes map[time.Time]map[Scope]int64

func (f fakeVolumes) Volumes(_ context.Context, day time.Time) (map[Scope]int64, error) {
	out := make(map[Scope]int64, len(f[day]))
	for s, n := range f[day] {
		out[s] = n
	}
	return out, nil
}

func (f fakeVolumes) add(day time.Time, s Scope, n int64) {
	if f[day] == nil {
		f[day] = map[Scope]int64{}
	}
	f[day][s] += n
}

var wT0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // day 1 of the walk-through

func simDay(i int) time.Time { return wT0.AddDate(0, 0, i-1) }

func mustWarmup(t *testing.T, cfg WarmupConfig, v Volumes) *Warmup {
	t.Helper()
	w, err := NewWarmup(cfg, v)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func stateOf(t *testing.T, w *Warmup, s Scope) WarmupState {
	t.Helper()
	st, ok := w.State(s)
	if !ok {
		t.Fatalf("no warm-up state for %+v", s)
	}
	return st
}

// The walk-through over 40 simulated days: a one-IP domain that
// sends its whole cap every day advances; a critical complaint rate steps
// it back; a warning holds it; an idle week regresses it; a 3-IP domain
// gets 3× and a 7-IP domain 5× the table, never more.
func TestWarmupWalkThrough(t *testing.T) {
	vol := fakeVolumes{}
	w := mustWarmup(t, WarmupConfig{}, vol)
	ctx := context.Background()

	a := Scope{SenderDomain: "a.example"}
	aIP := Scope{SenderDomain: "a.example", SendingIP: "192.0.2.1"}
	b := Scope{SenderDomain: "b.example"}
	c := Scope{SenderDomain: "c.example"}
	complaint := func(sev Severity, day int) Flag {
		return Flag{Rule: "complaint_rate", Scope: a, Severity: sev, Value: 0.004, Threshold: 0.003,
			Sample: 5000, Window: "7d", Since: simDay(day)}
	}
	idle := map[int]bool{15: true, 16: true, 17: true, 18: true, 19: true, 20: true, 21: true}
	wantDay := map[int]int{ // a.example's day at the start of day i
		1: 1, 2: 2, 3: 3, 11: 11,
		12: 10, // day 11 ended with a critical complaint rate: back one day
		13: 10, // day 12 ended with a warning: held
		14: 11, 15: 12,
		16: 12, 19: 12, // idle, but 3+ sending days remain in the week
		20: 11, 21: 10, 22: 9, // fewer than 3 sending days in 7: back one a day
		23: 10, 40: 27,
	}
	var flags []Flag
	for i := 1; i <= 40; i++ {
		now := simDay(i).Add(5 * time.Minute)
		if err := w.Step(ctx, now, flags); err != nil {
			t.Fatal(err)
		}
		if want, ok := wantDay[i]; ok && i > 1 {
			if got := stateOf(t, w, a).Day; got != want {
				t.Fatalf("start of day %d: a.example on warm-up day %d, want %d (%+v)", i, got, want, stateOf(t, w, a))
			}
		}
		// The day's sending: a.example sends its cap from one IP unless
		// idle; b.example from 3 IPs, c.example from 7, each its cap.
		if !idle[i] {
			st, ok := w.State(a)
			n := int64(1000)
			if ok {
				n = int64(st.Limits.PerDay)
			}
			vol.add(simDay(i), a, n)
			vol.add(simDay(i), aIP, n)
		}
		for k := range 3 {
			vol.add(simDay(i), Scope{SenderDomain: "b.example", SendingIP: "198.51.100." + string(rune('1'+k))}, 100)
		}
		vol.add(simDay(i), b, 300)
		for k := range 7 {
			vol.add(simDay(i), Scope{SenderDomain: "c.example", SendingIP: "203.0.113." + string(rune('1'+k))}, 100)
		}
		vol.add(simDay(i), c, 700)
		if i == 1 { // a new domain sending today has day 1's limits at once
			if err := w.Step(ctx, now.Add(time.Hour), nil); err != nil {
				t.Fatal(err)
			}
			if st := stateOf(t, w, a); st.Day != 1 || st.Limits.PerDay != 1000 || st.Limits.PerHour != 200 {
				t.Fatalf("a new domain: %+v, want day 1 at 1000/day, 200/hour", st)
			}
		}
		switch i {
		case 11:
			flags = []Flag{complaint(SeverityCritical, 11)}
		case 12:
			flags = []Flag{complaint(SeverityWarning, 12)}
		default:
			flags = nil
		}
	}
	st := stateOf(t, w, a)
	if st.Action != ActionAdvance {
		t.Errorf("a.example's last action %q, want advance", st.Action)
	}
	// b.example: 3 IPs → 3× the table; it sends 300 a day, far below its
	// cap, so it stays on day 1: an unused day proves nothing.
	if st := stateOf(t, w, b); st.Day != 1 || st.IPs != 3 || st.Limits.PerDay != 3000 || st.Limits.PerHour != 600 {
		t.Errorf("b.example: day %d, %d IPs, limits %+v; want day 1, 3 IPs, 3000/day 600/hour", st.Day, st.IPs, st.Limits)
	}
	if st := stateOf(t, w, b); st.Action != ActionHold || st.Why.Rule != RuleWarmupSent || st.Why.Threshold != 2400 {
		t.Errorf("b.example: %q because %+v; want hold under warmup_sent with threshold 2400", st.Action, st.Why)
	}
	// c.example: 7 IPs, capped at 5×.
	if st := stateOf(t, w, c); st.IPs != 7 || st.Limits.PerDay != 5000 || st.Limits.PerHour != 1000 {
		t.Errorf("c.example: %d IPs, limits %+v; want 7 IPs capped at 5000/day 1000/hour", st.IPs, st.Limits)
	}
	// Each IP keeps the table as it stands.
	if st := stateOf(t, w, Scope{SenderDomain: "c.example", SendingIP: "203.0.113.1"}); st.Limits.PerDay != 1000 {
		t.Errorf("an IP of c.example: %+v, want the table's 1000/day", st.Limits)
	}
}

func TestWarmupStepBackNeverBelowOne(t *testing.T) {
	vol := fakeVolumes{}
	w := mustWarmup(t, WarmupConfig{}, vol)
	a := Scope{SenderDomain: "a.example"}
	vol.add(simDay(1), a, 1000)
	crit := []Flag{{Rule: "complaint_rate", Scope: a, Severity: SeverityCritical}}
	for i := 1; i <= 4; i++ {
		if err := w.Step(context.Background(), simDay(i).Add(time.Minute), crit); err != nil {
			t.Fatal(err)
		}
	}
	if st := stateOf(t, w, a); st.Day != 1 || st.Action != ActionStepBack || st.Why.Rule != "complaint_rate" {
		t.Errorf("%+v: want day 1, step_back because of complaint_rate", st)
	}
}

// A pause flag holds the day; a response-pattern flag does not touch the
// warm-up; an IP's flag holds its domain too.
func TestWarmupFlagsThatApply(t *testing.T) {
	a := Scope{SenderDomain: "a.example"}
	ip := Scope{SenderDomain: "a.example", SendingIP: "192.0.2.1"}
	other := Scope{SenderDomain: "a.example", SendingIP: "192.0.2.2"}
	for _, tc := range []struct {
		name   string
		flag   Flag
		scope  Scope
		action Action
		day    int
	}{
		{"pause holds", Flag{Rule: "hard_bounce_rate", Scope: a, Severity: SeverityPause}, a, ActionHold, 1},
		{"response pattern is not warm-up", Flag{Rule: "yahoo_tss04", Scope: Scope{SenderDomain: "a.example", ISP: "yahoo"}, Severity: SeverityWarning, Action: ActionHold}, a, ActionAdvance, 2},
		{"IP warning holds its domain", Flag{Rule: "complaint_rate", Scope: ip, Severity: SeverityWarning}, a, ActionHold, 1},
		{"IP warning leaves another IP", Flag{Rule: "complaint_rate", Scope: ip, Severity: SeverityWarning}, other, ActionAdvance, 2},
		{"info does nothing", Flag{Rule: "machine_share", Scope: a, Severity: SeverityInfo}, a, ActionAdvance, 2},
		{"another domain's flag", Flag{Rule: "complaint_rate", Scope: Scope{SenderDomain: "b.example"}, Severity: SeverityCritical}, a, ActionAdvance, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := fakeVolumes{}
			vol.add(simDay(1), a, 2000)
			vol.add(simDay(1), ip, 1000)
			vol.add(simDay(1), other, 1000)
			w := mustWarmup(t, WarmupConfig{}, vol)
			if err := w.Step(context.Background(), simDay(2), []Flag{tc.flag}); err != nil {
				t.Fatal(err)
			}
			if st := stateOf(t, w, tc.scope); st.Action != tc.action || st.Day != tc.day {
				t.Errorf("%+v: %q on day %d, want %q on day %d", tc.scope, st.Action, st.Day, tc.action, tc.day)
			}
		})
	}
}

func TestWarmupAdvanceShare(t *testing.T) {
	a := Scope{SenderDomain: "a.example"}
	for _, tc := range []struct {
		sent int64
		day  int
	}{{799, 1}, {800, 2}, {1000, 2}, {0, 1}} {
		vol := fakeVolumes{}
		vol.add(simDay(1), a, tc.sent)
		w := mustWarmup(t, WarmupConfig{}, vol)
		w.Step(context.Background(), simDay(1), nil)
		w.states[a] = &WarmupState{Scope: a, Day: 1, Action: ActionHold}
		if err := w.Step(context.Background(), simDay(2), nil); err != nil {
			t.Fatal(err)
		}
		if st := stateOf(t, w, a); st.Day != tc.day {
			t.Errorf("sent %d of 1000: day %d, want %d", tc.sent, st.Day, tc.day)
		}
	}
}

func TestWarmupSkip(t *testing.T) {
	vol := fakeVolumes{}
	a := Scope{SenderDomain: "reg.example"}
	vol.add(simDay(1), a, 9000)
	w := mustWarmup(t, WarmupConfig{SkipWarmup: func(d string) bool { return d == "reg.example" }}, vol)
	for i := 1; i <= 3; i++ {
		if err := w.Step(context.Background(), simDay(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	st := stateOf(t, w, a)
	if !st.Skip || st.Limits != (sender.Limits{PerDay: 10000}) || st.Day != 1 {
		t.Errorf("skip_warmup: %+v, want skip with 10000/day and no schedule", st)
	}
}

func TestWarmupProviderLimits(t *testing.T) {
	w := mustWarmup(t, WarmupConfig{}, fakeVolumes{})
	if got := w.ProviderLimits(sender.Limits{PerDay: 1000, PerHour: 201, PerMinute: 4}); got != (sender.Limits{PerDay: 500, PerHour: 101, PerMinute: 2}) {
		t.Errorf("ProviderLimits = %+v", got)
	}
}

func TestWarmupConfigErrors(t *testing.T) {
	for _, c := range []WarmupConfig{{ProviderShare: 1.5}, {AdvanceShare: -1}, {MinSendDays: 8}, {MaxIPMultiplier: -1}} {
		if _, err := NewWarmup(c, fakeVolumes{}); err == nil {
			t.Errorf("NewWarmup(%+v) accepted", c)
		}
	}
	if _, err := NewWarmup(WarmupConfig{}, nil); err == nil {
		t.Error("NewWarmup without Volumes accepted")
	}
}

// A snapshot survives a restart (as JSON): the next Step judges the days
// missed since.
func TestWarmupSnapshotRestore(t *testing.T) {
	vol := fakeVolumes{}
	a := Scope{SenderDomain: "a.example"}
	w := mustWarmup(t, WarmupConfig{}, vol)
	for i := 1; i <= 3; i++ {
		st, ok := w.State(a)
		n := int64(1000)
		if ok {
			n = int64(st.Limits.PerDay)
		}
		vol.add(simDay(i), a, n)
		if err := w.Step(context.Background(), simDay(i+1), nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := stateOf(t, w, a); st.Day != 4 {
		t.Fatalf("before the restart: day %d, want 4", st.Day)
	}
	b, err := json.Marshal(w.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap WarmupSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	w2 := mustWarmup(t, WarmupConfig{}, vol)
	if err := w2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, w2, a); st.Day != 4 || st.Limits.PerDay != 3000 {
		t.Fatalf("restored: %+v", st)
	}
	// Day 4 was sent in full while the process was down; day 5 nothing.
	vol.add(simDay(4), a, 3000)
	if err := w2.Step(context.Background(), simDay(6), nil); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, w2, a); st.Day != 5 || st.Action != ActionHold {
		t.Errorf("after catching up two days: day %d (%s), want 5 (held on the idle day)", st.Day, st.Action)
	}
	if err := w2.Restore(WarmupSnapshot{States: []WarmupState{{Scope: a, Day: 0}}}); err == nil {
		t.Error("Restore accepted day 0")
	}
}

// A warmed domain (the sender's warmed_domains) has no warm-up state: no
// schedule, no cap, however much it sends.
func TestWarmupWarmedDomain(t *testing.T) {
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	vol := fakeVolumes{day: {{SenderDomain: "old.acme.example"}: 50000, {SenderDomain: "new.acme.example"}: 10}}
	w, err := NewWarmup(WarmupConfig{Warmed: func(d string) bool { return d == "old.acme.example" }}, vol)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Step(context.Background(), day.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.State(Scope{SenderDomain: "old.acme.example"}); ok {
		t.Errorf("a warmed domain has a warm-up state")
	}
	if st, ok := w.State(Scope{SenderDomain: "new.acme.example"}); !ok || st.Day != 1 {
		t.Errorf("a new domain: %+v %v, want day 1", st, ok)
	}
}
