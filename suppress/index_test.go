package suppress

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"repute/metrics"
)

// clock is the injected clock of the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var day0 = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

const day = 24 * time.Hour

func newIndex(t *testing.T) (*Index, *clock) {
	t.Helper()
	c := &clock{t: day0}
	x, err := New(Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return x, c
}

var nextID atomic.Int64

func bounce(account, rcpt, reason string, at time.Time) metrics.Event {
	return metrics.Event{EventID: fmt.Sprintf("%032x", nextID.Add(1)), Time: at, Kind: metrics.KindBounced,
		Account: account, SenderDomain: "news.acme.example", Recipient: rcpt, Reason: reason,
		Status: "5.1.1", ReplyCode: 550}
}

var shared = Trust{Shared: true, By: "imap"}

func observe(t *testing.T, x *Index, trust Trust, events ...metrics.Event) []Change {
	t.Helper()
	ch, err := x.Observe(events, trust)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func countAction(ch []Change, a Action) int {
	n := 0
	for _, c := range ch {
		if c.Action == a {
			n++
		}
	}
	return n
}

func withoutAction(ch []Change, a Action) []Change {
	var out []Change
	for _, c := range ch {
		if c.Action != a {
			out = append(out, c)
		}
	}
	return out
}

func check(x *Index, by Principal, domain, rcpt string) Verdict {
	return x.Check(by, domain, []string{rcpt})[0]
}

func wantBlocked(t *testing.T, x *Index, by Principal, rcpt string, blocked bool) Verdict {
	t.Helper()
	v := check(x, by, "news.acme.example", rcpt)
	if v.Allowed == blocked {
		t.Fatalf("at %s, Check(%s, %s) = %+v; want blocked %v", x.now().Format(time.RFC3339), by, rcpt, v, blocked)
	}
	return v
}

var acme = Principal{Account: "acme"}

func TestHardBounceBlocksExactly14Days(t *testing.T) {
	x, c := newIndex(t)
	b := bounce("acme", "Gone@Example.com", "userunknown", day0.Add(-time.Hour))
	ch := observe(t, x, shared, b)
	if len(ch) != 1 || ch[0].Action != ActionAdded || ch[0].EventID != b.EventID || ch[0].Address != "gone@example.com" ||
		!ch[0].Until.Equal(b.Time.Add(14*day)) || !ch[0].Shared || ch[0].By != "imap" {
		t.Fatalf("changes = %+v; want one added, until 14 days after the bounce, naming its event", ch)
	}
	v := wantBlocked(t, x, acme, "gone@example.com", true)
	if v.List != Blocklist || v.Reason != "userunknown" || v.EventID != b.EventID ||
		!v.Since.Equal(b.Time) || !v.Until.Equal(b.Time.Add(14*day)) {
		t.Fatalf("verdict = %+v", v)
	}
	c.Set(b.Time.Add(14*day - time.Second))
	wantBlocked(t, x, acme, "gone@example.com", true)
	c.Set(b.Time.Add(14*day - time.Nanosecond))
	wantBlocked(t, x, acme, "gone@example.com", true)
	c.Set(b.Time.Add(14 * day))
	wantBlocked(t, x, acme, "gone@example.com", false)
	c.Set(b.Time.Add(14*day + time.Second))
	wantBlocked(t, x, acme, "gone@example.com", false)

	sw := x.Sweep(c.Now())
	if len(sw) != 1 || sw[0].Action != ActionExpired || !sw[0].Time.Equal(b.Time.Add(14*day)) || sw[0].EventID != b.EventID {
		t.Fatalf("sweep = %+v; want one expired at the expiry", sw)
	}
	if s, o := x.Len(); s != 0 || o != 0 {
		t.Fatalf("after the sweep %d, %d entries remain", s, o)
	}
}

func TestSecondBounceExtendsOlderDoesNotShorten(t *testing.T) {
	x, c := newIndex(t)
	b1 := bounce("acme", "gone@example.com", "userunknown", day0)
	observe(t, x, shared, b1)
	c.Set(day0.Add(10 * day))
	b2 := bounce("beta", "gone@example.com", "hostunknown", day0.Add(10*day))
	ch := observe(t, x, shared, b2)
	if len(ch) != 1 || ch[0].Action != ActionExtended || !ch[0].Until.Equal(day0.Add(24*day)) ||
		!ch[0].Since.Equal(day0) || ch[0].EventID != b2.EventID {
		t.Fatalf("changes = %+v; want extended to day 24, since day 0, by the second event", ch)
	}
	// Out of order: a bounce of day 5 arrives late, and the same day-10
	// bounce again.
	if ch := observe(t, x, shared, bounce("acme", "gone@example.com", "userunknown", day0.Add(5*day)), b2); len(ch) != 0 {
		t.Fatalf("an older and a repeated bounce changed %+v", ch)
	}
	c.Set(day0.Add(24*day - time.Second))
	v := wantBlocked(t, x, Principal{Account: "beta"}, "gone@example.com", true)
	if v.EventID != b2.EventID || v.Reason != "hostunknown" {
		t.Fatalf("verdict = %+v; want the day-10 event", v)
	}
	c.Set(day0.Add(24 * day))
	wantBlocked(t, x, acme, "gone@example.com", false)
}

func TestReputationBlockNeverBlocklists(t *testing.T) {
	x, _ := newIndex(t)
	var evs []metrics.Event
	for i, reason := range []string{"blocked", "badreputation", "policyviolation", "spamdetected", "authfailure",
		"rejected", "requireptr", "toomanyconn", "speeding", "securityerror", "contenterror", "notaccept"} {
		e := bounce("acme", fmt.Sprintf("r%d@gmail.com", i), reason, day0)
		e.Status, e.ReplyCode, e.BounceType = "5.7.1", 550, metrics.BounceHard
		e.Diagnostic = "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely suspicious due to the very low reputation of the sending IP address."
		if reason == "notaccept" {
			e.Status, e.ReplyCode = "4.3.2", 421 // notaccept counts only when permanent
		}
		for range 5 {
			evs = append(evs, e)
			e.EventID += "x"
		}
	}
	if ch := observe(t, x, shared, evs...); len(ch) != 0 {
		t.Fatalf("reputation blocks made changes: %+v", ch)
	}
	for i := range 12 {
		wantBlocked(t, x, acme, fmt.Sprintf("r%d@gmail.com", i), false)
	}
}

func TestSoftBouncesCounted(t *testing.T) {
	x, c := newIndex(t)
	c.Set(day0.Add(20 * day))
	base := day0.Add(10 * day)
	// Two in a week: not blocked.
	observe(t, x, shared, bounce("acme", "two@example.com", "mailboxfull", base),
		bounce("acme", "two@example.com", "mailboxfull", base.Add(3*day)))
	wantBlocked(t, x, acme, "two@example.com", false)
	// Three, but spread over more than 7 days.
	observe(t, x, shared, bounce("acme", "spread@example.com", "mailboxfull", base),
		bounce("acme", "spread@example.com", "mailboxfull", base.Add(4*day)),
		bounce("acme", "spread@example.com", "mailboxfull", base.Add(7*day+time.Second)))
	wantBlocked(t, x, acme, "spread@example.com", false)
	// The same event three times is one bounce.
	rep := bounce("acme", "rep@example.com", "mailboxfull", base)
	observe(t, x, shared, rep, rep, rep)
	wantBlocked(t, x, acme, "rep@example.com", false)
	// Three within exactly 7 days, out of order, of the mailbox-side
	// reasons: blocked until 14 days after the latest.
	last := bounce("beta", "three@example.com", "suspend", base.Add(7*day))
	ch := observe(t, x, shared, last, bounce("acme", "three@example.com", "mailboxfull", base),
		bounce("acme", "three@example.com", "exceedlimit", base.Add(2*day)))
	if n := countAction(ch, ActionCounted); n != 3 {
		t.Fatalf("changes = %+v; want the three bounces counted", ch)
	}
	ch = withoutAction(ch, ActionCounted)
	if len(ch) != 1 || ch[0].Action != ActionAdded || ch[0].EventID != last.EventID || !ch[0].Until.Equal(last.Time.Add(14*day)) {
		t.Fatalf("changes = %+v; want added by the latest of the three, until 14 days after it", ch)
	}
	wantBlocked(t, x, acme, "three@example.com", true)
	// A fourth extends.
	ch = withoutAction(observe(t, x, shared, bounce("acme", "three@example.com", "mailboxfull", base.Add(9*day))), ActionCounted)
	if len(ch) != 1 || ch[0].Action != ActionExtended {
		t.Fatalf("fourth soft bounce: %+v; want extended", ch)
	}
}

func TestLiftNeedsOwnSendsOrAdmin(t *testing.T) {
	x, c := newIndex(t)
	b := bounce("beta", "gone@example.com", "userunknown", day0)
	observe(t, x, shared, b)
	c.Add(time.Hour)

	ch, err := x.Lift(acme, "gone@example.com", "customer says it works")
	var fe *ForbiddenError
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &fe) {
		t.Fatalf("acme lifting beta's entry: %v; want ErrForbidden", err)
	}
	for _, want := range []string{"account acme may not lift gone@example.com", "another account's sends", "admin key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "beta") {
		t.Errorf("error %q names the other tenant", err)
	}
	if len(ch) != 1 || ch[0].Action != ActionLiftRefused || ch[0].Account != "acme" || ch[0].EventID != "" {
		t.Fatalf("refused lift recorded as %+v", ch)
	}
	wantBlocked(t, x, acme, "gone@example.com", true)
	// acme sees the entry, not beta's event id.
	if v := check(x, acme, "x.example", "gone@example.com"); v.EventID != "" {
		t.Fatalf("acme sees beta's event id: %+v", v)
	}

	if _, err := x.Lift(Principal{Account: "beta"}, "gone@example.com", ""); !errors.Is(err, ErrNoReason) {
		t.Fatalf("lift without a reason: %v", err)
	}
	ch, err = x.Lift(Principal{Admin: true}, "GONE@example.com", "support ticket 12")
	if err != nil || len(ch) != 1 || ch[0].Action != ActionLifted || ch[0].By != "admin" ||
		ch[0].EventID != b.EventID || ch[0].Reason != "support ticket 12" {
		t.Fatalf("admin lift: %+v, %v", ch, err)
	}
	wantBlocked(t, x, acme, "gone@example.com", false)
	if _, err := x.Lift(Principal{Admin: true}, "gone@example.com", "again"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second lift: %v; want ErrNotFound", err)
	}

	// The evidence from before the lift, seen again, does not put it back;
	// a new bounce does.
	observe(t, x, shared, b)
	wantBlocked(t, x, acme, "gone@example.com", false)
	observe(t, x, shared, bounce("beta", "gone@example.com", "userunknown", c.Now().Add(time.Minute)))
	wantBlocked(t, x, acme, "gone@example.com", true)
	// beta's own sends caused it: beta may lift it.
	if _, err := x.Lift(Principal{Account: "beta"}, "gone@example.com", "fixed"); err != nil {
		t.Fatalf("beta lifting its own: %v", err)
	}
}

func TestLiftRestartsSoftCount(t *testing.T) {
	x, c := newIndex(t)
	c.Set(day0.Add(3 * day))
	for i := range 3 {
		observe(t, x, shared, bounce("acme", "full@example.com", "mailboxfull", day0.Add(time.Duration(i)*day)))
	}
	wantBlocked(t, x, acme, "full@example.com", true)
	if _, err := x.Lift(acme, "full@example.com", "emptied"); err != nil {
		t.Fatal(err)
	}
	// Two more after the lift: the three before it no longer count.
	for i := range 2 {
		observe(t, x, shared, bounce("acme", "full@example.com", "mailboxfull", c.Now().Add(time.Duration(i+1)*time.Hour)))
	}
	wantBlocked(t, x, acme, "full@example.com", false)
	observe(t, x, shared, bounce("acme", "full@example.com", "mailboxfull", c.Now().Add(3*time.Hour)))
	c.Add(4 * time.Hour)
	wantBlocked(t, x, acme, "full@example.com", true)
}

func TestAccountKeyBounceIsThatAccountsOnly(t *testing.T) {
	x, _ := newIndex(t)
	b := bounce("acme", "gone@example.com", "userunknown", day0)
	ch := observe(t, x, Trust{Account: "acme", By: "key:acme"}, b)
	if len(ch) != 1 || ch[0].Shared || ch[0].Account != "acme" {
		t.Fatalf("changes = %+v; want one entry scoped to acme", ch)
	}
	v := wantBlocked(t, x, acme, "gone@example.com", true)
	if v.EventID != b.EventID {
		t.Fatalf("verdict %+v does not name the event", v)
	}
	wantBlocked(t, x, Principal{Account: "beta"}, "gone@example.com", false)
	wantBlocked(t, x, Principal{Admin: true}, "gone@example.com", false) // the admin with no account: shared only
	if es, _ := x.Lookup(Principal{Account: "beta"}, "gone@example.com"); len(es) != 0 {
		t.Fatalf("beta sees %+v", es)
	}
	if es, _ := x.Lookup(acme, "gone@example.com"); len(es) != 1 || es[0].Shared || es[0].EventID != b.EventID {
		t.Fatalf("acme sees %+v", es)
	}
	if _, err := x.Lift(Principal{Account: "beta"}, "gone@example.com", "mine?"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("beta lifting acme's own entry: %v; want ErrNotFound", err)
	}
	if _, err := x.Lift(acme, "gone@example.com", "mine"); err != nil {
		t.Fatal(err)
	}
	wantBlocked(t, x, acme, "gone@example.com", false)
	if _, err := x.Observe([]metrics.Event{b}, Trust{}); err == nil {
		t.Fatal("Observe with an empty trust: no error")
	}
}

func TestComplaintUnsubscribesThatSenderDomainOnly(t *testing.T) {
	x, c := newIndex(t)
	comp := metrics.Event{EventID: "arf-1@example.net", Time: day0, Kind: metrics.KindComplained, Account: "acme",
		SenderDomain: "News.Acme.example", Recipient: "Reader@example.com", FeedbackType: "abuse"}
	ch := observe(t, x, shared, comp)
	if len(ch) != 1 || ch[0].Action != ActionUnsubscribed || ch[0].SenderDomain != "news.acme.example" ||
		ch[0].EventID != comp.EventID || ch[0].List != Unsubscribe || !ch[0].Until.IsZero() {
		t.Fatalf("changes = %+v", ch)
	}
	v := check(x, acme, "news.acme.example", "reader@example.com")
	if v.Allowed || v.List != Unsubscribe || v.EventID != comp.EventID || !v.Until.IsZero() || !v.Since.Equal(day0) {
		t.Fatalf("verdict = %+v; want unsubscribed by the complaint", v)
	}
	if v := check(x, acme, "billing.acme.example", "reader@example.com"); !v.Allowed {
		t.Fatalf("another sender domain: %+v", v)
	}
	if v := check(x, Principal{Account: "beta"}, "news.acme.example", "reader@example.com"); !v.Allowed {
		t.Fatalf("another account: %+v", v)
	}
	// Permanent: a year later still unsubscribed.
	c.Add(365 * day)
	if v := check(x, acme, "news.acme.example", "reader@example.com"); v.Allowed {
		t.Fatal("unsubscribe expired")
	}
	if _, err := x.Resubscribe(acme, "news.acme.example", "reader@example.com", ""); !errors.Is(err, ErrNoReason) {
		t.Fatalf("resubscribe without reason: %v", err)
	}
	ch, err := x.Resubscribe(acme, "news.acme.example", "reader@example.com", "signed up again")
	if err != nil || len(ch) != 1 || ch[0].Action != ActionResubscribed {
		t.Fatalf("resubscribe: %+v, %v", ch, err)
	}
	if v := check(x, acme, "news.acme.example", "reader@example.com"); !v.Allowed {
		t.Fatalf("after re-subscribing: %+v", v)
	}
	observe(t, x, shared, comp) // the old complaint again changes nothing
	if v := check(x, acme, "news.acme.example", "reader@example.com"); !v.Allowed {
		t.Fatalf("old complaint replayed: %+v", v)
	}
	// An unsubscribe through the API and one event without a sender
	// domain (account-wide).
	if _, err := x.Unsubscribe(acme, "billing.acme.example", "reader@example.com", ""); err != nil {
		t.Fatal(err)
	}
	if v := check(x, acme, "billing.acme.example", "reader@example.com"); v.Allowed || v.Reason != "api" {
		t.Fatalf("API unsubscribe: %+v", v)
	}
	observe(t, x, shared, metrics.Event{EventID: "u2", Time: c.Now(), Kind: metrics.KindUnsubscribed,
		Account: "acme", Recipient: "all@example.com"})
	if v := check(x, acme, "any.acme.example", "all@example.com"); v.Allowed {
		t.Fatalf("account-wide unsubscribe: %+v", v)
	}
}

func TestCheckBatch(t *testing.T) {
	x, _ := newIndex(t)
	observe(t, x, shared, bounce("acme", "gone@example.com", "userunknown", day0))
	got := x.Check(acme, "news.acme.example", []string{"ok@example.com", "not an address", "GONE@example.com", "", "b@münchen.example"})
	want := []struct {
		allowed bool
		list    List
		err     bool
	}{{true, "", false}, {false, "", true}, {false, Blocklist, false}, {false, "", true}, {true, "", false}}
	if len(got) != len(want) {
		t.Fatalf("%d verdicts for 5 recipients", len(got))
	}
	for i, w := range want {
		if got[i].Allowed != w.allowed || got[i].List != w.list || (got[i].Error != "") != w.err {
			t.Errorf("verdict %d = %+v; want allowed %v list %q error %v", i, got[i], w.allowed, w.list, w.err)
		}
	}
	if got[2].Recipient != "GONE@example.com" || !strings.Contains(got[1].Error, `"not an address"`) {
		t.Errorf("verdicts do not keep the recipient as given or name it: %+v", got)
	}
}

func TestLoadRebuilds(t *testing.T) {
	x, c := newIndex(t)
	entries := []Entry{
		{List: Blocklist, Address: "a@example.com", Account: "acme", Shared: true, Reason: "userunknown",
			Since: day0, Until: day0.Add(14 * day), EventID: "0123456789abcdef0123456789abcdef"},
		{List: Blocklist, Address: "b@example.com", Account: "acme", Shared: true, Reason: "hasmoved",
			Since: day0, Until: day0.Add(-time.Second), EventID: "old"}, // expired: skipped
		{List: Blocklist, Address: "c@example.com", Account: "beta", Scope: "beta", Reason: "mailboxfull",
			Since: day0, Until: day0.Add(3 * day), EventID: "Not-Hex:ID/1"},
		{List: Unsubscribe, Address: "d@example.com", Account: "acme", SenderDomain: "news.acme.example",
			Reason: "complained", Since: day0, EventID: "e1"},
		{List: "other", Address: "e@example.com"},
		{List: Blocklist, Address: "not an address"},
	}
	err := x.Load(func(yield func(Entry) bool) {
		for _, e := range entries {
			if !yield(e) {
				return
			}
		}
	})
	if err == nil || !strings.Contains(err.Error(), "unknown list") || !strings.Contains(err.Error(), "not an address") {
		t.Fatalf("Load error %v; want the two bad entries named", err)
	}
	if v := check(x, acme, "", "a@example.com"); v.Allowed || v.EventID != entries[0].EventID {
		t.Fatalf("a: %+v", v)
	}
	wantBlocked(t, x, acme, "b@example.com", false)
	if v := check(x, Principal{Account: "beta"}, "", "c@example.com"); v.Allowed || v.EventID != "Not-Hex:ID/1" {
		t.Fatalf("c: %+v; want the odd event id as given", v)
	}
	if v := check(x, acme, "news.acme.example", "d@example.com"); v.Allowed {
		t.Fatalf("d: %+v", v)
	}
	c.Add(3 * day)
	if ch := x.Sweep(c.Now()); len(ch) != 1 || ch[0].Address != "c@example.com" || ch[0].EventID != "Not-Hex:ID/1" {
		t.Fatalf("sweep: %+v", ch)
	}
}

// Concurrent observe, lift, check and sweep, for -race; and the entries
// that remain are consistent with what Check says.
func TestConcurrent(t *testing.T) {
	x, c := newIndex(t)
	var wg sync.WaitGroup
	const n = 2000
	for w := range 4 {
		wg.Go(func() {
			for i := range n {
				rcpt := fmt.Sprintf("u%d@example.com", (i*7+w)%300)
				switch (i + w) % 4 {
				case 0:
					x.Observe([]metrics.Event{bounce("acme", rcpt, "userunknown", c.Now())}, shared)
				case 1:
					x.Observe([]metrics.Event{bounce("beta", rcpt, "mailboxfull", c.Now())}, Trust{Account: "beta"})
				case 2:
					x.Lift(Principal{Admin: true}, rcpt, "test")
				case 3:
					x.Check(acme, "news.acme.example", []string{rcpt, "a@b.example"})
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			c.Add(time.Hour)
			x.Sweep(c.Now())
			x.Unsubscribe(acme, "news.acme.example", "z@example.com", "")
			x.Resubscribe(acme, "news.acme.example", "z@example.com", "again")
		}
	})
	wg.Wait()
	s, o := x.Len()
	checkTable(t, x.shared)
	checkTable(t, x.own)
	t.Logf("%d shared, %d own entries remain", s, o)
}
