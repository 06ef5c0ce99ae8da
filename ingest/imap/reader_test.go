package imap

import (
	"context"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestValidate(t *testing.T) {
	base := Options{Name: "fb", Addr: "127.0.0.1:143", User: "u", TLS: TLSNone}
	for _, addr := range []string{"127.0.0.1:143", "127.8.9.1:143", "[::1]:143", "localhost:143", "LOCALHOST.:143"} {
		o := base
		o.Addr = addr
		if err := o.Validate(); err != nil {
			t.Errorf("tls none to %s: %v, want accepted (loopback)", addr, err)
		}
	}
	for _, addr := range []string{"10.0.0.1:143", "imap.example.com:143", "[2001:db8::1]:143", "0.0.0.0:143", "localhost.example.com:143"} {
		o := base
		o.Addr = addr
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("tls none to %s: %v, want refused naming loopback", addr, err)
		}
		o.TLS = TLSStartTLS
		if err := o.Validate(); err != nil {
			t.Errorf("tls starttls to %s: %v", addr, err)
		}
	}
	bad := []Options{
		{Addr: "127.0.0.1:143", User: "u"},                         // no name
		{Name: "a/b", Addr: "127.0.0.1:143", User: "u"},            // slash
		{Name: "fb", Addr: "127.0.0.1", User: "u"},                 // no port
		{Name: "fb", Addr: "127.0.0.1:143"},                        // no user
		{Name: "fb", Addr: "127.0.0.1:143", User: "u", TLS: "yes"}, // mode
		{Name: "fb", Addr: "127.0.0.1:143", User: "u", Processed: "X", Ignored: "X"},
		{Name: "fb", Addr: "127.0.0.1:143", User: "u", Folders: []string{"INBOX", "Processed"}},
		{Name: "fb", Addr: "127.0.0.1:143", User: "u", Folders: []string{"INBOX", "INBOX"}},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
	}
	if _, err := New(Options{Name: "fb", Addr: "192.0.2.1:143", User: "u", TLS: TLSNone}, newProcessor(t), newRecorder(), newRecorder(), &MemoryLeases{}); err == nil {
		t.Error("New with tls none to 192.0.2.1: nil error")
	}
}

func TestMemoryLeases(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &MemoryLeases{Now: func() time.Time { return now }}
	ctx := context.Background()
	if ok, _ := l.TryLease(ctx, "m", "a", 30*time.Second); !ok {
		t.Fatal("a cannot take a free lease")
	}
	if ok, _ := l.TryLease(ctx, "m", "b", 30*time.Second); ok {
		t.Fatal("b took a's lease")
	}
	if ok, _ := l.TryLease(ctx, "other", "b", 30*time.Second); !ok {
		t.Fatal("b cannot take another lease")
	}
	now = now.Add(20 * time.Second)
	if ok, _ := l.TryLease(ctx, "m", "a", 30*time.Second); !ok {
		t.Fatal("a cannot renew")
	}
	now = now.Add(29 * time.Second)
	if ok, _ := l.TryLease(ctx, "m", "b", 30*time.Second); ok {
		t.Fatal("b took a renewed lease")
	}
	now = now.Add(2 * time.Second)
	if ok, _ := l.TryLease(ctx, "m", "b", 30*time.Second); !ok {
		t.Fatal("b cannot take an expired lease")
	}
	l.ReleaseLease(ctx, "m", "a") // not a's: no effect
	if got := l.Holder("m"); got != "b" {
		t.Fatalf("holder %q, want b", got)
	}
	l.ReleaseLease(ctx, "m", "b")
	if ok, _ := l.TryLease(ctx, "m", "a", 30*time.Second); !ok {
		t.Fatal("a cannot take a released lease")
	}
}

// memOptions are Options for the in-memory server at addr.
func memOptions(t testing.TB, addr string) Options {
	return Options{Name: "fb", Addr: addr, TLS: TLSNone, User: "u", Password: "p",
		PollInterval: 100 * time.Millisecond, LeaseTTL: 600 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, Logger: testLogger(t)}
}

// TestMemFallbacks checks the moves without MOVE: COPY, \Deleted and UID
// EXPUNGE with UIDPLUS; COPY and \Deleted only without it, the message
// then left flagged in INBOX and not read again.
func TestMemFallbacks(t *testing.T) {
	msgs := loadCorpusMsgs(t)
	for _, tc := range []struct {
		name    string
		caps    []imapv2.Cap
		inInbox int
	}{
		{"move", []imapv2.Cap{imapv2.CapMove, imapv2.CapUIDPlus}, 0},
		{"uidplus", []imapv2.Cap{imapv2.CapUIDPlus}, 0},
		{"neither", nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := memServer(t, tc.caps...)
			c := memDial(t, addr)
			// A message of the user's flagged \Deleted in INBOX: never
			// expunged, never read.
			cmd := c.Append("INBOX", int64(len(msgs.bounce)), &imapv2.AppendOptions{Flags: []imapv2.Flag{imapv2.FlagDeleted}})
			cmd.Write(msgs.bounce)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			for _, m := range [][]byte{msgs.bounce, msgs.notBounce, msgs.truncated} {
				appendMsg(t, c, "INBOX", m)
			}
			rec := newRecorder()
			reg := prometheus.NewRegistry()
			o := memOptions(t, addr)
			o.Registerer = reg
			r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, r)
			waitFor(t, "three messages filed", 10*time.Second, func() bool {
				return countOr0(c, "Processed")+countOr0(c, "Ignored")+countOr0(c, "Quarantine") == 3
			})
			time.Sleep(300 * time.Millisecond) // a few more polls: nothing read twice
			stop()
			for f, want := range map[string]int{"Processed": 1, "Ignored": 1, "Quarantine": 1, "INBOX": 1 + tc.inInbox} {
				if n := numMessages(t, c, f); n != want {
					t.Errorf("%s: %d messages, want %d", f, n, want)
				}
			}
			if n := len(rec.snapshot()); n != 1 {
				t.Errorf("%d events submitted, want 1 (the bounce, once)", n)
			}
			if got := testutil.ToFloat64(r.m.errors.WithLabelValues(ErrKindNoExpunge)); (got > 0) != (tc.inInbox > 0) {
				t.Errorf("no_uidplus errors %v, want > 0 only without UIDPLUS", got)
			}
			if got := testutil.ToFloat64(r.m.messages.WithLabelValues(OutcomeQuarantined)); got != 1 {
				t.Errorf("quarantined %v, want 1", got)
			}
		})
	}
}

