package suppress

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"repute/metrics"
)

// List names the list an entry is on.
type List string

// The lists.
const (
	Blocklist   List = "blocklist"
	Unsubscribe List = "unsubscribe"
)

// Action is what a Change did.
type Action string

// The actions of the audit.
const (
	ActionAdded        Action = "added"        // an address went on the blocklist
	ActionExtended     Action = "extended"     // a later qualifying event moved its expiry
	ActionCounted      Action = "counted"      // a soft bounce was counted towards SoftThreshold
	ActionExpired      Action = "expired"      // its expiry passed (Change.Time is the expiry)
	ActionLifted       Action = "lifted"       // taken off the blocklist before its expiry
	ActionLiftRefused  Action = "lift_refused" // a lift of another account's entry without the admin key
	ActionUnsubscribed Action = "unsubscribed" // the address left a sender domain's mail
	ActionResubscribed Action = "resubscribed" // and came back
)

// Change is one mutation of the lists, for the audit (GET /v1/audit) and
// for the store's log, from which Replay rebuilds the index: every call
// that changes something returns its changes, in order, and keeps no
// copy. The caller writes them (Stored).
type Change struct {
	Time         time.Time // when it took effect: the event's time, the call's clock, or the expiry
	Action       Action
	Address      string // normalised
	Account      string // blocklist: the account whose send caused the entry (or that tried a lift); unsubscribe: the owning account
	Shared       bool   // blocklist: the entry applies to every account, not only Account
	SenderDomain string // unsubscribe list only; empty for an account-wide entry
	List         List
	Reason       string // the bounce's reason, or the text given to a lift, an unsubscribe or a re-subscribe
	EventID      string // the event that caused it, when an event did
	Since, Until time.Time
	By           string // who: the poster of the event (Trust.By), or the principal of an API call
}

// Trust says who posted a batch of events, which decides the scope of the
// blocklist entries they make (issue 10): events repute produced itself (a
// report it parsed, its own sender's SMTP transaction) or posted with the
// admin key are Shared, and their entries block the address for every
// account; events posted with an account key block it for that Account
// only, so that one tenant cannot blocklist addresses for all the others.
// The caller (intake, the API) knows which; the events cannot say.
type Trust struct {
	Shared  bool
	Account string // the posting account, when not Shared
	By      string // who posted, for the audit (e.g. "imap", "admin", "key:acme"); empty: "events"
}

// Principal is who makes an API call: an account key acts within its
// Account; the admin key (Admin) may name any Account, or none.
type Principal struct {
	Account string
	Admin   bool
}

func (p Principal) String() string {
	if p.Admin {
		if p.Account != "" {
			return "admin for " + p.Account
		}
		return "admin"
	}
	return "account " + p.Account
}

// Errors of the API calls.
var (
	ErrForbidden = errors.New("forbidden")
	ErrNotFound  = errors.New("not on the list")
	ErrNoReason  = errors.New("a reason is required")
)

// ForbiddenError says why a principal may not make a change.
type ForbiddenError struct {
	Address string
	By      Principal
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("suppress: %s may not lift %s: it is on the blocklist because of another account's sends; "+
		"an account may lift only entries its own sends caused, others need the admin key", e.By, e.Address)
}

func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

// Options configure an Index. The zero value works.
type Options struct {
	Rules Rules
	// Now is the clock; nil is time.Now. Expiry is decided against it.
	Now func() time.Time
	// SizeHint is the number of shared blocklist entries to make room
	// for at start (the store's count), so that Load does not grow the
	// index step by step.
	SizeHint int
}

// Index holds both lists in memory and answers Check. It is safe for
// concurrent use: Check takes a read lock, everything else a write lock.
type Index struct {
	rules Rules
	now   func() time.Time

	mu     sync.RWMutex
	shared *table // key: the address
	own    *table // key: account, NUL, address — entries of events posted with an account key
	// ownCount counts own's entries per account, so that Check hashes no
	// second key for an account without any.
	ownCount map[uint32]int

	accounts  []string // interned: entry.account
	accountIx map[string]uint32
	reasons   []string // interned: entry.reason
	reasonIx  map[string]uint8

	oddIDs map[string]string // event ids that are not 32 hex digits, by table key ("\x01"-prefixed for own)
	soft   map[string][]softHit
	lifted map[string]int64 // key → unix time of the lift: events dated at or before it do not count

	unsubs map[unsubScope]map[string]*unsubEntry
}

