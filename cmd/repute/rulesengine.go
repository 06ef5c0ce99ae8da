package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/api"
	"repute/metrics"
	"repute/rules"
)

// ruleEngine is the rule engine in repute serve (issue 13): the rules
// (rules_file, or the built-in defaults from THRESHOLDS.md) evaluated into
// flags every rules_interval over the store's rates and the replies intake
// stored, the warm-up, and the decisions they make — served on
// /v1/decisions, /v1/flags and /v1/overrides and applied to the built-in
// sender's pacer. One process at a time evaluates (the store's lease
// rules-evaluator).
type ruleEngine struct {
	engine    *rules.Engine
	responses *rules.ResponseLog
	decider   *rules.Decider
	interval  time.Duration
	lease     rules.Lease
	holder    string // this process's name in the lease
	log       *slog.Logger
}

// newRuleEngine builds the engine; a rules file that does not load is an
// error naming its lines. pacer is the built-in sender's, or nil.
func newRuleEngine(cfg serveConfig, store metrics.Store, pacer rules.Pacer, log *slog.Logger) (*ruleEngine, error) {
	set := rules.Defaults()
	if cfg.RulesFile != "" {
		var err error
		if set, err = rules.LoadFile(cfg.RulesFile); err != nil {
			return nil, fmt.Errorf("rules_file %s: %w", cfg.RulesFile, err)
		}
	}
	responses, err := rules.NewResponseLog(set, rules.ResponseLogOptions{})
	if err != nil {
		return nil, err
	}
	seedResponses(responses, store, set, time.Now(), log)
	warmed := map[string]bool{}
	for _, d := range cfg.Sender.WarmedDomains {
		warmed[d] = true
	}
	skip := skipWarmupDomains(cfg.Accounts)
	warmup, err := rules.NewWarmup(rules.WarmupConfig{
		Warmed:     func(d string) bool { return warmed[d] },
		SkipWarmup: func(d string) bool { return skip[d] },
	}, storeVolumes{store})
	if err != nil {
		return nil, err
	}
	// Both stores share the engine (rules.Shared): its history, its state
	// across restarts, and the decisions every process serves.
	shared, _ := store.(rules.Shared)
	decider, err := rules.NewDecider(rules.DeciderOptions{Warmup: warmup, Pacer: pacer, Logger: log, Shared: shared})
	if err != nil {
		return nil, err
	}
	r := &ruleEngine{
		engine:    &rules.Engine{Rules: set, Source: rules.NewSource(store), Responses: responses},
		responses: responses, decider: decider, interval: cfg.RulesInterval, log: log,
		holder: leaseHolder(cfg),
	}
	if l, ok := store.(rules.Lease); ok {
		r.lease = l
	}
	return r, nil
}

// leaseHolder is this process's name in the lease: its host and data
// directory, unique among the running processes (a data directory is used
// by one repute serve at a time) and the same across a restart, so that a
// restarted evaluator takes its lease back at once instead of waiting for
// it to expire.
func leaseHolder(cfg serveConfig) string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(cfg.Data)
	if err != nil {
		dir = cfg.Data
	}
	return host + ":" + dir
}

// observe feeds the replies of a stored batch to the pattern rules
// (intake's AfterStore).
func (r *ruleEngine) observe(events []metrics.Event) { r.responses.Observe(events) }

// run evaluates every interval until ctx ends, while this process holds
// the lease.
func (r *ruleEngine) run(ctx context.Context) {
	err := r.decider.Run(ctx, rules.RunOptions{
		Interval: r.interval, Flags: r.engine.Evaluate, Lease: r.lease, Holder: r.holder,
	})
	if err != nil && ctx.Err() == nil {
		r.log.Error("rule engine stopped", "err", err)
	}
}

// storeVolumes reads a day's sends per sender domain and per (sender
// domain, sending IP): from the store's roll-ups when it keeps them and
// the day is whole UTC hours (a few rows per scope, refreshed by the
// evaluation that precedes each warm-up step; Stats would scan the day's
// raw events every cycle), else from its statistics.
type storeVolumes struct{ stats metrics.StatsReader }

func (v storeVolumes) Volumes(ctx context.Context, day time.Time) (map[rules.Scope]int64, error) {
	by := []metrics.GroupBy{metrics.GroupSenderDomain, metrics.GroupSendingIP}
	end := day.Add(24 * time.Hour)
	var groups []metrics.Group
	if rc, ok := v.stats.(metrics.RuleCounter); ok && day.Unix()%3600 == 0 {
		var err error
		if groups, err = rc.RuleCounts(ctx, day, end, by); err != nil {
			return nil, err
		}
	} else {
		res, err := v.stats.Stats(ctx, metrics.StatsQuery{From: day, To: end, GroupBy: by})
		if err != nil {
			return nil, err
		}
		groups = res.Groups
	}
	out := map[rules.Scope]int64{}
	for _, g := range groups {
		domain, ip := g.Key[metrics.GroupSenderDomain], g.Key[metrics.GroupSendingIP]
		if domain == "" || g.Sent == 0 {
			continue
		}
		out[rules.Scope{SenderDomain: domain}] += g.Sent
		if ip != "" {
			out[rules.Scope{SenderDomain: domain, SendingIP: ip}] += g.Sent
		}
	}
	return out, nil
}

