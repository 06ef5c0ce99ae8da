package suppress

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

// pages reads every page of list with limit, checking each page's size.
func pages(t *testing.T, list func(Principal, ListQuery) ([]Entry, string, error), by Principal, q ListQuery) []Entry {
	t.Helper()
	var all []Entry
	for n := 0; ; n++ {
		page, next, err := list(by, q)
		if err != nil {
			t.Fatal(err)
		}
		if next != "" && len(page) != q.limit() {
			t.Fatalf("page %d: %d entries and a next, want %d", n, len(page), q.limit())
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if n > 10000 {
			t.Fatal("paging does not end")
		}
		q.Cursor = next
	}
}

func entryKey(e Entry) string {
	return fmt.Sprintf("%s|%s|%s|%s", e.Address, e.Scope, e.Account, e.SenderDomain)
}

// inOrder checks entries are newest first, then by address, without
// repeats.
func inOrder(t *testing.T, entries []Entry) {
	t.Helper()
	seen := map[string]bool{}
	for i, e := range entries {
		if seen[entryKey(e)] {
			t.Errorf("%s listed twice", entryKey(e))
		}
		seen[entryKey(e)] = true
		if i == 0 {
			continue
		}
		p := entries[i-1]
		if p.Since.Before(e.Since) || p.Since.Equal(e.Since) && p.Address > e.Address {
			t.Errorf("out of order: %s (%s) before %s (%s)", p.Address, p.Since, e.Address, e.Since)
		}
	}
}

// listFixture: 250 shared entries (many sharing a since), 40 of acme's
// own and 30 of globex's, a few sharing addresses with shared ones.
func listFixture(t *testing.T) (*Index, *clock) {
	x, c := newIndex(t)
	var sharedEv, acmeEv, globexEv []metrics.Event
	for i := range 250 {
		reason := "userunknown"
		if i%5 == 0 {
			reason = "hostunknown"
		}
		account := "acme"
		if i%2 == 1 {
			account = "globex"
		}
		sharedEv = append(sharedEv, bounce(account, fmt.Sprintf("s%03d@x.example", i), reason, day0.Add(-time.Duration(i%13)*time.Hour)))
	}
	for i := range 40 {
		acmeEv = append(acmeEv, bounce("acme", fmt.Sprintf("s%03d@x.example", i*3), "userunknown", day0.Add(-time.Duration(i%4)*day)))
	}
	for i := range 30 {
		globexEv = append(globexEv, bounce("globex", fmt.Sprintf("g%03d@y.example", i), "userunknown", day0.Add(-time.Duration(i%3)*day)))
	}
	observe(t, x, shared, sharedEv...)
	observe(t, x, Trust{Account: "acme"}, acmeEv...)
	observe(t, x, Trust{Account: "globex"}, globexEv...)
	return x, c
}

func TestBlocklistPaging(t *testing.T) {
	x, _ := listFixture(t)
	for _, tt := range []struct {
		by        Principal
		want      int
		ownScopes map[string]bool
	}{
		{Principal{Account: "acme"}, 250 + 40, map[string]bool{"acme": true}},
		{Principal{Account: "globex"}, 250 + 30, map[string]bool{"globex": true}},
		{Principal{Account: "initech"}, 250, nil},
		{Principal{Admin: true}, 250 + 40 + 30, map[string]bool{"acme": true, "globex": true}},
		{Principal{Admin: true, Account: "globex"}, 250 + 30, map[string]bool{"globex": true}},
	} {
		for _, limit := range []int{1, 7, 100, 1000} {
			all := pages(t, x.Blocklist, tt.by, ListQuery{Limit: limit})
			if len(all) != tt.want {
				t.Errorf("%s, limit %d: %d entries, want %d", tt.by, limit, len(all), tt.want)
			}
			inOrder(t, all)
			for _, e := range all {
				if !e.Shared && !tt.ownScopes[e.Scope] {
					t.Errorf("%s sees %s's own entry %s", tt.by, e.Scope, e.Address)
				}
				wantID := tt.by.Admin || e.Account == tt.by.Account
				if (e.EventID != "") != wantID {
					t.Errorf("%s: entry %s caused by %s: event id %q", tt.by, e.Address, e.Account, e.EventID)
				}
			}
		}
	}
	// The default page.
	page, next, err := x.Blocklist(Principal{Admin: true}, ListQuery{})
	if err != nil || len(page) != DefaultListLimit || next == "" {
		t.Errorf("default page: %d entries, next %q, %v", len(page), next, err)
	}
	if page, _, _ := x.Blocklist(Principal{Admin: true}, ListQuery{Limit: 5000}); len(page) != 320 {
		t.Errorf("limit over the maximum: %d entries", len(page))
	}
}

func TestBlocklistFilters(t *testing.T) {
	x, _ := listFixture(t)
	by := Principal{Account: "acme"}
	host := pages(t, x.Blocklist, by, ListQuery{Limit: 9, Reason: "hostunknown"})
	if len(host) != 50 {
		t.Errorf("reason hostunknown: %d entries, want 50", len(host))
	}
	for _, e := range host {
		if e.Reason != "hostunknown" {
			t.Errorf("reason filter let %+v through", e)
		}
	}
	if e, next, err := x.Blocklist(by, ListQuery{Reason: "nosuchreason"}); len(e) != 0 || next != "" || err != nil {
		t.Errorf("an unknown reason: %v %q %v", e, next, err)
	}
	since := day0.Add(-2 * time.Hour)
	recent := pages(t, x.Blocklist, by, ListQuery{Limit: 4, Since: since})
	want := 0
	for _, e := range pages(t, x.Blocklist, by, ListQuery{Limit: 1000}) {
		if !e.Since.Before(since) {
			want++
		}
	}
	if len(recent) != want || want == 0 {
		t.Errorf("since: %d entries, want %d", len(recent), want)
	}
	for _, e := range recent {
		if e.Since.Before(since) {
			t.Errorf("since filter let %+v through", e)
		}
	}
}

func TestBlocklistExpiryAndConcurrentInserts(t *testing.T) {
	x, c := listFixture(t)
	by := Principal{Admin: true}
	page, next, err := x.Blocklist(by, ListQuery{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	// New entries, newer than any: they sort before the cursor and do
	// not appear on later pages; the rest still come once each.
	observe(t, x, shared, bounce("acme", "late1@z.example", "userunknown", day0.Add(time.Minute)),
		bounce("acme", "late2@z.example", "userunknown", day0.Add(time.Minute)))
	rest := pages(t, x.Blocklist, by, ListQuery{Limit: 50, Cursor: next})
	all := append(page, rest...)
	inOrder(t, all)
	if len(all) != 320 {
		t.Errorf("with inserts between pages: %d entries, want the 320 of the start", len(all))
	}
	for _, e := range rest {
		if e.Address == "late1@z.example" || e.Address == "late2@z.example" {
			t.Errorf("a newer entry appeared on a later page: %s", e.Address)
		}
	}
	// Past their expiry entries are not listed, swept or not. The own
	// entries of 3 days ago expire 11 days from now.
	c.Set(day0.Add(12 * day))
	left := pages(t, x.Blocklist, by, ListQuery{Limit: 30})
	for _, e := range left {
		if !c.Now().Before(e.Until) {
			t.Errorf("expired entry listed: %+v", e)
		}
	}
	if len(left) == 0 || len(left) >= 322 {
		t.Errorf("after 12 days: %d entries", len(left))
	}
	c.Set(day0.Add(15 * day))
	if all, next, _ := x.Blocklist(by, ListQuery{}); len(all) != 0 || next != "" {
		t.Errorf("after 15 days: %d entries listed, next %q", len(all), next)
	}
}

func TestListCursorErrors(t *testing.T) {
	x, _ := listFixture(t)
	for _, cur := range []string{"garbage!", "bm90IGpzb24", "WyJ1bnN1YnNjcmliZSIsMCwiIiwiIiwiIl0"} {
		if _, _, err := x.Blocklist(Principal{Admin: true}, ListQuery{Cursor: cur}); !errors.Is(err, ErrMalformedCursor) {
			t.Errorf("cursor %q: %v, want ErrMalformedCursor", cur, err)
		}
	}
	_, next, _ := x.Blocklist(Principal{Admin: true}, ListQuery{Limit: 1})
	if _, _, err := x.Unsubscribes(Principal{Admin: true}, ListQuery{Cursor: next}); !errors.Is(err, ErrMalformedCursor) {
		t.Errorf("a blocklist cursor for the unsubscribes: %v", err)
	}
}

func TestUnsubscribesPaging(t *testing.T) {
	x, c := newIndex(t)
	var events []metrics.Event
	for i := range 60 {
		account, domain := "acme", "news.acme.example"
		switch i % 3 {
		case 1:
			domain = "offers.acme.example"
		case 2:
			account, domain = "globex", "news.globex.example"
		}
		kind := metrics.KindUnsubscribed
		if i%4 == 0 {
			kind = metrics.KindComplained
		}
		events = append(events, metrics.Event{EventID: fmt.Sprintf("u%d", i), Time: day0.Add(-time.Duration(i%5) * time.Hour),
			Kind: kind, Account: account, SenderDomain: domain, Recipient: fmt.Sprintf("r%02d@x.example", i/2)})
	}
	observe(t, x, shared, events...)
	// One through the API, and a re-subscription.
	c.Add(time.Minute)
	if _, err := x.Unsubscribe(Principal{Account: "acme"}, "offers.acme.example", "phone@x.example", "phone"); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Resubscribe(Principal{Account: "acme"}, "news.acme.example", "r01@x.example", "asked back"); err != nil {
		t.Fatal(err)
	}
	acme := pages(t, x.Unsubscribes, Principal{Account: "acme"}, ListQuery{Limit: 3})
	if len(acme) != 40 {
		t.Errorf("acme: %d entries, want 40 (41 less a re-subscription)", len(acme))
	}
	inOrder(t, acme)
	for _, e := range acme {
		if e.Account != "acme" || e.EventID == "" && e.Reason != "phone" {
			t.Errorf("acme sees %+v", e)
		}
	}
	if acme[0].Address != "phone@x.example" || acme[0].SenderDomain != "offers.acme.example" || acme[0].Reason != "phone" {
		t.Errorf("newest first: %+v", acme[0])
	}
	offers := pages(t, x.Unsubscribes, Principal{Account: "acme"}, ListQuery{Limit: 6, SenderDomain: "OFFERS.acme.example"})
	if len(offers) != 21 {
		t.Errorf("offers.acme.example: %d entries, want 21", len(offers))
	}
	for _, e := range offers {
		if e.SenderDomain != "offers.acme.example" {
			t.Errorf("sender domain filter let %+v through", e)
		}
	}
	if g := pages(t, x.Unsubscribes, Principal{Admin: true, Account: "globex"}, ListQuery{Limit: 7}); len(g) != 20 {
		t.Errorf("admin for globex: %d entries, want 20", len(g))
	}
	if all := pages(t, x.Unsubscribes, Principal{Admin: true}, ListQuery{Limit: 11}); len(all) != 60 {
		t.Errorf("admin: %d entries, want 60", len(all))
	} else {
		inOrder(t, all)
	}
	recent := pages(t, x.Unsubscribes, Principal{Account: "acme"}, ListQuery{Since: day0.Add(-time.Hour)})
	for _, e := range recent {
		if e.Since.Before(day0.Add(-time.Hour)) {
			t.Errorf("since filter let %+v through", e)
		}
	}
	if len(recent) == 0 || len(recent) >= 40 {
		t.Errorf("since: %d entries", len(recent))
	}
	if _, _, err := x.Unsubscribes(Principal{Account: "acme"}, ListQuery{SenderDomain: "not a domain"}); err == nil {
		t.Error("a malformed sender domain: no error")
	}
}
