package sender

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"repute/dsn"
	"repute/metrics"
)

// fakeClock is the sender's clock in tests: time moves only by Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Until(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{t, ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// memSink is an EventSink in memory; fail makes Record fail that many
// times; block makes it wait until released.
type memSink struct {
	mu     sync.Mutex
	events []metrics.Event
	calls  int
	fail   int
	block  func(evs []metrics.Event) chan struct{}
}

func (m *memSink) Record(ctx context.Context, evs []metrics.Event) error {
	m.mu.Lock()
	m.calls++
	var wait chan struct{}
	if m.block != nil {
		wait = m.block(evs)
	}
	m.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return errors.New("store down")
	}
	m.events = append(m.events, evs...)
	return nil
}

func (m *memSink) all() []metrics.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]metrics.Event(nil), m.events...)
}

func (m *memSink) kinds() string {
	var ks []string
	for _, e := range m.all() {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, ",")
}

// fakePacer refuses every slot before open, recording what it was asked.
type fakePacer struct {
	mu    sync.Mutex
	clock *fakeClock
	open  time.Time
	takes []PaceKey
	done  []bool
}

func (p *fakePacer) Take(k PaceKey, now time.Time) (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.takes = append(p.takes, k)
	if now.Before(p.open) {
		return false, p.open
	}
	return true, time.Time{}
}

func (p *fakePacer) Done(k PaceKey, sent bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = append(p.done, sent)
}

type senderHarness struct {
	s     *Sender
	q     *Queue
	sink  *memSink
	clock *fakeClock
	relay *testRelay
	stop  func() error
}

func startSender(t *testing.T, relay *testRelay, dir string, mod func(*Options)) *senderHarness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	q, _ := openTestQueue(t, dir)
	h := &senderHarness{q: q, sink: &memSink{}, clock: &fakeClock{now: t0}, relay: relay}
	opts := Options{
		Queue:  q,
		Relay:  Relay{Addr: relay.addr, TLS: TLSNone, Connections: 2},
		Events: h.sink,
		Now:    h.clock.Now,
		Until:  h.clock.Until,
		Rand:   func() float64 { return 0.5 }, // no jitter
		ISP: func(d string) string {
			if d == "x.example" {
				return "xmail"
			}
			return ""
		},
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.recordRetry = time.Millisecond
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		h.stop()
		q.Close()
	})
	return h
}

// waitFor polls cond (real time, up to 10 s): the workers run on their own
// goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *senderHarness) waitEvents(t *testing.T, n int) []metrics.Event {
	t.Helper()
	waitFor(t, strconv.Itoa(n)+" events", func() bool { return len(h.sink.all()) >= n })
	return h.sink.all()
}

func wantEventID(it *Item, kind metrics.Kind, attempt int) string {
	return metrics.DerivedID("sender:"+it.Ref.String()+":"+it.MessageID+":"+strconv.Itoa(attempt), it.Recipient, kind)
}

