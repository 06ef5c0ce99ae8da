package suppress

import (
	"errors"
	"fmt"
	"iter"

	"repute/metrics"
)

// Stored returns c as the stores keep it, with its id.
func (c Change) Stored() metrics.SuppressionChange {
	s := metrics.SuppressionChange{Time: c.Time, Action: string(c.Action), Address: c.Address,
		Account: c.Account, Shared: c.Shared, SenderDomain: c.SenderDomain, List: string(c.List),
		Reason: c.Reason, EventID: c.EventID, Since: c.Since, Until: c.Until, By: c.By}
	s.ID = metrics.SuppressionChangeID(s)
	return s
}

// FromStored returns the change s stores.
func FromStored(s metrics.SuppressionChange) Change {
	return Change{Time: s.Time, Action: Action(s.Action), Address: s.Address, Account: s.Account,
		Shared: s.Shared, SenderDomain: s.SenderDomain, List: List(s.List), Reason: s.Reason,
		EventID: s.EventID, Since: s.Since, Until: s.Until, By: s.By}
}

// Replay rebuilds the index from the log of changes, given in (Time, ID)
// order as the stores keep them, and records nothing. The result is the
// state of the index that made the changes: its entries (those past
// their expiry too, until the log or a Sweep says they expired), its soft
// counts, lift markers and re-subscriptions, so that the same events
// observed afterwards make the same changes. A change that cannot be
// applied is named in the error and the rest are applied.
func (x *Index) Replay(changes iter.Seq[metrics.SuppressionChange]) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	n := 0
	for s := range changes {
		if err := x.apply(FromStored(s)); err != nil {
			if n++; n <= 100 {
				errs = append(errs, fmt.Errorf("change %s: %w", s.ID, err))
			}
		}
	}
	if n > 100 {
		errs = append(errs, fmt.Errorf("and %d more", n-100))
	}
	return errors.Join(errs...)
}

// Apply applies one change of the log, as Replay does. The result does
// not depend on the order changes are applied in, nor on applying one
// twice, so a process following the log (which reads in the order changes
// were written, and may read one twice) reaches the state of the process
// that wrote them: a lift removes only what was on the list before it, an
// entry or a soft count from before a lift is not brought back, the later
// expiry wins, and of an address's unsubscribe changes the latest does.
func (x *Index) Apply(c Change) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.apply(c)
}

func (x *Index) apply(c Change) error {
	if c.Address == "" {
		return errors.New("suppress: replay: a change without an address")
	}
	switch c.List {
	case Unsubscribe:
		return x.applyUnsub(c)
	case Blocklist:
	default:
		return fmt.Errorf("suppress: replay %s: unknown list %q: want blocklist or unsubscribe", c.Address, c.List)
	}
	own := !c.Shared
	t, key := x.shared, c.Address
	if own {
		if c.Account == "" {
			return fmt.Errorf("suppress: replay %s: an entry that is not shared needs its account", c.Address)
		}
		t, key = x.own, ownKey(c.Account, c.Address)
	}
	sk := oddKey(own, key)
	h := t.hashString(key)
	slot, idx, found := t.find(key, h)
	switch c.Action {
	case ActionAdded, ActionExtended:
		// The entry with the later expiry wins: an entry that expired is
		// logged as expired at its expiry, which may sort after the
		// addition of the next one. An entry from before a lift is not
		// brought back (a follower may read the lift first).
		if lift, ok := x.lifted[sk]; ok && c.Since.Unix() <= lift {
			return nil
		}
		ne := entry{since: clampUnix(c.Since.Unix()), until: clampUnix(c.Until.Unix()),
			reason: x.reason(c.Reason), account: x.account(c.Account)}
		if found {
			if ne.until < t.entries[idx].until {
				return nil
			}
			ne.off, ne.n = t.entries[idx].off, t.entries[idx].n
			t.entries[idx] = ne
		} else {
			idx = t.insert(key, h, ne)
			if own {
				x.ownCount[x.account(c.Account)]++
			}
		}
		if setID(&t.entries[idx], c.EventID) {
			x.oddIDs[sk] = c.EventID
		} else {
			delete(x.oddIDs, sk)
		}
	case ActionCounted:
		at := c.Time.Unix()
		if lift, ok := x.lifted[sk]; ok && at <= lift {
			return nil // counted before a lift: a lift starts the count afresh
		}
		for _, h := range x.soft[sk] {
			if h.eventID == c.EventID {
				return nil
			}
		}
		x.soft[sk], _ = insertHit(x.soft[sk], softHit{at: at, eventID: c.EventID, account: c.Account, reason: c.Reason})
	case ActionExpired:
		if found && t.entries[idx].until <= clampUnix(c.Until.Unix()) {
			en := t.entries[idx]
			x.removeEntry(t, own, key, slot, &en)
		}
	case ActionLifted:
		// Only what was on the list at the lift goes: an entry put back
		// by an event dated after it stays, whichever is applied first.
		lift := c.Time.Unix()
		if found && int64(t.entries[idx].since) <= lift {
			en := t.entries[idx]
			x.removeEntry(t, own, key, slot, &en)
		}
		x.lifted[sk] = max(x.lifted[sk], lift)
		hits := x.soft[sk][:0]
		for _, h := range x.soft[sk] {
			if h.at > lift {
				hits = append(hits, h)
			}
		}
		if len(hits) == 0 {
			delete(x.soft, sk)
		} else {
			x.soft[sk] = hits
		}
	case ActionLiftRefused:
	default:
		return fmt.Errorf("suppress: replay %s: unknown action %q for the blocklist", c.Address, c.Action)
	}
	return nil
}

func (x *Index) applyUnsub(c Change) error {
	if c.Account == "" {
		return fmt.Errorf("suppress: replay %s: an unsubscribe needs its account", c.Address)
	}
	var u unsubEntry
	switch c.Action {
	case ActionUnsubscribed:
		u = unsubEntry{active: true, since: c.Since.Unix(), at: c.Time.UnixNano(), reason: c.Reason, eventID: c.EventID}
	case ActionResubscribed:
		u = unsubEntry{resub: c.Time.Unix(), at: c.Time.UnixNano()}
	default:
		return fmt.Errorf("suppress: replay %s: unknown action %q for the unsubscribe list", c.Address, c.Action)
	}
	sc := unsubScope{c.Account, c.SenderDomain}
	m := x.unsubs[sc]
	if m == nil {
		m = map[string]*unsubEntry{}
		x.unsubs[sc] = m
	}
	// The latest change wins, whichever is applied first: a follower may
	// read a re-subscription before the unsubscription it undoes.
	if prev := m[c.Address]; prev != nil && prev.at > u.at {
		return nil
	}
	m[c.Address] = &u
	return nil
}
