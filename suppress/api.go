package suppress

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
)

// Verdict answers Check for one recipient.
type Verdict struct {
	Recipient string // as given
	Allowed   bool
	List      List   // why not: Blocklist or Unsubscribe
	Reason    string // the entry's reason
	Since     time.Time
	Until     time.Time // the blocklist entry's expiry; zero for an unsubscribe
	// EventID names the event that caused the entry, given only when the
	// caller's account caused it (or to the admin): another tenant's
	// event ids are not the caller's to see.
	EventID string
	Error   string // the recipient is not an address; Allowed is false
}

// Check answers whether by.Account may send from senderDomain to each of
// recipients, in the order given. A recipient is refused when it is on
// the shared blocklist, on the account's own blocklist (entries of events
// it posted with its key), or on the unsubscribe list of (the account,
// senderDomain) or the account-wide one; a blocklist entry is reported
// before an unsubscribe. An entry blocks while now < until, to the second.
// A recipient that is not an address gets Error and the rest are
// answered.
//
// Check never changes the index: an entry past its expiry answers
// allowed, and its expired change comes from Sweep or from the next
// mutation that meets it.
func (x *Index) Check(by Principal, senderDomain string, recipients []string) []Verdict {
	out := make([]Verdict, len(recipients))
	x.CheckInto(out, by, senderDomain, recipients)
	return out
}

// CheckInto is Check writing into out, which must be at least as long as
// recipients.
func (x *Index) CheckInto(out []Verdict, by Principal, senderDomain string, recipients []string) {
	domain, err := NormalizeDomain(senderDomain)
	if err != nil {
		domain = strings.ToLower(strings.TrimSpace(senderDomain)) // matches nothing it should not
	}
	now := x.now().Unix()
	x.mu.RLock()
	defer x.mu.RUnlock()
	acct, known := x.accountIx[by.Account]
	hasOwn := known && x.ownCount[acct] > 0
	byDomain := x.unsubs[unsubScope{by.Account, domain}]
	accountWide := x.unsubs[unsubScope{by.Account, ""}]
	for i, r := range recipients {
		v := &out[i]
		*v = Verdict{Recipient: r}
		addr, err := NormalizeAddress(r)
		if err != nil {
			v.Error = err.Error()
			continue
		}
		var best *entry
		bestOwn, bestKey := false, addr
		if _, idx, ok := x.shared.find(addr, x.shared.hashString(addr)); ok {
			if en := &x.shared.entries[idx]; now < int64(en.until) {
				best = en
			}
		}
		if hasOwn {
			key := ownKey(by.Account, addr)
			if _, idx, ok := x.own.find(key, x.own.hashString(key)); ok {
				if en := &x.own.entries[idx]; now < int64(en.until) && (best == nil || en.until > best.until) {
					best, bestOwn, bestKey = en, true, key
				}
			}
		}
		if best != nil {
			v.List, v.Reason, v.Since, v.Until = Blocklist, x.reasons[best.reason], unix(best.since), unix(best.until)
			if by.Admin || x.accounts[best.account] == by.Account {
				v.EventID = x.eventID(best, bestOwn, bestKey)
			}
			continue
		}
		u := byDomain[addr]
		if u == nil || !u.active {
			u = accountWide[addr]
		}
		if u != nil && u.active {
			v.List, v.Reason, v.Since, v.EventID = Unsubscribe, u.reason, time.Unix(u.since, 0).UTC(), u.eventID
			continue
		}
		v.Allowed = true
	}
}

