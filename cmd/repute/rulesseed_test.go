package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/rules"
)

// TestRuleEngineSeedsReplies: a rule engine built over a store that holds
// a TSS04 deferral of ten minutes ago (stored before a restart) pauses
// Yahoo at its first evaluation; the reply of two hours ago, beyond the
// longest pattern window, is not read back.
func TestRuleEngineSeedsReplies(t *testing.T) {
	st, err := duckdb.Open(filepath.Join(t.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	deferral := func(id string, ago time.Duration) metrics.Event {
		return metrics.Event{EventID: id, Time: now.Add(-ago), Kind: metrics.KindDeferred, Account: "acme",
			SenderDomain: "news.acme.example", SendingIP: "192.0.2.1", Recipient: id + "@yahoo.com",
			RecipientDomain: "yahoo.com", ISP: "yahoo", ReplyCode: 421, Status: "4.7.0",
			Diagnostic: "[TSS04] Messages from 192.0.2.1 temporarily deferred"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Append(ctx, []metrics.Event{deferral("recent", 10*time.Minute), deferral("old", 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r, err := newRuleEngine(serveConfig{}, st, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if n := r.responses.Len(); n != 1 {
		t.Errorf("%d replies read back, want 1 (the one within the hour)", n)
	}
	flags, err := r.engine.Evaluate(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := rules.Scope{SenderDomain: "news.acme.example", SendingIP: "192.0.2.1", ISP: "yahoo"}
	if len(flags) != 1 || flags[0].Rule != "yahoo_tss04" || flags[0].Scope != want || flags[0].Action != rules.ActionPause {
		t.Errorf("flags after the restart %+v, want yahoo_tss04 pausing %v", flags, want)
	}
}
