package imap

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"repute/internal/testenv"
	"repute/metrics"
)

// dovecotOptions are Options for the test Dovecot watching folder, filing
// into folder_processed, folder_ignored and folder_quarantine.
func dovecotOptions(t testing.TB, server testenv.IMAPServer, folder string) Options {
	return Options{Name: "fb", Addr: server.Addr, TLS: TLSNone, User: server.User, Password: server.Password,
		Folders: []string{folder}, Processed: folder + "_processed", Ignored: folder + "_ignored",
		Quarantine: folder + "_quarantine", PollInterval: time.Second, LeaseTTL: 3 * time.Second,
		RetryMin: 20 * time.Millisecond, RetryMax: time.Second, Logger: testLogger(t)}
}

func destinations(o Options) []string { return []string{o.Processed, o.Ignored, o.Quarantine} }

// TestDovecotEndToEnd files a bounce, a complaint, a message that is
// neither, a truncated bounce, garbage and an oversize bounce, and checks
// where each went, what was submitted, and that nothing was lost or
// marked \Seen.
func TestDovecotEndToEnd(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := loadCorpusMsgs(t)
	oversize := append(crlf(msgs.bounce), bytes.Repeat([]byte("padding line of an oversize bounce\r\n"), 4000)...)
	type want struct {
		dest   string
		events int
	}
	o := dovecotOptions(t, server, folder)
	o.MaxMessageBytes = 64 << 10
	cases := []struct {
		name string
		msg  []byte
		want want
	}{
		{"bounce", crlf(msgs.bounce), want{o.Processed, 1}},
		{"complaint", crlf(msgs.complaint), want{o.Processed, 1}},
		{"not a bounce", crlf(msgs.notBounce), want{o.Ignored, 0}},
		{"truncated", crlf(msgs.truncated), want{o.Quarantine, 0}},
		// Not a header field first: ingest.ErrNotMessage, unreadable.
		{"garbage", []byte("\x01\x02\xfe\xff not mail at all\r\n"), want{o.Quarantine, 0}},
		{"oversize", oversize, want{o.Quarantine, 0}},
	}
	uids := map[imapv2.UID]int{}
	var uidValidity uint32
	for i, tc := range cases {
		a := appendMsg(t, c, folder, tc.msg)
		uids[a.UID] = i
		uidValidity = a.UIDValidity
	}

	rec := newRecorder()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	waitFor(t, "the watched folder empty", 20*time.Second, func() bool {
		return countOr0(c, folder) == 0 && countOr0(c, o.Processed)+countOr0(c, o.Ignored)+countOr0(c, o.Quarantine) == len(cases)
	})
	stop()

	// Each message is in exactly one folder, the one its kind says, intact
	// and not \Seen.
	found := map[int]string{}
	for _, dest := range destinations(o) {
		for _, m := range folderMsgs(t, c, dest) {
			body := m.FindBodySection(&imapv2.FetchItemBodySection{Peek: true})
			i := slices.IndexFunc(cases, func(tc struct {
				name string
				msg  []byte
				want want
			}) bool {
				return bytes.Equal(tc.msg, body)
			})
			if i < 0 {
				t.Errorf("%s: a message that was not appended (%d bytes)", dest, len(body))
				continue
			}
			if prev, dup := found[i]; dup {
				t.Errorf("%s: in %s and %s", cases[i].name, prev, dest)
			}
			found[i] = dest
			if slices.Contains(m.Flags, imapv2.FlagSeen) {
				t.Errorf("%s: \\Seen set in %s", cases[i].name, dest)
			}
			if slices.Contains(m.Flags, imapv2.FlagDeleted) {
				t.Errorf("%s: \\Deleted set in %s", cases[i].name, dest)
			}
		}
	}
	for i, tc := range cases {
		if found[i] != tc.want.dest {
			t.Errorf("%s: in %q, want %q", tc.name, found[i], tc.want.dest)
		}
	}
	if n := countOr0(c, folder); n != 0 {
		t.Errorf("watched folder: %d messages left", n)
	}

	// Events: source imap, source_ref name/folder/UIDVALIDITY/UID, each
	// evidence stored before its Submit.
	evs := rec.snapshot()
	perMsg := map[int]int{}
	for _, e := range evs {
		if e.Source != "imap" {
			t.Errorf("event %s: source %q, want imap", e.EventID, e.Source)
		}
		uv, uid := refUID(t, e.SourceRef)
		i, ok := uids[uid]
		if !ok || uv != uidValidity || e.SourceRef != fmt.Sprintf("fb/%s/%d/%d", folder, uidValidity, uid) {
			t.Errorf("event %s: source_ref %q names no appended message", e.EventID, e.SourceRef)
			continue
		}
		perMsg[i]++
		if e.EvidenceID == "" || e.Account != "acme" {
			t.Errorf("event %s: evidence_id %q, account %q", e.EventID, e.EvidenceID, e.Account)
		}
	}
	for i, tc := range cases {
		if perMsg[i] != tc.want.events {
			t.Errorf("%s: %d events, want %d", tc.name, perMsg[i], tc.want.events)
		}
	}
	if len(rec.violations) > 0 {
		t.Errorf("evidence after Submit: %v", rec.violations)
	}
	for outcome, want := range map[string]float64{OutcomeProcessed: 2, OutcomeIgnored: 1, OutcomeQuarantined: 3} {
		if got := testutil.ToFloat64(r.m.messages.WithLabelValues(outcome)); got != want {
			t.Errorf("repute_imap_messages_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
}

// TestDovecotSubmitFails: while Submit fails the messages stay in the
// watched folder; once it succeeds they move.
func TestDovecotSubmitFails(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := loadCorpusMsgs(t)
	appendMsg(t, c, folder, crlf(msgs.bounce))
	appendMsg(t, c, folder, crlf(msgs.complaint))
	rec := newRecorder()
	rec.failSubmit = 4
	o := dovecotOptions(t, server, folder)
	o.RetryMin, o.RetryMax = 100*time.Millisecond, 100*time.Millisecond
	var moved bool
	var mu sync.Mutex
	rec.onSubmit = func([]metrics.Event) {
		mu.Lock()
		defer mu.Unlock()
		moved = countOr0(server.Dial(t, nil), o.Processed) > 0
	}
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	waitFor(t, "two failed Submits", 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.submits >= 2
	})
	if n := countOr0(c, folder); n != 2 {
		t.Fatalf("watched folder: %d messages while Submit fails, want 2", n)
	}
	// A MOVE copies, then expunges: wait for both halves.
	waitFor(t, "the messages moved", 20*time.Second, func() bool { return countOr0(c, o.Processed) == 2 && countOr0(c, folder) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if moved {
		t.Error("a message was moved before its Submit succeeded")
	}
	if n := countOr0(c, folder); n != 0 {
		t.Errorf("watched folder: %d left", n)
	}
	if got := testutil.ToFloat64(r.m.errors.WithLabelValues(ErrKindSubmit)); got != 4 {
		t.Errorf("submit errors %v, want 4", got)
	}
}

// TestDovecotIdle: a message appended while the reader is in IDLE is read
// promptly, long before the poll interval.
func TestDovecotIdle(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	o := dovecotOptions(t, server, folder)
	o.PollInterval = 10 * time.Minute
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	waitFor(t, "the destination folders", 10*time.Second, func() bool { return countOr0(c, o.Quarantine) == 0 && folderExists(c, o.Quarantine) })
	time.Sleep(300 * time.Millisecond) // into IDLE
	for i, m := range [][]byte{loadCorpusMsgs(t).bounce, loadCorpusMsgs(t).complaint} {
		start := time.Now()
		appendMsg(t, c, folder, crlf(m))
		waitFor(t, "the appended message processed", 10*time.Second, func() bool { return countOr0(c, o.Processed) == i+1 })
		t.Logf("message %d read and moved %v after its APPEND", i+1, time.Since(start).Round(time.Millisecond))
	}
}

func folderExists(c *imapclient.Client, folder string) bool {
	list, err := c.List("", folder, nil).Collect()
	return err == nil && len(list) == 1
}

// TestDovecotRestart stops the reader mid-way and runs it again: no
// message moved by the first run is submitted again, the final events are
// exactly the expected ones, and every message is in one folder.
func TestDovecotRestart(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	corpus := allCorpus(t)[:60]
	for _, m := range corpus {
		appendMsg(t, c, folder, crlf(m))
	}
	// The expected events: the corpus converted once, in memory.
	want := map[string]bool{}
	p := newProcessor(t)
	for _, m := range corpus {
		rep, _ := p.Process(context.Background(), crlf(m), testSource())
		for _, e := range rep.Events {
			want[e.EventID] = true
		}
	}

	o := dovecotOptions(t, server, folder)
	o.BatchSize = 7
	rec1 := newRecorder()
	var once sync.Once
	stopped := make(chan struct{})
	rec1.onSubmit = func([]metrics.Event) {
		rec1.mu.Lock()
		n := rec1.submits
		rec1.mu.Unlock()
		if n == 3 {
			once.Do(func() { close(stopped) })
		}
	}
	r1, err := New(o, newProcessor(t), rec1, rec1, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	stop1 := run(t, r1)
	<-stopped
	stop1() // the third batch is submitted and may or may not be moved
	left := map[imapv2.UID]bool{}
	for _, m := range folderMsgs(t, c, folder) {
		left[m.UID] = true
	}
	if len(left) == 0 || len(left) == len(corpus) {
		t.Fatalf("%d messages left after the first run: want a run stopped mid-way", len(left))
	}

	rec2 := newRecorder()
	r2, err := New(o, newProcessor(t), rec2, rec2, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	stop2 := run(t, r2)
	waitFor(t, "the watched folder empty", 20*time.Second, func() bool { return countOr0(c, folder) == 0 })
	stop2()
	for _, e := range rec2.snapshot() {
		if _, uid := refUID(t, e.SourceRef); !left[uid] {
			t.Errorf("event %s of UID %d submitted again after the message was moved", e.EventID, uid)
		}
	}
	got := map[string]bool{}
	for _, e := range append(rec1.snapshot(), rec2.snapshot()...) {
		got[e.EventID] = true
	}
	if len(got) != len(want) {
		t.Errorf("%d distinct events, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("event %s never submitted", id)
		}
	}
	total := 0
	for _, dest := range destinations(o) {
		total += countOr0(c, dest)
	}
	if total != len(corpus) {
		t.Errorf("%d messages in the destination folders, want %d", total, len(corpus))
	}
}

// TestDovecotFolderDeleted deletes one of two watched folders under the
// running reader: the error is counted, the other folder still served.
func TestDovecotFolderDeleted(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	other := folder + "_other"
	for _, f := range []string{folder, other} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	o := dovecotOptions(t, server, folder)
	o.Folders = []string{folder, other}
	o.PollInterval = 200 * time.Millisecond
	rec := newRecorder()
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	msgs := loadCorpusMsgs(t)
	appendMsg(t, c, folder, crlf(msgs.bounce))
	waitFor(t, "the first message", 10*time.Second, func() bool { return countOr0(c, o.Processed) == 1 })
	if err := c.Delete(folder).Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing folder counted", 10*time.Second, func() bool {
		return testutil.ToFloat64(r.m.errors.WithLabelValues(ErrKindFolder)) > 0
	})
	appendMsg(t, c, other, crlf(msgs.complaint))
	waitFor(t, "the other folder served", 10*time.Second, func() bool { return countOr0(c, o.Processed) == 2 })
	// Back again: served again.
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, folder, crlf(msgs.notBounce))
	waitFor(t, "the re-created folder served", 10*time.Second, func() bool { return countOr0(c, o.Ignored) == 1 })
}
