package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// Source is the event source of everything read from Kafka.
const Source = "kafka"

// Headers of a dead-lettered record, beside the record's own headers.
const (
	HeaderError     = "repute-error"     // why the record could not be read
	HeaderTopic     = "repute-topic"     // where it came from
	HeaderPartition = "repute-partition" // decimal
	HeaderOffset    = "repute-offset"    // decimal
)

// Submitter takes events and returns once they are durable (intake's
// Pipeline). On error nothing of the submission was kept, and the same
// events are submitted again later.
type Submitter interface {
	Submit(ctx context.Context, events []metrics.Event) (intake.Result, error)
}

var _ Submitter = (*intake.Pipeline)(nil)

// Processor turns one RFC 5322 message (a bounce or complaint) read from a
// raw topic into events and the evidence to store first
// (*ingest.Processor). src is Source "kafka", Ref "topic/partition/offset"
// and Time the record's timestamp, the time of last resort. An error
// wrapping ingest.ErrLookup (the send store failed) is retried; any other
// sends the record to the dead-letter topic.
type Processor interface {
	Process(ctx context.Context, raw []byte, src ingest.Source) (ingest.Report, error)
}

var _ Processor = (*ingest.Processor)(nil)

// EvidenceWriter stores the raw reports of raw topics (both stores).
type EvidenceWriter interface {
	PutEvidence(ctx context.Context, ev []metrics.Evidence) error
}

// Options configure a Consumer. Brokers, Group, DeadLetterTopic and at
// least one topic are required.
type Options struct {
	Brokers []string
	Group   string // the consumer group: processes of one group share the partitions
	// EventTopics carry events: a record's value is one event, a JSON
	// array of events, or NDJSON, as POST /v1/events takes.
	EventTopics []string
	// KumoMTATopics carry KumoMTA JSON log records, one per record.
	KumoMTATopics []string
	// RawTopics carry RFC 5322 messages, one per record, handed to Raw;
	// their evidence goes to Evidence before their events are submitted.
	RawTopics []string
	Raw       Processor      // required with RawTopics
	Evidence  EvidenceWriter // required with RawTopics
	// DeadLetterTopic receives the records that cannot be read, with the
	// error and their origin in headers (HeaderError, …).
	DeadLetterTopic string
	// Account is the account of events that name none: events of event
	// records without one, KumoMTA records without meta.account, and what
	// Raw returns without one. Required with KumoMTATopics or RawTopics.
	Account string
	ISPs    metrics.ISPMap   // for Normalize; the zero value is the built-in map
	Now     func() time.Time // bounds event times from above; nil: time.Now
	Logger  *slog.Logger     // nil: silent
	// Registerer receives repute_kafka_records_total; nil: none.
	Registerer prometheus.Registerer

	// MaxBatch bounds the records submitted together. Default 500.
	MaxBatch int
	// RetryMin and RetryMax bound the backoff between attempts at a
	// failed Submit, dead-letter write or commit. Defaults 100 ms, 30 s.
	RetryMin, RetryMax time.Duration
	// ReaderConfig, when set, adjusts kafka-go's reader configuration
	// last (a Dialer with TLS or SASL, session and heartbeat timings).
	ReaderConfig func(*kafkago.ReaderConfig)
	// Transport, when set, is the dead-letter writer's transport.
	Transport kafkago.RoundTripper
}

// Consumer reads the topics of Options in a consumer group and hands what
// it reads to a Submitter, committing each record's offset only after its
// events are durable or it is on the dead-letter topic.
type Consumer struct {
	opts  Options
	sub   Submitter
	log   *slog.Logger
	kinds map[string]topicKind
	// records counts the records read by topic and outcome: submitted
	// (it gave events), ignored (no event: an automatic reply, a record
	// type that is no fact about a message) or dead_lettered.
	records *prometheus.CounterVec
}

// The outcomes of repute_kafka_records_total.
const (
	OutcomeSubmitted    = "submitted"
	OutcomeIgnored      = "ignored"
	OutcomeDeadLettered = "dead_lettered"
)

type topicKind int

const (
	eventTopic topicKind = iota + 1
	kumoTopic
	rawTopic
)

