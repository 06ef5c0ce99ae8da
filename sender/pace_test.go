package sender

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// paceT0 is not at the top of an hour, so that nothing can lean on calendar
// hours.
var paceT0 = time.Date(2026, 11, 2, 9, 37, 11, 0, time.UTC)

func newTestPacer(t testing.TB, o PacerOptions) *WarmupPacer {
	t.Helper()
	p, err := NewWarmupPacer(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// drain sends n messages for k as the queue would: Take at now; when
// refused, wait until retry (checking that a moment earlier is refused
// too: never sent early); stop at until. It returns the admission times
// and the refusals' retry times.
func paceDrain(t *testing.T, p *WarmupPacer, k PaceKey, now time.Time, n int, until time.Time) (admitted, retries []time.Time) {
	t.Helper()
	for len(admitted) < n && now.Before(until) {
		ok, retry := p.Take(k, now)
		if ok {
			admitted = append(admitted, now)
			p.Done(k, true)
			continue
		}
		if !retry.After(now) {
			t.Fatalf("Take(%v, %v) refused with retry %v, not after now", k, now, retry)
		}
		if ok, _ := p.Take(k, retry.Add(-time.Nanosecond)); ok {
			t.Fatalf("Take(%v) admitted 1 ns before its retry %v", k, retry)
		}
		p.Done(k, false) // no-op: nothing taken
		retries = append(retries, retry)
		now = retry
	}
	return admitted, retries
}

func paceCountIn(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, x := range ts {
		if !x.Before(from) && x.Before(to) {
			n++
		}
	}
	return n
}

// The acceptance: 1,500 messages from a new domain → 200 in its
// first hour, evenly spread, 1,000 on day 1, the rest waiting for day 2;
// day 2 admits 1,500 at 200/hour.
func TestPacerNewDomain(t *testing.T) {
	p := newTestPacer(t, PacerOptions{})
	k := PaceKey{SenderDomain: "news.acme.example", SendingIP: "192.0.2.1", Provider: "gmail"}
	day2 := paceT0.Add(24 * time.Hour)

	admitted, retries := paceDrain(t, p, k, paceT0, 1500, day2)
	if n := paceCountIn(admitted, paceT0, paceT0.Add(time.Hour)); n != 200 {
		t.Errorf("first hour admitted %d, want 200", n)
	}
	if len(admitted) != 1000 {
		t.Fatalf("day 1 admitted %d, want 1000", len(admitted))
	}
	minGap, maxGap := time.Duration(1<<62), time.Duration(0)
	for i := 1; i < len(admitted); i++ {
		g := admitted[i].Sub(admitted[i-1])
		minGap, maxGap = min(minGap, g), max(maxGap, g)
	}
	// Evenly: one every hour/200 = 18 s, never closer than the per-minute
	// spacing (60 s/4 = 15 s), never in a burst.
	if minGap != 18*time.Second || maxGap != 18*time.Second {
		t.Errorf("gaps between admissions in [%v, %v], want all 18s", minGap, maxGap)
	}
	last := retries[len(retries)-1]
	if !last.Equal(day2) {
		t.Errorf("the 1,001st message waits until %v, want day 2 at %v", last, day2)
	}
	if d := p.Day(k.SenderDomain, day2.Add(-time.Nanosecond)); d != 1 {
		t.Errorf("Day just before 24 h = %d, want 1", d)
	}

	// The remaining 500 go on day 2, and day 2 holds 1,500 at 200/hour.
	rest, _ := paceDrain(t, p, k, last, 5000, paceT0.Add(48*time.Hour))
	if len(rest) != 1500 {
		t.Errorf("day 2 admitted %d, want 1500", len(rest))
	}
	if rest[0].Before(day2) {
		t.Errorf("first message of day 2 at %v, before %v", rest[0], day2)
	}
	for h := day2; h.Before(paceT0.Add(48 * time.Hour)); h = h.Add(time.Hour) {
		if n := paceCountIn(rest, h, h.Add(time.Hour)); n > 200 {
			t.Errorf("hour from %v admitted %d, want ≤ 200", h, n)
		}
	}
	if d := p.Day(k.SenderDomain, day2); d != 2 {
		t.Errorf("Day at 24 h = %d, want 2", d)
	}
}

// run offers every key a message at each step, as a queue with plenty
// of mail for each would, until until; it counts admissions per key.
func paceRun(t *testing.T, p *WarmupPacer, keys []PaceKey, now, until time.Time) map[PaceKey][]time.Time {
	t.Helper()
	got := map[PaceKey][]time.Time{}
	for now.Before(until) {
		next := time.Time{}
		any := false
		for _, k := range keys {
			ok, retry := p.Take(k, now)
			if ok {
				got[k] = append(got[k], now)
				p.Done(k, true)
				any = true
				continue
			}
			if next.IsZero() || retry.Before(next) {
				next = retry
			}
		}
		if !any {
			if !next.After(now) {
				t.Fatalf("all refused at %v with retry %v", now, next)
			}
			now = next
		}
	}
	return got
}

func paceTotal(m map[PaceKey][]time.Time, from, to time.Time) int {
	n := 0
	for _, ts := range m {
		n += paceCountIn(ts, from, to)
	}
	return n
}

// With several IPs the domain may send more, never beyond 5× the table;
// and a domain-level limit holds whatever its IPs allow.
func TestPacerDomainCapsIPs(t *testing.T) {
	day := paceT0.Add(24 * time.Hour)
	keys := func(n int) []PaceKey {
		var ks []PaceKey
		for i := range n {
			ks = append(ks, PaceKey{"news.acme.example", "192.0.2." + string(rune('1'+i)), "gmail"})
		}
		return ks
	}

	// Two IPs: 1,000 each on day 1.
	got := paceRun(t, newTestPacer(t, PacerOptions{}), keys(2), paceT0, day)
	if n := paceTotal(got, paceT0, day); n != 2000 {
		t.Errorf("two IPs, day 1: %d, want 2000", n)
	}

	// Six IPs: the domain stops at 5 × 1,000 and 5 × 200 an hour.
	got = paceRun(t, newTestPacer(t, PacerOptions{}), keys(6), paceT0, day)
	if n := paceTotal(got, paceT0, day); n != 5000 {
		t.Errorf("six IPs, day 1: %d, want 5000", n)
	}
	// The first message went before the other five IPs were known (one
	// IP's spacing, 18 s, instead of five IPs' 3.6 s): 4 fewer.
	if n := paceTotal(got, paceT0, paceT0.Add(time.Hour)); n != 996 {
		t.Errorf("six IPs, first hour: %d, want 996 (5 × 200 less the first 18 s)", n)
	}

	// Two IPs under a domain decision of 1,200/day: the domain wins.
	p := newTestPacer(t, PacerOptions{})
	p.SetOverride(DomainScope("news.acme.example"), Override{Limits: Limits{PerDay: 1200}})
	got = paceRun(t, p, keys(2), paceT0, day)
	if n := paceTotal(got, paceT0, day); n != 1200 {
		t.Errorf("two IPs, domain capped at 1200: %d", n)
	}
	if ok, retry := p.Take(keys(2)[0], paceT0.Add(23*time.Hour)); ok || !retry.Equal(day) {
		t.Errorf("Take after the domain's day = %v, %v; want false, %v", ok, retry, day)
	}
}

func TestPacerConnectionCap(t *testing.T) {
	p := newTestPacer(t, PacerOptions{Connections: 2, ConnectionRetry: 3 * time.Second})
	gmail := PaceKey{"news.acme.example", "192.0.2.1", "gmail"}
	yahoo := PaceKey{"news.acme.example", "192.0.2.1", "yahoo"}
	now := paceT0
	for i := range 2 {
		if ok, r := p.Take(gmail, now); !ok {
			t.Fatalf("Take %d to gmail refused (retry %v)", i+1, r)
		}
		now = now.Add(time.Minute)
	}
	ok, retry := p.Take(gmail, now)
	if ok || !retry.Equal(now.Add(3*time.Second)) {
		t.Errorf("third connection to gmail: %v, %v; want false, %v", ok, retry, now.Add(3*time.Second))
	}
	if ok, _ := p.Take(yahoo, now); !ok {
		t.Error("yahoo refused while gmail is at its cap")
	}
	p.Done(gmail, true)
	if ok, _ := p.Take(gmail, now.Add(time.Minute)); !ok {
		t.Error("gmail refused after a Done freed a connection")
	}

	// An override tightens the cap to one connection.
	p.SetOverride(ProviderScope("news.acme.example", "yahoo"), Override{Limits: Limits{Connections: 1}})
	if ok, _ := p.Take(yahoo, now.Add(2*time.Minute)); ok {
		t.Error("second yahoo connection admitted under a one-connection override")
	}
}

// Done(sent=false) gives the slot back: the next message may go at once,
// and it does not count towards the day.
func TestPacerDoneNotSentGivesBack(t *testing.T) {
	p := newTestPacer(t, PacerOptions{})
	d := "news.acme.example"
	k := PaceKey{d, "192.0.2.1", "gmail"}
	p.SetOverride(DomainScope(d), Override{Limits: Limits{PerDay: 2}})
	for i := range 5 {
		if ok, r := p.Take(k, paceT0); !ok {
			t.Fatalf("Take %d after a failed send refused (retry %v)", i+1, r)
		}
		p.Done(k, false)
	}
	now := paceT0
	for i := range 2 {
		if ok, r := p.Take(k, now); !ok {
			t.Fatalf("send %d refused (retry %v)", i+1, r)
		}
		p.Done(k, true)
		now = now.Add(time.Minute)
	}
	if ok, r := p.Take(k, now); ok || !r.Equal(paceT0.Add(24*time.Hour)) {
		t.Errorf("third send of a 2/day domain: %v, %v; want false, %v", ok, r, paceT0.Add(24*time.Hour))
	}
	// A Done without a Take changes nothing.
	p.Done(PaceKey{d, "192.0.2.9", "none"}, false)
	if ok, _ := p.Take(k, now); ok {
		t.Error("a stray Done freed a slot")
	}
}

func TestPacerOverridePause(t *testing.T) {
	p := newTestPacer(t, PacerOptions{})
	d := "news.acme.example"
	gmail := PaceKey{d, "192.0.2.1", "gmail"}
	yahoo := PaceKey{d, "192.0.2.1", "yahoo"}
	until := paceT0.Add(time.Hour)
	p.SetOverride(ProviderScope(d, "gmail"), Override{Pause: true, Until: until, Reason: "421 from gmail"})
	if ok, r := p.Take(gmail, paceT0); ok || !r.Equal(until) {
		t.Errorf("paused gmail: %v, %v; want false, %v", ok, r, until)
	}
	if ok, r := p.Take(yahoo, paceT0); !ok {
		t.Errorf("yahoo refused (retry %v) while only gmail is paused", r)
	}
	p.Done(yahoo, true)
	if ok, r := p.Take(gmail, until); !ok {
		t.Errorf("gmail refused at the end of its pause (retry %v)", r)
	}
	p.Done(gmail, true)

	// A pause without an end holds until cleared.
	p.SetOverride(DomainScope(d), Override{Pause: true})
	now := until.Add(time.Hour)
	if ok, r := p.Take(yahoo, now); ok || !r.Equal(now.Add(DefaultPauseRecheck)) {
		t.Errorf("open-ended pause: %v, %v; want false, %v", ok, r, now.Add(DefaultPauseRecheck))
	}
	p.ClearOverride(DomainScope(d))
	if ok, r := p.Take(yahoo, now); !ok {
		t.Errorf("refused after ClearOverride (retry %v)", r)
	}
}

// paceFakeHistory is a store of sent times for one domain.
type paceFakeHistory struct {
	mu   sync.Mutex
	now  *time.Time
	sent []time.Time
}

func (h *paceFakeHistory) FirstSent(_ context.Context, _ string) (time.Time, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sent) == 0 {
		return time.Time{}, false, nil
	}
	f := h.sent[0]
	for _, s := range h.sent {
		if s.Before(f) {
			f = s
		}
	}
	return f, true, nil
}

func (h *paceFakeHistory) Sent(_ context.Context, _ string, since time.Time) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(paceCountIn(h.sent, since, *h.now)), nil
}

