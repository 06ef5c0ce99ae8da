package sender

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Pacing: a WarmupPacer hands out delivery slots under three scopes at
// once, and the strictest one wins:
//
//   - the sender domain: the warm-up schedule × min(#IPs, 5) (the
//     schedule is "for one IP; with several IPs the limits may rise, never
//     beyond 5× the table"), shared with other processes through History;
//   - (sender domain, sending IP): the warm-up schedule as it stands;
//   - (sender domain, recipient provider): no rate of its own until an
//     override sets one, and a cap on the connections in flight.
//
// Windows. The day is the warm-up day, a fixed 24 h window counted from
// the domain's first send (day 1 holds at most 1,000, day 2 at most 1,500,
// exactly as the table says). The hour and the minute are not windows but
// emission intervals (GCRA, the generic cell rate algorithm of ITU-T
// I.371, with no burst tolerance): at 200/hour a slot opens every 18 s,
// never 200 at :00, and no interval of an hour ever holds more than 200.
// After an idle spell nothing is "saved up": the next message goes at
// once, the one after it 18 s later.
//
// Take never reserves partially: when any scope refuses, nothing is
// counted, and retry is the latest of the scopes' earliest free times
// (the earliest time at which all of them could admit, as far as the
// pacer can know: a connection cap has no known free time and answers
// now + ConnectionRetry).

// DefaultConnections is the default cap on deliveries in flight per
// (sender domain, recipient provider). Microsoft's guidance allows up to
// 500 concurrent connections per sending IP, but a new sender opening many
// connections at once is what providers defer ("421 4.7.0 too many
// connections") and what the warm-up is meant to avoid; the sender's own
// default is 8 connections to the relay, so 10 does not bind by default
// and is the knob overrides tighten (e.g. to 1 after a provider's 421).
const DefaultConnections = 10

// DefaultConnectionRetry is how long a Take refused by a connection cap
// tells the queue to wait: a connection frees on Done, at no time the
// pacer can predict.
const DefaultConnectionRetry = time.Second

// DefaultPauseRecheck is the retry a Take refused by a pause without an
// end (Override.Until zero) answers.
const DefaultPauseRecheck = time.Minute

// ScopeKind says what a Scope counts by.
type ScopeKind uint8

// The three pacing scopes.
const (
	ScopeDomain   ScopeKind = iota + 1 // the sender domain
	ScopeIP                            // (sender domain, sending IP)
	ScopeProvider                      // (sender domain, recipient provider)
)

func (k ScopeKind) String() string {
	switch k {
	case ScopeDomain:
		return "domain"
	case ScopeIP:
		return "ip"
	case ScopeProvider:
		return "provider"
	}
	return fmt.Sprintf("ScopeKind(%d)", uint8(k))
}

// Scope names one pacing scope: a sender domain, or a sender domain with
// a sending IP (Value = PaceKey.SendingIP, "" being the relay's choice)
// or with a recipient provider (Value = PaceKey.Provider).
type Scope struct {
	Kind         ScopeKind
	SenderDomain string
	Value        string
}

// DomainScope, IPScope and ProviderScope build the scopes a PaceKey
// falls in.
func DomainScope(domain string) Scope { return Scope{Kind: ScopeDomain, SenderDomain: domain} }

// IPScope is the scope of domain's sends from ip.
func IPScope(domain, ip string) Scope { return Scope{ScopeIP, domain, ip} }

// ProviderScope is the scope of domain's sends to provider.
func ProviderScope(domain, provider string) Scope {
	return Scope{ScopeProvider, domain, provider}
}

func (s Scope) String() string {
	if s.Kind == ScopeDomain {
		return "domain " + s.SenderDomain
	}
	return fmt.Sprintf("%s %s/%s", s.Kind, s.SenderDomain, s.Value)
}

// Override is a decision for one scope, set by the rule engine (or an
// operator) with SetOverride. It only tightens: the warm-up schedule
// still holds, and the strictest value wins.
type Override struct {
	// Until ends the override; zero means until ClearOverride.
	Until time.Time
	// Pause stops every send in the scope until Until.
	Pause bool
	// Limits caps the scope further; a zero field leaves that limit to
	// the schedule. E.g. Limits{PerMinute: 10, Connections: 1} sends at
	// most one message every 6 s over a single connection.
	Limits Limits
	// Reason says why, for logs and GET /v1/queue.
	Reason string
}

// active reports whether o holds at now.
func (o Override) active(now time.Time) bool {
	return o.Until.IsZero() || now.Before(o.Until)
}