// New returns a consumer handing events to sub.
func New(sub Submitter, opts Options) (*Consumer, error) {
	if sub == nil {
		return nil, errors.New("kafka: no submitter")
	}
	if len(opts.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	if opts.Group == "" {
		return nil, errors.New("kafka: no consumer group")
	}
	if opts.DeadLetterTopic == "" {
		return nil, errors.New("kafka: no dead-letter topic: a record that cannot be read must go somewhere")
	}
	c := &Consumer{opts: opts, sub: sub, log: opts.Logger, kinds: map[string]topicKind{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repute_kafka_records_total",
			Help: "Kafka records read, by topic and outcome: submitted (events), ignored (no event) or dead_lettered.",
		}, []string{"topic", "outcome"})}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c.records); err != nil {
			return nil, fmt.Errorf("kafka: register metrics: %w", err)
		}
	}
	for _, l := range []struct {
		topics []string
		kind   topicKind
	}{{opts.EventTopics, eventTopic}, {opts.KumoMTATopics, kumoTopic}, {opts.RawTopics, rawTopic}} {
		for _, t := range l.topics {
			if t == "" {
				return nil, errors.New("kafka: empty topic name")
			}
			if t == opts.DeadLetterTopic {
				return nil, fmt.Errorf("kafka: topic %q is also the dead-letter topic", t)
			}
			if _, dup := c.kinds[t]; dup {
				return nil, fmt.Errorf("kafka: topic %q is listed twice", t)
			}
			c.kinds[t] = l.kind
		}
	}
	if len(c.kinds) == 0 {
		return nil, errors.New("kafka: no topics")
	}
	if len(opts.RawTopics) > 0 && opts.Raw == nil {
		return nil, errors.New("kafka: raw topics without a Raw converter")
	}
	if len(opts.RawTopics) > 0 && opts.Evidence == nil {
		return nil, errors.New("kafka: raw topics without an evidence store: every report's events must trace to it")
	}
	if opts.Account == "" && len(opts.RawTopics)+len(opts.KumoMTATopics) > 0 {
		return nil, errors.New("kafka: no account for raw or KumoMTA records that name none")
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.opts.Now == nil {
		c.opts.Now = time.Now
	}
	if c.opts.MaxBatch <= 0 {
		c.opts.MaxBatch = 500
	}
	if c.opts.RetryMin <= 0 {
		c.opts.RetryMin = 100 * time.Millisecond
	}
	if c.opts.RetryMax < c.opts.RetryMin {
		c.opts.RetryMax = max(30*time.Second, c.opts.RetryMin)
	}
	return c, nil
}