func (h *paceFakeHistory) add(ts ...time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, ts...)
}

// A slow-down caps the rate until it ends; the schedule (here day 30,
// from the store's first send) holds again after it.
func TestPacerOverrideSlowDown(t *testing.T) {
	now := paceT0
	h := &paceFakeHistory{now: &now}
	d := "news.acme.example"
	h.add(paceT0.Add(-29*24*time.Hour - time.Minute)) // day 30 at paceT0
	p := newTestPacer(t, PacerOptions{History: h, Now: func() time.Time { return now }})
	k := PaceKey{d, "192.0.2.1", "gmail"}
	p.Take(k, paceT0.Add(-time.Hour)) // the pacer learns of the domain
	p.Done(k, false)
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if day := p.Day(d, paceT0); day != 30 {
		t.Fatalf("Day = %d, want 30", day)
	}
	end := paceT0.Add(5 * time.Minute)
	p.SetOverride(DomainScope(d), Override{Until: end, Limits: Limits{PerMinute: 10}, Reason: "deferrals"})
	got, _ := paceDrain(t, p, k, paceT0, 1<<20, paceT0.Add(10*time.Minute))
	if n := paceCountIn(got, paceT0, end); n != 50 {
		t.Errorf("5 minutes at 10/minute admitted %d, want 50", n)
	}
	for i := 1; i < len(got) && got[i].Before(end); i++ {
		if g := got[i].Sub(got[i-1]); g < 6*time.Second {
			t.Errorf("admissions %v apart under 10/minute", g)
		}
	}
	// Day 30: 5,000/hour → one every 720 ms (84/minute: 714 ms).
	if n := paceCountIn(got, end, end.Add(5*time.Minute)); n < 400 || n > 420 {
		t.Errorf("5 minutes after the slow-down admitted %d, want ~417", n)
	}
}