func TestSenderSent(t *testing.T) {
	for _, final := range []bool{false, true} {
		t.Run("relay_is_final="+strconv.FormatBool(final), func(t *testing.T) {
			r := startRelay(t, "127.0.0.1:0", nil)
			h := startSender(t, r, "", func(o *Options) { o.Relay.RelayIsFinal = final })
			// The workers are idle; Enqueue wakes them (the clock never
			// moves in this test).
			items := []*Item{testItem(1), testItem(2), testItem(3)}
			if err := h.s.Enqueue(items); err != nil {
				t.Fatal(err)
			}
			per := 1
			if final {
				per = 2
			}
			evs := h.waitEvents(t, 3*per)
			waitFor(t, "the queue to empty", func() bool { return h.q.Len() == 0 })
			byKey := map[string]metrics.Event{}
			for _, e := range evs {
				byKey[e.Recipient+" "+string(e.Kind)] = e
			}
			for _, it := range items {
				e, ok := byKey[it.Recipient+" sent"]
				if !ok {
					t.Fatalf("no sent event for %s in %+v", it.Recipient, evs)
				}
				want := metrics.Event{
					EventID: wantEventID(it, metrics.KindSent, 1), Time: t0, Kind: metrics.KindSent,
					Source: "sender", SourceRef: it.Ref.String(), Account: "acme",
					SenderDomain: "news.acme.example", SendingIP: "pool-a", Campaign: "winter", Category: "marketing",
					MessageID: it.MessageID, Recipient: it.Recipient, RemoteMTA: "127.0.0.1",
				}
				if e != want {
					t.Errorf("sent event\n got %+v\nwant %+v", e, want)
				}
				d, ok := byKey[it.Recipient+" delivered"]
				if ok != final {
					t.Errorf("delivered event present=%v, want %v", ok, final)
				}
				if ok && (d.EventID != wantEventID(it, metrics.KindDelivered, 1) || d.SourceRef != it.Ref.String()) {
					t.Errorf("delivered event %+v", d)
				}
			}
			if n := len(evs); n != 3*per {
				t.Errorf("%d events, want %d", n, 3*per)
			}
			if got := r.received(); len(got) != 3 {
				t.Errorf("relay received %d, want 3", len(got))
			}
			if b, _ := filepath.Glob(filepath.Join(h.q.dir, "b-*")); len(b) != 0 {
				t.Errorf("batch files left: %v", b)
			}
			if st := h.s.Stats(); st.Sent != 3 || st.Queued != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestSender4xxThen2xx(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) {
		r.onData = func(n int, _ *session) error {
			if n == 0 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "local error, try again"}
			}
			return nil
		}
	})
	h := startSender(t, r, "", nil)
	it := testItem(7)
	h.s.Enqueue([]*Item{it})
	evs := h.waitEvents(t, 1)
	d := evs[0]
	if d.Kind != metrics.KindDeferred || d.ReplyCode != 451 || d.Status != "4.3.0" || d.Diagnostic != "451 4.3.0 local error, try again" ||
		d.Reason == "" || d.BounceType != "" || d.EventID != wantEventID(it, metrics.KindDeferred, 1) || d.RemoteMTA != "127.0.0.1" {
		t.Errorf("deferred event %+v", d)
	}
	waitFor(t, "the retry to be scheduled", func() bool { return h.s.Summary().Retrying == 1 })
	s := h.s.Summary()
	if g := s.Groups[0]; !g.NextAttempt.Equal(t0.Add(DefaultFirstRetry)) || g.Provider != "xmail" {
		t.Errorf("retry group %+v, want next attempt at t0+15m, provider xmail", g)
	}
	h.clock.Advance(DefaultFirstRetry - time.Second)
	if s := h.s.Summary(); s.Ready != 0 || len(r.received()) != 0 {
		t.Errorf("before the backoff: summary %+v, relay got %d", s, len(r.received()))
	}
	h.clock.Advance(time.Second)
	evs = h.waitEvents(t, 2)
	if e := evs[1]; e.Kind != metrics.KindSent || !e.Time.Equal(t0.Add(DefaultFirstRetry)) || e.EventID != wantEventID(it, metrics.KindSent, 2) {
		t.Errorf("after the retry: %+v, want sent at t0+15m", e)
	}
	if got := r.received(); len(got) != 1 || string(got[0].Data) != string(it.Data) {
		t.Errorf("relay received %d messages", len(got))
	}
}