// Lift takes address off the blocklist before its expiry, for reason
// (required), and returns the changes. An account may lift the shared
// entry its own sends caused and its own entries; the shared entry another
// account's sends caused needs the admin key, else the refusal is recorded
// (ActionLiftRefused) and the error is a *ForbiddenError saying why. The
// admin without an account lifts the shared entry and every account's own
// entry for the address. Nothing to lift is ErrNotFound.
//
// After a lift only a new qualifying event — dated after the lift — puts
// the address back, and soft bounces are counted afresh.
func (x *Index) Lift(by Principal, address, reason string) ([]Change, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("suppress: lift %q: %w", address, ErrNoReason)
	}
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	if !by.Admin && by.Account == "" {
		return nil, fmt.Errorf("suppress: lift %s: %w: no account", addr, ErrForbidden)
	}
	now := x.now()
	nowU := now.Unix()
	x.mu.Lock()
	defer x.mu.Unlock()
	var changes []Change
	var refused error
	lifted := false
	try := func(t *table, own bool, key string, allowed bool) {
		slot, idx, ok := t.find(key, t.hashString(key))
		if !ok {
			return
		}
		en := t.entries[idx]
		if int64(en.until) <= nowU {
			changes = x.expire(changes, t, own, slot, idx)
			return
		}
		ch := x.entryChange(t, own, key, &en)
		ch.Time, ch.Reason, ch.By = now.UTC(), reason, by.String()
		sk := oddKey(own, key)
		if !allowed && !by.Admin && x.accounts[en.account] != by.Account {
			ch.Action, ch.Account = ActionLiftRefused, by.Account
			ch.EventID = "" // another account's event
			changes = append(changes, ch)
			refused = &ForbiddenError{Address: addr, By: by}
			return
		}
		// The lift takes effect after the evidence it lifts, even evidence
		// dated ahead of the clock: seen again, it does not count, and in
		// the log the lift comes after it.
		latest := int64(en.until) - x.rules.lifetime()
		for _, h := range x.soft[sk] {
			latest = max(latest, h.at)
		}
		if ev := time.Unix(latest, 0); !ch.Time.After(ev) {
			ch.Time = ev.Add(time.Nanosecond).UTC()
		}
		ch.Action = ActionLifted
		changes = append(changes, ch)
		x.removeEntry(t, own, key, slot, &en)
		x.lifted[sk] = ch.Time.Unix()
		delete(x.soft, sk)
		lifted = true
	}
	try(x.shared, false, addr, false)
	switch {
	case by.Account != "":
		try(x.own, true, ownKey(by.Account, addr), true)
	case by.Admin:
		for a := range x.ownCount {
			try(x.own, true, ownKey(x.accounts[a], addr), true)
		}
	}
	if refused != nil {
		return changes, refused
	}
	if !lifted {
		return changes, fmt.Errorf("suppress: lift %s: %w", addr, ErrNotFound)
	}
	return changes, nil
}

// Unsubscribe puts address on the unsubscribe list of (by.Account,
// senderDomain) through the API, with reason (e.g. "api", "support
// ticket 123"); an empty senderDomain is account-wide. Already
// unsubscribed, it changes nothing.
func (x *Index) Unsubscribe(by Principal, senderDomain, address, reason string) ([]Change, error) {
	addr, domain, err := unsubArgs(by, senderDomain, address)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		reason = "api"
	}
	now := x.now()
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.unsubscribe(nil, by.Account, domain, addr, reason, "", now.Unix(), now, by.String(), true), nil
}

// Resubscribe takes address off the unsubscribe list of (by.Account,
// senderDomain), for reason (required). Unsubscribe events dated at or
// before it no longer count; a later one unsubscribes again. Not on the
// list is ErrNotFound.
func (x *Index) Resubscribe(by Principal, senderDomain, address, reason string) ([]Change, error) {
	addr, domain, err := unsubArgs(by, senderDomain, address)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("suppress: resubscribe %s: %w", addr, ErrNoReason)
	}
	now := x.now()
	x.mu.Lock()
	defer x.mu.Unlock()
	u := x.unsubs[unsubScope{by.Account, domain}][addr]
	if u == nil || !u.active {
		return nil, fmt.Errorf("suppress: resubscribe %s from %q: %w", addr, domain, ErrNotFound)
	}
	// After the unsubscription even if it is dated ahead of the clock, so
	// that the event, seen again, does not count.
	when := after(now, u)
	ch := Change{Time: when, Action: ActionResubscribed, Address: addr, Account: by.Account,
		SenderDomain: domain, List: Unsubscribe, Reason: reason, EventID: u.eventID,
		Since: time.Unix(u.since, 0).UTC(), By: by.String()}
	*u = unsubEntry{resub: when.Unix(), at: when.UnixNano()}
	return []Change{ch}, nil
}

func unsubArgs(by Principal, senderDomain, address string) (addr, domain string, err error) {
	if by.Account == "" {
		return "", "", errors.New("suppress: the unsubscribe list is per account: name one")
	}
	if addr, err = NormalizeAddress(address); err != nil {
		return "", "", err
	}
	if strings.TrimSpace(senderDomain) != "" {
		if domain, err = NormalizeDomain(senderDomain); err != nil {
			return "", "", err
		}
	}
	return addr, domain, nil
}

// Sweep removes the blocklist entries whose expiry is at or before now
// and returns an expired change for each (its Time is the expiry), and
// forgets soft counts and lift markers too old to matter. It holds the
// write lock for one pass over the index: call it every minute or so, not
// on every check (Check is exact without it).
func (x *Index) Sweep(now time.Time) []Change {
	n := now.Unix()
	x.mu.Lock()
	defer x.mu.Unlock()
	var changes []Change
	for _, t := range []*table{x.shared, x.own} {
		own := t == x.own
		// Downwards: a removal moves the last entry, already seen, into
		// the hole.
		for idx := t.len() - 1; idx >= 0; idx-- {
			if en := &t.entries[idx]; int64(en.until) <= n {
				slot, _, _ := t.findIndex(t.key(en), idx)
				changes = x.expire(changes, t, own, slot, idx)
			}
		}
	}
	horizon := n - max(x.rules.lifetime(), int64(x.rules.SoftWindow/time.Second))
	for k, at := range x.lifted {
		if at <= horizon {
			delete(x.lifted, k)
		}
	}
	for k, hits := range x.soft {
		if len(hits) == 0 || hits[len(hits)-1].at <= horizon {
			delete(x.soft, k)
		}
	}
	return changes
}