// Another process's sends, read from History, come off this process's
// budget: day and hour.
func TestPacerHistorySharesBudget(t *testing.T) {
	now := paceT0
	h := &paceFakeHistory{now: &now}
	d := "news.acme.example"
	first := paceT0.Add(-10 * time.Hour)
	// The other process: 710 spread over 8 hours, then 190 in the 10
	// minutes before paceT0.
	for i := range 710 {
		h.add(first.Add(time.Duration(i) * 8 * time.Hour / 710))
	}
	burst := paceT0.Add(-10 * time.Minute)
	for i := range 190 {
		h.add(burst.Add(time.Duration(i) * 10 * time.Minute / 190))
	}
	p := newTestPacer(t, PacerOptions{History: h, Now: func() time.Time { return now }})
	k := PaceKey{d, "192.0.2.1", "gmail"}
	p.Take(k, paceT0.Add(-time.Hour))
	p.Done(k, false)

	dayEnd := first.Add(24 * time.Hour)
	var ours []time.Time
	lastRefresh := time.Time{}
	for now.Before(dayEnd) {
		if now.Sub(lastRefresh) >= 5*time.Second {
			if err := p.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			lastRefresh = now
		}
		ok, retry := p.Take(k, now)
		if ok {
			ours = append(ours, now)
			p.Done(k, true)
			h.add(now) // our sent event reaches the store
			continue
		}
		// wake for the retry or the next refresh, whichever is first
		now = retry
		if r := lastRefresh.Add(5 * time.Second); r.Before(now) {
			now = r
		}
	}
	if len(ours) != 100 {
		t.Errorf("day 1 with 900 sent elsewhere: %d admitted here, want 100", len(ours))
	}
	if p.Day(d, paceT0) != 1 || p.Day(d, dayEnd) != 2 {
		t.Errorf("Day = %d at paceT0, %d at +24h from the other's first send; want 1, 2",
			p.Day(d, paceT0), p.Day(d, dayEnd))
	}
	for _, a := range ours {
		if n := paceCountIn(h.sent, a.Add(-time.Hour+time.Nanosecond), a.Add(time.Nanosecond)); n > 201 {
			t.Errorf("hour up to %v holds %d sends of both processes, want ≤ 200 (+1 stale)", a, n)
		}
	}
	// 190 sent elsewhere in the last hour leave 10 until they age out.
	if n := paceCountIn(ours, paceT0, burst.Add(time.Hour)); n != 10 {
		t.Errorf("%d admitted while the other's 190 were in the hour, want 10", n)
	}
}

