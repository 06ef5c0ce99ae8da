package rules

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"repute/metrics"
)

// Response is one SMTP reply of a deferred or bounced event.
type Response struct {
	// Scope has Account, SenderDomain, SendingIP and ISP of the event.
	Scope      Scope
	Kind       metrics.Kind
	Time       time.Time
	Status     string
	ReplyCode  uint16
	Diagnostic string
}

// Text is what pattern rules match: "CODE STATUS DIAGNOSTIC", the empty
// parts left out.
func (r Response) Text() string {
	b := make([]byte, 0, 16+len(r.Diagnostic))
	if r.ReplyCode != 0 {
		b = strconv.AppendUint(b, uint64(r.ReplyCode), 10)
	}
	for _, s := range []string{r.Status, r.Diagnostic} {
		if s == "" {
			continue
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
	}
	return string(b)
}

// Responses gives the SMTP replies with from <= time < to that the
// pattern rules may care about.
type Responses interface {
	Responses(ctx context.Context, from, to time.Time) ([]Response, error)
}

// StoreResponses reads from a store the replies that the pattern rules of
// Rules match (repute rules backtest): each call is one read of the
// store's replies in [from, to), the others left out as they stream by.
type StoreResponses struct {
	Rules   *RuleSet
	Replies metrics.ReplyReader
}

var _ Responses = StoreResponses{}

// Responses implements Responses.
func (s StoreResponses) Responses(ctx context.Context, from, to time.Time) ([]Response, error) {
	var out []Response
	err := s.Replies.Replies(ctx, from, to, func(rp metrics.Reply) error {
		if r := responseOf(rp); s.Rules.match(r) != nil {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// responseOf is the Response of a stored reply.
func responseOf(rp metrics.Reply) Response {
	return Response{
		Scope: Scope{Account: rp.Account, SenderDomain: rp.SenderDomain, SendingIP: rp.SendingIP, ISP: rp.ISP},
		Kind:  rp.Kind, Time: rp.Time, Status: rp.Status, ReplyCode: rp.ReplyCode, Diagnostic: rp.Diagnostic,
	}
}

// PatternWindow is the longest window of the pattern rules (0 without
// any): how far back they read replies.
func (rs *RuleSet) PatternWindow() time.Duration {
	var longest time.Duration
	for _, p := range rs.Patterns {
		longest = max(longest, p.Within)
	}
	return longest
}

// ResponseLogOptions bound a ResponseLog. The zero value works.
type ResponseLogOptions struct {
	// Keep is how long a reply is kept, counted back from the newest one
	// observed (default 24h; longer than any pattern's window).
	Keep time.Duration
	// PerScope is the most replies kept per scope (default 1,000; the
	// oldest go first).
	PerScope int
	// MaxScopes is the most scopes kept (default 10,000). When a new
	// scope finds it full, the 16th of the scopes whose newest replies are
	// the oldest go.
	MaxScopes int
	// MaxDiagnostic bounds the diagnostic kept (default 512 bytes).
	MaxDiagnostic int
}

// ResponseLog is an in-memory Responses fed with events (Observe, e.g.
// from intake after each store write): it keeps the replies of deferred
// and bounced events that match one of its rule set's patterns, per scope
// (account, sender domain, sending IP, provider), within its bounds. It is
// safe for concurrent use. Keeping them in memory keeps the pattern rules,
// evaluated every minute or so, off the store; after a restart, Load
// reads the recent ones back from the store.
type ResponseLog struct {
	rules *RuleSet
	o     ResponseLogOptions

	mu     sync.Mutex
	scopes map[Scope]*ring
	newest time.Time
	pruned time.Time // newest at the last prune
}

// ring holds one scope's replies: at most PerScope, the oldest arrival
// overwritten first.
type ring struct {
	buf  []Response // buf[head:] then buf[:head] is arrival order
	head int
	last time.Time // the newest reply's time
}

func (r *ring) add(x Response, size int) {
	if len(r.buf) < size {
		r.buf = append(r.buf, x)
	} else {
		r.buf[r.head] = x
		r.head = (r.head + 1) % len(r.buf)
	}
	if x.Time.After(r.last) {
		r.last = x.Time
	}
}

// each calls f on the replies in arrival order.
func (r *ring) each(f func(Response)) {
	for i := range r.buf {
		f(r.buf[(r.head+i)%len(r.buf)])
	}
}

// drop removes the replies before cut.
func (r *ring) drop(cut time.Time) {
	kept := make([]Response, 0, len(r.buf))
	r.each(func(x Response) {
		if !x.Time.Before(cut) {
			kept = append(kept, x)
		}
	})
	r.buf, r.head = kept, 0
}

var _ Responses = (*ResponseLog)(nil)

// NewResponseLog returns an empty log keeping the replies rs's patterns
// match.
func NewResponseLog(rs *RuleSet, o ResponseLogOptions) (*ResponseLog, error) {
	if rs == nil {
		return nil, fmt.Errorf("rules: a response log needs a rule set")
	}
	if o.Keep < 0 || o.PerScope < 0 || o.MaxScopes < 0 || o.MaxDiagnostic < 0 {
		return nil, fmt.Errorf("rules: negative response log bounds")
	}
	if o.Keep == 0 {
		o.Keep = 24 * time.Hour
	}
	if o.PerScope == 0 {
		o.PerScope = 1000
	}
	if o.MaxScopes == 0 {
		o.MaxScopes = 10000
	}
	if o.MaxDiagnostic == 0 {
		o.MaxDiagnostic = 512
	}
	return &ResponseLog{rules: rs, o: o, scopes: map[Scope]*ring{}}, nil
}

// Observe keeps the replies among events that a pattern matches.
func (l *ResponseLog) Observe(events []metrics.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range events {
		e := &events[i]
		if e.Kind != metrics.KindDeferred && e.Kind != metrics.KindBounced {
			continue
		}
		l.add(Response{
			Scope: Scope{Account: e.Account, SenderDomain: e.SenderDomain, SendingIP: e.SendingIP, ISP: e.ISP},
			Kind:  e.Kind, Time: e.Time, Status: e.Status, ReplyCode: e.ReplyCode, Diagnostic: e.Diagnostic,
		})
	}
	l.maybePrune()
}

// Load keeps the replies a pattern matches among those rr stored in
// [from, to), and returns how many it kept: a restarted engine reads back
// the last PatternWindow so that an episode in progress is not forgotten.
// A reply Observe has seen already is kept twice (a pattern counting
// replies would count it twice): load before intake starts.
func (l *ResponseLog) Load(ctx context.Context, rr metrics.ReplyReader, from, to time.Time) (int, error) {
	n := 0
	err := rr.Replies(ctx, from, to, func(rp metrics.Reply) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.add(responseOf(rp)) {
			n++
		}
		return nil
	})
	l.mu.Lock()
	l.maybePrune()
	l.mu.Unlock()
	if err != nil {
		return n, fmt.Errorf("rules: load replies: %w", err)
	}
	return n, nil
}

// add keeps r if a pattern matches it and says whether it did; l.mu is
// held.
func (l *ResponseLog) add(r Response) bool {
	if len(r.Diagnostic) > l.o.MaxDiagnostic {
		r.Diagnostic = r.Diagnostic[:l.o.MaxDiagnostic]
	}
	if l.rules.match(r) == nil {
		return false
	}
	rg := l.scopes[r.Scope]
	if rg == nil {
		if len(l.scopes) >= l.o.MaxScopes {
			l.evict()
		}
		rg = &ring{}
		l.scopes[r.Scope] = rg
	}
	rg.add(r, l.o.PerScope)
	if r.Time.After(l.newest) {
		l.newest = r.Time
	}
	return true
}

// maybePrune prunes at most once a minute of event time (pruning walks
// every reply); l.mu is held.
func (l *ResponseLog) maybePrune() {
	if l.newest.Sub(l.pruned) >= time.Minute {
		l.prune()
		l.pruned = l.newest
	}
}

// evict drops the scopes whose newest replies are the oldest: a 16th of
// MaxScopes (at least one) at once, so that a flood of new scopes costs
// one walk per 16th.
func (l *ResponseLog) evict() {
	type aged struct {
		sc   Scope
		last time.Time
	}
	all := make([]aged, 0, len(l.scopes))
	for sc, rg := range l.scopes {
		all = append(all, aged{sc, rg.last})
	}
	slices.SortFunc(all, func(a, b aged) int { return a.last.Compare(b.last) })
	for _, a := range all[:max(1, l.o.MaxScopes/16)] {
		delete(l.scopes, a.sc)
	}
}

// prune drops replies older than Keep before the newest.
func (l *ResponseLog) prune() {
	cut := l.newest.Add(-l.o.Keep)
	for sc, rg := range l.scopes {
		if rg.last.Before(cut) {
			delete(l.scopes, sc)
			continue
		}
		rg.drop(cut)
	}
}

// Len is the number of replies kept.
func (l *ResponseLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, rg := range l.scopes {
		n += len(rg.buf)
	}
	return n
}

// Responses implements Responses.
func (l *ResponseLog) Responses(_ context.Context, from, to time.Time) ([]Response, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Response
	for _, rg := range l.scopes {
		rg.each(func(r Response) {
			if !r.Time.Before(from) && r.Time.Before(to) {
				out = append(out, r)
			}
		})
	}
	slices.SortStableFunc(out, func(a, b Response) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// match returns the first pattern rule that takes r, or nil.
func (rs *RuleSet) match(r Response) *PatternRule {
	var text string
	for i := range rs.Patterns {
		p := &rs.Patterns[i]
		if !slices.Contains(p.Kinds, r.Kind) || (p.ISP != "" && p.ISP != r.Scope.ISP) {
			continue
		}
		if text == "" {
			text = r.Text()
		}
		if p.Match.MatchString(text) {
			return p
		}
	}
	return nil
}

// patternFlags evaluates the pattern rules: each reply counts for the
// first rule that matches it; a rule fires for a scope when Count of its
// replies fall within Within before now, and its action then lasts For
// (Repeated.For when it is the Repeated.Count-th episode within
// Repeated.Within). While an action lasts, the flag stays, with the Since
// of its start; replies that arrive during it do not start another — only
// replies after it ends do.
func (e *Engine) patternFlags(ctx context.Context, now time.Time) ([]Flag, error) {
	rs, err := e.Responses.Responses(ctx, now.Add(-e.Rules.PatternWindow()), now.Add(time.Nanosecond))
	if err != nil {
		return nil, fmt.Errorf("rules: responses: %w", err)
	}
	// Replies per (rule, scope), in time order.
	hits := map[flagKey][]time.Time{}
	for _, r := range rs {
		p := e.Rules.match(r)
		if p == nil || r.Time.Before(now.Add(-p.Within)) {
			continue
		}
		k := flagKey{p.ID, project(r.Scope, p.Scope)}
		hits[k] = append(hits[k], r.Time)
	}
	var out []Flag
	byID := map[string]*PatternRule{}
	for i := range e.Rules.Patterns {
		byID[e.Rules.Patterns[i].ID] = &e.Rules.Patterns[i]
	}
	// Actions still in force.
	for k, ep := range e.episodes {
		if now.Before(ep.until) {
			out = append(out, ep.flag)
			continue
		}
		p := byID[k.rule]
		if p == nil || p.Repeated == nil || len(ep.starts) == 0 ||
			!now.Before(ep.starts[len(ep.starts)-1].Add(p.Repeated.Within)) {
			if len(hits[k]) == 0 {
				delete(e.episodes, k)
			}
		}
	}
	keys := make([]flagKey, 0, len(hits))
	for k := range hits {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b flagKey) int {
		return cmp.Or(cmp.Compare(a.rule, b.rule), compareScopes(a.scope, b.scope))
	})
	for _, k := range keys {
		p := byID[k.rule]
		ep := e.episodes[k]
		if ep != nil && now.Before(ep.until) {
			continue
		}
		n := 0
		for _, t := range hits[k] {
			if ep == nil || !t.Before(ep.until) {
				n++
			}
		}
		if n < p.Count {
			continue
		}
		if ep == nil {
			ep = &episode{}
			e.episodes[k] = ep
		}
		f := Flag{Rule: p.ID, Scope: k.scope, Severity: p.Severity, Value: float64(n),
			Threshold: float64(p.Count), Sample: int64(n), Window: p.WindowName(), Action: p.Action,
			For: p.For, MinuteLimit: p.MinuteLimit, MaxConnections: p.MaxConnections, Since: now}
		if rp := p.Repeated; rp != nil {
			ep.starts = slices.DeleteFunc(ep.starts, func(t time.Time) bool { return !now.Before(t.Add(rp.Within)) })
			if len(ep.starts)+1 >= rp.Count {
				f.For, f.Severity = rp.For, rp.Severity
			}
		}
		ep.starts = append(ep.starts, now)
		ep.since, ep.until, ep.flag = now, now.Add(f.For), f
		out = append(out, f)
	}
	order := map[string]int{}
	for i, p := range e.Rules.Patterns {
		order[p.ID] = i
	}
	slices.SortFunc(out, func(a, b Flag) int {
		return cmp.Or(cmp.Compare(order[a.Rule], order[b.Rule]), compareScopes(a.Scope, b.Scope))
	})
	return out, nil
}
