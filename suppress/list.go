package suppress

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ListQuery selects a page of Blocklist or Unsubscribes.
type ListQuery struct {
	// Limit is the page size: 0 is DefaultListLimit, at most MaxListLimit
	// (more is cut to it).
	Limit int
	// Cursor continues after the previous page: its next, as given
	// (opaque). Empty is the first page.
	Cursor string
	// Reason keeps the blocklist entries of that reason (Blocklist only).
	Reason string
	// Since keeps the entries whose Since is at or after it.
	Since time.Time
	// SenderDomain keeps the unsubscribe entries of that sender domain
	// (Unsubscribes only); empty keeps every domain, account-wide entries
	// included.
	SenderDomain string
}

// The page sizes of ListQuery.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

func (q ListQuery) limit() int {
	switch {
	case q.Limit <= 0:
		return DefaultListLimit
	case q.Limit > MaxListLimit:
		return MaxListLimit
	}
	return q.Limit
}

// A cursor is the position of the last entry of a page: its since, its
// address and its scope (the blocklist: "" for a shared entry, else the
// account; the unsubscribe list: the account and the sender domain), as a
// JSON array in unpadded base64url, tagged with its list.
type cursor struct {
	since  int64
	addr   string
	scope1 string
	scope2 string
}

func encodeCursor(list List, c cursor) string {
	b, _ := json.Marshal([]any{string(list), c.since, c.addr, c.scope1, c.scope2})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(list List, s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("suppress: cursor %q: %w: want the next of the previous page of the %s", s, ErrMalformedCursor, list)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil || len(raw) != 5 {
		return nil, bad
	}
	var tag string
	var c cursor
	if json.Unmarshal(raw[0], &tag) != nil || tag != string(list) || json.Unmarshal(raw[1], &c.since) != nil ||
		json.Unmarshal(raw[2], &c.addr) != nil || json.Unmarshal(raw[3], &c.scope1) != nil ||
		json.Unmarshal(raw[4], &c.scope2) != nil {
		return nil, bad
	}
	return &c, nil
}

// ErrMalformedCursor is the error of a cursor that is not a page's next.
var ErrMalformedCursor = errors.New("not a cursor")

// blockCand is a blocklist entry considered for a page, pointing into its
// table (valid under the read lock).
type blockCand struct {
	since uint32
	addr  []byte
	scope []byte // nil: shared
	t     *table
	idx   int
}

// compareBlock orders the blocklist newest first: since descending, then
// address, then scope (shared first) ascending.
func compareBlock(a, b *blockCand) int {
	if a.since != b.since {
		return cmp.Compare(b.since, a.since)
	}
	if c := bytes.Compare(a.addr, b.addr); c != 0 {
		return c
	}
	return bytes.Compare(a.scope, b.scope)
}

func afterBlockCursor(a *blockCand, c *cursor) bool {
	if s := int64(a.since); s != c.since {
		return s < c.since
	}
	if x := strings.Compare(string(a.addr), c.addr); x != 0 {
		return x > 0
	}
	return string(a.scope) > c.scope1
}

// Blocklist returns a page of the blocklist entries by may see, newest
// first (by Since, then by address), and the cursor of the next page ("":
// this is the last). An account sees the shared entries and its own; the
// admin without an account every entry, with one the shared entries and
// that account's. Event ids are given as by Check: only for entries by's
// account caused, or to the admin. Entries past their expiry are not
// listed. A page continues strictly after the last entry of the previous
// one, so entries added meanwhile (newer, they sort before it) do not
// appear on later pages and no entry appears twice.
//
// It scans the whole table under the read lock — O(n) per page, keeping
// the best Limit+1 in a heap (about 16 ms a page at a million entries,
// BenchmarkBlocklistPage): it is for
// people and tools paging through the list, not for the sending path.
func (x *Index) Blocklist(by Principal, q ListQuery) ([]Entry, string, error) {
	cur, err := decodeCursor(Blocklist, q.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := q.limit()
	now := x.now().Unix()
	var since int64
	if !q.Since.IsZero() {
		since = q.Since.Unix()
		if q.Since.Nanosecond() != 0 {
			since++ // whole seconds: entries at or after it
		}
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	reason, filterReason := uint8(0), q.Reason != ""
	if filterReason {
		r, ok := x.reasonIx[q.Reason]
		if !ok {
			return nil, "", nil
		}
		reason = r
	}
	acct, known := x.accountIx[by.Account]
	hasOwn := known && x.ownCount[acct] > 0 || by.Admin && by.Account == ""
	top := newTopK(limit+1, compareBlock)
	for _, t := range []*table{x.shared, x.own} {
		own := t == x.own
		if own && !hasOwn {
			continue
		}
		for idx := range t.entries {
			en := &t.entries[idx]
			if int64(en.until) <= now || int64(en.since) < since || filterReason && en.reason != reason {
				continue
			}
			c := blockCand{since: en.since, t: t, idx: idx}
			key := t.key(en)
			if own {
				nul := bytes.IndexByte(key, 0)
				c.scope, c.addr = key[:nul], key[nul+1:]
				if (by.Account != "" || !by.Admin) && string(c.scope) != by.Account {
					continue
				}
			} else {
				c.addr = key
			}
			if cur != nil && !afterBlockCursor(&c, cur) {
				continue
			}
			top.push(c)
		}
	}
	cands := top.sorted()
	next := ""
	if len(cands) > limit {
		cands = cands[:limit]
		last := &cands[limit-1]
		next = encodeCursor(Blocklist, cursor{since: int64(last.since), addr: string(last.addr), scope1: string(last.scope)})
	}
	out := make([]Entry, len(cands))
	for i := range cands {
		c := &cands[i]
		en := &c.t.entries[c.idx]
		own := c.t == x.own
		e := Entry{List: Blocklist, Address: string(c.addr), Account: x.accounts[en.account], Shared: !own,
			Scope: string(c.scope), Reason: x.reasons[en.reason], Since: unix(en.since), Until: unix(en.until)}
		if by.Admin || e.Account == by.Account {
			e.EventID = x.eventID(en, own, string(c.t.key(en)))
		}
		out[i] = e
	}
	return out, next, nil
}

// unsubCand is an unsubscribe entry considered for a page.
type unsubCand struct {
	since int64
	addr  string
	sc    unsubScope
	u     *unsubEntry
}

func compareUnsub(a, b *unsubCand) int {
	if a.since != b.since {
		return cmp.Compare(b.since, a.since)
	}
	if c := strings.Compare(a.addr, b.addr); c != 0 {
		return c
	}
	if c := strings.Compare(a.sc.account, b.sc.account); c != 0 {
		return c
	}
	return strings.Compare(a.sc.senderDomain, b.sc.senderDomain)
}

// Unsubscribes returns a page of the unsubscribe entries by may see,
// newest first (by Since, then address, account and sender domain), and
// the cursor of the next page ("": this is the last). The list is per
// account: an account sees its own; the admin with an account that
// account's, without one every account's. q.SenderDomain keeps one sender
// domain's entries; q.Reason is ignored. Paging is as for Blocklist, and
// so is the cost: a scan of every entry under the read lock.
func (x *Index) Unsubscribes(by Principal, q ListQuery) ([]Entry, string, error) {
	cur, err := decodeCursor(Unsubscribe, q.Cursor)
	if err != nil {
		return nil, "", err
	}
	if by.Account == "" && !by.Admin {
		return nil, "", fmt.Errorf("suppress: unsubscribes: %w: no account", ErrForbidden)
	}
	domain, filterDomain := "", strings.TrimSpace(q.SenderDomain) != ""
	if filterDomain {
		if domain, err = NormalizeDomain(q.SenderDomain); err != nil {
			return nil, "", err
		}
	}
	limit := q.limit()
	var since int64 = -1 << 62
	if !q.Since.IsZero() {
		since = q.Since.Unix()
		if q.Since.Nanosecond() != 0 {
			since++
		}
	}
	var cc *unsubCand
	if cur != nil {
		cc = &unsubCand{since: cur.since, addr: cur.addr, sc: unsubScope{cur.scope1, cur.scope2}}
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	top := newTopK(limit+1, compareUnsub)
	for sc, m := range x.unsubs {
		if by.Account != "" && sc.account != by.Account || filterDomain && sc.senderDomain != domain {
			continue
		}
		for addr, u := range m {
			if !u.active || u.since < since {
				continue
			}
			c := unsubCand{since: u.since, addr: addr, sc: sc, u: u}
			if cc != nil && compareUnsub(&c, cc) <= 0 {
				continue
			}
			top.push(c)
		}
	}
	cands := top.sorted()
	next := ""
	if len(cands) > limit {
		cands = cands[:limit]
		last := &cands[limit-1]
		next = encodeCursor(Unsubscribe, cursor{since: last.since, addr: last.addr, scope1: last.sc.account, scope2: last.sc.senderDomain})
	}
	out := make([]Entry, len(cands))
	for i := range cands {
		c := &cands[i]
		out[i] = Entry{List: Unsubscribe, Address: c.addr, Account: c.sc.account, SenderDomain: c.sc.senderDomain,
			Reason: c.u.reason, Since: time.Unix(c.u.since, 0).UTC(), EventID: c.u.eventID}
	}
	return out, next, nil
}

// topK keeps the k first items by compare: a max-heap whose root is the
// last of them, replaced when a better item comes.
type topK[T any] struct {
	k       int
	items   []T
	compare func(a, b *T) int
	v       T // the item pushed: compared in place, so that it does not escape
}

func newTopK[T any](k int, compare func(a, b *T) int) *topK[T] {
	return &topK[T]{k: k, compare: compare, items: make([]T, 0, min(k, 1024))}
}

func (h *topK[T]) push(v T) {
	if len(h.items) < h.k {
		h.items = append(h.items, v)
		h.up(len(h.items) - 1)
		return
	}
	h.v = v
	if h.compare(&h.v, &h.items[0]) >= 0 {
		return
	}
	h.items[0] = h.v
	h.down(0)
}

func (h *topK[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h.compare(&h.items[i], &h.items[p]) <= 0 {
			return
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *topK[T]) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.compare(&h.items[r], &h.items[l]) > 0 {
			m = r
		}
		if h.compare(&h.items[m], &h.items[i]) <= 0 {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}

// sorted returns the items in order.
func (h *topK[T]) sorted() []T {
	slices.SortFunc(h.items, func(a, b T) int { return h.compare(&a, &b) })
	return h.items
}