type softHit struct {
	at      int64
	eventID string
	account string
	reason  string
}

type unsubScope struct{ account, senderDomain string }

type unsubEntry struct {
	active  bool
	since   int64 // unsubscribed at
	resub   int64 // re-subscribed at, when !active: events dated at or before it do not count
	at      int64 // unix nanoseconds: the Time of the change that made the entry what it is
	reason  string
	eventID string
}

// New returns an empty index.
func New(opts Options) (*Index, error) {
	r, err := opts.Rules.withDefaults()
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	seed := maphash.MakeSeed()
	return &Index{
		rules:     r,
		now:       now,
		shared:    newTable(seed, opts.SizeHint),
		own:       newTable(seed, 0),
		ownCount:  map[uint32]int{},
		accountIx: map[string]uint32{},
		reasonIx:  map[string]uint8{},
		oddIDs:    map[string]string{},
		soft:      map[string][]softHit{},
		lifted:    map[string]int64{},
		unsubs:    map[unsubScope]map[string]*unsubEntry{},
	}, nil
}

// Rules returns the rules in force, defaults filled in.
func (x *Index) Rules() Rules { return x.rules }

func (x *Index) account(name string) uint32 {
	if i, ok := x.accountIx[name]; ok {
		return i
	}
	i := uint32(len(x.accounts))
	x.accounts = append(x.accounts, name)
	x.accountIx[name] = i
	return i
}

// reason interns a reason; past 255 distinct ones (they come from a closed
// taxonomy, and the API's lift reasons are not stored in entries) the rest
// share the last code as "other".
func (x *Index) reason(name string) uint8 {
	if i, ok := x.reasonIx[name]; ok {
		return i
	}
	if len(x.reasons) == 255 {
		return 254
	}
	i := uint8(len(x.reasons))
	x.reasons = append(x.reasons, name)
	x.reasonIx[name] = i
	return i
}

// ownKey is the key of an account's own entry.
func ownKey(account, address string) string { return account + "\x00" + address }

// oddKey is the key of oddIDs, soft and lifted for a table key.
func oddKey(own bool, key string) string {
	if own {
		return "\x01" + key
	}
	return key
}

