package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"repute/dsn"
	"repute/metrics"
)

// Retry defaults.
const (
	// DefaultRetryFor is how long a message is retried before it is given
	// up as a bounced event with reason expired (issue 11: retry_for;
	// RFC 5321 §4.5.4.1 asks for "at least 4-5 days", bulk senders use
	// less: an offer that late is worth little).
	DefaultRetryFor = 72 * time.Hour
	// DefaultFirstRetry is the wait after the first temporary failure; it
	// doubles with each further one up to DefaultMaxRetry, ±10% jitter.
	//
	// RFC 5321 §4.5.4.1 says the retry interval "SHOULD be at least 30
	// minutes". We deliberately start at 15 minutes, as KumoMTA (its
	// default retry_interval is 20 minutes, doubling) and PowerMTA
	// (retry-after 10-20 minutes in common configurations) do: most
	// deferrals from mailbox providers are rate limits ("421 4.7.28 try
	// again later") that clear within minutes, and the pacer already keeps
	// us from hammering. From the second retry on the wait is 30 minutes
	// or more, as the RFC asks.
	DefaultFirstRetry = 15 * time.Minute
	DefaultMaxRetry   = 4 * time.Hour
)

// DefaultPipeline is Options.Pipeline's default. Measured with the
// in-process sink (BenchmarkDeliver, one connection): 1 → ~1,300 msgs/s,
// 4 → ~2,400, 16 → ~3,200, 32 → ~3,500 (the bare-client ceiling: ~8,000)
// on this class of machine, where the journal's fsync costs ~0.3 ms.
const DefaultPipeline = 32

// EventSource is the source of the sender's events.
const EventSource = "sender"

// Options configures a Sender. Queue, Relay.Addr and Events are required;
// the zero value of the rest works.
type Options struct {
	Queue  *Queue
	Relay  Relay
	Pacer  Pacer     // nil: no pacing
	Events EventSink // where sent, delivered, deferred and bounced go
	// ISP maps a recipient domain to its mailbox provider (metrics' ISP
	// map); nil or "" means the domain itself. It keys pacing and the
	// queue summary.
	ISP func(domain string) string

	Now func() time.Time // default time.Now
	// Until returns a channel that receives once the clock Now reads has
	// reached t: the loop waits with it for the next due item (a retry, a
	// pacing slot). The default is time.After(t - Now()). Tests give a fake
	// clock's; a deadline rather than a duration keeps a fake clock moved
	// meanwhile from shifting the wait.
	Until func(t time.Time) <-chan time.Time
	// Rand returns a number in [0, 1) for the backoff's jitter (default
	// math/rand/v2's Float64).
	Rand func() float64

	RetryFor   time.Duration // default DefaultRetryFor
	FirstRetry time.Duration // default DefaultFirstRetry
	MaxRetry   time.Duration // default DefaultMaxRetry
	// Connections is how many deliveries run at once (default
	// Relay.Connections, itself 8 by default).
	Connections int
	// Pipeline is how many delivered items may wait for their event and
	// their durable outcome while the workers go on with the next ones
	// (default DefaultPipeline; negative: none, each worker waits for its
	// own). The journal's fsync is shared by the outcomes waiting together,
	// so this is what lets one connection run at the relay's pace rather
	// than the disk's; it widens the window of a possible double send after
	// a crash by as many items (see Sender).
	Pipeline int
	Logger   *slog.Logger // nil: silent
}

// Sender delivers what its Queue holds, through a RelayPool of connections to
// its Relay, asking the Pacer first and recording an event for each
// outcome.
//
// # At most one send, almost
//
// For each item the event is recorded (EventSink.Record, durable) before
// the item's outcome is made durable in the queue. A crash between the two
// delivers the item again rather than losing its record: a message can be
// sent twice only when the crash falls between the relay's 250 and the
// queue's durable record of it (the RFC 1047 window, which no SMTP client
// can close). That window holds only the items in flight, at most
// Connections + Pipeline messages (each worker's delivery under way, and
// the delivered items whose outcome is still being concluded beside the
// next deliveries), and lasts one event append and one journal fsync
// after the 250. Under a steady load the pipeline is often full, so a
// crash then re-sends close to that many (TestSendingCrash in cmd/repute:
// 4 connections and the default pipeline, a bound of 36). The event of such a repeat has the id of the first (the
// id is derived from the item's Ref, the kind and the attempt number, and
// the attempt number is the one durable before the crash), so intake counts
// the send once although the recipient may see it twice.
type Sender struct {
	q     *Queue
	pool  *RelayPool
	pacer Pacer
	sink  EventSink
	isp   func(string) string
	now   func() time.Time
	until func(time.Time) <-chan time.Time
	rand  func() float64
	log   *slog.Logger

	retryFor, firstRetry, maxRetry time.Duration
	workers                        int
	recordRetry                    time.Duration // first wait after a failed Record

	// Concluding: recording the event and the durable outcome of a
	// delivery runs beside the next delivery, at most workers at once.
	concludeSem    chan struct{}
	concluding     sync.WaitGroup
	relayMu        sync.Mutex
	relayWait      time.Duration // the current relay-down backoff; 0: up
	relayHoldUntil time.Time

	fatalOnce   sync.Once
	fatal       error
	stopWorkers context.CancelFunc

	stats struct {
		sent, delivered, bounced, deferred, expired, paced atomic.Uint64
		recordErrors, queueErrors, relayFailures           atomic.Uint64
		inFlight                                           atomic.Int64
	}
}

