package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"repute/rules"
)

// decisionsTopic publishes every new throttle decision to
// kafka.decisions_topic (issue 13 item 4), for pipelines that pace
// themselves: a record per decision, keyed by its scope
// ("sender_domain|sending_ip|isp", "" for "all"), its value the decision's
// JSON exactly as GET /v1/decisions gives it. On a topic created with
// cleanup.policy=compact the latest decision per scope stays; repute does
// not create the topic.
//
// It follows the decider's history (rules.MemoryStore) from the last seq it
// published, in order. A failed write is retried with a backoff (doubling
// from retryMin to retryMax) and never dropped; only what the history no
// longer holds when it gets there (the history is bounded: a broker down
// long enough for it to wrap) is skipped, logged and counted in
// repute_decisions_publish_skipped_total.
//
// Only the evaluator publishes (one process at a time holds the lease;
// the others' histories follow its decisions through the store, and
// publishing them too would put every decision on the topic once per
// process, and a restarted follower's replay of old ones behind newer
// ones). A process that becomes the evaluator first publishes the current
// decision of every scope, so that what the previous evaluator issued and
// had not published (it crashed) reaches the topic; a repeat of the same
// value under the same key changes nothing for a reader of a compacted
// topic.
type decisionsTopic struct {
	history *rules.MemoryStore
	// evaluating reports whether this process evaluates now, and current
	// returns the current decisions (nil: always evaluating; tests).
	evaluating func() bool
	current    func() []rules.Decision
	writer     *kafkago.Writer
	log        *slog.Logger

	published, skipped, failures prometheus.Counter

	maxBatch           int
	retryMin, retryMax time.Duration
}

// decisionsTopicOptions configure newDecisionsTopic; zero fields take the
// defaults.
type decisionsTopicOptions struct {
	MaxBatch           int           // decisions a write carries at most (500)
	RetryMin, RetryMax time.Duration // the backoff between failed writes (100 ms, 30 s)
	// Transport, when set, is the writer's (TLS, SASL; tests).
	Transport kafkago.RoundTripper
	// Evaluating and Current: decisionsTopic's fields (nil: this process
	// always evaluates).
	Evaluating func() bool
	Current    func() []rules.Decision
}

// newDecisionsTopic returns the publisher of k.DecisionsTopic, or nil
// when it is not set. Its counters go to reg (nil: none).
func newDecisionsTopic(k kafkaConfig, history *rules.MemoryStore, reg prometheus.Registerer, log *slog.Logger, o decisionsTopicOptions) (*decisionsTopic, error) {
	if k.DecisionsTopic == "" {
		return nil, nil
	}
	if len(k.Brokers) == 0 {
		return nil, errors.New("kafka.decisions_topic: no brokers")
	}
	if history == nil {
		return nil, errors.New("kafka.decisions_topic: no decision history")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &decisionsTopic{
		history: history, log: log, evaluating: o.Evaluating, current: o.Current,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repute_decisions_published_total",
			Help: "Throttle decisions published to kafka.decisions_topic.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repute_decisions_publish_skipped_total",
			Help: "Throttle decisions never published to kafka.decisions_topic: the in-memory history dropped them before the topic took them (brokers down too long).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repute_decisions_publish_failures_total",
			Help: "Failed writes to kafka.decisions_topic (each is retried).",
		}),
		maxBatch: o.MaxBatch, retryMin: o.RetryMin, retryMax: o.RetryMax,
	}
	if p.maxBatch <= 0 {
		p.maxBatch = 500
	}
	if p.retryMin <= 0 {
		p.retryMin = 100 * time.Millisecond
	}
	if p.retryMax < p.retryMin {
		p.retryMax = max(30*time.Second, p.retryMin)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.published, p.skipped, p.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kafka.decisions_topic: register metrics: %w", err)
			}
		}
	}
	p.writer = &kafkago.Writer{
		Addr:  kafkago.TCP(k.Brokers...),
		Topic: k.DecisionsTopic,
		// One scope, one partition: its decisions stay in order, and
		// compaction keeps its latest.
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		BatchSize:    p.maxBatch,
		// Our own loop retries, with its backoff and its log; kafka-go's
		// few attempts ride out a leader change.
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		Transport:       o.Transport,
		ErrorLogger:     kafkago.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) }),
	}
	return p, nil
}

