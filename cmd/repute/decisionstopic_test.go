package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"repute/rules"
)

const testDecisionsTopic = "repute-decisions"

// testDecision is the n-th decision of a test: scopes rotate over three,
// so each scope gets several decisions in turn.
func testDecision(n int) rules.Decision {
	scopes := []rules.DecisionScope{
		{SenderDomain: "news.acme.example"},
		{SenderDomain: "news.acme.example", SendingIP: "192.0.2.10"},
		{SenderDomain: "news.acme.example", ISP: "yahoo"},
	}
	issued := time.Date(2026, 3, 1, 12, 0, n, 0, time.UTC)
	expires := issued.Add(time.Hour)
	minute := 10
	d := rules.Decision{
		ID: fmt.Sprintf("d%d", n), Scope: scopes[n%len(scopes)], Action: rules.ActionAdvance,
		WarmupDay: n, DailyLimit: 1000 * n, HourlyLimit: 200,
		IssuedAt: issued, ExpiresAt: &expires, Source: rules.SourceRule,
	}
	if n%3 == 2 {
		d.Action, d.MinuteLimit = rules.ActionSlow, &minute
		d.Reasons = []rules.Reason{{Rule: "yahoo_tss04", Value: 2, Threshold: 2, Sample: 2, Window: "1h"}}
	}
	return d
}

// record is one record read back from the topic.
type record struct {
	partition int
	key       string
	value     string
}