// History is what the store says every process sent, so that several
// `repute serve` processes sending for one domain share its limits. It
// counts per sender domain only: the domain's limit is the one the
// warm-up schedule is about and the one several processes share; an IP
// or a provider scope is paced by each process alone (overrides can
// tighten them where that matters).
type History interface {
	// FirstSent returns the time of senderDomain's first sent event, and
	// false when it has none.
	FirstSent(ctx context.Context, senderDomain string) (time.Time, bool, error)
	// Sent counts senderDomain's sent events in [since, now).
	Sent(ctx context.Context, senderDomain string, since time.Time) (int64, error)
}

// PacerOptions configures a WarmupPacer. The zero value works: warm-up
// limits, 10 connections per provider, one process alone.
type PacerOptions struct {
	// Connections caps deliveries in flight per (sender domain,
	// provider); 0 means DefaultConnections.
	Connections int
	// ConnectionRetry is the retry a connection cap answers; 0 means
	// DefaultConnectionRetry.
	ConnectionRetry time.Duration
	// Schedule gives one IP's limits on a warm-up day; nil means
	// WarmupLimits.
	Schedule func(day int) Limits
	// Warmed reports whether a sender domain (lower-cased A-label) is
	// already warm: an established domain moved to repute, or a small
	// registration sender (docs/THRESHOLDS.md allows skipping warm-up
	// for both). Its sends are not held to Schedule at all — neither the
	// domain nor its IPs' limits apply — while the per-provider
	// connection cap and every override still do. nil: no domain is.
	Warmed func(senderDomain string) bool
	// History shares the domain limits with other processes (see
	// Refresh); nil means this process sends alone.
	History History
	// Now is Refresh's clock; nil means time.Now. Take and Done are told
	// the time by the caller.
	Now func() time.Time
}

// WarmupPacer implements Pacer with the warm-up schedule, the scopes and
// the overrides described above. It is safe for concurrent use.
//
// Several processes: each one counts its own sends exactly, and Refresh
// (which the wiring calls every few seconds) reads from History what all
// of them sent in the domain's current warm-up day and in the last hour;
// what is not its own ("others") comes off its budget: a Take is refused
// when own + others reaches the domain's day limit, or, while others sent
// in the last hour, its hour limit. The counts are stale by the refresh
// interval plus the time a sent event takes to reach the store (the
// spool's drain): in that time each process may spend budget the others
// cannot see yet, so a window can overshoot by at most N processes × what
// one process admits in (refresh interval + store lag) — at 200/hour and a
// 5 s refresh that is one message per process. Between processes the
// hour is shared by count, not interleaved: together they may go faster
// than one every 18 s until the shared count stops them.
type WarmupPacer struct {
	conns     int
	connRetry time.Duration
	schedule  func(int) Limits
	warmed    func(string) bool
	history   History
	now       func() time.Time

	mu        sync.Mutex
	domains   map[string]*paceDomain
	scopes    map[Scope]*paceScope
	overrides map[Scope]Override
	inflight  map[PaceKey][]paceTaken
}

var _ Pacer = (*WarmupPacer)(nil)

// paceDomain is what the pacer knows of one sender domain.
type paceDomain struct {
	first          time.Time // the first send (store or local); zero = none yet
	firstFromStore bool      // History answered: no need to ask again
	ips            map[string]struct{}

	// others is what other processes sent, as of the last Refresh.
	othersDay    int64
	othersDayIdx int64 // the warm-up day othersDay counts
	othersHour   int64

	// own sends per minute over the last hour (a ring by minute index),
	// to tell this process's share of History's hour count.
	ownMin    [60]int64
	ownMinIdx [60]int64
}

// paceScope is the pacing state of one scope.
type paceScope struct {
	dayIdx   int64 // the warm-up day dayCount counts
	dayCount int64
	hourTAT  time.Time // GCRA theoretical arrival time: the next slot
	minTAT   time.Time
	conns    int
}

// paceTaken is one Take waiting for its Done: what to give back.
type paceTaken struct {
	at    time.Time
	day   int64
	hourT [3]time.Duration
	minT  [3]time.Duration
}

// NewWarmupPacer returns a pacer configured by o.
func NewWarmupPacer(o PacerOptions) (*WarmupPacer, error) {
	if o.Connections < 0 {
		return nil, fmt.Errorf("sender: pacer connections %d is negative", o.Connections)
	}
	if o.ConnectionRetry < 0 {
		return nil, fmt.Errorf("sender: pacer connection retry %v is negative", o.ConnectionRetry)
	}
	p := &WarmupPacer{
		conns:     o.Connections,
		connRetry: o.ConnectionRetry,
		schedule:  o.Schedule,
		warmed:    o.Warmed,
		history:   o.History,
		now:       o.Now,
		domains:   map[string]*paceDomain{},
		scopes:    map[Scope]*paceScope{},
		overrides: map[Scope]Override{},
		inflight:  map[PaceKey][]paceTaken{},
	}
	if p.conns == 0 {
		p.conns = DefaultConnections
	}
	if p.connRetry == 0 {
		p.connRetry = DefaultConnectionRetry
	}
	if p.schedule == nil {
		p.schedule = WarmupLimits
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// SetOverride sets the decision for scope, replacing the one it had.
func (p *WarmupPacer) SetOverride(scope Scope, o Override) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.overrides[scope] = o
}

// ClearOverride removes scope's decision: the schedule alone holds again.
func (p *WarmupPacer) ClearOverride(scope Scope) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.overrides, scope)
}

