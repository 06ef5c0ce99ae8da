package kafka

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// orderedEvidence fails the test when an event is submitted before the
// evidence it names is stored.
type orderedEvidence struct {
	memEvidence
	t *testing.T
}

type checkingSubmitter struct {
	fakeSubmitter
	ev *orderedEvidence
}

func (s *checkingSubmitter) Submit(ctx context.Context, events []metrics.Event) (intake.Result, error) {
	s.ev.mu.Lock()
	stored := map[string]bool{}
	for _, e := range s.ev.all {
		stored[e.ID] = true
	}
	s.ev.mu.Unlock()
	for _, e := range events {
		if e.EvidenceID == "" || !stored[e.EvidenceID] {
			s.ev.t.Errorf("event %s of %s submitted before its evidence %q was stored", e.Kind, e.Recipient, e.EvidenceID)
		}
	}
	return s.fakeSubmitter.Submit(ctx, events)
}

// TestConsumerRawReports reads real corpus reports from a raw topic with
// the real Processor: evidence stored before the events, a failing send
// store retried (not dead-lettered), a record that is no message
// dead-lettered.
func TestConsumerRawReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := newCluster(t, 2, "raw", "dead")
	brokers := cl.ListenAddrs()

	files, err := filepath.Glob("../../testdata/bounces/maildir/bsd/*.eml")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	var msgs []kafkago.Message
	for _, f := range files[:20] {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafkago.Message{Topic: "raw", Value: raw, Time: time.Now().Add(-time.Hour)})
	}
	msgs = append(msgs, kafkago.Message{Topic: "raw", Value: []byte("\x00\x01\x02 not a message")})
	produce(ctx, t, brokers, msgs...)

	sends := &ingest.MemorySends{}
	sends.Fail(errors.New("store down"))
	var lookups atomic.Int32
	conv, err := ingest.NewConverter(ingest.Options{Account: "acme", Sends: failingFor(sends, &lookups)})
	if err != nil {
		t.Fatal(err)
	}
	ev := &orderedEvidence{t: t}
	sub := &checkingSubmitter{ev: ev}
	reg := prometheus.NewRegistry()
	cons, err := New(sub, Options{Brokers: brokers, Group: "g", RawTopics: []string{"raw"}, DeadLetterTopic: "dead",
		Raw: ingest.NewProcessor(conv, 0, nil), Evidence: ev, Account: "acme", Registerer: reg,
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, cons)
	// The store comes back after a few failed lookups.
	waitFor(ctx, t, "failed lookups", func() bool { return lookups.Load() >= 3 })
	if n := len(sub.snapshot()); n != 0 {
		t.Errorf("%d events submitted while the send store failed", n)
	}
	sends.Fail(nil)
	waitFor(ctx, t, "the commits", func() bool { return allCommitted(cl, "g", "raw") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	dead := readAll(ctx, t, brokers, "dead", 1)
	if len(dead) != 1 || headers(dead[0])[HeaderError] == "" {
		t.Fatalf("dead-lettered %d records, want the one that is no message", len(dead))
	}
	events := sub.snapshot()
	if len(events) < 15 {
		t.Fatalf("%d events from 20 reports", len(events))
	}
	count := func(outcome string) float64 {
		return testutil.ToFloat64(cons.records.WithLabelValues("raw", outcome))
	}
	if d, sub, ign := count(OutcomeDeadLettered), count(OutcomeSubmitted), count(OutcomeIgnored); d != 1 || sub+ign != 20 || sub < 15 {
		t.Errorf("records counted: dead_lettered %v, submitted %v, ignored %v; want 1 and 20 between the others", d, sub, ign)
	}
	for _, e := range events {
		if e.Source != ingest.SourceKafka || e.Correlation != ingest.CorrelationNone || e.Account != "acme" {
			t.Errorf("event %+v: want source kafka, correlation none, account acme", e)
		}
	}
}

// failingFor counts the lookups of s.
func failingFor(s *ingest.MemorySends, n *atomic.Int32) ingest.SendLookup {
	return countingSends{s, n}
}

type countingSends struct {
	*ingest.MemorySends
	n *atomic.Int32
}

func (c countingSends) SendByMessageID(ctx context.Context, id, rcpt string) (ingest.Send, bool, error) {
	c.n.Add(1)
	return c.MemorySends.SendByMessageID(ctx, id, rcpt)
}