// New checks opts and returns a Sender; nothing runs until Run.
func New(opts Options) (*Sender, error) {
	if opts.Queue == nil {
		return nil, errors.New("sender: no queue")
	}
	if opts.Events == nil {
		return nil, errors.New("sender: no event sink")
	}
	pool, err := NewRelayPool(opts.Relay)
	if err != nil {
		return nil, err
	}
	s := &Sender{
		q: opts.Queue, pool: pool, pacer: opts.Pacer, sink: opts.Events, isp: opts.ISP,
		now: opts.Now, until: opts.Until, rand: opts.Rand, log: opts.Logger,
		retryFor: opts.RetryFor, firstRetry: opts.FirstRetry, maxRetry: opts.MaxRetry,
		workers: opts.Connections, recordRetry: time.Second,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.until == nil {
		s.until = func(t time.Time) <-chan time.Time { return time.After(t.Sub(s.now())) }
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.retryFor <= 0 {
		s.retryFor = DefaultRetryFor
	}
	if s.firstRetry <= 0 {
		s.firstRetry = DefaultFirstRetry
	}
	if s.maxRetry <= 0 {
		s.maxRetry = DefaultMaxRetry
	}
	if s.workers <= 0 {
		s.workers = pool.Relay().Connections
	}
	switch {
	case opts.Pipeline == 0:
		s.concludeSem = make(chan struct{}, DefaultPipeline)
	case opts.Pipeline > 0:
		s.concludeSem = make(chan struct{}, opts.Pipeline)
	}
	return s, nil
}

// Enqueue queues items (durably, see Queue.Enqueue) and wakes the workers
// at once. An item without Queued is stamped with now.
func (s *Sender) Enqueue(items []*Item) error {
	now := s.now()
	for _, it := range items {
		if it.Queued.IsZero() {
			it.Queued = now
		}
	}
	return s.q.Enqueue(items)
}

// Repace makes the messages waiting for the pacer due now, for when its
// limits changed — a decision of the rule engine lifted a pause or ended
// a slow-down — so that they do not wait out the time the old limits
// named. It returns how many it woke.
func (s *Sender) Repace() int { return s.q.repace(s.now()) }

// Summary is the queue's summary now, by the ISP map (GET /v1/queue).
// While the relay is held as unreachable, the items that would be ready
// wait for it: they are counted as relay_down, due when it is tried again.
func (s *Sender) Summary() QueueSummary {
	return s.AccountSummary("")
}

// AccountSummary is Summary for the items of one account ("": every
// account).
func (s *Sender) AccountSummary(account string) QueueSummary {
	now := s.now()
	sum := s.q.AccountSummary(account, s.isp, now)
	hold := s.relayHold()
	if !now.Before(hold) || sum.Ready == 0 {
		return sum
	}
	sum.RelayDown += sum.Ready
	sum.Ready = 0
	type key struct{ sd, p string }
	down := map[key]int{}
	groups := sum.Groups[:0]
	for _, g := range sum.Groups {
		if g.Why == WhyReady {
			g.Why, g.NextAttempt = WhyRelayDown, hold
		}
		if g.Why == WhyRelayDown {
			k := key{g.SenderDomain, g.Provider}
			if i, ok := down[k]; ok {
				m := &groups[i]
				m.Count += g.Count
				if g.Oldest.Before(m.Oldest) {
					m.Oldest = g.Oldest
				}
				if g.NextAttempt.Before(m.NextAttempt) {
					m.NextAttempt = g.NextAttempt
				}
				continue
			}
			down[k] = len(groups)
		}
		groups = append(groups, g)
	}
	sum.Groups = groups
	return sum
}

// DeliveryStats is a snapshot of the sender's counters, for Prometheus.
type DeliveryStats struct {
	Sent         uint64 // relay said 2xx
	Delivered    uint64 // delivered events recorded at once (RelayIsFinal)
	Bounced      uint64 // 5xx, and expired
	Expired      uint64 // of Bounced: given up after RetryFor
	Deferred     uint64 // 4xx or no reply; retried
	Paced        uint64 // the pacer said not yet
	RecordErrors uint64 // EventSink.Record failures (retried)
	QueueErrors  uint64 // the queue could not read an item or record an outcome
	// RelayDown counts the times the relay could not be reached (dial,
	// greeting, TLS, AUTH) and deliveries were held off.
	RelayDown uint64
	InFlight  int64 // deliveries under way now
	Queued    int   // items not done
	Dials     int64 // connections opened to the relay
	Reuses    int64 // deliveries over an already open connection
}

// Stats returns the counters now.
func (s *Sender) Stats() DeliveryStats {
	ps := s.pool.Stats()
	return DeliveryStats{
		Sent: s.stats.sent.Load(), Delivered: s.stats.delivered.Load(),
		Bounced: s.stats.bounced.Load(), Expired: s.stats.expired.Load(),
		Deferred: s.stats.deferred.Load(), Paced: s.stats.paced.Load(),
		RecordErrors: s.stats.recordErrors.Load(), QueueErrors: s.stats.queueErrors.Load(),
		RelayDown: s.stats.relayFailures.Load(),
		InFlight:  s.stats.inFlight.Load(), Queued: s.q.Len(),
		Dials: ps.Dials, Reuses: ps.Reuses,
	}
}

// Run delivers until ctx is cancelled, with Connections workers, and
// returns nil then; or an error when the queue can no longer record
// outcomes (its journal failed), after stopping the workers. Deliveries
// under way when ctx is cancelled are finished and recorded; the pool's
// connections are closed on return.
func (s *Sender) Run(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.stopWorkers = cancel
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			if err := s.worker(wctx); err != nil {
				s.fail(err)
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(s.pool.Relay().IdleTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				s.pool.CloseIdle()
			}
		}
	})
	wg.Wait()
	s.concluding.Wait()
	s.pool.Close()
	return s.fatal
}

