package kafka

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"repute/intake"
	"repute/metrics"
	"repute/spool"
)

// memStore is an idempotent in-memory event store.
type memStore struct {
	mu     sync.Mutex
	events map[metrics.Key]metrics.Event
}

func (m *memStore) Append(ctx context.Context, events []metrics.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range events {
		if _, ok := m.events[e.Key()]; !ok {
			m.events[e.Key()] = e
		}
	}
	return nil
}

func (m *memStore) Known(ctx context.Context, events []metrics.Event) (map[metrics.Key]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	known := map[metrics.Key]bool{}
	for _, e := range events {
		if _, ok := m.events[e.Key()]; ok {
			known[e.Key()] = true
		}
	}
	return known, nil
}

func (m *memStore) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.events)
}

// TestConsumerIntoIntake runs the consumer into the real intake pipeline
// and spool: a KumoMTA record published twice (a replay) is one stored
// event, and everything produced is stored.
func TestConsumerIntoIntake(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := newCluster(t, 2, "events", "kumo", "dead")
	brokers := cl.ListenAddrs()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)

	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	store := &memStore{events: map[metrics.Key]metrics.Event{}}
	pipe := intake.New(sp, store, intake.Options{})
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() { pdone <- pipe.Run(pctx) }()
	defer func() { pcancel(); <-pdone }()

	var msgs []kafkago.Message
	for i := range 50 {
		msgs = append(msgs, kafkago.Message{Topic: "events", Value: []byte(eventJSON(i, at))})
	}
	kumo := []byte(`{"type":"Delivery","id":"k1","recipient":"k1@gmail.com","timestamp":` + strconv.FormatInt(at.Unix(), 10) + `}`)
	msgs = append(msgs, kafkago.Message{Topic: "kumo", Value: kumo}, kafkago.Message{Topic: "kumo", Value: kumo})
	produce(ctx, t, brokers, msgs...)

	cons, err := New(pipe, Options{Brokers: brokers, Group: "repute", EventTopics: []string{"events"},
		KumoMTATopics: []string{"kumo"}, DeadLetterTopic: "dead", Account: "acme",
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, cons)
	waitFor(ctx, t, "51 stored events", func() bool { return store.len() >= 51 })
	for _, topic := range []string{"events", "kumo"} {
		waitFor(ctx, t, "the commits of "+topic, func() bool { return allCommitted(cl, "repute", topic) })
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := sp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := store.len(); n != 51 {
		t.Errorf("store holds %d events, want 51 (50 events, one KumoMTA delivery read twice)", n)
	}
}