// Day returns senderDomain's warm-up day at now: floor((now - first
// send)/24h) + 1, and 1 for a domain that has not sent yet.
func (p *WarmupPacer) Day(senderDomain string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.domains[senderDomain]
	if d == nil || d.first.IsZero() {
		return 1
	}
	return int(warmupDay(d.first, now))
}

// warmupDay is the warm-up day (1-based) of now for a domain that first
// sent at first.
func warmupDay(first, now time.Time) int64 {
	if !now.After(first) {
		return 1
	}
	return int64(now.Sub(first)/(24*time.Hour)) + 1
}

// paceInterval is the GCRA emission interval of n per window (0 = no limit).
func paceInterval(window time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return max(window/time.Duration(n), 1)
}

// tightenLimits returns the stricter of a and b field by field, 0 meaning no
// limit.
func tightenLimits(a, b Limits) Limits {
	f := func(x, y int) int {
		switch {
		case x == 0:
			return y
		case y == 0:
			return x
		}
		return min(x, y)
	}
	return Limits{f(a.PerDay, b.PerDay), f(a.PerHour, b.PerHour), f(a.PerMinute, b.PerMinute),
		f(a.Connections, b.Connections)}
}

// Take implements Pacer.
func (p *WarmupPacer) Take(k PaceKey, now time.Time) (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()

	d := p.domains[k.SenderDomain]
	if d == nil {
		d = &paceDomain{ips: map[string]struct{}{}}
		p.domains[k.SenderDomain] = d
	}
	first := d.first
	if first.IsZero() {
		first = now // the day starts with this send, if it goes
	}
	day := warmupDay(first, now)
	nextDay := first.Add(time.Duration(day) * 24 * time.Hour)

	var base Limits // a warmed domain: no schedule limit
	if p.warmed == nil || !p.warmed(k.SenderDomain) {
		base = p.schedule(int(day))
	}
	// Every IP the queue has mail for counts, admitted or not yet: the
	// domain's limit rises with its IPs, up to 5× the table.
	d.ips[k.SendingIP] = struct{}{}
	mult := min(len(d.ips), 5)
	scopes := [3]Scope{DomainScope(k.SenderDomain), IPScope(k.SenderDomain, k.SendingIP),
		ProviderScope(k.SenderDomain, k.Provider)}
	lims := [3]Limits{
		{PerDay: base.PerDay * mult, PerHour: base.PerHour * mult, PerMinute: base.PerMinute * mult,
			Connections: base.Connections},
		base,
		{Connections: p.conns},
	}
	var states [3]*paceScope
	retry := now
	for i, s := range scopes {
		if o, ok := p.overrides[s]; ok {
			if !o.active(now) {
				delete(p.overrides, s)
			} else if o.Pause {
				until := o.Until
				if until.IsZero() {
					until = now.Add(DefaultPauseRecheck)
				}
				retry = paceLater(retry, until)
			} else {
				lims[i] = tightenLimits(lims[i], o.Limits)
			}
		}
		st := p.scopes[s]
		if st == nil {
			st = &paceScope{}
			p.scopes[s] = st
		}
		states[i] = st
		l := lims[i]
		if st.dayIdx != day {
			st.dayIdx, st.dayCount = day, 0
		}
		if l.PerDay > 0 {
			used := st.dayCount
			if i == 0 && d.othersDayIdx == day {
				used += d.othersDay
			}
			if used >= int64(l.PerDay) {
				retry = paceLater(retry, nextDay)
			}
		}
		if l.PerHour > 0 {
			retry = paceLater(retry, st.hourTAT)
			if i == 0 && d.othersHour > 0 && d.ownHour(now)+d.othersHour >= int64(l.PerHour) {
				// the oldest own minute leaves the hour at the next minute
				retry = paceLater(retry, now.Truncate(time.Minute).Add(time.Minute))
			}
		}
		if l.PerMinute > 0 {
			retry = paceLater(retry, st.minTAT)
		}
		if l.Connections > 0 && st.conns >= l.Connections {
			retry = paceLater(retry, now.Add(p.connRetry))
		}
	}
	if retry.After(now) {
		return false, retry
	}

	t := paceTaken{at: now, day: day}
	for i, st := range states {
		l := lims[i]
		st.dayCount++
		st.conns++
		t.hourT[i] = paceInterval(time.Hour, l.PerHour)
		t.minT[i] = paceInterval(time.Minute, l.PerMinute)
		st.hourTAT = paceLater(st.hourTAT, now).Add(t.hourT[i])
		st.minTAT = paceLater(st.minTAT, now).Add(t.minT[i])
	}
	if d.first.IsZero() {
		d.first = now
	}
	d.addOwn(now, 1)
	p.inflight[k] = append(p.inflight[k], t)
	return true, now
}

