package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// fakeSubmitter keeps what it is given; while fail > 0 it refuses a
// submission (as intake does when the spool is full) and calls onFail.
type fakeSubmitter struct {
	mu     sync.Mutex
	events []metrics.Event
	calls  int
	fail   int
	onFail func()
}

func (f *fakeSubmitter) Submit(ctx context.Context, events []metrics.Event) (intake.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail > 0 {
		f.fail--
		if f.onFail != nil {
			f.onFail()
		}
		return intake.Result{}, errors.New("spool: full")
	}
	f.events = append(f.events, events...)
	return intake.Result{}, nil
}

func (f *fakeSubmitter) snapshot() []metrics.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func newCluster(t testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func produce(ctx context.Context, t testing.TB, brokers []string, msgs ...kafkago.Message) {
	t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Balancer: &kafkago.RoundRobin{},
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// fastGroup makes kafka-go notice joins and leaves within a second.
func fastGroup(cfg *kafkago.ReaderConfig) {
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	cfg.RebalanceTimeout = 3 * time.Second
	cfg.JoinGroupBackoff = 100 * time.Millisecond
	cfg.MaxWait = 100 * time.Millisecond
	cfg.ReadBackoffMin = 20 * time.Millisecond
	cfg.ReadBackoffMax = 100 * time.Millisecond
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// stubRaw stands in for the report processor: a value starting "From:" is
// a bounce of the address on its first line, with its evidence; anything
// else is an error.
type stubRaw struct{}

func (stubRaw) Process(ctx context.Context, value []byte, src ingest.Source) (ingest.Report, error) {
	first, _, _ := bytes.Cut(value, []byte("\n"))
	rcpt, ok := bytes.CutPrefix(first, []byte("From: "))
	if !ok {
		return ingest.Report{}, errors.New("not a message")
	}
	sum := sha256.Sum256(value)
	id := hex.EncodeToString(sum[:16])
	return ingest.Report{
		Events: []metrics.Event{{EventID: id, Time: src.Time, Kind: metrics.KindBounced, EvidenceID: id,
			Recipient: string(rcpt), BounceType: metrics.BounceHard, Reason: "userunknown"}},
		Evidence: []metrics.Evidence{{ID: id, Account: "acme", Source: src.Name, SourceRef: src.Ref}},
	}, nil
}

// memEvidence records the evidence stored, in order.
type memEvidence struct {
	mu  sync.Mutex
	all []metrics.Evidence
}

func (m *memEvidence) PutEvidence(_ context.Context, ev []metrics.Evidence) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = append(m.all, ev...)
	return nil
}

// committed is the group's committed offset of each partition of topic.
func committed(c *kfake.Cluster, group, topic string) map[int32]int64 {
	out := map[int32]int64{}
	gi := c.GroupInfo(group)
	if gi == nil {
		return out
	}
	for p, gc := range gi.Commits[topic] {
		out[p] = gc.Offset
	}
	return out
}

// endOffsets is the high watermark of each partition of topic.
func endOffsets(c *kfake.Cluster, topic string) map[int32]int64 {
	out := map[int32]int64{}
	for _, pi := range c.PartitionInfos(topic) {
		if pi.HighWatermark > 0 {
			out[pi.Partition] = pi.HighWatermark
		}
	}
	return out
}

// allCommitted reports whether the group committed every record of topic.
func allCommitted(c *kfake.Cluster, group, topic string) bool {
	got := committed(c, group, topic)
	for p, end := range endOffsets(c, topic) {
		if got[p] != end {
			return false
		}
	}
	return true
}

// run starts a consumer and returns a function that stops it and returns
// Run's error.
func run(t *testing.T, cons *Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return within 15 s of its context's end")
			return nil
		}
	}
}

func eventJSON(i int, at time.Time) string {
	return fmt.Sprintf(`{"time":%q,"kind":"delivered","account":"acme","recipient":"user%d@example.org"}`,
		at.Format(time.RFC3339), i)
}

func TestConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := newCluster(t, 2, "events", "kumo", "raw", "dead")
	brokers := cl.ListenAddrs()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	ts := strconv.FormatInt(at.Unix(), 10)

	records := []kafkago.Message{
		{Topic: "events", Value: []byte(eventJSON(1, at))},
		{Topic: "events", Value: []byte("[" + eventJSON(2, at) + "," + eventJSON(3, at) + "]")},
		{Topic: "events", Value: []byte(eventJSON(4, at) + "\n" + eventJSON(5, at) + "\n")},
		{Topic: "events", Value: []byte(`{"time":"` + at.Format(time.RFC3339) + `","kind":"opened","recipient":"user6@example.org","source":"pixel","source_ref":"t/1"}`)},
		{Topic: "events", Key: []byte("k-bad"), Value: []byte(`{"kind": "delivered", oops`),
			Headers: []kafkago.Header{{Key: "producer", Value: []byte("test")}}},
		{Topic: "kumo", Value: []byte(`{"type":"Delivery","id":"k1","sender":"a@shop.example","recipient":"k1@gmail.com","timestamp":` + ts + `}`)},
		{Topic: "kumo", Value: []byte(`{"type":"Bounce","id":"k2","recipient":"k2@example.org","timestamp":` + ts +
			`,"response":{"code":550,"enhanced_code":{"class":5,"subject":1,"detail":1},"content":"no such user","command":"RCPT TO:<k2@example.org>"}}`)},
		{Topic: "kumo", Value: []byte(`{"type":"Rejection","id":"k3","recipient":"k3@example.org","timestamp":` + ts + `}`)},
		{Topic: "kumo", Value: []byte(`{"type":"Teleport","id":"k4","recipient":"k4@example.org","timestamp":` + ts + `}`)},
		{Topic: "raw", Value: []byte("From: raw1@example.org\nSubject: Undelivered\n\nbody\n"), Time: at},
		{Topic: "raw", Value: []byte("\x00\x01binary"), Time: at},
	}
	produce(ctx, t, brokers, records...)

	opts := Options{Brokers: brokers, Group: "repute", EventTopics: []string{"events"}, KumoMTATopics: []string{"kumo"},
		RawTopics: []string{"raw"}, Raw: stubRaw{}, Evidence: &memEvidence{}, DeadLetterTopic: "dead", Account: "acme",
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 10 * time.Millisecond}
	sub := &fakeSubmitter{}
	cons, err := New(sub, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, cons)
	const wantEvents = 6 + 2 + 1 // events, KumoMTA, raw
	waitFor(ctx, t, "the events", func() bool { return len(sub.snapshot()) >= wantEvents })
	for _, topic := range []string{"events", "kumo", "raw"} {
		waitFor(ctx, t, "the commits of "+topic, func() bool { return allCommitted(cl, "repute", topic) })
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := map[string]metrics.Event{}
	for _, e := range sub.snapshot() {
		if _, dup := got[e.Recipient]; dup {
			t.Errorf("%s submitted twice", e.Recipient)
		}
		got[e.Recipient] = e
	}
	if len(got) != wantEvents {
		t.Errorf("submitted %d events, want %d: %v", len(got), wantEvents, slices.Collect(mapKeys(got)))
	}
	for rcpt, e := range got {
		if e.EventID == "" || e.RecipientDomain == "" || e.ISP == "" {
			t.Errorf("%s: not normalized: %+v", rcpt, e)
		}
	}
	if e := got["user1@example.org"]; e.Source != "kafka" || !strings.HasPrefix(e.SourceRef, "events/") || e.Account != "acme" {
		t.Errorf("event record: source %q, source_ref %q, account %q; want kafka, events/P/O, acme", e.Source, e.SourceRef, e.Account)
	}
	if e := got["user6@example.org"]; e.Source != "pixel" || e.SourceRef != "t/1" || e.Account != "acme" {
		t.Errorf("event with its own source: source %q, source_ref %q, account %q; want pixel, t/1, acme", e.Source, e.SourceRef, e.Account)
	}
	if e := got["k2@example.org"]; e.Kind != metrics.KindBounced || e.BounceType != "hard" || e.Reason != "userunknown" || !strings.HasPrefix(e.SourceRef, "kumo/") {
		t.Errorf("KumoMTA bounce: %+v", e)
	}
	if e := got["raw1@example.org"]; e.Kind != metrics.KindBounced || !e.Time.Equal(at) || !strings.HasPrefix(e.SourceRef, "raw/") {
		t.Errorf("raw record: %+v", e)
	}

	// The three unreadable records are on the dead-letter topic.
	dead := readAll(ctx, t, brokers, "dead", 3)
	byTopic := map[string]kafkago.Message{}
	for _, m := range dead {
		h := headers(m)
		byTopic[h[HeaderTopic]] = m
		if h[HeaderError] == "" || h[HeaderPartition] == "" || h[HeaderOffset] == "" {
			t.Errorf("dead letter %q lacks its origin or error: %v", m.Value, h)
		}
		// The origin points at the very record.
		p, _ := strconv.Atoi(h[HeaderPartition])
		o, _ := strconv.ParseInt(h[HeaderOffset], 10, 64)
		if orig := fetchAt(ctx, t, brokers, h[HeaderTopic], p, o); !bytes.Equal(orig.Value, m.Value) {
			t.Errorf("dead letter %q: its origin %s/%d/%d holds %q", m.Value, h[HeaderTopic], p, o, orig.Value)
		}
	}
	if m, ok := byTopic["events"]; !ok || string(m.Key) != "k-bad" || headers(m)["producer"] != "test" ||
		!strings.Contains(headers(m)[HeaderError], "malformed") {
		t.Errorf("bad event record: dead letter %+v, headers %v", m, headers(m))
	}
	if m, ok := byTopic["kumo"]; !ok || !strings.Contains(headers(m)[HeaderError], `unknown KumoMTA record type "Teleport"`) {
		t.Errorf("unknown KumoMTA type: dead letter %q, headers %v", m.Value, headers(m))
	}
	if m, ok := byTopic["raw"]; !ok || !strings.Contains(headers(m)[HeaderError], "not a message") {
		t.Errorf("raw error: dead letter %q, headers %v", m.Value, headers(m))
	}

	// A restarted consumer in the group resumes after the committed
	// offsets: it reads only what is new.
	produce(ctx, t, brokers, kafkago.Message{Topic: "events", Value: []byte(eventJSON(7, at))})
	sub2 := &fakeSubmitter{}
	cons2, err := New(sub2, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := run(t, cons2)
	waitFor(ctx, t, "the new event", func() bool { return len(sub2.snapshot()) >= 1 })
	waitFor(ctx, t, "its commit", func() bool { return allCommitted(cl, "repute", "events") })
	time.Sleep(300 * time.Millisecond) // anything read again would have arrived with it
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if evs := sub2.snapshot(); len(evs) != 1 || evs[0].Recipient != "user7@example.org" {
		t.Errorf("after restart the group read %d events, want only user7: %+v", len(evs), evs)
	}
	if n := len(readAll(ctx, t, brokers, "dead", 3)); n != 3 {
		t.Errorf("dead-letter topic has %d records after the restart, want 3", n)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func headers(m kafkago.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// readAll reads every record of topic (want of them, then whatever else
// arrives within half a second), partition by partition.
func readAll(ctx context.Context, t *testing.T, brokers []string, topic string, want int) []kafkago.Message {
	t.Helper()
	var out []kafkago.Message
	conn, err := kafkago.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		out = out[:0]
		for _, p := range parts {
			out = append(out, readPartition(ctx, t, brokers, topic, p.ID)...)
		}
	}
	return out
}

func readPartition(ctx context.Context, t *testing.T, brokers []string, topic string, partition int) []kafkago.Message {
	t.Helper()
	conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	last, err := conn.ReadLastOffset()
	if err != nil {
		t.Fatal(err)
	}
	var out []kafkago.Message
	for off := int64(0); off < last; off++ {
		out = append(out, fetchAt(ctx, t, brokers, topic, partition, off))
	}
	return out
}

// fetchAt reads the record at one offset.
func fetchAt(ctx context.Context, t *testing.T, brokers []string, topic string, partition int, offset int64) kafkago.Message {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := r.ReadMessage(fctx)
	if err != nil {
		t.Fatalf("reading %s/%d/%d: %v", topic, partition, offset, err)
	}
	return m
}

// TestConsumerSubmitRetry: a submitter that refuses twice (a full spool)
// loses nothing, and nothing is committed before it accepted.
func TestConsumerSubmitRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := newCluster(t, 1, "events", "dead")
	brokers := cl.ListenAddrs()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var msgs []kafkago.Message
	for i := range 5 {
		msgs = append(msgs, kafkago.Message{Topic: "events", Value: []byte(eventJSON(i, at))})
	}
	produce(ctx, t, brokers, msgs...)

	var early []string
	sub := &fakeSubmitter{fail: 2}
	sub.onFail = func() {
		if c := committed(cl, "g", "events"); len(c) > 0 {
			early = append(early, fmt.Sprint(c))
		}
	}
	cons, err := New(sub, Options{Brokers: brokers, Group: "g", EventTopics: []string{"events"}, DeadLetterTopic: "dead",
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, cons)
	waitFor(ctx, t, "the events", func() bool { return len(sub.snapshot()) >= 5 })
	waitFor(ctx, t, "the commit", func() bool { return allCommitted(cl, "g", "events") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(early) > 0 {
		t.Errorf("offsets committed while the submitter refused: %v", early)
	}
	sub.mu.Lock()
	calls := sub.calls
	sub.mu.Unlock()
	if calls < 3 {
		t.Errorf("%d Submit calls, want at least 3 (two refused, then accepted)", calls)
	}
	seen := map[string]bool{}
	for _, e := range sub.snapshot() {
		seen[e.Recipient] = true
	}
	for i := range 5 {
		if r := fmt.Sprintf("user%d@example.org", i); !seen[r] {
			t.Errorf("%s lost", r)
		}
	}
}

// TestConsumerGroupRebalance: two consumers in one group share the
// partitions, each record processed once overall; when one leaves, the
// other takes its partitions over from their committed offsets.
func TestConsumerGroupRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cl := newCluster(t, 4, "events", "dead")
	brokers := cl.ListenAddrs()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	opts := Options{Brokers: brokers, Group: "scale", EventTopics: []string{"events"}, DeadLetterTopic: "dead",
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 20 * time.Millisecond, MaxBatch: 10}

	subA, subB := &fakeSubmitter{}, &fakeSubmitter{}
	consA, err := New(subA, opts)
	if err != nil {
		t.Fatal(err)
	}
	consB, err := New(subB, opts)
	if err != nil {
		t.Fatal(err)
	}
	stopA := run(t, consA)
	stopB := run(t, consB)
	gi, err := cl.WaitGroupStable(ctx, "scale", 2)
	if err != nil {
		t.Fatalf("group not stable with two members: %v", err)
	}
	for _, m := range gi.Members {
		if m.NumAssigned() == 0 {
			t.Fatalf("member %s has no partition: %+v", m.MemberID, gi.Members)
		}
	}

	produceN := func(from, to int) {
		var msgs []kafkago.Message
		for i := from; i < to; i++ {
			msgs = append(msgs, kafkago.Message{Topic: "events", Value: []byte(eventJSON(i, at))})
		}
		produce(ctx, t, brokers, msgs...)
	}
	total := func() int { return len(subA.snapshot()) + len(subB.snapshot()) }
	produceN(0, 200)
	waitFor(ctx, t, "200 events", func() bool { return total() >= 200 })
	waitFor(ctx, t, "the commits", func() bool { return allCommitted(cl, "scale", "events") })
	nA, nB := len(subA.snapshot()), len(subB.snapshot())
	if nA == 0 || nB == 0 {
		t.Errorf("consumers processed %d and %d records; want both to share the work", nA, nB)
	}

	// B leaves; A takes over all partitions and resumes after B's commits.
	if err := stopB(); err != nil {
		t.Fatalf("Run B: %v", err)
	}
	if _, err := cl.WaitGroupStable(ctx, "scale", 1); err != nil {
		t.Fatalf("group not stable with one member: %v", err)
	}
	produceN(200, 300)
	waitFor(ctx, t, "300 events", func() bool { return total() >= 300 })
	waitFor(ctx, t, "the commits", func() bool { return allCommitted(cl, "scale", "events") })
	time.Sleep(300 * time.Millisecond)
	if err := stopA(); err != nil {
		t.Fatalf("Run A: %v", err)
	}

	count := map[string]int{}
	for _, e := range append(subA.snapshot(), subB.snapshot()...) {
		count[e.Recipient]++
	}
	for i := range 300 {
		if r := fmt.Sprintf("user%d@example.org", i); count[r] != 1 {
			t.Errorf("%s processed %d times, want once", r, count[r])
		}
	}
	if len(subB.snapshot()) != nB {
		t.Errorf("B processed records after it stopped")
	}
}

func TestNewOptions(t *testing.T) {
	sub := &fakeSubmitter{}
	ok := Options{Brokers: []string{"k:9092"}, Group: "g", EventTopics: []string{"e"}, DeadLetterTopic: "d"}
	if _, err := New(sub, ok); err != nil {
		t.Fatalf("New(%+v): %v", ok, err)
	}
	for _, tt := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no brokers", func(o *Options) { o.Brokers = nil }, "no brokers"},
		{"no group", func(o *Options) { o.Group = "" }, "no consumer group"},
		{"no dead-letter topic", func(o *Options) { o.DeadLetterTopic = "" }, "no dead-letter topic"},
		{"no topics", func(o *Options) { o.EventTopics = nil }, "no topics"},
		{"topic twice", func(o *Options) { o.KumoMTATopics = []string{"e"}; o.Account = "a" }, "listed twice"},
		{"dead letter read", func(o *Options) { o.EventTopics = []string{"d"} }, "also the dead-letter topic"},
		{"raw without converter", func(o *Options) { o.RawTopics = []string{"r"}; o.Account = "a" }, "without a Raw converter"},
		{"kumo without account", func(o *Options) { o.KumoMTATopics = []string{"k"} }, "no account"},
	} {
		o := ok
		tt.edit(&o)
		if _, err := New(sub, o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := New(nil, ok); err == nil {
		t.Error("New(nil submitter) succeeded")
	}
}

// TestConsumerDeadLetterRetry: while the dead-letter topic refuses writes
// nothing is committed; the record is dead-lettered once it takes them.
func TestConsumerDeadLetterRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := newCluster(t, 1, "events", "dead")
	brokers := cl.ListenAddrs()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	produce(ctx, t, brokers,
		kafkago.Message{Topic: "events", Value: []byte("not json at all")},
		kafkago.Message{Topic: "events", Value: []byte(eventJSON(1, at))})

	var mu sync.Mutex
	refused := 0
	var early []string
	cl.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != "dead" {
			return nil, nil, false
		}
		cl.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if refused >= 2 {
			return nil, nil, false
		}
		refused++
		if c := committed(cl, "dl", "events"); len(c) > 0 {
			early = append(early, fmt.Sprint(c))
		}
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = pr.Version
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = p.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	sub := &fakeSubmitter{}
	cons, err := New(sub, Options{Brokers: brokers, Group: "dl", EventTopics: []string{"events"}, DeadLetterTopic: "dead",
		Logger: testLogger(t), ReaderConfig: fastGroup, RetryMin: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, cons)
	waitFor(ctx, t, "the commit", func() bool { return allCommitted(cl, "dl", "events") })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused < 2 {
		t.Fatalf("the dead-letter topic refused %d writes, want 2", refused)
	}
	if len(early) > 0 {
		t.Errorf("offsets committed while the dead-letter topic refused writes: %v", early)
	}
	dead := readAll(ctx, t, brokers, "dead", 1)
	if len(dead) != 1 || string(dead[0].Value) != "not json at all" || !strings.Contains(headers(dead[0])[HeaderError], "not JSON") {
		t.Errorf("dead-letter topic holds %d records, want the bad one: %+v", len(dead), dead)
	}
	if evs := sub.snapshot(); len(evs) != 1 {
		t.Errorf("submitted %d events, want 1", len(evs))
	}
}