func TestSenderBounces(t *testing.T) {
	tests := []struct {
		name       string
		relay      func(*testRelay)
		reason     string
		notReason  string
		bounceType string
		status     string
		code       uint16
	}{
		{"rcpt 550 5.1.1 user unknown", func(r *testRelay) {
			r.onRcpt = func(int, string) error {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
			}
		}, string(dsn.UserUnknown), "", "hard", "5.1.1", 550},
		{"data 550 5.7.1 policy", func(r *testRelay) {
			r.onData = func(int, *session) error {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused by policy"}
			}
		}, "", string(dsn.UserUnknown), "soft", "5.7.1", 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, "127.0.0.1:0", tt.relay)
			p := &fakePacer{}
			h := startSender(t, r, "", func(o *Options) { o.Pacer = p })
			it := testItem(1)
			h.s.Enqueue([]*Item{it})
			e := h.waitEvents(t, 1)[0]
			if e.Kind != metrics.KindBounced || e.BounceType != tt.bounceType || e.Status != tt.status || e.ReplyCode != tt.code ||
				e.RemoteMTA != "127.0.0.1" || e.SourceRef != it.Ref.String() || !strings.HasPrefix(e.Diagnostic, "550 "+tt.status) {
				t.Errorf("bounced event %+v", e)
			}
			if tt.reason != "" && e.Reason != tt.reason {
				t.Errorf("reason %q, want %q", e.Reason, tt.reason)
			}
			if tt.notReason != "" && (e.Reason == tt.notReason || e.Reason == "") {
				t.Errorf("reason %q, want a policy reason", e.Reason)
			}
			waitFor(t, "the queue to empty", func() bool { return h.q.Len() == 0 })
			p.mu.Lock()
			defer p.mu.Unlock()
			wantSent := tt.status == "5.7.1" // refused after the content went
			if len(p.done) != 1 || p.done[0] != wantSent {
				t.Errorf("pacer Done calls %v, want [%v]", p.done, wantSent)
			}
		})
	}
}

func TestSenderDropMidData(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) {
		r.onData = func(n int, s *session) error {
			if n == 0 {
				s.c.Conn().Close()
				return errors.New("dropped")
			}
			return nil
		}
	})
	h := startSender(t, r, "", nil)
	it := testItem(3)
	h.s.Enqueue([]*Item{it})
	d := h.waitEvents(t, 1)[0]
	if d.Kind != metrics.KindDeferred || d.Reason != string(dsn.NetworkError) || d.ReplyCode != 0 {
		t.Errorf("deferred event %+v, want networkerror", d)
	}
	waitFor(t, "the retry", func() bool { return h.s.Summary().Retrying == 1 })
	h.clock.Advance(DefaultFirstRetry)
	if e := h.waitEvents(t, 2)[1]; e.Kind != metrics.KindSent {
		t.Errorf("after the retry: %+v", e)
	}
	if got := r.received(); len(got) != 1 || string(got[0].Data) != string(it.Data) {
		t.Errorf("relay got %d messages", len(got))
	}
}

func TestSenderRelayRestart(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	h := startSender(t, r, "", func(o *Options) { o.Relay.Connections = 1 })
	h.s.Enqueue([]*Item{testItem(1)})
	h.waitEvents(t, 1)
	r.restart(t)
	h.s.Enqueue([]*Item{testItem(2), testItem(3)})
	evs := h.waitEvents(t, 3)
	if k := h.sink.kinds(); k != "sent,sent,sent" {
		t.Errorf("events %s, want three sent (no deferral across the restart)", k)
	}
	_ = evs
	if n := len(r.received()); n != 3 {
		t.Errorf("relay got %d", n)
	}
}

