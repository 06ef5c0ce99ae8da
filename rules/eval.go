package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"repute/metrics"
)

// Engine evaluates a rule set into flags. Rate rules read Source; pattern
// rules read Responses (nil: pattern rules are skipped). It keeps the
// flags active at the previous evaluation so that a flag's Since stays
// the time it was first raised, and the pattern rules' episodes. One
// Engine is meant to be evaluated by one goroutine at a time (calls are
// serialised).
type Engine struct {
	Rules     *RuleSet
	Source    Source
	Responses Responses

	mu       sync.Mutex
	active   map[flagKey]time.Time // rate flags → since
	episodes map[flagKey]*episode  // pattern rules' state
}

type flagKey struct {
	rule  string
	scope Scope
}

// episode is a pattern rule's state for one scope: the action in force
// [since, until), and the starts of recent episodes (for Repeated).
type episode struct {
	since, until time.Time
	flag         Flag
	starts       []time.Time
}

// Evaluate runs every rule at now and returns the flags raised, ordered by
// rule (file order, rates first) then scope.
func (e *Engine) Evaluate(ctx context.Context, now time.Time) ([]Flag, error) {
	if e.Rules == nil || e.Source == nil {
		return nil, errors.New("rules: an engine needs Rules and a Source")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active == nil {
		e.active = map[flagKey]time.Time{}
		e.episodes = map[flagKey]*episode{}
	}
	q := newCountCache(e.Source)
	for i := range e.Rules.Rates {
		q.plan(&e.Rules.Rates[i], now)
	}
	if err := q.prefetch(ctx); err != nil {
		return nil, err
	}
	var parts [][]Flag
	total := 0
	for i := range e.Rules.Rates {
		fs, err := e.rateFlags(ctx, q, &e.Rules.Rates[i], now)
		if err != nil {
			return nil, err
		}
		parts, total = append(parts, fs), total+len(fs)
	}
	if e.Responses != nil && len(e.Rules.Patterns) > 0 {
		fs, err := e.patternFlags(ctx, now)
		if err != nil {
			return nil, err
		}
		parts, total = append(parts, fs), total+len(fs)
	}
	flags := make([]Flag, 0, total)
	for _, fs := range parts {
		flags = append(flags, fs...)
	}
	// Keep the since of the rate flags still active, forget the others.
	next := make(map[flagKey]time.Time, len(flags))
	for i := range flags {
		f := &flags[i]
		if f.Action != "" {
			continue
		}
		k := flagKey{f.Rule, f.Scope}
		if since, ok := e.active[k]; ok {
			f.Since = since
		}
		next[k] = f.Since
	}
	e.active = next
	return flags, nil
}

// countCache makes the queries of one evaluation. Over an AdditiveSource
// it reads each window once, grouped by every dimension the rules planned
// on that window need (the union of their groupings), and sums those
// counts into each grouping asked: with the defaults, two queries (7 days,
// and 7 days less min_age) instead of six. Over another Source it makes
// each distinct query (window and grouping) once.
type countCache struct {
	src    Source
	finest map[[2]int64][]metrics.GroupBy // window → the union of the groupings planned
	m      map[string]map[Scope]metrics.Counts
}

func newCountCache(src Source) *countCache {
	return &countCache{src: src, finest: map[[2]int64][]metrics.GroupBy{}, m: map[string]map[Scope]metrics.Counts{}}
}

func cacheKey(from, to time.Time, by []metrics.GroupBy) string {
	return fmt.Sprint(from.UnixNano(), to.UnixNano(), by)
}

// plan records the queries rateFlags(r, now) will make.
func (c *countCache) plan(r *RateRule, now time.Time) {
	from := now.Add(-r.Window)
	for _, by := range groupings(r) {
		c.want(from, now, by)
		if r.MinAge > 0 {
			c.want(from, now.Add(-r.MinAge), by)
		}
	}
}

func (c *countCache) want(from, to time.Time, by []metrics.GroupBy) {
	w := [2]int64{from.UnixNano(), to.UnixNano()}
	union := c.finest[w]
	for _, d := range by {
		if !slices.Contains(union, d) {
			union = append(union, d)
		}
	}
	// In scopeDims order, so that the union's cache key does not depend
	// on the order the rules were planned in.
	slices.SortFunc(union, func(a, b metrics.GroupBy) int {
		return slices.Index(scopeDims, a) - slices.Index(scopeDims, b)
	})
	c.finest[w] = union
}

func (c *countCache) counts(ctx context.Context, from, to time.Time, by []metrics.GroupBy) (map[Scope]metrics.Counts, error) {
	key := cacheKey(from, to, by)
	if m, ok := c.m[key]; ok {
		return m, nil
	}
	finest := c.finest[[2]int64{from.UnixNano(), to.UnixNano()}]
	_, additive := c.src.(AdditiveSource)
	if !additive || !containsAll(finest, by) || len(finest) == len(by) {
		m, err := c.src.Counts(ctx, from, to, by)
		if err != nil {
			return nil, err
		}
		c.m[key] = m
		return m, nil
	}
	all, err := c.counts(ctx, from, to, finest)
	if err != nil {
		return nil, err
	}
	m := map[Scope]metrics.Counts{} // not sized: a coarser grouping may have far fewer scopes

	for sc, counts := range all {
		var coarse Scope
		for _, d := range by {
			setScope(&coarse, d, scopeField(sc, d))
		}
		m[coarse] = m[coarse].Plus(counts)
	}
	c.m[key] = m
	return m, nil
}

// prefetch reads the windows planned over an AdditiveSource at once, each
// by its finest grouping: the store answers them in parallel (with the
// defaults, two queries of about the same cost).
func (c *countCache) prefetch(ctx context.Context) error {
	if _, ok := c.src.(AdditiveSource); !ok || len(c.finest) < 2 {
		return nil
	}
	type result struct {
		key    string
		counts map[Scope]metrics.Counts
		err    error
	}
	results := make(chan result, len(c.finest))
	for w, by := range c.finest {
		go func() {
			from, to := time.Unix(0, w[0]), time.Unix(0, w[1])
			m, err := c.src.Counts(ctx, from, to, by)
			results <- result{cacheKey(from, to, by), m, err}
		}()
	}
	var first error
	for range c.finest {
		r := <-results
		if r.err != nil {
			first = cmp.Or(first, r.err)
			continue
		}
		c.m[r.key] = r.counts
	}
	return first
}

func containsAll(set, sub []metrics.GroupBy) bool {
	for _, d := range sub {
		if !slices.Contains(set, d) {
			return false
		}
	}
	return true
}

// groupings returns the groupings r is counted by: each of its scopes,
// with the dimensions of its where added.
func groupings(r *RateRule) [][]metrics.GroupBy {
	out := make([][]metrics.GroupBy, len(r.Scopes))
	for i, dims := range r.Scopes {
		by := slices.Clone(dims)
		for _, d := range scopeDims {
			if scopeField(r.Where, d) != "" && !slices.Contains(by, d) {
				by = append(by, d)
			}
		}
		out[i] = by
	}
	return out
}

// rateFlags evaluates one rate rule over each of its groupings.
//
// With MinAge (open rates) the counts are an approximation of a cohort:
// what a rule wants is the opens of the messages delivered between
// Window and MinAge ago, but the store counts events by their own time,
// not by their message's delivery. So deliveries are counted in
// [now-Window, now-MinAge) and opens in [now-Window, now): the opens of
// the last MinAge mostly belong to messages delivered earlier, which are
// in the denominator, while the few opens of messages delivered in the
// last MinAge (not in it) lift the rate a little, as do first opens in the
// window of messages delivered just before it. Over roll-ups a message
// counts only if its first open is in the window (metrics.FirstOpens), so
// one delivered long before and opened again does not lift the rate; over
// StatsSource it does. The error leans towards not flagging; a join by
// message would remove it at the cost of a scan.
func (e *Engine) rateFlags(ctx context.Context, q *countCache, r *RateRule, now time.Time) ([]Flag, error) {
	from := now.Add(-r.Window)
	var out []Flag
	for _, by := range groupings(r) {
		counts, err := q.counts(ctx, from, now, by)
		if err != nil {
			return nil, err
		}
		out = slices.Grow(out, len(counts)/4)
		var delivered map[Scope]metrics.Counts
		if r.MinAge > 0 {
			// Only its sent and delivered are read.
			if delivered, err = q.counts(ctx, from, now.Add(-r.MinAge), by); err != nil {
				return nil, err
			}
		}
		for sc, c := range counts {
			if !complete(sc, by) || !matches(sc, r.Where) {
				continue
			}
			if delivered != nil {
				old := delivered[sc]
				c.Sent, c.Delivered = old.Sent, old.Delivered
			}
			value, sample := RatesOf(c).Value(r.Rate)
			if sample == 0 || sample < r.MinSample {
				continue
			}
			lv, ok := crossed(r, value)
			if !ok {
				continue
			}
			out = append(out, Flag{Rule: r.ID, Scope: sc, Severity: lv.Severity, Value: value,
				Threshold: lv.Value, Sample: sample, Window: r.WindowName(), Since: now})
		}
	}
	slices.SortFunc(out, func(a, b Flag) int { return compareScopes(a.Scope, b.Scope) })
	return out, nil
}

// crossed returns the highest level value crosses.
func crossed(r *RateRule, value float64) (Level, bool) {
	for i := len(r.Levels) - 1; i >= 0; i-- {
		lv := r.Levels[i]
		if (r.When == Above && value >= lv.Value) || (r.When == Below && value < lv.Value) {
			return lv, true
		}
	}
	return Level{}, false
}

// complete reports whether every grouped dimension has a value: mail with
// no sender domain (say) is no scope anyone can act on.
func complete(sc Scope, by []metrics.GroupBy) bool {
	for _, d := range by {
		if scopeField(sc, d) == "" {
			return false
		}
	}
	return true
}

func matches(sc, where Scope) bool {
	for _, d := range scopeDims {
		if w := scopeField(where, d); w != "" && scopeField(sc, d) != w {
			return false
		}
	}
	return true
}

// compareScopes orders scopes field by field, in Scope's order.
func compareScopes(a, b Scope) int {
	return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.SenderDomain, b.SenderDomain),
		cmp.Compare(a.SendingIP, b.SendingIP), cmp.Compare(a.ISP, b.ISP), cmp.Compare(a.Campaign, b.Campaign),
		cmp.Compare(a.Category, b.Category))
}
