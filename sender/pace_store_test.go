package sender

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

// paceFakeStats answers StatsQuery over sent events the way the backends do:
// [From, To), day and hour keys as the RFC 3339 UTC bucket start, groups
// in ascending key order.
type paceFakeStats struct {
	sent    []paceFakeSent
	queries []metrics.StatsQuery
	err     error
}

type paceFakeSent struct {
	domain string
	at     time.Time
}

func (f *paceFakeStats) Stats(_ context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	groups := map[string]*metrics.Group{}
	var order []string
	for _, s := range f.sent {
		if s.at.Before(q.From) || !s.at.Before(q.To) {
			continue
		}
		key := map[metrics.GroupBy]string{}
		var parts []string
		for _, g := range q.GroupBy {
			var v string
			switch g {
			case metrics.GroupSenderDomain:
				v = s.domain
			case metrics.GroupDay:
				v = s.at.UTC().Truncate(24 * time.Hour).Format(time.RFC3339)
			case metrics.GroupHour:
				v = s.at.UTC().Truncate(time.Hour).Format(time.RFC3339)
			default:
				return nil, errors.New("paceFakeStats: unsupported group " + string(g))
			}
			key[g] = v
			parts = append(parts, v)
		}
		id := strings.Join(parts, "|")
		if groups[id] == nil {
			groups[id] = &metrics.Group{Key: key}
			order = append(order, id)
		}
		groups[id].Sent++
	}
	slices.Sort(order)
	r := &metrics.StatsResult{}
	for _, id := range order {
		r.Groups = append(r.Groups, *groups[id])
		r.Totals.Sent += groups[id].Sent
	}
	return r, nil
}

func TestStoreHistory(t *testing.T) {
	now := time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC)
	f := &paceFakeStats{sent: []paceFakeSent{
		{"other.example", now.Add(-20 * 24 * time.Hour)},
		{"news.acme.example", time.Date(2026, 11, 18, 7, 42, 0, 0, time.UTC)},
		{"news.acme.example", time.Date(2026, 11, 18, 9, 1, 0, 0, time.UTC)},
		{"news.acme.example", now.Add(-30 * time.Minute)},
		{"news.acme.example", now.Add(-2 * time.Hour)},
		{"old.example", now.Add(-59*24*time.Hour - 23*time.Hour)}, // in the lookback's first day bucket
		{"idle.example", now.Add(-61 * 24 * time.Hour)},           // sent, then idle for 60 days
	}}
	h := StoreHistory{Stats: f, Now: func() time.Time { return now }}
	ctx := context.Background()

	for _, c := range []struct {
		domain string
		want   time.Time
		ok     bool
	}{
		// the end of the first hour with a send: never early
		{"news.acme.example", time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC), true},
		{"old.example", now.Add(-FirstSentLookback), true},
		{"idle.example", time.Time{}, false},
		{"new.example", time.Time{}, false},
	} {
		got, ok, err := h.FirstSent(ctx, c.domain)
		if err != nil || ok != c.ok || !got.Equal(c.want) {
			t.Errorf("FirstSent(%q) = %v, %v, %v; want %v, %v, nil", c.domain, got, ok, err, c.want, c.ok)
		}
	}
	for _, q := range f.queries {
		if q.Account != "" || q.To.After(now) {
			t.Errorf("query %+v: want all accounts, up to now at most", q)
		}
	}

	for _, c := range []struct {
		since time.Time
		want  int64
	}{
		{now.Add(-time.Hour), 1},
		{now.Add(-3 * time.Hour), 2},
		{time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC), 4},
	} {
		if n, err := h.Sent(ctx, "news.acme.example", c.since); err != nil || n != c.want {
			t.Errorf("Sent(news.acme.example, %v) = %d, %v; want %d", c.since, n, err, c.want)
		}
	}
	if n, err := h.Sent(ctx, "new.example", now.Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("Sent(new.example) = %d, %v; want 0", n, err)
	}

	f.err = errors.New("store down")
	if _, _, err := h.FirstSent(ctx, "news.acme.example"); !errors.Is(err, f.err) {
		t.Errorf("FirstSent with the store down: %v", err)
	}
	if _, err := h.Sent(ctx, "news.acme.example", now); !errors.Is(err, f.err) {
		t.Errorf("Sent with the store down: %v", err)
	}
}

// The pacer over StoreHistory: a domain the store knows from 3 days ago
// is on day 4, and Refresh errors name the domain while the pacer goes on
// with what it knew.
func TestPacerWithStoreHistory(t *testing.T) {
	now := time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC)
	f := &paceFakeStats{sent: []paceFakeSent{{"news.acme.example", now.Add(-3*24*time.Hour + 30*time.Minute)}}}
	clock := func() time.Time { return now }
	p := newTestPacer(t, PacerOptions{History: StoreHistory{Stats: f, Now: clock}, Now: clock})
	k := PaceKey{"news.acme.example", "192.0.2.1", "gmail"}
	if ok, _ := p.Take(k, now); !ok {
		t.Fatal("first Take refused")
	}
	p.Done(k, true)
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// first = the end of the hour of the send 71.5 h ago → 71 h ago: day 3
	if d := p.Day(k.SenderDomain, now); d != 3 {
		t.Errorf("Day = %d, want 3", d)
	}
	if d := p.Day(k.SenderDomain, now.Add(time.Hour)); d != 4 {
		t.Errorf("Day an hour later = %d, want 4", d)
	}
	f.err = errors.New("store down")
	err := p.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "news.acme.example") {
		t.Errorf("Refresh with the store down = %v, want an error naming the domain", err)
	}
	if ok, _ := p.Take(k, now.Add(time.Minute)); !ok {
		t.Error("Take refused after a failed Refresh")
	}
}
