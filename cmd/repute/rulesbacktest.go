package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"repute/metrics"
	"repute/rules"
)

const rulesBacktestUsage = `Usage: repute rules backtest --from DATE --to DATE [--every DURATION] [--rules FILE] [--json] [flags]

backtest replays the rules over the stored events: at each evaluation
instant from --from to --to (both included; a DATE is 00:00 UTC of that
day, or give an RFC 3339 time), every --every (default 24h), it evaluates
the rate rules over the store's rates as they were at that instant, steps
the warm-up of every sender domain and sending IP with what had been sent
by then, and prints the flags raised and cleared and the decisions issued,
as a table or, with --json, as JSON lines. The warm-up starts afresh at
--from (as repute serve does without its saved state).

Response-pattern rules (SMTP replies such as Yahoo's TSS04) read the
replies of the stored deferred and bounced events. Their windows are
minutes, so besides the --every instants they are evaluated at the end of
each minute in which a reply one of them matches was stored, and when an
action they raised ends; at those instants the rate rules' flags are the
ones of the last --every instant. A flag's since is thus the end of the
minute of the reply that raised it (repute serve evaluates every
rules_interval, 1m by default).

The rules are --rules FILE, else the configuration's rules_file, else the
built-in defaults.

It reads serve's configuration (--config, the environment, the flags below)
and the store it names: ClickHouse, or the DuckDB file in the data
directory, which a running repute serve holds (copy the file, and point
--data at the copy). Nothing is written to the store.

` + configHelp

// rulesBacktestFlags are the flags of serve that backtest takes.
var rulesBacktestFlags = []string{"config", "data", "clickhouse", "clickhouse-database", "clickhouse-user",
	"clickhouse-password", "log-level"}

// backtestTimeout bounds a whole backtest.
const backtestTimeout = 30 * time.Minute

// backtestMaxInstants bounds the evaluations of one run (a year of
// hours), so that a mistyped --every does not run for days.
const backtestMaxInstants = 366 * 24

// backtestOptions are a backtest's own flags.
type backtestOptions struct {
	from, to time.Time
	every    time.Duration
	rules    string
	json     bool
}

func runRulesBacktest(args []string, stdout, stderr io.Writer) int {
	var from, to, every string
	var o backtestOptions
	spec := configSpec{command: "rules backtest", help: rulesBacktestUsage, flags: rulesBacktestFlags,
		extra: func(fs *flag.FlagSet) {
			fs.StringVar(&from, "from", "", "the first evaluation instant: `DATE` (YYYY-MM-DD, 00:00 UTC) or an RFC 3339 time")
			fs.StringVar(&to, "to", "", "the last evaluation instant: `DATE` or an RFC 3339 time (included)")
			fs.StringVar(&every, "every", "24h", "the `DURATION` between evaluation instants")
			fs.StringVar(&o.rules, "rules", "", "the rules `FILE` (default: the configuration's rules_file, else the built-in rules)")
			fs.BoolVar(&o.json, "json", false, "print JSON lines instead of a table")
		}}
	cfg, code, ok := loadCommandConfig(spec, args, stdout, stderr)
	if !ok {
		return code
	}
	var err error
	if o.from, err = parseBacktestTime(from); err != nil {
		fmt.Fprintf(stderr, "repute rules backtest: --from: %v\n", err)
		return 2
	}
	if o.to, err = parseBacktestTime(to); err != nil {
		fmt.Fprintf(stderr, "repute rules backtest: --to: %v\n", err)
		return 2
	}
	if o.every, err = time.ParseDuration(every); err != nil || o.every <= 0 {
		fmt.Fprintf(stderr, "repute rules backtest: --every %q: want a positive duration such as 24h or 1h\n", every)
		return 2
	}
	if o.to.Before(o.from) {
		fmt.Fprintln(stderr, "repute rules backtest: --to is before --from")
		return 2
	}
	if n := o.to.Sub(o.from)/o.every + 1; n > backtestMaxInstants {
		fmt.Fprintf(stderr, "repute rules backtest: %d evaluation instants: at most %d; narrow --from/--to or lengthen --every\n",
			n, backtestMaxInstants)
		return 2
	}
	if o.rules == "" {
		o.rules = cfg.RulesFile
	}
	set := rules.Defaults()
	if o.rules != "" {
		if set, err = rules.LoadFile(o.rules); err != nil {
			fmt.Fprintf(stderr, "repute rules backtest: %s: %v (repute rules check %s names each line)\n", o.rules, err, o.rules)
			return 1
		}
	}

	if cfg.ClickHouse == "" {
		if _, err := os.Stat(duckdbPath(cfg)); err != nil {
			fmt.Fprintf(stderr, "repute rules backtest: no store in the data directory %s (%v); set --data or --clickhouse\n",
				cfg.Data, plainErr(err))
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, backtestTimeout)
	defer cancel()
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "repute rules backtest:", err)
		return 2
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		if inUse(err) {
			err = fmt.Errorf("the data directory %s is in use by a running repute serve; backtest a copy of %s with --data",
				cfg.Data, duckdbPath(cfg))
		}
		fmt.Fprintln(stderr, "repute rules backtest:", err)
		return 1
	}
	defer st.Close()

	replies, _ := st.(metrics.ReplyReader) // both backends read replies
	out := newBacktestPrinter(stdout, o.json)
	out.header(o, set, replies != nil)
	err = backtest(ctx, st, replies, set, o, out)
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintln(stderr, "repute rules backtest:", err)
		return 1
	}
	return 0
}