// Many goroutines Take and Done at once: the connection cap holds, and
// the race detector finds nothing.
func TestPacerConcurrent(t *testing.T) {
	p := newTestPacer(t, PacerOptions{Connections: 3, Schedule: func(int) Limits { return Limits{} }})
	var clock atomic.Int64
	var inflight [4]atomic.Int32
	var admitted atomic.Int64
	providers := []string{"gmail", "yahoo", "microsoft", "other"}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				pi := (g + i) % len(providers)
				k := PaceKey{"news.acme.example", "192.0.2.1", providers[pi]}
				now := paceT0.Add(time.Duration(clock.Add(1)) * time.Millisecond)
				if ok, _ := p.Take(k, now); !ok {
					continue
				}
				admitted.Add(1)
				if n := inflight[pi].Add(1); n > 3 {
					t.Errorf("%s: %d in flight, cap 3", providers[pi], n)
				}
				inflight[pi].Add(-1)
				p.Done(k, i%3 == 0)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() == 0 {
		t.Error("nothing admitted")
	}
	for _, pr := range providers {
		if ok, r := p.Take(PaceKey{"news.acme.example", "192.0.2.1", pr}, paceT0.Add(time.Hour)); !ok {
			t.Errorf("%s refused after every Done (retry %v): connections leaked", pr, r)
		}
	}
}

