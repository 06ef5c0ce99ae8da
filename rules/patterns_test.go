package rules

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

// fakeReplies is a metrics.ReplyReader over a slice, in time order.
type fakeReplies struct {
	replies []metrics.Reply
	err     error
	asked   [][2]time.Time
}

func (f *fakeReplies) Replies(_ context.Context, from, to time.Time, fn func(metrics.Reply) error) error {
	f.asked = append(f.asked, [2]time.Time{from, to})
	for _, r := range f.replies {
		if !r.Time.Before(from) && r.Time.Before(to) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return f.err
}

func yahooReply(at time.Time, diag string) metrics.Reply {
	return metrics.Reply{Time: at, Kind: metrics.KindDeferred, Account: "acme", SenderDomain: "a.example",
		SendingIP: "192.0.2.1", ISP: "yahoo", ReplyCode: 421, Status: "4.7.0", Diagnostic: diag}
}

// StoreResponses gives the replies a pattern matches, the others left out,
// with their scope and text; the engine reads them back over the longest
// pattern window, so a TSS04 reply pauses its scope.
func TestStoreResponses(t *testing.T) {
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	fr := &fakeReplies{replies: []metrics.Reply{
		yahooReply(at, "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume"),
		yahooReply(at.Add(time.Minute), "mailbox full"), // no pattern
	}}
	set := Defaults()
	rs, err := StoreResponses{Rules: set, Replies: fr}.Responses(context.Background(), at, at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Text() != "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume" ||
		rs[0].Scope != (Scope{Account: "acme", SenderDomain: "a.example", SendingIP: "192.0.2.1", ISP: "yahoo"}) {
		t.Fatalf("responses %+v, want the TSS04 one", rs)
	}

	e := &Engine{Rules: &RuleSet{Patterns: set.Patterns}, Source: StatsSource{}, Responses: StoreResponses{Rules: set, Replies: fr}}
	now := at.Add(5 * time.Minute)
	flags, err := e.Evaluate(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(flags) != 1 || flags[0].Rule != "yahoo_tss04" || flags[0].Action != ActionPause || flags[0].For != 2*time.Hour {
		t.Errorf("flags %+v, want yahoo_tss04 pausing 2h", flags)
	}
	if last := fr.asked[len(fr.asked)-1]; !last[0].Equal(now.Add(-set.PatternWindow())) || set.PatternWindow() != time.Hour {
		t.Errorf("read from %v, want the longest pattern window (%v) before %v", last[0], set.PatternWindow(), now)
	}

	fr.err = errors.New("store down")
	if _, err := (StoreResponses{Rules: set, Replies: fr}).Responses(context.Background(), at, now); err == nil {
		t.Error("a failed read: no error")
	}
}

// Load keeps the matching replies of the store's range, so that a log
// built after a restart answers as the one before it did.
func TestResponseLogLoad(t *testing.T) {
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	var replies []metrics.Reply
	for i := range 5 {
		replies = append(replies, yahooReply(at.Add(time.Duration(i)*time.Minute), fmt.Sprintf("[TSS04] n%d", i)))
	}
	replies = append(replies, yahooReply(at.Add(6*time.Minute), "mailbox full"))
	fr := &fakeReplies{replies: replies}
	l, err := NewResponseLog(Defaults(), ResponseLogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Load(context.Background(), fr, at.Add(time.Minute), at.Add(time.Hour))
	if err != nil || n != 4 || l.Len() != 4 {
		t.Fatalf("Load: %d kept (%d in the log), %v; want the 4 TSS04 replies from 10:01", n, l.Len(), err)
	}
	rs, _ := l.Responses(context.Background(), at, at.Add(time.Hour))
	if len(rs) != 4 || rs[0].Diagnostic != "[TSS04] n1" {
		t.Errorf("responses %+v", rs)
	}
	fr.err = errors.New("store down")
	if _, err := l.Load(context.Background(), fr, at, at.Add(time.Hour)); err == nil {
		t.Error("a failed read: no error")
	}
}