func TestSenderExpires(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) {
		r.onRcpt = func(int, string) error {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
		}
	})
	h := startSender(t, r, "", func(o *Options) { o.RetryFor = time.Hour })
	it := testItem(1)
	h.s.Enqueue([]*Item{it})
	// Attempts at 0, 15 m and 45 m (15 + 30); the next would be at 1 h 45,
	// past RetryFor: then it is given up.
	for i, at := range []time.Duration{0, 15 * time.Minute, 45 * time.Minute} {
		h.clock.Advance(at - h.clock.Now().Sub(t0))
		h.waitEvents(t, i+1)
		waitFor(t, "the retry", func() bool { return h.s.Summary().Retrying == 1 })
	}
	h.clock.Advance(time.Hour)
	evs := h.waitEvents(t, 4)
	if k := h.sink.kinds(); k != "deferred,deferred,deferred,bounced" {
		t.Fatalf("events %s", k)
	}
	b := evs[3]
	if b.Reason != string(dsn.Expired) || b.BounceType != "soft" || b.Status != "4.4.7" || !strings.Contains(b.Diagnostic, "450 4.2.1 mailbox busy") {
		t.Errorf("expired event %+v", b)
	}
	waitFor(t, "the queue to empty", func() bool { return h.q.Len() == 0 })
	if st := h.s.Stats(); st.Expired != 1 || st.Deferred != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestSenderPacing(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	p := &fakePacer{open: t0.Add(10 * time.Minute)}
	h := startSender(t, r, "", func(o *Options) { o.Pacer = p })
	h.s.Enqueue([]*Item{testItem(1), testItem(2)})
	waitFor(t, "both paced", func() bool { return h.s.Summary().Paced == 2 })
	if n := len(r.received()); n != 0 {
		t.Fatalf("relay got %d messages before the pacer's time", n)
	}
	h.clock.Advance(10*time.Minute - time.Second)
	if s := h.s.Summary(); s.Paced != 2 || len(r.received()) != 0 {
		t.Fatalf("a second before the slot: %+v, relay got %d", s, len(r.received()))
	}
	h.clock.Advance(time.Second)
	h.waitEvents(t, 2)
	p.mu.Lock()
	defer p.mu.Unlock()
	want := PaceKey{SenderDomain: "news.acme.example", SendingIP: "pool-a", Provider: "xmail"}
	for _, k := range p.takes {
		if k != want {
			t.Errorf("Take(%+v), want %+v", k, want)
		}
	}
	if len(p.done) != 2 || !p.done[0] || !p.done[1] {
		t.Errorf("Done calls %v, want two sent", p.done)
	}
	if st := h.s.Stats(); st.Paced < 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestSenderRecordRetried(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", nil)
	h := startSender(t, r, "", nil)
	h.sink.mu.Lock()
	h.sink.fail = 2
	h.sink.mu.Unlock()
	h.s.Enqueue([]*Item{testItem(1)})
	h.waitEvents(t, 1)
	waitFor(t, "the queue to empty", func() bool { return h.q.Len() == 0 })
	if st := h.s.Stats(); st.RecordErrors != 2 || st.Sent != 1 {
		t.Errorf("stats %+v, want 2 record errors, 1 sent", st)
	}
	if n := len(r.received()); n != 1 {
		t.Errorf("relay got %d, want 1 (a failed Record does not resend)", n)
	}
}

// TestSenderCrashReopen: a sender stops dead (its event sink hangs from the
// 6th message on, the queue is never closed); a second one opens the same
// directory and delivers the rest. Every message arrives; only those in
// flight at the crash — one being delivered and Pipeline being recorded —
// arrive twice, and their sent events have the same ids both times.
func TestSenderCrashReopen(t *testing.T) {
	for _, tt := range []struct {
		pipeline int
		dupes    int // Connections (1) + Pipeline
	}{
		{-1, 1},
		{4, 5},
	} {
		t.Run("pipeline="+strconv.Itoa(tt.pipeline), func(t *testing.T) {
			r := startRelay(t, "127.0.0.1:0", nil)
			dir := t.TempDir()
			hang := make(chan struct{})
			defer close(hang)
			h1 := startSender(t, r, dir, func(o *Options) {
				o.Connections, o.Relay.Connections, o.Pipeline = 1, 1, tt.pipeline
			})
			var items []*Item
			blocked := map[string]bool{}
			for i := range 20 {
				items = append(items, testItem(i))
				if i >= 5 {
					blocked[items[i].Recipient] = true
				}
			}
			h1.sink.mu.Lock()
			h1.sink.block = func(evs []metrics.Event) chan struct{} {
				if blocked[evs[0].Recipient] {
					return hang
				}
				return nil
			}
			h1.sink.mu.Unlock()
			h1.s.Enqueue(items)
			waitFor(t, "5 outcomes durable", func() bool { return h1.q.Len() == 15 })
			waitFor(t, "the messages in flight at the relay", func() bool { return len(r.received()) == 5+tt.dupes })

			// The "restart": the same directory opened again while the
			// first sender is frozen.
			q2, _ := openTestQueue(t, dir)
			if n := q2.Len(); n != 15 {
				t.Fatalf("after the crash %d items queued, want 15", n)
			}
			q2.Close()
			h2 := startSender(t, r, dir, nil)
			h2.waitEvents(t, 15)
			waitFor(t, "the queue to empty", func() bool { return h2.q.Len() == 0 })

			got := map[string]int{}
			for _, m := range r.received() {
				got[m.To[0]]++
			}
			for i, it := range items {
				want := 1
				if i >= 5 && i < 5+tt.dupes {
					want = 2 // in flight at the crash: accepted, not yet recorded
				}
				if got[it.Recipient] != want {
					t.Errorf("%s received %d times, want %d", it.Recipient, got[it.Recipient], want)
				}
			}
			ids := map[string]bool{}
			for _, e := range append(h1.sink.all(), h2.sink.all()...) {
				ids[e.EventID] = true
			}
			if len(ids) != 20 {
				t.Errorf("%d distinct sent event ids, want 20", len(ids))
			}
			for i := 5; i < 5+tt.dupes; i++ {
				if !ids[wantEventID(items[i], metrics.KindSent, 1)] {
					t.Errorf("the re-sent message %d's event has another id", i)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	s := &Sender{firstRetry: DefaultFirstRetry, maxRetry: DefaultMaxRetry}
	for _, tt := range []struct {
		attempts int
		rand     float64
		want     time.Duration
	}{
		{1, 0.5, 15 * time.Minute},
		{2, 0.5, 30 * time.Minute},
		{3, 0.5, time.Hour},
		{4, 0.5, 2 * time.Hour},
		{5, 0.5, 4 * time.Hour},
		{9, 0.5, 4 * time.Hour},
		{200, 0.5, 4 * time.Hour},
		{1, 0, 13*time.Minute + 30*time.Second},
		{1, 1, 16*time.Minute + 30*time.Second},
		{6, 0, 216 * time.Minute},
	} {
		s.rand = func() float64 { return tt.rand }
		if got := s.backoff(tt.attempts); got != tt.want {
			t.Errorf("backoff(%d) with rand %v = %v, want %v", tt.attempts, tt.rand, got, tt.want)
		}
	}
}

func TestNewChecks(t *testing.T) {
	q, _ := openTestQueue(t, t.TempDir())
	defer q.Close()
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"no queue", Options{Relay: Relay{Addr: "127.0.0.1:25", TLS: TLSNone}, Events: &memSink{}}},
		{"no sink", Options{Queue: q, Relay: Relay{Addr: "127.0.0.1:25", TLS: TLSNone}}},
		{"tls none to a remote relay", Options{Queue: q, Events: &memSink{}, Relay: Relay{Addr: "smtp.example.net:25", TLS: TLSNone}}},
	} {
		if _, err := New(tt.opts); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

// fileSink is the child process's EventSink: JSON lines, fsynced.
type fileSink struct {
	mu sync.Mutex
	f  *os.File
}

func (s *fileSink) Record(_ context.Context, evs []metrics.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	for _, e := range evs {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
		return err
	}
	return s.f.Sync()
}

// TestSenderKill9Child is the process TestSenderKill9 kills; it does
// nothing in a normal run.
func TestSenderKill9Child(t *testing.T) {
	dir, addr := os.Getenv("REPUTE_SENDER_CHILD_DIR"), os.Getenv("REPUTE_SENDER_CHILD_RELAY")
	if dir == "" {
		t.Skip("run by TestSenderKill9")
	}
	q, err := OpenQueue(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "events"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Queue: q, Events: &fileSink{f: f}, Relay: Relay{Addr: addr, TLS: TLSNone, Connections: 4}})
	if err != nil {
		t.Fatal(err)
	}
	s.Run(context.Background()) // until killed
}

// TestSenderKill9 kills (SIGKILL) a process delivering from a queue
// mid-queue, then delivers what is left from the same directory: every
// message arrives, at most Connections+Pipeline of them twice, and every
// item has exactly one sent event id.
func TestSenderKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const n, conns = 200, 4
	r := startRelay(t, "127.0.0.1:0", func(r *testRelay) {
		r.onData = func(int, *session) error { time.Sleep(time.Millisecond); return nil }
	})
	dir := t.TempDir()
	q, _ := openTestQueue(t, filepath.Join(dir, "queue"))
	var items []*Item
	for i := range n {
		items = append(items, testItem(i))
	}
	if err := q.Enqueue(items); err != nil {
		t.Fatal(err)
	}
	q.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestSenderKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REPUTE_SENDER_CHILD_DIR="+dir, "REPUTE_SENDER_CHILD_RELAY="+r.addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the child to deliver a quarter", func() bool { return len(r.received()) >= n/4 })
	cmd.Process.Kill()
	cmd.Wait()
	sentBefore := len(r.received())
	if sentBefore >= n {
		t.Fatalf("the child delivered everything (%d) before the kill", sentBefore)
	}

	h := startSender(t, r, filepath.Join(dir, "queue"), nil)
	waitFor(t, "the queue to empty", func() bool { return h.q.Len() == 0 })

	got := map[string]int{}
	for _, m := range r.received() {
		got[m.To[0]]++
	}
	dupes := 0
	for _, it := range items {
		switch c := got[it.Recipient]; {
		case c == 0:
			t.Errorf("%s never delivered", it.Recipient)
		case c > 1:
			dupes += c - 1
		}
	}
	if dupes > conns+DefaultPipeline {
		t.Errorf("%d messages sent twice, want at most %d (Connections + Pipeline)", dupes, conns+DefaultPipeline)
	}
	ids := map[string]bool{}
	data, _ := os.ReadFile(filepath.Join(dir, "events"))
	for line := range strings.SplitSeq(string(data), "\n") {
		var e metrics.Event
		if json.Unmarshal([]byte(line), &e) == nil {
			ids[e.EventID] = true
		}
	}
	for _, e := range h.sink.all() {
		ids[e.EventID] = true
	}
	for _, it := range items {
		if !ids[wantEventID(it, metrics.KindSent, 1)] {
			t.Errorf("no sent event for %s", it.Recipient)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct event ids, want %d", len(ids), n)
	}
	t.Logf("killed after %d messages at the relay; %d sent twice", sentBefore, dupes)
}

func TestSenderRelayDown(t *testing.T) {
	// A port nobody listens on, for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := startSender(t, &testRelay{addr: addr}, "", nil)
	h.s.Enqueue([]*Item{testItem(1), testItem(2), testItem(3)})
	waitFor(t, "the items held", func() bool { return h.s.Summary().RelayDown == 3 })
	if st := h.s.Stats(); st.RelayDown != 1 {
		// One failure holds every worker: the other items are not tried.
		t.Errorf("stats %+v, want one relay failure", st)
	}
	if evs := h.sink.all(); len(evs) != 0 {
		t.Errorf("events while the relay is down: %+v, want none (not the message's fault)", evs)
	}
	if g := h.s.Summary().Groups[0]; !g.NextAttempt.Equal(t0.Add(relayRetryFirst)) {
		t.Errorf("held until %v, want t0+%v", g.NextAttempt, relayRetryFirst)
	}
	// Still down at the next try: the hold doubles.
	h.clock.Advance(relayRetryFirst)
	waitFor(t, "the second failure", func() bool { return h.s.Stats().RelayDown == 2 })
	waitFor(t, "the items held again", func() bool { return h.s.Summary().RelayDown == 3 })
	if g := h.s.Summary().Groups[0]; !g.NextAttempt.Equal(t0.Add(3 * relayRetryFirst)) {
		t.Errorf("held until %v, want t0+%v", g.NextAttempt, 3*relayRetryFirst)
	}
	// The relay comes up; at the next try everything goes.
	r := startRelay(t, addr, nil)
	h.clock.Advance(2 * relayRetryFirst)
	h.waitEvents(t, 3)
	if k := h.sink.kinds(); k != "sent,sent,sent" {
		t.Errorf("events %s, want three sent", k)
	}
	if n := len(r.received()); n != 3 {
		t.Errorf("relay got %d", n)
	}
}
