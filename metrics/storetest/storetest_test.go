package storetest_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/storetest"
)

// TestReference runs the suite against memStore, a plain in-memory
// reference implementation, so that the suite itself is known to be
// consistent before it judges a real backend.
func TestReference(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) metrics.Store { return &memStore{data: &memData{}} },
		Reopen: func(t *testing.T, s metrics.Store) metrics.Store {
			old := s.(*memStore)
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return &memStore{data: old.data}
		},
	})
}

type memData struct {
	mu     sync.Mutex
	events []metrics.Event
	keys   map[metrics.Key]bool
	// changes is the suppression log, by id.
	changes map[string]metrics.SuppressionChange
	// decisions and flags are the rules history, by identity.
	decisions map[decisionKey]metrics.StoredDecision
	flags     map[string]metrics.StoredFlagChange
}

type memStore struct{ data *memData }

func (s *memStore) Append(_ context.Context, events []metrics.Event) error {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys == nil {
		d.keys = map[metrics.Key]bool{}
	}
	for _, e := range events {
		if !d.keys[e.Key()] {
			d.keys[e.Key()] = true
			d.events = append(d.events, e)
		}
	}
	return nil
}

func (s *memStore) Known(_ context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[metrics.Key]bool{}
	for _, e := range events {
		if d.keys[e.Key()] {
			out[e.Key()] = true
		}
	}
	return out, nil
}

func (s *memStore) Stats(_ context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	for _, g := range q.GroupBy {
		if !slices.Contains(metrics.GroupBys, g) {
			return nil, fmt.Errorf("memstore: unknown group_by %q", g)
		}
	}
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	type acc struct {
		key    map[metrics.GroupBy]string
		c      metrics.Counts
		unique map[string]bool
	}
	add := func(a *acc, e metrics.Event) {
		uniq := func(class string) bool {
			if e.MessageID == "" {
				return true
			}
			k := strings.Join([]string{class, e.Account, e.MessageID, e.Recipient}, "\x00")
			if a.unique[k] {
				return false
			}
			a.unique[k] = true
			return true
		}
		switch e.Kind {
		case metrics.KindSent:
			a.c.Sent++
		case metrics.KindDelivered:
			a.c.Delivered++
		case metrics.KindDeferred:
			a.c.Deferred++
		case metrics.KindBounced:
			if e.BounceType == metrics.BounceHard {
				a.c.BouncedHard++
			} else {
				a.c.BouncedSoft++
			}
		case metrics.KindComplained:
			a.c.Complained++
		case metrics.KindUnsubscribed:
			a.c.Unsubscribed++
		case metrics.KindDropped:
			a.c.Dropped++
		case metrics.KindOpened:
			machine := e.Machine != nil && *e.Machine
			if machine && uniq("machine") {
				a.c.OpenedMachine++
			} else if !machine && uniq("human") {
				a.c.OpenedHuman++
			}
			if e.Machine == nil && uniq("unverified") {
				a.c.OpenedUnverified++
			}
		case metrics.KindClicked:
			if uniq("click") {
				a.c.Clicked++
			}
		}
	}
	total := &acc{unique: map[string]bool{}}
	groups := map[string]*acc{}
	for _, e := range d.events {
		if e.Time.Before(q.From) || !e.Time.Before(q.To) || (q.Account != "" && e.Account != q.Account) {
			continue
		}
		add(total, e)
		if len(q.GroupBy) == 0 {
			continue
		}
		key := map[metrics.GroupBy]string{}
		var parts []string
		for _, g := range q.GroupBy {
			v := map[metrics.GroupBy]string{
				metrics.GroupAccount: e.Account, metrics.GroupSenderDomain: e.SenderDomain,
				metrics.GroupISP: e.ISP, metrics.GroupCampaign: e.Campaign, metrics.GroupSendingIP: e.SendingIP,
				metrics.GroupCategory: e.Category,
				metrics.GroupDay:      e.Time.Truncate(24 * time.Hour).Format(time.RFC3339),
				metrics.GroupHour:     e.Time.Truncate(time.Hour).Format(time.RFC3339),
			}[g]
			key[g] = v
			parts = append(parts, v)
		}
		k := strings.Join(parts, "\x00")
		if groups[k] == nil {
			groups[k] = &acc{key: key, unique: map[string]bool{}}
		}
		add(groups[k], e)
	}
	res := &metrics.StatsResult{Groups: []metrics.Group{}, Totals: total.c}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if q.MaxGroups > 0 && len(keys) > q.MaxGroups {
		keys, res.Truncated = keys[:q.MaxGroups], true
	}
	for _, k := range keys {
		res.Groups = append(res.Groups, metrics.Group{Key: groups[k].key, Counts: groups[k].c})
	}
	return res, nil
}