func TestNewWarmupPacerErrors(t *testing.T) {
	if _, err := NewWarmupPacer(PacerOptions{Connections: -1}); err == nil {
		t.Error("negative connections accepted")
	}
	if _, err := NewWarmupPacer(PacerOptions{ConnectionRetry: -time.Second}); err == nil {
		t.Error("negative connection retry accepted")
	}
}

// A warmed domain is not held to the schedule: 5,000 messages on its day
// 1 go at once, while a new domain beside it gets its day-1 limits; the
// per-provider connection cap and an override still hold for it.
func TestPacerWarmedDomain(t *testing.T) {
	warm, fresh := "news.acme.example", "new.acme.example"
	p := newTestPacer(t, PacerOptions{Connections: 2, ConnectionRetry: 3 * time.Second,
		Warmed: func(d string) bool { return d == warm }})
	k := PaceKey{warm, "192.0.2.1", "gmail"}
	got, retries := paceDrain(t, p, k, paceT0, 5000, paceT0.Add(time.Second))
	if len(got) != 5000 || len(retries) != 0 {
		t.Errorf("warmed domain: %d admitted at once, %d refusals; want 5000, 0", len(got), len(retries))
	}
	if got, _ := paceDrain(t, p, PaceKey{fresh, "192.0.2.1", "gmail"}, paceT0, 5000, paceT0.Add(time.Hour)); len(got) != 200 {
		t.Errorf("new domain beside it: %d admitted in its first hour, want 200", len(got))
	}

	// The connection cap.
	now := paceT0.Add(time.Minute)
	for i := range 2 {
		if ok, r := p.Take(k, now); !ok {
			t.Fatalf("connection %d refused (retry %v)", i+1, r)
		}
	}
	if ok, retry := p.Take(k, now); ok || !retry.Equal(now.Add(3*time.Second)) {
		t.Errorf("third connection: %v, %v; want false, %v", ok, retry, now.Add(3*time.Second))
	}
	p.Done(k, true)
	p.Done(k, true)

	// An override.
	p.SetOverride(DomainScope(warm), Override{Limits: Limits{PerMinute: 10}, Reason: "deferrals"})
	now = now.Add(time.Minute)
	got, _ = paceDrain(t, p, k, now, 1<<20, now.Add(5*time.Minute))
	if len(got) != 50 {
		t.Errorf("warmed domain under a 10/minute override: %d in 5 minutes, want 50", len(got))
	}
	p.SetOverride(DomainScope(warm), Override{Pause: true})
	if ok, _ := p.Take(k, now.Add(10*time.Minute)); ok {
		t.Error("warmed domain admitted while paused")
	}
}
