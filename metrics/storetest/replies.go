package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

// testReplies: a store that reads replies (metrics.ReplyReader) returns the
// reply fields and the scope of every deferred and bounced event in
// [from, to) once, however often it was appended, in (time, event id)
// order, other kinds and times left out; it stops at fn's first error and
// returns it.
func testReplies(t *testing.T, s *suite) {
	st := s.open(t)
	rr, ok := st.(metrics.ReplyReader)
	if !ok {
		t.Skipf("%T reads no replies", st)
	}
	withReply := func(e ev, code uint16, status, diag string) metrics.Event {
		x := mk(t, e)
		x.ReplyCode, x.Status, x.Diagnostic = code, status, diag
		return x
	}
	events := []metrics.Event{
		withReply(ev{id: "f2", at: time.Minute, kind: metrics.KindDeferred, ip: "192.0.2.7", rcpt: "a@yahoo.com"},
			421, "4.7.0", "[TSS04] Messages from 192.0.2.7 temporarily deferred"),
		withReply(ev{id: "f1", at: time.Minute, kind: metrics.KindDeferred, account: "beta", rcpt: "b@outlook.com"},
			451, "4.7.650", "The mail server [192.0.2.8] has been temporarily rate limited"),
		withReply(ev{id: "b1", at: 2 * time.Hour, kind: metrics.KindBounced, bounce: metrics.BounceHard},
			550, "5.1.1", "no such user"),
		mk(t, ev{id: "d1", at: 30 * time.Minute, kind: metrics.KindDelivered}),
		withReply(ev{id: "f3", at: 3 * time.Hour, kind: metrics.KindDeferred}, 421, "4.7.0", "after the range"),
		withReply(ev{id: "f0", at: -time.Second, kind: metrics.KindDeferred}, 421, "4.7.0", "before the range"),
	}
	appendOK(t, st, events)
	appendOK(t, st, events[:1]) // a repeat: read once
	var got []string
	read := func(from, to time.Time) error {
		got = nil
		return rr.Replies(ctx(t), from, to, func(r metrics.Reply) error {
			got = append(got, fmt.Sprintf("%s %s %s/%s/%s/%s %d %s %q", r.Time.Format(time.RFC3339), r.Kind, r.Account,
				r.SenderDomain, r.SendingIP, r.ISP, r.ReplyCode, r.Status, r.Diagnostic))
			return nil
		})
	}
	if err := read(base, base.Add(3*time.Hour)); err != nil {
		t.Fatalf("Replies: %v", err)
	}
	want := []string{
		`2026-11-24T10:01:00Z deferred beta/news.acme.test//microsoft 451 4.7.650 "The mail server [192.0.2.8] has been temporarily rate limited"`,
		`2026-11-24T10:01:00Z deferred acme/news.acme.test/192.0.2.7/yahoo 421 4.7.0 "[TSS04] Messages from 192.0.2.7 temporarily deferred"`,
		`2026-11-24T12:00:00Z bounced acme/news.acme.test//gmail 550 5.1.1 "no such user"`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replies\n%q\nwant\n%q", got, want)
	}
	// Bounds inside a second are instants: 10:01:00.5 leaves the two out.
	if err := read(base.Add(time.Minute+time.Second/2), base.Add(3*time.Hour)); err != nil || len(got) != 1 {
		t.Errorf("from inside a second: %q, %v; want the bounce only", got, err)
	}
	stop := errors.New("stop")
	n := 0
	err := rr.Replies(ctx(t), base, base.Add(3*time.Hour), func(metrics.Reply) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("fn's error: %v after %d calls, want it returned after 1", err, n)
	}
}