// fail stops the workers for good: the queue cannot record outcomes.
func (s *Sender) fail(err error) {
	s.fatalOnce.Do(func() {
		s.fatal = err
		s.log.Error("sender: stopping", "err", err)
		s.stopWorkers()
	})
}

func (s *Sender) worker(ctx context.Context) error {
	for ctx.Err() == nil {
		now := s.now()
		if hold := s.relayHold(); now.Before(hold) {
			select {
			case <-ctx.Done():
			case <-s.until(hold):
			}
			continue
		}
		e, it, due, changed, err := s.q.take(now)
		if errors.Is(err, ErrQueueClosed) {
			return nil
		}
		if err != nil {
			s.stats.queueErrors.Add(1)
			s.log.Error("sender: queue", "err", err)
			continue
		}
		if e == nil {
			var timer <-chan time.Time
			if !due.IsZero() {
				timer = s.until(due)
			}
			select {
			case <-ctx.Done():
			case <-changed:
			case <-timer:
			}
			continue
		}
		if err := s.handle(ctx, e, it, now); err != nil {
			return err
		}
	}
	return nil
}

// handle takes one due item through pacing, delivery, its event and its
// durable outcome. It returns an error only when the queue's journal fails.
func (s *Sender) handle(ctx context.Context, e *entry, it *Item, now time.Time) error {
	attempt := it.Attempts + 1
	if !now.Before(it.Queued.Add(s.retryFor)) {
		diag := it.LastError
		if diag == "" {
			diag = "not delivered within " + s.retryFor.String()
		}
		ev := s.event(it, metrics.KindBounced, it.Attempts, now)
		ev.BounceType, ev.Reason, ev.Status, ev.Diagnostic = "soft", string(dsn.Expired), "4.4.7", boundDiagnostic(diag) // RFC 3463 X.4.7: delivery time expired
		s.stats.expired.Add(1)
		s.stats.bounced.Add(1)
		return s.concludeAsync(ctx, e, it, []metrics.Event{ev}, true, attempt, time.Time{}, "")
	}

	key := PaceKey{SenderDomain: it.SenderDomain, SendingIP: it.SendingIP, Provider: providerOf(s.isp, it.Recipient)}
	if s.pacer != nil {
		ok, retry := s.pacer.Take(key, now)
		if !ok {
			if !retry.After(now) {
				retry = now.Add(time.Second)
			}
			s.stats.paced.Add(1)
			s.q.release(e, retry, WhyPaced)
			return nil
		}
	}
	s.stats.inFlight.Add(1)
	res := s.pool.Deliver(ctx, it)
	s.stats.inFlight.Add(-1)
	if s.pacer != nil {
		s.pacer.Done(key, res.Sent)
	}
	now = s.now()

	switch res.Outcome {
	case Accepted:
		s.relayUp()
		evs := []metrics.Event{s.event(it, metrics.KindSent, attempt, now)}
		evs[0].RemoteMTA = s.pool.RemoteMTA()
		s.stats.sent.Add(1)
		if s.pool.Relay().RelayIsFinal {
			d := s.event(it, metrics.KindDelivered, attempt, now)
			d.RemoteMTA = s.pool.RemoteMTA()
			evs = append(evs, d)
			s.stats.delivered.Add(1)
		}
		return s.concludeAsync(ctx, e, it, evs, true, attempt, time.Time{}, "")

	case Permanent:
		s.relayUp()
		ev := s.replyEvent(it, metrics.KindBounced, attempt, now, res)
		s.stats.bounced.Add(1)
		return s.concludeAsync(ctx, e, it, []metrics.Event{ev}, true, attempt, time.Time{}, "")
	}

	// Temporary.
	if res.Phase == dsn.PhaseConnect {
		if ctx.Err() != nil && errors.Is(res.Err, ctx.Err()) {
			// Shut down before a connection was had: not an attempt.
			s.q.release(e, now, e.why)
			return nil
		}
		// The relay cannot be reached (or greeted, or TLS or AUTH
		// failed): our side's trouble, not the message's. Nothing is
		// recorded against the item; every worker holds off, and the item
		// waits, until the relay is tried again.
		s.q.release(e, s.relayDown(now, res), WhyRelayDown)
		return nil
	}
	s.relayUp()
	lastErr := describe(res)
	if !now.Before(it.Queued.Add(s.retryFor)) {
		ev := s.replyEvent(it, metrics.KindBounced, attempt, now, res)
		ev.BounceType, ev.Reason = "soft", string(dsn.Expired)
		s.stats.expired.Add(1)
		s.stats.bounced.Add(1)
		return s.concludeAsync(ctx, e, it, []metrics.Event{ev}, true, attempt, time.Time{}, "")
	}
	ev := s.replyEvent(it, metrics.KindDeferred, attempt, now, res)
	ev.BounceType = ""
	s.stats.deferred.Add(1)
	return s.concludeAsync(ctx, e, it, []metrics.Event{ev}, false, attempt, now.Add(s.backoff(attempt)), lastErr)
}