// parseBacktestTime reads a DATE (00:00 UTC) or an RFC 3339 time.
func parseBacktestTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing: want a DATE such as 2026-01-31")
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a DATE such as 2026-01-31 or an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

// backtest replays the rule set over stats and replies (nil: the pattern
// rules are skipped) at each instant of o, and at the pattern rules'
// instants between them (see rulesBacktestUsage), handing each instant's
// changes to out.
func backtest(ctx context.Context, stats metrics.StatsReader, replies metrics.ReplyReader, set *rules.RuleSet,
	o backtestOptions, out *backtestPrinter) error {
	clock := &asOfStats{stats: stats}
	// Two engines: the rate rules run at the --every instants only, the
	// pattern rules at those and at their own.
	rateEngine := &rules.Engine{Rules: &rules.RuleSet{Rates: set.Rates}, Source: rules.StatsSource{Stats: clock}}
	var patterns *rules.Engine
	var responses *backtestResponses
	if replies != nil && len(set.Patterns) > 0 {
		responses = &backtestResponses{src: rules.StoreResponses{Rules: set, Replies: replies},
			chunk: set.PatternWindow() + max(o.every, 24*time.Hour)}
		// No rate rules in this one: its Source is never read.
		patterns = &rules.Engine{Rules: &rules.RuleSet{Patterns: set.Patterns}, Source: rules.StatsSource{Stats: clock},
			Responses: responses}
	}
	volumes := &backtestVolumes{src: storeVolumes{clock}, clock: clock}
	warmup, err := rules.NewWarmup(rules.WarmupConfig{}, volumes)
	if err != nil {
		return err
	}
	decider, err := rules.NewDecider(rules.DeciderOptions{Warmup: warmup})
	if err != nil {
		return err
	}
	active := map[string]rules.Flag{} // by rule and scope
	var rateFlags, patternFlags []rules.Flag
	// step evaluates the pattern rules at now (and the rate rules too when
	// rates is set) and hands the changes to out; quiet leaves out an
	// instant without changes.
	step := func(now time.Time, rates, quiet bool) error {
		clock.now = now
		volumes.fresh(rates)
		var err error
		if rates {
			if rateFlags, err = rateEngine.Evaluate(ctx, now); err != nil {
				return fmt.Errorf("evaluate at %s: %w", now.Format(time.RFC3339), err)
			}
		}
		if patterns != nil {
			if patternFlags, err = patterns.Evaluate(ctx, now); err != nil {
				return fmt.Errorf("evaluate the pattern rules at %s: %w", now.Format(time.RFC3339), err)
			}
		}
		flags := append(slices.Clip(rateFlags), patternFlags...)
		decisions, err := decider.Cycle(ctx, now, flags)
		if err != nil {
			return fmt.Errorf("decide at %s: %w", now.Format(time.RFC3339), err)
		}
		changes := flagChanges(active, flags, now)
		if !quiet || len(changes) > 0 || len(decisions) > 0 {
			out.instant(now, changes, decisions, len(flags))
		}
		return nil
	}
	for now := o.from; !now.After(o.to); now = now.Add(o.every) {
		if err := step(now, true, false); err != nil {
			return err
		}
		if patterns == nil {
			continue
		}
		// The pattern rules' instants before the next --every instant
		// (up to --to included after the last).
		limit := now.Add(o.every)
		if limit.After(o.to) {
			limit = o.to.Add(time.Nanosecond)
		}
		rs, err := responses.Responses(ctx, now.Add(time.Nanosecond), limit)
		if err != nil {
			return fmt.Errorf("replies after %s: %w", now.Format(time.RFC3339), err)
		}
		var due []time.Time // the ends of the minutes of the replies, ascending
		for _, r := range rs {
			t := r.Time.Truncate(time.Minute)
			if t.Before(r.Time) {
				t = t.Add(time.Minute)
			}
			if len(due) == 0 || t.After(due[len(due)-1]) {
				due = append(due, t)
			}
		}
		for t := now; ; {
			next := limit
			for _, d := range due {
				if d.After(t) {
					next = d
					break
				}
			}
			// An action that ends: its flag clears then.
			for _, f := range patternFlags {
				if end := f.Since.Add(f.For); f.For > 0 && end.After(t) && end.Before(next) {
					next = end
				}
			}
			if !next.Before(limit) {
				break
			}
			if err := step(next, false, true); err != nil {
				return err
			}
			t = next
		}
	}
	return nil
}