// readTopic waits until the topic holds at least want records and
// returns them all, each partition in order.
func readTopic(t *testing.T, c *kfake.Cluster, want int) []record {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var ends map[int32]int64
	for {
		ends = map[int32]int64{}
		total := int64(0)
		for _, pi := range c.PartitionInfos(testDecisionsTopic) {
			ends[pi.Partition] = pi.HighWatermark
			total += pi.HighWatermark
		}
		if total >= int64(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the topic holds %d records after 15 s, want %d", total, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out []record
	for p := range int32(len(ends)) {
		if ends[p] == 0 {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: c.ListenAddrs(), Topic: testDecisionsTopic,
			Partition: int(p), MaxWait: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		for range ends[p] {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read partition %d: %v", p, err)
			}
			out = append(out, record{int(p), string(m.Key), string(m.Value)})
		}
		cancel()
		r.Close()
	}
	return out
}

// startPublisher runs a publisher of history to brokers until the test
// ends (or stop is called).
func startPublisher(t *testing.T, brokers []string, history *rules.MemoryStore, reg prometheus.Registerer) (*decisionsTopic, func()) {
	t.Helper()
	p, err := newDecisionsTopic(kafkaConfig{Brokers: brokers, DecisionsTopic: testDecisionsTopic}, history, reg, nil,
		decisionsTopicOptions{MaxBatch: 4, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

// checkRecords checks that the records are decisions 1..n (from on), each
// keyed by its scope, valued with the JSON of GET /v1/decisions, in
// order within each scope; dup allows repeats (a write retried after the
// broker took it), never a loss or a reordering.
func checkRecords(t *testing.T, got []record, from, n int, dup bool) {
	t.Helper()
	byValue := map[string]int{}
	for i := from; i <= n; i++ {
		d := testDecision(i)
		v, err := json.Marshal(apiDecision(d))
		if err != nil {
			t.Fatal(err)
		}
		byValue[string(v)] = i
	}
	seen := map[int]int{}
	lastOfKey := map[string]int{}
	partOfKey := map[string]int{}
	for _, r := range got {
		i, ok := byValue[r.value]
		if !ok {
			t.Fatalf("record %q=%s is none of decisions %d..%d", r.key, r.value, from, n)
		}
		seen[i]++
		d := testDecision(i)
		if want := d.Scope.SenderDomain + "|" + d.Scope.SendingIP + "|" + d.Scope.ISP; r.key != want {
			t.Errorf("decision %d keyed %q, want %q", i, r.key, want)
		}
		if p, ok := partOfKey[r.key]; ok && p != r.partition {
			t.Errorf("key %q in partitions %d and %d", r.key, p, r.partition)
		}
		partOfKey[r.key] = r.partition
		if last := lastOfKey[r.key]; i < last || (i == last && !dup) {
			t.Errorf("key %q: decision %d after %d", r.key, i, last)
		}
		lastOfKey[r.key] = i
	}
	for i := from; i <= n; i++ {
		if seen[i] == 0 {
			t.Errorf("decision %d never reached the topic", i)
		} else if seen[i] > 1 && !dup {
			t.Errorf("decision %d published %d times", i, seen[i])
		}
	}
}

func TestDecisionsTopicPublishes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testDecisionsTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	history := rules.NewMemoryStore(0)
	// Some decisions exist before the publisher starts, more come after.
	for i := 1; i <= 5; i++ {
		history.AppendDecision(testDecision(i))
	}
	reg := prometheus.NewRegistry()
	p, _ := startPublisher(t, c.ListenAddrs(), history, reg)
	for i := 6; i <= 12; i++ {
		history.AppendDecision(testDecision(i))
		if i%3 == 0 {
			time.Sleep(15 * time.Millisecond) // several writes, not one
		}
	}
	got := readTopic(t, c, 12)
	if len(got) != 12 {
		t.Errorf("%d records, want 12", len(got))
	}
	checkRecords(t, got, 1, 12, false)
	// The value carries every key issue 13 pins, nulls included.
	var m map[string]any
	if err := json.Unmarshal([]byte(got[0].value), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := "action daily_limit expires_at hourly_limit id issued_at max_connections minute_limit reasons scope source warmup_day"; strings.Join(keys, " ") != want {
		t.Errorf("value keys %v, want %s", keys, want)
	}
	if n := testutil.ToFloat64(p.published); n != 12 {
		t.Errorf("repute_decisions_published_total %v, want 12", n)
	}
	if n := testutil.ToFloat64(p.skipped); n != 0 {
		t.Errorf("repute_decisions_publish_skipped_total %v, want 0", n)
	}
	if n, err := testutil.GatherAndCount(reg, "repute_decisions_publish_skipped_total"); err != nil || n != 1 {
		t.Errorf("registered skipped counter: %d, %v", n, err)
	}
}

// TestDecisionsTopicBrokerDown: the broker goes down (its state kept on
// disk) while decisions are made, and comes back on the same port:
// everything reaches the topic, in order per scope.
func TestDecisionsTopicBrokerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	start := func() *kfake.Cluster {
		t.Helper()
		var c *kfake.Cluster
		var err error
		for range 50 { // the port may take a moment to be free again
			c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites(),
				kfake.SeedTopics(2, testDecisionsTopic))
			if err == nil {
				return c
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("start kfake on port %d: %v", port, err)
		return nil
	}
	c := start()
	history := rules.NewMemoryStore(0)
	p, _ := startPublisher(t, c.ListenAddrs(), history, nil)
	for i := 1; i <= 4; i++ {
		history.AppendDecision(testDecision(i))
	}
	checkRecords(t, readTopic(t, c, 4), 1, 4, false)

	c.Close() // down
	for i := 5; i <= 10; i++ {
		history.AppendDecision(testDecision(i))
	}
	deadline := time.Now().Add(15 * time.Second)
	for testutil.ToFloat64(p.failures) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no failed write while the broker is down")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c = start() // up again, with what it had
	t.Cleanup(c.Close)
	got := readTopic(t, c, 10)
	checkRecords(t, got, 1, 10, true)
	if n := testutil.ToFloat64(p.skipped); n != 0 {
		t.Errorf("repute_decisions_publish_skipped_total %v, want 0", n)
	}
}

// TestDecisionsTopicHistoryWrapped: decisions the bounded history dropped
// before they were published are counted as skipped, and the rest go.
func TestDecisionsTopicHistoryWrapped(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testDecisionsTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	history := rules.NewMemoryStore(3)
	for i := 1; i <= 10; i++ {
		history.AppendDecision(testDecision(i))
	}
	p, _ := startPublisher(t, c.ListenAddrs(), history, nil)
	got := readTopic(t, c, 3)
	if len(got) != 3 {
		t.Errorf("%d records, want 3", len(got))
	}
	checkRecords(t, got, 8, 10, false)
	if n := testutil.ToFloat64(p.skipped); n != 7 {
		t.Errorf("repute_decisions_publish_skipped_total %v, want 7", n)
	}
}

func TestDecisionsTopicOff(t *testing.T) {
	p, err := newDecisionsTopic(kafkaConfig{Brokers: []string{"127.0.0.1:9"}}, rules.NewMemoryStore(0), nil, nil, decisionsTopicOptions{})
	if p != nil || err != nil {
		t.Fatalf("without decisions_topic: %v, %v; want nil, nil", p, err)
	}
	p.run(t.Context()) // a nil publisher returns at once
	if _, err := newDecisionsTopic(kafkaConfig{DecisionsTopic: "d"}, rules.NewMemoryStore(0), nil, nil, decisionsTopicOptions{}); err == nil {
		t.Error("decisions_topic without brokers: no error")
	}
}

// TestDecisionsTopicOnlyTheEvaluator: a process that follows another's
// decisions publishes none of them; when it becomes the evaluator it
// publishes the current decision of every scope first, then what it
// issues.
func TestDecisionsTopicOnlyTheEvaluator(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testDecisionsTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	history := rules.NewMemoryStore(0)
	var evaluating atomic.Bool
	// The current decisions when it takes over: the latest of each of the
	// three scopes among 1..6.
	current := []rules.Decision{testDecision(4), testDecision(5), testDecision(6)}
	p, err := newDecisionsTopic(kafkaConfig{Brokers: c.ListenAddrs(), DecisionsTopic: testDecisionsTopic}, history, nil, nil,
		decisionsTopicOptions{RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
			Evaluating: evaluating.Load, Current: func() []rules.Decision { return current }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := 1; i <= 6; i++ { // followed from the evaluator's history
		history.AppendDecision(testDecision(i))
	}
	time.Sleep(200 * time.Millisecond)
	if n := testutil.ToFloat64(p.published); n != 0 {
		t.Fatalf("a follower published %v decisions", n)
	}
	evaluating.Store(true)
	for i := 7; i <= 9; i++ { // its own, once it evaluates
		history.AppendDecision(testDecision(i))
	}
	got := readTopic(t, c, 6)
	if len(got) != 6 {
		t.Errorf("%d records, want 6: the 3 current decisions, then the 3 issued", len(got))
	}
	checkRecords(t, got, 4, 9, false)
}