// Relay-down backoff: the first wait after a failure to connect, doubling
// with each further one.
const (
	relayRetryFirst = 30 * time.Second
	relayRetryMax   = 5 * time.Minute
)

// relayDown notes a failure to reach the relay at now and returns when to
// try again.
func (s *Sender) relayDown(now time.Time, res DeliveryResult) time.Time {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	if now.Before(s.relayHoldUntil) {
		return s.relayHoldUntil // another worker's failure set it already
	}
	if s.relayWait == 0 {
		s.relayWait = relayRetryFirst
		s.log.Warn("sender: relay unreachable; holding deliveries", "relay", s.pool.Relay().Addr, "err", describe(res))
	} else {
		s.relayWait = min(2*s.relayWait, relayRetryMax)
	}
	s.stats.relayFailures.Add(1)
	s.relayHoldUntil = now.Add(s.relayWait)
	return s.relayHoldUntil
}

// relayUp notes that the relay answered.
func (s *Sender) relayUp() {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	if s.relayWait != 0 {
		s.log.Info("sender: relay reachable again", "relay", s.pool.Relay().Addr)
	}
	s.relayWait = 0
}

func (s *Sender) relayHold() time.Time {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	return s.relayHoldUntil
}

// concludeAsync concludes a delivery beside the next one: the worker goes
// on while the event is recorded and the outcome made durable, as long as
// fewer than Pipeline conclusions are under way. The item stays in flight
// (never handed out again) until its outcome is durable. Without a
// pipeline it concludes before it returns.
func (s *Sender) concludeAsync(ctx context.Context, e *entry, it *Item, evs []metrics.Event, done bool, attempts int, next time.Time, lastErr string) error {
	if s.concludeSem == nil {
		return s.conclude(ctx, e, it, evs, done, attempts, next, lastErr)
	}
	s.concludeSem <- struct{}{}
	s.concluding.Go(func() {
		defer func() { <-s.concludeSem }()
		if err := s.conclude(ctx, e, it, evs, done, attempts, next, lastErr); err != nil {
			s.fail(err)
		}
	})
	return nil
}