// decisionKey is a decision's record key: its scope as
// "sender_domain|sending_ip|isp".
func decisionKey(s rules.DecisionScope) []byte {
	return []byte(s.SenderDomain + "|" + s.SendingIP + "|" + s.ISP)
}

// decisionRecord is the record of d: its key and the JSON GET
// /v1/decisions gives of it.
func decisionRecord(d rules.Decision) (kafkago.Message, error) {
	v, err := json.Marshal(apiDecision(d))
	if err != nil {
		return kafkago.Message{}, fmt.Errorf("decision %s: %w", d.ID, err)
	}
	return kafkago.Message{Key: decisionKey(d.Scope), Value: v}, nil
}

// run publishes the history's decisions from its start (the history begins
// empty with the process) until ctx ends. A nil p does nothing.
func (p *decisionsTopic) run(ctx context.Context) {
	if p == nil {
		return
	}
	defer p.writer.Close()
	p.follow(ctx, 0)
}

// roleCheck is how often a process that does not evaluate checks whether
// it has become the evaluator, when no decision wakes it first.
const roleCheck = 5 * time.Second

// follow publishes the decisions after seq, in order, until ctx ends, and
// returns the last seq published (or skipped).
func (p *decisionsTopic) follow(ctx context.Context, seq int64) int64 {
	following := false // the last look found another process evaluating
	for ctx.Err() == nil {
		ds, latest, complete, watch := p.history.Page(seq)
		if p.evaluating != nil && !p.evaluating() {
			// The evaluator publishes these.
			seq, following = latest, true
			select {
			case <-watch:
			case <-time.After(roleCheck):
			case <-ctx.Done():
			}
			continue
		}
		if following && p.current != nil {
			following = false
			if cur := p.current(); len(cur) > 0 && !p.publish(ctx, cur) {
				return seq
			}
		}
		if !complete {
			first := latest + 1
			if len(ds) > 0 {
				first = ds[0].Seq
			}
			n := first - 1 - seq
			p.skipped.Add(float64(n))
			p.log.Error("decisions dropped from the history before they were published: the topic misses them",
				"skipped", n, "from_seq", seq+1, "to_seq", first-1)
			seq = first - 1
		}
		if len(ds) == 0 {
			select {
			case <-watch:
			case <-ctx.Done():
			}
			continue
		}
		for len(ds) > 0 && ctx.Err() == nil {
			batch := ds[:min(len(ds), p.maxBatch)]
			ds = ds[len(batch):]
			if !p.publish(ctx, batch) {
				return seq
			}
			seq = batch[len(batch)-1].Seq
		}
	}
	return seq
}

// publish writes ds, retrying what failed with a backoff until it is
// written (true) or ctx ends (false). A decision that cannot be encoded
// (it cannot happen: the JSON has no map and no float from outside) is
// logged and counted as skipped rather than blocking the topic for good.
func (p *decisionsTopic) publish(ctx context.Context, ds []rules.Decision) bool {
	msgs := make([]kafkago.Message, 0, len(ds))
	for _, d := range ds {
		m, err := decisionRecord(d)
		if err != nil {
			p.skipped.Inc()
			p.log.Error("decision not published", "seq", d.Seq, "err", err)
			continue
		}
		msgs = append(msgs, m)
	}
	wait := p.retryMin
	for len(msgs) > 0 {
		err := p.writer.WriteMessages(ctx, msgs...)
		if err == nil {
			p.published.Add(float64(len(msgs)))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.failures.Inc()
		// Keep only the records that failed: a partition's records are
		// written together, so a scope's decisions all failed or all
		// went, and its order holds.
		var werrs kafkago.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			failed := msgs[:0:0]
			for i, m := range msgs {
				if werrs[i] != nil {
					failed = append(failed, m)
				}
			}
			p.published.Add(float64(len(msgs) - len(failed)))
			msgs = failed
		}
		p.log.Warn("publishing decisions failed; retrying", "topic", p.writer.Topic, "decisions", len(msgs),
			"retry_in", wait.String(), "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false
		}
		wait = min(2*wait, p.retryMax)
	}
	return true
}