// Entry is a list entry as the store keeps it, for Load and Lookup.
type Entry struct {
	List    List
	Address string
	// Account: for the blocklist, the account whose send caused the
	// entry; for the unsubscribe list, the owning account.
	Account string
	// Shared: a blocklist entry for every account; otherwise for
	// Scope only (an event posted with that account's key).
	Shared       bool
	Scope        string
	SenderDomain string // unsubscribe list; empty is account-wide
	Reason       string
	Since        time.Time
	Until        time.Time // blocklist only
	EventID      string
}

// Load adds entries in bulk, as the store holds them, to rebuild the index
// at start; it records no changes. A blocklist entry past its expiry is
// skipped; of two entries for one key the later expiry wins. An entry
// that cannot be loaded is named in the error and the rest are loaded.
// Options.SizeHint saves the growth steps.
func (x *Index) Load(entries iter.Seq[Entry]) error {
	now := x.now().Unix()
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	for e := range entries {
		if err := x.load(&e, now); err != nil && len(errs) < 100 {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (x *Index) load(e *Entry, now int64) error {
	addr, err := NormalizeAddress(e.Address)
	if err != nil {
		return err
	}
	switch e.List {
	case Unsubscribe:
		domain := ""
		if e.SenderDomain != "" {
			if domain, err = NormalizeDomain(e.SenderDomain); err != nil {
				return err
			}
		}
		x.unsubscribe(nil, e.Account, domain, addr, e.Reason, e.EventID, e.Since.Unix(), e.Since, "", true)
		return nil
	case Blocklist:
	default:
		return fmt.Errorf("suppress: load %s: unknown list %q: want blocklist or unsubscribe", addr, e.List)
	}
	until := e.Until.Unix()
	if until <= now {
		return nil
	}
	own := !e.Shared
	t, key := x.shared, addr
	if own {
		if e.Scope == "" {
			return fmt.Errorf("suppress: load %s: an entry that is not shared needs its scope (account)", addr)
		}
		t, key = x.own, ownKey(e.Scope, addr)
	}
	h := t.hashString(key)
	ne := entry{since: clampUnix(e.Since.Unix()), until: clampUnix(until), reason: x.reason(e.Reason),
		account: x.account(e.Account)}
	sk := oddKey(own, key)
	_, idx, found := t.find(key, h)
	if found {
		if ne.until <= t.entries[idx].until {
			return nil
		}
		ne.off, ne.n = t.entries[idx].off, t.entries[idx].n
		t.entries[idx] = ne
	} else {
		idx = t.insert(key, h, ne)
		if own {
			x.ownCount[x.account(e.Scope)]++
		}
	}
	if setID(&t.entries[idx], e.EventID) {
		x.oddIDs[sk] = e.EventID
	} else {
		delete(x.oddIDs, sk)
	}
	return nil
}

// Lookup returns every entry for address that by may see: the shared
// blocklist entry, by.Account's own blocklist entry (every account's, to
// the admin without one) and its unsubscribe entries. Event ids of entries
// other accounts' sends caused are left out unless by is the admin.
func (x *Index) Lookup(by Principal, address string) ([]Entry, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	now := x.now().Unix()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Entry
	add := func(t *table, own bool, key, scope string) {
		_, idx, ok := t.find(key, t.hashString(key))
		if !ok || int64(t.entries[idx].until) <= now {
			return
		}
		en := &t.entries[idx]
		e := Entry{List: Blocklist, Address: addr, Account: x.accounts[en.account], Shared: !own, Scope: scope,
			Reason: x.reasons[en.reason], Since: unix(en.since), Until: unix(en.until)}
		if by.Admin || e.Account == by.Account {
			e.EventID = x.eventID(en, own, key)
		}
		out = append(out, e)
	}
	add(x.shared, false, addr, "")
	for a := range x.ownCount {
		if name := x.accounts[a]; name == by.Account || by.Admin && by.Account == "" {
			add(x.own, true, ownKey(name, addr), name)
		}
	}
	for sc, m := range x.unsubs {
		if sc.account != by.Account && !(by.Admin && by.Account == "") {
			continue
		}
		if u := m[addr]; u != nil && u.active {
			out = append(out, Entry{List: Unsubscribe, Address: addr, Account: sc.account,
				SenderDomain: sc.senderDomain, Reason: u.reason, Since: time.Unix(u.since, 0).UTC(), EventID: u.eventID})
		}
	}
	return out, nil
}

// Len returns the number of blocklist entries held, shared and own,
// including any past their expiry that no Sweep has removed yet.
func (x *Index) Len() (shared, own int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.shared.len(), x.own.len()
}