// conclude records evs, then makes the item's outcome durable: done, or
// attempts made and the next attempt at next.
func (s *Sender) conclude(ctx context.Context, e *entry, it *Item, evs []metrics.Event, done bool, attempts int, next time.Time, lastErr string) error {
	if err := s.record(ctx, evs); err != nil {
		// Only at shutdown: the item stays queued, delivered again after
		// the restart (the documented window).
		s.q.release(e, it.NextAttempt, e.why)
		return nil
	}
	var err error
	if done {
		err = s.q.finish(e, attempts)
	} else {
		err = s.q.retry(e, attempts, next, lastErr)
	}
	if err != nil {
		s.stats.queueErrors.Add(1)
		if errors.Is(err, ErrQueueClosed) {
			return nil
		}
		return fmt.Errorf("sender: recording the outcome of %s to %s: %w", it.Ref, it.Recipient, err)
	}
	return nil
}

// record hands evs to the sink, retrying (1 s, doubling to 30 s) until it
// takes them or ctx is done. Each try gets 30 s, even during shutdown:
// the relay may have accepted the message already.
func (s *Sender) record(ctx context.Context, evs []metrics.Event) error {
	delay := s.recordRetry
	for {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := s.sink.Record(rctx, evs)
		cancel()
		if err == nil {
			return nil
		}
		s.stats.recordErrors.Add(1)
		s.log.Error("sender: recording events", "err", err, "ref", evs[0].SourceRef, "kind", evs[0].Kind)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// backoff is the wait after the attempts-th temporary failure: FirstRetry
// doubled attempts-1 times, at most MaxRetry, ±10%.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.firstRetry
	for i := 1; i < attempts && d < s.maxRetry; i++ {
		d *= 2
	}
	d = min(d, s.maxRetry)
	return time.Duration(float64(d) * (0.9 + 0.2*s.rand()))
}

// event is an event about it with the fields every kind has. Its id is
// derived from the item's Ref and Message-ID, the attempt and the kind, so
// that recording it again after a crash gives the same event.
func (s *Sender) event(it *Item, kind metrics.Kind, attempt int, now time.Time) metrics.Event {
	ref := ""
	if !it.Ref.IsZero() {
		ref = it.Ref.String()
	}
	return metrics.Event{
		EventID:      metrics.DerivedID(EventSource+":"+ref+":"+it.MessageID+":"+strconv.Itoa(attempt), it.Recipient, kind),
		Time:         now.UTC(),
		Kind:         kind,
		Source:       EventSource,
		SourceRef:    ref,
		Account:      it.Account,
		SenderDomain: it.SenderDomain,
		SendingIP:    it.SendingIP,
		Campaign:     it.Campaign,
		Category:     it.Category,
		MessageID:    it.MessageID,
		Recipient:    it.Recipient,
	}
}

// replyEvent is a bounced or deferred event for the relay's reply,
// classified by dsn.ClassifyReply with the command it answered.
func (s *Sender) replyEvent(it *Item, kind metrics.Kind, attempt int, now time.Time, res DeliveryResult) metrics.Event {
	ev := s.event(it, kind, attempt, now)
	reason, hard := dsn.ClassifyReply(res.Code, res.Enhanced, res.Text, res.Phase)
	if res.Code == 0 && res.Outcome == Temporary {
		reason = dsn.NetworkError // no reply at all: the connection failed
	}
	ev.Reason = string(reason)
	ev.BounceType = "soft"
	if hard {
		ev.BounceType = "hard"
	}
	ev.Status = res.Enhanced
	ev.ReplyCode = uint16(res.Code)
	ev.Diagnostic = boundDiagnostic(replyText(res))
	ev.RemoteMTA = s.pool.RemoteMTA()
	return ev
}

// replyText is the reply as the relay gave it ("451 4.3.0 text"), or the
// error when there was none.
func replyText(res DeliveryResult) string {
	switch {
	case res.Code != 0 && res.Enhanced != "":
		return fmt.Sprintf("%d %s %s", res.Code, res.Enhanced, res.Text)
	case res.Code != 0:
		return fmt.Sprintf("%d %s", res.Code, res.Text)
	}
	return res.Text
}

// describe is replyText with the phase, for Item.LastError.
func describe(res DeliveryResult) string {
	t := replyText(res)
	if res.Phase != "" {
		t += " (in reply to " + string(res.Phase) + ")"
	}
	return t
}

// bound keeps a diagnostic within the event's 2048-byte limit
// (docs/events.md), cutting at a rune boundary.
func boundDiagnostic(s string) string {
	const limit = 2048
	if len(s) <= limit {
		return s
	}
	i := limit
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}