// backtestVolumes gives the warm-up, at the pattern rules' instants, the
// volume of the day in progress as it was at the last --every instant, as
// the rate rules' flags are: each of those instants would otherwise cost a
// statistics query over the raw events (measured: 3,000 of them made a
// 15-day backtest take 3 minutes). A day that has ended since is read
// again, once.
type backtestVolumes struct {
	src   storeVolumes
	clock *asOfStats
	read  map[time.Time]volumesAt // by day
	keep  bool                    // at a pattern rules' instant
}

type volumesAt struct {
	v  map[rules.Scope]int64
	at time.Time // the instant it was read at
}

// fresh starts an instant: at an --every one (rates), every volume is
// read again.
func (b *backtestVolumes) fresh(rates bool) {
	b.keep = !rates
	if rates {
		b.read = map[time.Time]volumesAt{}
	}
}

func (b *backtestVolumes) Volumes(ctx context.Context, day time.Time) (map[rules.Scope]int64, error) {
	end := day.Add(24 * time.Hour)
	if r, ok := b.read[day]; ok && b.keep && (!r.at.Before(end) || b.clock.now.Before(end)) {
		return r.v, nil // a whole day, or the day still in progress
	}
	v, err := b.src.Volumes(ctx, day)
	if err != nil {
		return nil, err
	}
	b.read[day] = volumesAt{v, b.clock.now}
	return v, nil
}

// backtestResponses serves the pattern rules' reads of replies from
// memory, reading the store a chunk (a day and the longest pattern window)
// at a time: the instants go forward, so each chunk is read once.
type backtestResponses struct {
	src    rules.StoreResponses
	chunk  time.Duration
	lo, hi time.Time
	rs     []rules.Response // the matching replies in [lo, hi), in time order
}