// TestMemUIDValidity re-creates the watched folder under the running
// reader: the new messages are read with the new UIDVALIDITY in their
// source_ref, as no state is kept across UIDVALIDITY.
func TestMemUIDValidity(t *testing.T) {
	msgs := loadCorpusMsgs(t)
	addr, user := memServer(t, imapv2.CapMove, imapv2.CapUIDPlus)
	c := memDial(t, addr)
	if err := user.Create("feedback", nil); err != nil {
		t.Fatal(err)
	}
	first := appendMsg(t, c, "feedback", msgs.bounce)
	rec := newRecorder()
	o := memOptions(t, addr)
	o.Folders = []string{"feedback"}
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	// QUIRK: imapmemserver says nothing to a session whose selected
	// folder is deleted; the reader notices at its next pass.
	r.idleMax = 200 * time.Millisecond
	run(t, r)
	waitFor(t, "the first bounce processed", 10*time.Second, func() bool { return len(rec.snapshot()) == 1 })
	if err := c.Delete("feedback").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("feedback", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	second := appendMsg(t, c, "feedback", msgs.complaint)
	if second.UIDValidity == first.UIDValidity {
		t.Fatalf("UIDVALIDITY unchanged (%d) by re-creating the folder", first.UIDValidity)
	}
	waitFor(t, "the complaint processed", 10*time.Second, func() bool { return len(rec.snapshot()) == 2 })
	evs := rec.snapshot()
	for i, want := range []*imapv2.AppendData{first, second} {
		uv, uid := refUID(t, evs[i].SourceRef)
		if uv != want.UIDValidity || uid != want.UID {
			t.Errorf("event %d: source_ref %s, want UIDVALIDITY %d UID %d", i, evs[i].SourceRef, want.UIDValidity, want.UID)
		}
	}
}

// TestMemLease runs two readers on one mailbox with shared leases: only
// one reads; when it stops without releasing (a crash), the other takes
// over within the TTL.
func TestMemLease(t *testing.T) {
	msgs := loadCorpusMsgs(t)
	addr, _ := memServer(t, imapv2.CapMove, imapv2.CapUIDPlus)
	c := memDial(t, addr)
	leases := &MemoryLeases{}
	crashing := &noRelease{leases}
	mk := func(name string, l Leaser) (*Reader, *recorder) {
		rec := newRecorder()
		o := memOptions(t, addr)
		o.Name = name // another configuration of the same mailbox
		o.Holder = name
		r, err := New(o, newProcessor(t), rec, rec, l)
		if err != nil {
			t.Fatal(err)
		}
		return r, rec
	}
	a, recA := mk("a", crashing)
	b, recB := mk("b", leases)
	stopA := run(t, a)
	waitFor(t, "a holding the lease", 5*time.Second, func() bool { return leases.Holder(a.lease) == "a" })
	run(t, b)
	appendMsg(t, c, "INBOX", msgs.bounce)
	waitFor(t, "a reading the bounce", 15*time.Second, func() bool { return len(recA.snapshot()) == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := len(recB.snapshot()); n != 0 {
		t.Fatalf("b read %d events while a held the lease", n)
	}
	stopA()
	crashedAt := time.Now()
	appendMsg(t, c, "INBOX", msgs.complaint)
	waitFor(t, "b taking over", 5*time.Second, func() bool { return len(recB.snapshot()) == 1 })
	took := time.Since(crashedAt)
	if took > 2*memOptions(t, addr).LeaseTTL {
		t.Errorf("b took over after %v, want within about the TTL (%v)", took, memOptions(t, addr).LeaseTTL)
	}
	t.Logf("b took over %v after a stopped", took.Round(time.Millisecond))
	if n := len(recA.snapshot()); n != 1 {
		t.Errorf("a read %d events, want 1", n)
	}
}

// noRelease is a Leaser whose releases are lost: a reader using it stops
// like a crashed process.
type noRelease struct{ Leaser }

func (noRelease) ReleaseLease(context.Context, string, string) error { return nil }

// TestMetricsShared checks that readers of several mailboxes register on
// one registry.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"a", "b", "a"} {
		o := Options{Name: name, Addr: "127.0.0.1:143", TLS: TLSNone, User: name, Registerer: reg}
		if _, err := New(o, newProcessor(t), newRecorder(), newRecorder(), &MemoryLeases{}); err != nil {
			t.Fatalf("New %s: %v", name, err)
		}
	}
}