// The API's view of the engine: api and rules do not import each other,
// so the decisions are mapped here, field by field (the JSON of both is
// the shape issue 13 pins).
var _ api.Decisions = (*ruleEngine)(nil)

func (r *ruleEngine) Current(_ context.Context, f api.DecisionScope) ([]api.Decision, error) {
	return apiDecisions(r.decider.Current(time.Now(), rules.DecisionScope(f))), nil
}

func (r *ruleEngine) Since(_ context.Context, seq int64) (api.DecisionPage, error) {
	ds, latest, complete, watch := r.decider.Store().Page(seq)
	return api.DecisionPage{Decisions: apiDecisions(ds), Latest: latest, Complete: complete, Watch: watch}, nil
}

func (r *ruleEngine) ActiveFlags(context.Context) ([]api.Flag, error) {
	flags := r.decider.ActiveFlags()
	out := make([]api.Flag, len(flags))
	for i, f := range flags {
		out[i] = api.Flag{Rule: f.Rule, Scope: api.FlagScope{Account: f.Scope.Account, SenderDomain: f.Scope.SenderDomain,
			SendingIP: f.Scope.SendingIP, ISP: f.Scope.ISP, Campaign: f.Scope.Campaign, Category: f.Scope.Category},
			Severity: string(f.Severity), Value: f.Value, Threshold: f.Threshold, Sample: f.Sample, Window: f.Window, Since: f.Since}
	}
	return out, nil
}

func (r *ruleEngine) Cancel(ctx context.Context, id, who, reason string) (api.Decision, error) {
	d, err := r.decider.Cancel(ctx, id, who, reason, time.Now())
	return apiDecision(d), decisionErr(err)
}

func (r *ruleEngine) Override(ctx context.Context, req api.OverrideRequest, who string) (api.Decision, error) {
	d, err := r.decider.Override(ctx, rules.OverrideRequest{
		Scope: rules.DecisionScope(req.Scope), Action: rules.Action(req.Action),
		DailyLimit: req.Limits.DailyLimit, HourlyLimit: req.Limits.HourlyLimit,
		MinuteLimit: req.Limits.MinuteLimit, MaxConnections: req.Limits.MaxConnections,
		ExpiresAt: req.ExpiresAt, Reason: req.Reason,
	}, who, time.Now())
	return apiDecision(d), decisionErr(err)
}

// decisionErr maps the decider's errors to the API's.
func decisionErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rules.ErrNoDecision):
		return fmt.Errorf("%w: %v", api.ErrDecisionNotFound, err)
	case errors.Is(err, rules.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrDecisionInvalid, err)
	}
	return err
}

func apiDecisions(ds []rules.Decision) []api.Decision {
	out := make([]api.Decision, len(ds))
	for i, d := range ds {
		out[i] = apiDecision(d)
	}
	return out
}

func apiDecision(d rules.Decision) api.Decision {
	reasons := make([]api.DecisionReason, len(d.Reasons))
	for i, r := range d.Reasons {
		reasons[i] = api.DecisionReason(r)
	}
	return api.Decision{ID: d.ID, Scope: api.DecisionScope(d.Scope), Action: string(d.Action), WarmupDay: d.WarmupDay,
		DailyLimit: d.DailyLimit, HourlyLimit: d.HourlyLimit, MinuteLimit: d.MinuteLimit, MaxConnections: d.MaxConnections,
		Reasons: reasons, IssuedAt: d.IssuedAt, ExpiresAt: d.ExpiresAt, Source: d.Source, Seq: d.Seq}
}

// senderDomainOwner says which account owns a sender domain, from the
// accounts' sender_domains: an account key sees the decisions and flags
// of those only.
type senderDomainOwner map[string][]string

func (o senderDomainOwner) OwnsSenderDomain(account, domain string) bool {
	for _, d := range o[account] {
		if d == domain {
			return true
		}
	}
	return false
}

// collectors are the rule engine's counters of its use of the shared
// store (rules.SharedStats): what failed to be written (kept, written
// again), what was dropped at a loss of the lease, what waits, the
// operators' actions the evaluator could not apply, and whether this
// process evaluates. serve registers them with its registry.
func (r *ruleEngine) collectors() []prometheus.Collector {
	stat := func(f func(rules.SharedStats) float64) func() float64 {
		return func() float64 { return f(r.decider.SharedStats()) }
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "repute_rules_history_write_failures_total",
			Help: "Writes of the rule engine's decisions, flag changes, operator actions or state to the store that failed (their rows are kept and written again).",
		}, stat(func(s rules.SharedStats) float64 { return float64(s.WriteFailures) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "repute_rules_decisions_lost_total",
			Help: "Decisions issued but never written to the store: this process lost the evaluator's lease before it could write them.",
		}, stat(func(s rules.SharedStats) float64 { return float64(s.Lost) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_rules_history_queued",
			Help: "Rows of the rule engine's history waiting to be written to the store.",
		}, stat(func(s rules.SharedStats) float64 { return float64(s.Queued) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "repute_rules_operator_actions_rejected_total",
			Help: "Operators' actions taken on another process that the evaluator could not apply (a cancelled decision no longer current).",
		}, stat(func(s rules.SharedStats) float64 { return float64(s.Rejected) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "repute_rules_evaluating",
			Help: "1 while this process evaluates the rules (holds the lease), 0 while it follows the store.",
		}, func() float64 {
			if r.decider.Evaluating() {
				return 1
			}
			return 0
		}),
	}
}