func (s *memStore) Ping(context.Context) error { return nil }
func (s *memStore) Close() error               { return nil }

func (s *memStore) AppendSuppressionChanges(_ context.Context, changes []metrics.SuppressionChange) error {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changes == nil {
		d.changes = map[string]metrics.SuppressionChange{}
	}
	logged := time.Now().UTC()
	for _, c := range changes {
		if _, ok := d.changes[c.ID]; !ok {
			c.Logged = logged
			d.changes[c.ID] = c
		}
	}
	return nil
}

func (s *memStore) SuppressionChanges(ctx context.Context, fn func(metrics.SuppressionChange) error) error {
	return s.FindSuppressionChanges(ctx, metrics.SuppressionQuery{}, fn)
}

func (s *memStore) FindSuppressionChanges(_ context.Context, q metrics.SuppressionQuery, fn func(metrics.SuppressionChange) error) error {
	at := func(c metrics.SuppressionChange) time.Time {
		if q.ByLogged {
			return c.Logged
		}
		return c.Time
	}
	cmp := func(t time.Time, id string, c metrics.SuppressionChange) int {
		if r := t.Compare(at(c)); r != 0 {
			return r
		}
		return strings.Compare(id, c.ID)
	}
	after := !q.AfterTime.IsZero() || q.AfterID != ""
	d := s.data
	d.mu.Lock()
	all := make([]metrics.SuppressionChange, 0, len(d.changes))
	for _, c := range d.changes {
		if (q.Address != "" && c.Address != q.Address) || (q.Account != "" && c.Account != q.Account) ||
			(after && cmp(at(c), c.ID, metrics.SuppressionChange{Time: q.AfterTime, Logged: q.AfterTime, ID: q.AfterID}) <= 0) ||
			(!q.LoggedBefore.IsZero() && !c.Logged.Before(q.LoggedBefore)) {
			continue
		}
		all = append(all, c)
	}
	d.mu.Unlock()
	slices.SortFunc(all, func(a, b metrics.SuppressionChange) int { return cmp(at(a), a.ID, b) })
	if q.Limit > 0 && len(all) > q.Limit {
		all = all[:q.Limit]
	}
	for _, c := range all {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

type decisionKey struct {
	id  string
	seq int64
}

// inWindow reports whether t is in [from, to), a zero bound open.
func inWindow(t, from, to time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to))
}

func (s *memStore) AppendDecisions(_ context.Context, ds []metrics.StoredDecision) error {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.decisions == nil {
		d.decisions = map[decisionKey]metrics.StoredDecision{}
	}
	for _, x := range ds {
		k := decisionKey{x.ID, x.Seq}
		if _, ok := d.decisions[k]; !ok {
			d.decisions[k] = x
		}
	}
	return nil
}

func (s *memStore) Decisions(_ context.Context, q metrics.DecisionQuery) ([]metrics.StoredDecision, error) {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []metrics.StoredDecision{}
	for _, x := range d.decisions {
		if inWindow(x.IssuedAt, q.From, q.To) && (q.SenderDomain == "" || x.SenderDomain == q.SenderDomain) && x.Seq > q.AfterSeq {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b metrics.StoredDecision) int {
		if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
			return c
		}
		if a.Seq != b.Seq {
			return cmp.Compare(a.Seq, b.Seq)
		}
		return strings.Compare(a.ID, b.ID)
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (s *memStore) AppendFlagChanges(_ context.Context, cs []metrics.StoredFlagChange) error {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.flags == nil {
		d.flags = map[string]metrics.StoredFlagChange{}
	}
	for _, c := range cs {
		if _, ok := d.flags[c.ID]; !ok {
			d.flags[c.ID] = c
		}
	}
	return nil
}

func (s *memStore) FlagChanges(_ context.Context, q metrics.FlagChangeQuery) ([]metrics.StoredFlagChange, error) {
	d := s.data
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []metrics.StoredFlagChange{}
	for _, c := range d.flags {
		if inWindow(c.Time, q.From, q.To) && (q.SenderDomain == "" || c.SenderDomain == q.SenderDomain) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b metrics.StoredFlagChange) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}