// Run consumes until ctx ends (then it returns nil) or the reader fails.
// Records fetched but not yet committed when it returns are read again
// by whoever holds their partition next.
func (c *Consumer) Run(ctx context.Context) error {
	topics := make([]string, 0, len(c.kinds))
	for t := range c.kinds {
		topics = append(topics, t)
	}
	cfg := kafkago.ReaderConfig{
		Brokers:        c.opts.Brokers,
		GroupID:        c.opts.Group,
		GroupTopics:    topics,
		StartOffset:    kafkago.FirstOffset,
		CommitInterval: 0, // synchronous: CommitMessages returns once committed
		MaxWait:        500 * time.Millisecond,
		// A fetch of up to 16 MiB: raw reports run to tens of kilobytes,
		// and kafka-go's default of 1 MiB would make a round trip every
		// few hundred records (and could not fetch one larger record).
		MaxBytes:    16 << 20,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) { c.log.Warn(fmt.Sprintf(msg, args...)) }),
	}
	if c.opts.ReaderConfig != nil {
		c.opts.ReaderConfig(&cfg)
	}
	r := kafkago.NewReader(cfg)
	defer r.Close()
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(c.opts.Brokers...),
		Topic:        c.opts.DeadLetterTopic,
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		Transport:    c.opts.Transport,
	}
	defer w.Close()

	ctx, cancel := context.WithCancel(ctx)
	fetched := make(chan kafkago.Message, c.opts.MaxBatch)
	fetchErr := make(chan error, 1)
	fetchDone := make(chan struct{})
	defer func() {
		cancel()
		<-fetchDone // the reader is closed only once nothing fetches
	}()
	go func() {
		defer close(fetchDone)
		defer close(fetched)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case fetched <- m:
			case <-ctx.Done():
				fetchErr <- ctx.Err()
				return
			}
		}
	}()

	// Two stages: a batch is read (parsed, converted) while the one
	// before it is stored and committed. Batches are stored and committed
	// in the order they were fetched.
	type readBatch struct {
		msgs  []kafkago.Message
		reads []read
	}
	ready := make(chan readBatch, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(ready)
		for {
			m, ok := <-fetched
			if !ok {
				readErr <- <-fetchErr
				return
			}
			batch := append(make([]kafkago.Message, 0, c.opts.MaxBatch), m)
		more:
			for len(batch) < c.opts.MaxBatch {
				select {
				case m, ok := <-fetched:
					if !ok {
						break more
					}
					batch = append(batch, m)
				default:
					break more
				}
			}
			reads, err := c.readAll(ctx, batch)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case ready <- readBatch{batch, reads}:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range ready { // let the reading stage end
		}
	}()
	for rb := range ready {
		if err := c.process(ctx, r, w, rb.msgs, rb.reads); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	err := <-readErr
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("kafka: fetch: %w", err)
}

// deadLetter is a record that cannot be read and why.
type deadLetter struct {
	msg kafkago.Message
	err error
}

// process hands a batch's events (read by readAll) to the submitter and its unreadable
// records to the dead-letter topic, then commits the batch. Each step is
// retried until it succeeds or ctx ends; nothing is committed before both
// succeeded.
func (c *Consumer) process(ctx context.Context, r *kafkago.Reader, w *kafkago.Writer, batch []kafkago.Message, reads []read) error {
	var events []metrics.Event
	var evidence []metrics.Evidence
	var dead []deadLetter
	outcomes := make([]string, len(reads))
	for i, rd := range reads {
		m := batch[i]
		events = append(events, rd.events...)
		evidence = append(evidence, rd.evidence...)
		switch {
		case rd.err != nil:
			dead = append(dead, deadLetter{m, rd.err})
			c.log.Warn("kafka record cannot be read; dead-lettered", "topic", m.Topic,
				"partition", m.Partition, "offset", m.Offset, "err", rd.err)
			outcomes[i] = OutcomeDeadLettered
		case len(rd.events) == 0:
			outcomes[i] = OutcomeIgnored
		default:
			outcomes[i] = OutcomeSubmitted
		}
	}
	// Evidence first: an event must never point at evidence that is not
	// stored. A crash between the two stores the evidence again (a no-op).
	if len(evidence) > 0 {
		err := c.retry(ctx, "evidence write", func() error { return c.opts.Evidence.PutEvidence(ctx, evidence) })
		if err != nil {
			return err
		}
	}
	if len(events) > 0 {
		err := c.retry(ctx, "submit", func() error {
			_, err := c.sub.Submit(ctx, events)
			return err
		})
		if err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		msgs := make([]kafkago.Message, len(dead))
		for i, d := range dead {
			msgs[i] = deadLetterMessage(d.msg, d.err)
		}
		if err := c.retry(ctx, "dead-letter write", func() error { return w.WriteMessages(ctx, msgs...) }); err != nil {
			return err
		}
	}
	// Counted once the batch is stored and dead-lettered, before the
	// commit: a batch read again after a failed commit counts again. Not
	// after the commit, in a defer: a stop right after the commit (its
	// context cancelled) would leave a stored batch uncounted.
	for i, o := range outcomes {
		c.records.WithLabelValues(batch[i].Topic, o).Inc()
	}
	// A commit that keeps failing (its partitions moved to another member
	// in a rebalance) is given up: the records are then read again, and
	// their events are duplicates intake collapses. Nothing is lost.
	err := c.retryN(ctx, "commit", commitAttempts, func() error { return r.CommitMessages(ctx, batch...) })
	if err != nil && ctx.Err() == nil {
		c.log.Warn("kafka: commit given up; the records will be read again", "records", len(batch), "err", err)
		return nil
	}
	return err
}

// commitAttempts bounds the attempts at one commit.
const commitAttempts = 8

// retry calls f until it succeeds or ctx ends, with exponential backoff.
func (c *Consumer) retry(ctx context.Context, what string, f func() error) error {
	return c.retryN(ctx, what, 0, f)
}

// retryN is retry for at most attempts calls (0: no bound); past them it
// returns f's last error.
func (c *Consumer) retryN(ctx context.Context, what string, attempts int, f func() error) error {
	wait := c.opts.RetryMin
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempts > 0 && attempt >= attempts {
			return err
		}
		c.log.Warn("kafka: "+what+" failed; retrying", "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, c.opts.RetryMax)
	}
}

// deadLetterMessage is m for the dead-letter topic: its key, value and
// headers, with the error and its origin added.
func deadLetterMessage(m kafkago.Message, err error) kafkago.Message {
	h := make([]kafkago.Header, 0, len(m.Headers)+4)
	h = append(h, m.Headers...)
	h = append(h,
		kafkago.Header{Key: HeaderError, Value: []byte(err.Error())},
		kafkago.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
		kafkago.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafkago.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	return kafkago.Message{Key: m.Key, Value: m.Value, Headers: h}
}

// SourceRef is where a record was read: "topic/partition/offset".
func SourceRef(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + strconv.FormatInt(offset, 10)
}

// read is what one record gave: its events, the evidence of a raw report,
// and the error that sends it to the dead-letter topic (beside the valid
// events of an event record with some invalid items, still submitted).
type read struct {
	events   []metrics.Event
	evidence []metrics.Evidence
	err      error
}

// readAll reads a batch's records, the raw reports concurrently (parsing
// is the costly part of consuming a raw topic, and each record is
// independent). A raw report whose send lookup fails is read again, with
// backoff, until it succeeds or ctx ends (the error returned).
func (c *Consumer) readAll(ctx context.Context, batch []kafkago.Message) ([]read, error) {
	reads := make([]read, len(batch))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(batch)) {
		wg.Go(func() {
			for i := range work {
				reads[i] = c.read(ctx, batch[i])
			}
		})
	}
	for i := range batch {
		work <- i
	}
	close(work)
	wg.Wait()
	for i, rd := range reads {
		if !errors.Is(rd.err, ingest.ErrLookup) {
			continue
		}
		err := c.retry(ctx, "send lookup", func() error {
			reads[i] = c.read(ctx, batch[i])
			if errors.Is(reads[i].err, ingest.ErrLookup) {
				return reads[i].err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return reads, nil
}

// read turns one record into normalized events.
func (c *Consumer) read(ctx context.Context, m kafkago.Message) read {
	ref := SourceRef(m.Topic, m.Partition, m.Offset)
	var events []metrics.Event
	var evidence []metrics.Evidence
	var err error
	switch c.kinds[m.Topic] {
	case eventTopic:
		events, err = decodeEventRecord(m.Value)
	case kumoTopic:
		events, err = KumoEvents(m.Value, c.opts.Account, m.Time)
	case rawTopic:
		var rep ingest.Report
		rep, err = c.opts.Raw.Process(ctx, m.Value, ingest.Source{Name: ingest.SourceKafka, Ref: ref, Time: m.Time})
		if err != nil {
			err = fmt.Errorf("kafka: raw message: %w", err)
		}
		events, evidence = rep.Events, rep.Evidence
	default:
		return read{err: fmt.Errorf("kafka: record from unconfigured topic %q", m.Topic)}
	}
	if err != nil && len(events) == 0 {
		return read{err: err}
	}
	now := c.opts.Now()
	var bad []string
	kept := events[:0]
	for i := range events {
		e := &events[i]
		if e.Source == "" {
			e.Source = Source
		}
		if e.SourceRef == "" {
			e.SourceRef = ref
		}
		if e.Account == "" {
			e.Account = c.opts.Account
		}
		if nerr := e.Normalize(c.opts.ISPs, now); nerr != nil {
			bad = append(bad, fmt.Sprintf("event %d: %s", i, strings.TrimPrefix(nerr.Error(), "metrics: ")))
			continue
		}
		kept = append(kept, *e)
	}
	if len(bad) > 0 {
		verr := errors.New("kafka: invalid events: " + strings.Join(bad, "; "))
		err = errors.Join(err, verr)
	}
	return read{events: kept, evidence: evidence, err: err}
}

// decodeEventRecord decodes an event record's value: one event, a JSON
// array of events, or NDJSON (one event a line). Items that cannot be
// decoded are named in the error; the others are returned.
func decodeEventRecord(value []byte) ([]metrics.Event, error) {
	v := bytes.TrimSpace(value)
	if len(v) == 0 {
		return nil, errors.New("kafka: empty event record")
	}
	if !utf8.Valid(v) {
		return nil, errors.New("kafka: event record: invalid UTF-8")
	}
	switch v[0] {
	case '[':
		if events, ok := metrics.DecodeEventsJSON(v); ok {
			return events, nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, fmt.Errorf("kafka: event record: malformed JSON: %w", err)
		}
		return decodeItems(items, "item")
	case '{':
		var e metrics.Event
		if json.Valid(v) {
			if err := json.Unmarshal(v, &e); err != nil {
				return nil, fmt.Errorf("kafka: event record: malformed event: %w", err)
			}
			return []metrics.Event{e}, nil
		}
		if !bytes.Contains(v, []byte("\n")) {
			err := json.Unmarshal(v, new(json.RawMessage))
			return nil, fmt.Errorf("kafka: event record: malformed JSON: %w", err)
		}
		var items []json.RawMessage
		for line := range bytes.SplitSeq(v, []byte("\n")) {
			items = append(items, json.RawMessage(bytes.TrimSpace(line)))
		}
		return decodeItems(items, "line")
	}
	return nil, errors.New("kafka: event record: not JSON: want an event, a JSON array of events or NDJSON")
}

// decodeItems decodes each item as an event, skipping blank ones.
func decodeItems(items []json.RawMessage, what string) ([]metrics.Event, error) {
	events := make([]metrics.Event, 0, len(items))
	var bad []string
	for i, item := range items {
		if len(item) == 0 {
			continue
		}
		var e metrics.Event
		dec := json.NewDecoder(bytes.NewReader(item))
		err := dec.Decode(&e)
		if err == nil && dec.More() {
			err = errors.New("more than one JSON value")
		}
		if err == io.EOF {
			continue
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s %d: malformed event: %v", what, i, err))
			continue
		}
		events = append(events, e)
	}
	if len(bad) > 0 {
		return events, errors.New("kafka: event record: " + strings.Join(bad, "; "))
	}
	return events, nil
}