// Done implements Pacer. Takes and Dones of one key pair up in order; a
// Done without a Take is ignored.
func (p *WarmupPacer) Done(k PaceKey, sent bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.inflight[k]
	if len(q) == 0 {
		return
	}
	t := q[0]
	if len(q) == 1 {
		p.inflight[k] = q[:0] // keeps the array for the key's next Take
	} else {
		p.inflight[k] = q[1:]
	}
	scopes := [3]Scope{DomainScope(k.SenderDomain), IPScope(k.SenderDomain, k.SendingIP),
		ProviderScope(k.SenderDomain, k.Provider)}
	for i, s := range scopes {
		st := p.scopes[s]
		if st == nil {
			continue
		}
		st.conns = max(st.conns-1, 0)
		if sent {
			continue
		}
		if st.dayIdx == t.day && st.dayCount > 0 {
			st.dayCount--
		}
		st.hourTAT = st.hourTAT.Add(-t.hourT[i])
		st.minTAT = st.minTAT.Add(-t.minT[i])
	}
	if !sent {
		if d := p.domains[k.SenderDomain]; d != nil {
			d.addOwn(t.at, -1)
		}
	}
}

// addOwn counts n own sends in now's minute.
func (d *paceDomain) addOwn(now time.Time, n int64) {
	m := now.Unix() / 60
	i := m % 60
	if d.ownMinIdx[i] != m {
		if n < 0 {
			return // that minute has left the ring
		}
		d.ownMinIdx[i], d.ownMin[i] = m, 0
	}
	d.ownMin[i] = max(d.ownMin[i]+n, 0)
}

// ownHour is the own sends in the 60 minutes up to and including now's.
func (d *paceDomain) ownHour(now time.Time) int64 {
	m := now.Unix() / 60
	var n int64
	for i := range d.ownMin {
		if idx := d.ownMinIdx[i]; idx > m-60 && idx <= m {
			n += d.ownMin[i]
		}
	}
	return n
}

// Refresh reads from History what every process sent for each domain this
// pacer has seen — the first send (until the store knows it), the current
// warm-up day and the last hour — and takes what is not this process's
// own off its budget. The wiring calls it every few seconds; without a
// History it does nothing. An error for one domain does not stop the
// others; all are returned joined.
func (p *WarmupPacer) Refresh(ctx context.Context) error {
	if p.history == nil {
		return nil
	}
	type ask struct {
		domain    string
		first     time.Time
		needFirst bool
	}
	p.mu.Lock()
	asks := make([]ask, 0, len(p.domains))
	for name, d := range p.domains {
		asks = append(asks, ask{name, d.first, !d.firstFromStore})
	}
	p.mu.Unlock()

	var errs []error
	for _, a := range asks {
		now := p.now()
		first, fromStore := a.first, false
		if a.needFirst {
			f, ok, err := p.history.FirstSent(ctx, a.domain)
			if err != nil {
				errs = append(errs, fmt.Errorf("sender: pacer refresh %s: first send: %w", a.domain, err))
				continue
			}
			if ok {
				fromStore = true
				if first.IsZero() || f.Before(first) {
					first = f
				}
			}
		}
		var dayStart time.Time
		var day int64
		if !first.IsZero() {
			day = warmupDay(first, now)
			dayStart = first.Add(time.Duration(day-1) * 24 * time.Hour)
		}
		var dayN int64
		if day > 0 {
			n, err := p.history.Sent(ctx, a.domain, dayStart)
			if err != nil {
				errs = append(errs, fmt.Errorf("sender: pacer refresh %s: sent today: %w", a.domain, err))
				continue
			}
			dayN = n
		}
		hourN, err := p.history.Sent(ctx, a.domain, now.Add(-time.Hour))
		if err != nil {
			errs = append(errs, fmt.Errorf("sender: pacer refresh %s: sent last hour: %w", a.domain, err))
			continue
		}

		p.mu.Lock()
		d := p.domains[a.domain]
		if fromStore {
			d.firstFromStore = true
			if d.first.IsZero() || first.Before(d.first) {
				d.first = first
			}
		}
		if day > 0 {
			own := int64(0)
			if st := p.scopes[DomainScope(a.domain)]; st != nil && st.dayIdx == day {
				own = st.dayCount
			}
			d.othersDay, d.othersDayIdx = max(dayN-own, 0), day
		}
		d.othersHour = max(hourN-d.ownHour(now), 0)
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

func paceLater(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