func (b *backtestResponses) Responses(ctx context.Context, from, to time.Time) ([]rules.Response, error) {
	if b.hi.IsZero() || from.Before(b.lo) || to.After(b.hi) {
		hi := from.Add(b.chunk)
		if to.After(hi) {
			hi = to
		}
		rs, err := b.src.Responses(ctx, from, hi)
		if err != nil {
			return nil, err
		}
		b.lo, b.hi, b.rs = from, hi, rs
	}
	i, _ := slices.BinarySearchFunc(b.rs, from, func(r rules.Response, t time.Time) int { return r.Time.Compare(t) })
	j, _ := slices.BinarySearchFunc(b.rs, to, func(r rules.Response, t time.Time) int { return r.Time.Compare(t) })
	return b.rs[i:j], nil
}

// flagChanges returns the flags raised (new, or at another severity) and
// cleared at now against active, the flags of the previous instant, which
// it updates; raised first, each in the engine's order.
func flagChanges(active map[string]rules.Flag, flags []rules.Flag, now time.Time) []rules.FlagEvent {
	var raised, cleared []rules.FlagEvent
	seen := make(map[string]bool, len(flags))
	for _, f := range flags {
		k := f.Rule + "|" + f.Scope.String()
		seen[k] = true
		if old, ok := active[k]; !ok || old.Severity != f.Severity {
			raised = append(raised, rules.FlagEvent{Flag: f, Active: true, At: now})
		}
		active[k] = f
	}
	keys := make([]string, 0, len(active))
	for k := range active {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		cleared = append(cleared, rules.FlagEvent{Flag: active[k], Active: false, At: now})
		delete(active, k)
	}
	return append(raised, cleared...)
}

// asOfStats answers statistics as the store had them at now: no query
// reaches past now, so the warm-up's volume of "today" at an instant is
// what had been sent by then, as repute serve would have seen it.
type asOfStats struct {
	stats metrics.StatsReader
	now   time.Time
}

func (a *asOfStats) Stats(ctx context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	if q.To.After(a.now) {
		q.To = a.now
	}
	if !q.From.Before(q.To) {
		return &metrics.StatsResult{}, nil
	}
	return a.stats.Stats(ctx, q)
}

// backtestPrinter writes the changes of each instant as a table or JSON
// lines.
type backtestPrinter struct {
	json bool
	enc  *json.Encoder
	tw   *tabwriter.Writer
	err  error
}

func newBacktestPrinter(w io.Writer, asJSON bool) *backtestPrinter {
	p := &backtestPrinter{json: asJSON}
	if asJSON {
		p.enc = json.NewEncoder(w)
		p.enc.SetEscapeHTML(false)
	} else {
		p.tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	}
	return p
}

// backtestHeader is the first JSON line.
type backtestHeader struct {
	Type         string   `json:"type"` // "backtest"
	From         string   `json:"from"`
	To           string   `json:"to"`
	Every        string   `json:"every"`
	Rules        string   `json:"rules"`
	RateRules    []string `json:"rate_rules"`
	PatternRules []string `json:"pattern_rules"`
	// PatternsSkipped are the pattern rules of a store that reads no
	// replies.
	PatternsSkipped []string `json:"pattern_rules_skipped,omitempty"`
	Note            string   `json:"note,omitempty"`
}

// backtestLine is one JSON line after the header: a flag raised or cleared
// ("flag"), a decision issued ("decision"), or an instant with neither
// ("unchanged").
type backtestLine struct {
	Type   string      `json:"type"`
	At     time.Time   `json:"at"`
	Flag   *rules.Flag `json:"flag,omitempty"`
	Active *bool       `json:"active,omitempty"`
	// Until is when a pattern rule's action raised here ends.
	Until       *time.Time      `json:"until,omitempty"`
	Decision    *rules.Decision `json:"decision,omitempty"`
	ActiveFlags *int            `json:"active_flags,omitempty"`
}

const (
	patternsNote        = "pattern rules are also evaluated at the end of each minute with a reply they match, and when their actions end"
	patternsSkippedNote = "response-pattern rules are skipped: the store reads no SMTP replies"
)