func setID(e *entry, id string) (odd bool) {
	if len(id) == 32 && lowerHex(id) {
		hex.Decode(e.id[:], []byte(id))
		e.flags &^= flagOddID
		return false
	}
	e.id = [16]byte{}
	e.flags |= flagOddID
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (x *Index) eventID(e *entry, own bool, key string) string {
	if e.flags&flagOddID != 0 {
		return x.oddIDs[oddKey(own, key)]
	}
	return hex.EncodeToString(e.id[:])
}

func unix(s uint32) time.Time { return time.Unix(int64(s), 0).UTC() }

// clampUnix fits a unix time into the entries' uint32 seconds (until
// 2106).
func clampUnix(t int64) uint32 {
	switch {
	case t < 0:
		return 0
	case t > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(t)
}

// Observe applies events to the lists and returns the changes they made,
// in order. Bounces that qualify (Classify) put their recipient on the
// blocklist — for every account when trust is Shared, for trust.Account
// only otherwise; unsubscribed and complained events put it on the
// unsubscribe list of (the event's account, its sender domain). Other
// events are ignored. An event that cannot be applied (a recipient that is
// not an address) is skipped and named in the returned error; the rest are
// applied.
//
// Events are taken as normalised by intake (metrics.Event.Normalize):
// times in whole seconds. They may come in any order and more than once:
// an entry's expiry is the latest qualifying time, a repeated event
// changes nothing.
func (x *Index) Observe(events []metrics.Event, trust Trust) ([]Change, error) {
	if !trust.Shared && trust.Account == "" {
		return nil, errors.New("suppress: observe: trust names neither shared nor an account")
	}
	by := trust.By
	if by == "" {
		by = "events"
	}
	now := x.now().Unix()
	var changes []Change
	var errs []error
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range events {
		e := &events[i]
		var err error
		switch e.Kind {
		case metrics.KindBounced:
			changes, err = x.observeBounce(changes, e, trust, by, now)
		case metrics.KindUnsubscribed, metrics.KindComplained:
			changes, err = x.observeUnsubscribe(changes, e, by)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("event %s: %w", e.EventID, err))
		}
	}
	return changes, errors.Join(errs...)
}

func (x *Index) observeBounce(changes []Change, e *metrics.Event, trust Trust, by string, now int64) ([]Change, error) {
	class := Classify(e)
	if class == Never {
		return changes, nil
	}
	addr, err := NormalizeAddress(e.Recipient)
	if err != nil {
		return changes, err
	}
	own := !trust.Shared
	t, key := x.shared, addr
	if own {
		t, key = x.own, ownKey(trust.Account, addr)
	}
	sk := oddKey(own, key)
	at := e.Time.Unix()
	if lift, ok := x.lifted[sk]; ok && at <= lift {
		return changes, nil // evidence from before a lift: only a new event counts
	}
	// The account whose send caused the entry: the event's, or for an
	// account's own entry that account (its scope), so that a change
	// names the scope and replays into the same key.
	account := e.Account
	if own {
		account = trust.Account
	}
	life := x.rules.lifetime()
	qualifying := e // the event whose time sets the expiry
	if class == Soft {
		q, counted, ok := x.countSoft(sk, e, account, now)
		if counted {
			changes = append(changes, Change{Time: e.Time.UTC(), Action: ActionCounted, Address: addr,
				Account: account, Shared: !own, List: Blocklist, Reason: e.Reason, EventID: e.EventID, By: by})
		}
		if !ok {
			return changes, nil
		}
		qualifying = q
	}
	qt := qualifying.Time.Unix()
	until := qt + life
	if until <= now {
		return changes, nil // expired already: history, not a list entry
	}
	h := t.hashString(key)
	slot, idx, found := t.find(key, h)
	if found && int64(t.entries[idx].until) <= now {
		changes = x.expire(changes, t, own, slot, idx)
		slot, idx, found = t.find(key, h)
	}
	ch := Change{Address: addr, Shared: !own, List: Blocklist, Reason: qualifying.Reason,
		EventID: qualifying.EventID, Account: qualifying.Account, By: by}
	if own {
		ch.Account = account
	}
	if !found {
		ne := entry{since: clampUnix(qt), until: clampUnix(until), reason: x.reason(qualifying.Reason),
			account: x.account(ch.Account)}
		if setID(&ne, qualifying.EventID) {
			x.oddIDs[sk] = qualifying.EventID
		}
		t.insert(key, h, ne)
		if own {
			x.ownCount[x.account(trust.Account)]++
		}
		ch.Time, ch.Action, ch.Since, ch.Until = qualifying.Time.UTC(), ActionAdded, unix(ne.since), unix(ne.until)
		return append(changes, ch), nil
	}
	en := &t.entries[idx]
	if clampUnix(until) <= en.until {
		return changes, nil // an older or repeated event never shortens an entry
	}
	en.until, en.reason, en.account = clampUnix(until), x.reason(qualifying.Reason), x.account(ch.Account)
	if setID(en, qualifying.EventID) {
		x.oddIDs[sk] = qualifying.EventID
	} else {
		delete(x.oddIDs, sk)
	}
	ch.Time, ch.Action, ch.Since, ch.Until = qualifying.Time.UTC(), ActionExtended, unix(en.since), unix(en.until)
	return append(changes, ch), nil
}

// countSoft records a soft bounce for sk (counted: it was not recorded
// before; hits are keyed by event id, so an event seen twice counts once)
// and reports whether SoftThreshold of them fall within SoftWindow with
// it; if so it returns the latest event of such a window that holds e,
// whose time sets the expiry. Hits older than one blocklist lifetime (or
// one window, if longer) before now can no longer make a live entry and
// are dropped.
func (x *Index) countSoft(sk string, e *metrics.Event, account string, now int64) (q *metrics.Event, counted, ok bool) {
	hits := x.soft[sk]
	at := e.Time.Unix()
	horizon := now - max(x.rules.lifetime(), int64(x.rules.SoftWindow/time.Second))
	if at <= horizon {
		return nil, false, false
	}
	hits = slices.DeleteFunc(hits, func(h softHit) bool { return h.at <= horizon })
	for _, h := range hits {
		if h.eventID == e.EventID {
			x.soft[sk] = hits
			return nil, false, false // seen before
		}
	}
	hits, i := insertHit(hits, softHit{at: at, eventID: e.EventID, account: account, reason: e.Reason})
	x.soft[sk] = hits
	// Windows of SoftThreshold consecutive hits holding hit i; the latest
	// end wins.
	k, window := x.rules.SoftThreshold, int64(x.rules.SoftWindow/time.Second)
	best := -1
	for lo := max(0, i-k+1); lo <= i && lo+k-1 < len(hits); lo++ {
		if hits[lo+k-1].at-hits[lo].at <= window {
			best = lo + k - 1
		}
	}
	if best < 0 {
		return nil, true, false
	}
	h := hits[best]
	return &metrics.Event{EventID: h.eventID, Time: time.Unix(h.at, 0).UTC(), Account: h.account,
		Reason: h.reason, Kind: metrics.KindBounced}, true, true
}

// insertHit inserts h into hits, kept in order of time (and of event id
// among equal times, so that the order does not depend on the order of
// arrival), and returns where.
func insertHit(hits []softHit, h softHit) ([]softHit, int) {
	i := sort.Search(len(hits), func(i int) bool {
		return hits[i].at > h.at || hits[i].at == h.at && hits[i].eventID > h.eventID
	})
	return slices.Insert(hits, i, h), i
}

// expire removes the entry at slot/idx, which is past its expiry, and
// records it.
func (x *Index) expire(changes []Change, t *table, own bool, slot, idx int) []Change {
	en := t.entries[idx]
	key := string(t.key(&en))
	ch := x.entryChange(t, own, key, &en)
	ch.Time, ch.Action, ch.By = unix(en.until), ActionExpired, "expiry"
	x.removeEntry(t, own, key, slot, &en)
	return append(changes, ch)
}

func (x *Index) removeEntry(t *table, own bool, key string, slot int, en *entry) {
	sk := oddKey(own, key)
	delete(x.oddIDs, sk)
	t.remove(slot)
	if own {
		a := x.accountIx[key[:strings.IndexByte(key, 0)]]
		if x.ownCount[a]--; x.ownCount[a] <= 0 {
			delete(x.ownCount, a)
		}
	}
}

// entryChange describes an entry as a Change without Time, Action and By.
func (x *Index) entryChange(t *table, own bool, key string, en *entry) Change {
	addr := key
	if own {
		addr = key[strings.IndexByte(key, 0)+1:]
	}
	return Change{Address: addr, Account: x.accounts[en.account], Shared: !own, List: Blocklist,
		Reason: x.reasons[en.reason], EventID: x.eventID(en, own, key), Since: unix(en.since), Until: unix(en.until)}
}

func (x *Index) observeUnsubscribe(changes []Change, e *metrics.Event, by string) ([]Change, error) {
	addr, err := NormalizeAddress(e.Recipient)
	if err != nil {
		return changes, err
	}
	domain := ""
	if e.SenderDomain != "" {
		if domain, err = NormalizeDomain(e.SenderDomain); err != nil {
			return changes, err
		}
	}
	return x.unsubscribe(changes, e.Account, domain, addr, string(e.Kind), e.EventID, e.Time.Unix(), e.Time, by, false), nil
}

// unsubscribe adds an unsubscribe entry unless one is in force; an event
// dated at or before a re-subscription does not count (api: the caller's
// word does). at is the time of the unsubscription, when the Time of its
// change: for the API, the clock, moved past the re-subscription if it is
// not after it, so that the log replays them in their order.
func (x *Index) unsubscribe(changes []Change, account, domain, addr, reason, eventID string, at int64, when time.Time, by string, api bool) []Change {
	sc := unsubScope{account, domain}
	m := x.unsubs[sc]
	if m == nil {
		m = map[string]*unsubEntry{}
		x.unsubs[sc] = m
	}
	u := m[addr]
	if u != nil && (u.active || !api && at <= u.resub) {
		return changes
	}
	when = after(when, u)
	m[addr] = &unsubEntry{active: true, since: at, at: when.UnixNano(), reason: reason, eventID: eventID}
	return append(changes, Change{Time: when, Action: ActionUnsubscribed, Address: addr,
		Account: account, SenderDomain: domain, List: Unsubscribe, Reason: reason, EventID: eventID,
		Since: time.Unix(at, 0).UTC(), By: by})
}

// after returns t, or if the last change of u is not before it, the
// instant after that change: the changes of one entry keep their order in
// the log, which is replayed in (Time, ID) order.
func after(t time.Time, u *unsubEntry) time.Time {
	if u != nil && t.UnixNano() <= u.at {
		return time.Unix(0, u.at+1).UTC()
	}
	return t.UTC()
}