// header describes the run; patterns says whether the pattern rules are
// replayed (the store reads replies).
func (p *backtestPrinter) header(o backtestOptions, set *rules.RuleSet, patterns bool) {
	source := "built-in"
	if o.rules != "" {
		source = o.rules
	}
	h := backtestHeader{Type: "backtest", From: o.from.Format(time.RFC3339), To: o.to.Format(time.RFC3339),
		Every: o.every.String(), Rules: source, RateRules: []string{}, PatternRules: []string{}}
	for _, r := range set.Rates {
		h.RateRules = append(h.RateRules, r.ID)
	}
	for _, r := range set.Patterns {
		h.PatternRules = append(h.PatternRules, r.ID)
	}
	switch {
	case len(h.PatternRules) == 0:
	case patterns:
		h.Note = patternsNote
	default:
		h.PatternsSkipped, h.PatternRules, h.Note = h.PatternRules, []string{}, patternsSkippedNote
	}
	if p.json {
		p.write(h)
		return
	}
	p.printf("# backtest %s .. %s every %s; rules: %s (%d rate rules, %d pattern rules)\n", h.From, h.To, h.Every, source,
		len(h.RateRules), len(h.PatternRules))
	if h.Note != "" {
		p.printf("# %s (%s)\n", h.Note, strings.Join(append(h.PatternRules, h.PatternsSkipped...), ", "))
	}
	p.printf("AT\tCHANGE\tWHAT\tSCOPE\tDETAIL\n")
}

func (p *backtestPrinter) instant(at time.Time, flags []rules.FlagEvent, decisions []rules.Decision, active int) {
	if len(flags) == 0 && len(decisions) == 0 {
		if p.json {
			p.write(backtestLine{Type: "unchanged", At: at, ActiveFlags: &active})
		} else {
			p.printf("%s\tunchanged\t\t\t%d active flags\n", at.Format(time.RFC3339), active)
		}
		return
	}
	for _, fe := range flags {
		var until *time.Time
		if fe.Active && fe.Flag.For > 0 {
			u := fe.Flag.Since.Add(fe.Flag.For)
			until = &u
		}
		if p.json {
			f, a := fe.Flag, fe.Active
			p.write(backtestLine{Type: "flag", At: at, Flag: &f, Active: &a, Until: until})
			continue
		}
		change := "cleared"
		if fe.Active {
			change = "raised"
		}
		f := fe.Flag
		detail := fmt.Sprintf("%s value=%s threshold=%s sample=%d window=%s", f.Severity, fmtRate(f.Value),
			fmtRate(f.Threshold), f.Sample, f.Window)
		if f.Action != "" {
			detail += " action=" + string(f.Action)
		}
		if until != nil {
			detail += " until=" + until.Format(time.RFC3339)
		}
		p.printf("%s\t%s\t%s\t%s\t%s\n", at.Format(time.RFC3339), change, f.Rule, f.Scope, detail)
	}
	for _, d := range decisions {
		if p.json {
			p.write(backtestLine{Type: "decision", At: at, Decision: &d})
			continue
		}
		detail := fmt.Sprintf("day=%d daily=%d hourly=%d", d.WarmupDay, d.DailyLimit, d.HourlyLimit)
		if d.MinuteLimit != nil {
			detail += fmt.Sprintf(" minute=%d", *d.MinuteLimit)
		}
		if d.MaxConnections != nil {
			detail += fmt.Sprintf(" connections=%d", *d.MaxConnections)
		}
		var why []string
		for _, r := range d.Reasons {
			why = append(why, fmt.Sprintf("%s=%s/%s", r.Rule, fmtRate(r.Value), fmtRate(r.Threshold)))
		}
		if len(why) > 0 {
			detail += " reasons=" + strings.Join(why, ",")
		}
		p.printf("%s\tdecision\t%s\t%s\t%s\n", at.Format(time.RFC3339), d.Action, d.Scope, detail)
	}
}

// fmtRate prints a rate or a count without trailing zeros.
func fmtRate(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func (p *backtestPrinter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.tw, format, args...)
	}
}

func (p *backtestPrinter) write(v any) {
	if p.err == nil {
		p.err = p.enc.Encode(v)
	}
}

func (p *backtestPrinter) flush() error {
	if p.err == nil && p.tw != nil {
		p.err = p.tw.Flush()
	}
	return p.err
}
