package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/rules"
)

// backtestDay0 is the first day of the synthetic history.
var backtestDay0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// backtestPerDay is the mail sent a day: small, because the DuckDB store's
// statistics scan the raw events (its roll-ups are still to come) and a
// backtest queries them several times per instant.
const backtestPerDay = 300

// backtestStore writes 10 days of one sender domain into a DuckDB store
// in a temporary data directory: 300 sent and delivered a day to Gmail,
// 200 of them opened by people (67%, over the 50% rule), and on day 5
// (2026-03-06) 15 complaints: 15 / 1,800 delivered in the 7 days before
// 2026-03-07 is 0.83%, over the 0.5% pause threshold.
func backtestStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var events []metrics.Event
	for day := range 10 {
		base := backtestDay0.AddDate(0, 0, day).Add(10 * time.Hour)
		for i := range backtestPerDay {
			rcpt := fmt.Sprintf("r%d.%d@gmail.com", day, i)
			id := fmt.Sprintf("<m%d.%d@news.acme.example>", day, i)
			ev := metrics.Event{Account: "acme", SenderDomain: "news.acme.example", SendingIP: "192.0.2.1",
				MessageID: id, Recipient: rcpt, RecipientDomain: "gmail.com", ISP: "gmail"}
			sent, delivered := ev, ev
			sent.EventID, sent.Time, sent.Kind = fmt.Sprintf("s%d.%d", day, i), base, metrics.KindSent
			delivered.EventID, delivered.Time, delivered.Kind = fmt.Sprintf("d%d.%d", day, i), base.Add(time.Minute), metrics.KindDelivered
			events = append(events, sent, delivered)
			if i < backtestPerDay*2/3 {
				open := ev
				open.EventID, open.Time, open.Kind = fmt.Sprintf("o%d.%d", day, i), base.Add(2*time.Hour), metrics.KindOpened
				open.Machine = metrics.Verdict(false)
				events = append(events, open)
			}
			if day == 5 && i < backtestPerDay/20 {
				c := ev
				c.EventID, c.Time, c.Kind = fmt.Sprintf("c%d.%d", day, i), base.Add(4*time.Hour), metrics.KindComplained
				c.FeedbackType = "abuse"
				events = append(events, c)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Append(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// backtestEnv keeps the developer's environment out of the configuration.
func backtestEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "REPUTE_") {
			t.Setenv(k, "")
		}
	}
}

// TestRulesBacktest replays the built-in rules over the 10 days: the
// complaint spike of 2026-03-06 raises the pause flags at the first instant
// after it (2026-03-07) and pauses the sender domain and its IP; the flags
// clear when the spike leaves the 7-day window (2026-03-14), and a resume
// follows. Before the spike the warm-up holds day 1: 300 a day is under
// 80% of its cap of 1,000.
func TestRulesBacktest(t *testing.T) {
	backtestEnv(t)
	dir := backtestStore(t)
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"rules", "backtest", "--data", dir, "--from", "2026-03-01", "--to", "2026-03-15", "--json"},
		&stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var header backtestHeader
	if err := json.Unmarshal([]byte(lines[0]), &header); err != nil {
		t.Fatalf("header %s: %v", lines[0], err)
	}
	if header.Type != "backtest" || header.Rules != "built-in" || len(header.PatternRules) != len(rules.Defaults().Patterns) ||
		len(header.PatternsSkipped) != 0 || header.Note != patternsNote {
		t.Errorf("header %+v: want the built-in rules, the pattern rules replayed", header)
	}

	type flagChange struct{ day, rule, scope, severity string }
	type decision struct{ day, scope, action string }
	var raised, cleared []flagChange
	var decisions []decision
	days := map[string]bool{}
	for _, l := range lines[1:] {
		var bl struct {
			Type   string    `json:"type"`
			At     time.Time `json:"at"`
			Active *bool     `json:"active"`
			Flag   *struct {
				Rule     string            `json:"rule"`
				Scope    map[string]string `json:"scope"`
				Severity string            `json:"severity"`
			} `json:"flag"`
			Decision *struct {
				Scope     map[string]string `json:"scope"`
				Action    string            `json:"action"`
				WarmupDay int               `json:"warmup_day"`
			} `json:"decision"`
		}
		if err := json.Unmarshal([]byte(l), &bl); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		day := bl.At.Format(time.DateOnly)
		days[day] = true
		switch bl.Type {
		case "flag":
			s := bl.Flag.Scope["sender_domain"] + "/" + bl.Flag.Scope["isp"]
			fc := flagChange{day, bl.Flag.Rule, s, bl.Flag.Severity}
			if *bl.Active {
				raised = append(raised, fc)
			} else {
				cleared = append(cleared, fc)
			}
		case "decision":
			decisions = append(decisions, decision{day, bl.Decision.Scope["sender_domain"] + "/" + bl.Decision.Scope["sending_ip"],
				fmt.Sprintf("%s/%d", bl.Decision.Action, bl.Decision.WarmupDay)})
		case "unchanged":
		default:
			t.Errorf("line %s: unknown type", l)
		}
	}
	if len(days) != 15 {
		t.Errorf("%d days in the output, want 15 (every instant once at least): %v", len(days), days)
	}
	wantFlags := []flagChange{
		{"2026-03-07", "complaint_rate", "news.acme.example/", "pause"},
		{"2026-03-07", "complaint_rate", "news.acme.example/gmail", "pause"},
	}
	if fmt.Sprint(raised) != fmt.Sprint(wantFlags) {
		t.Errorf("raised %v, want %v", raised, wantFlags)
	}
	for i := range wantFlags {
		wantFlags[i].day = "2026-03-14"
	}
	if fmt.Sprint(cleared) != fmt.Sprint(wantFlags) {
		t.Errorf("cleared %v, want %v", cleared, wantFlags)
	}

	// A warm-up decision lasts until the next day boundary, so each day
	// before the spike issues a new hold (day 1: 300 sent is under 80% of
	// 1,000); the pause stands until its flag clears, then resume for an
	// hour, then the day's hold again.
	var want []decision
	for _, day := range []string{"2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"} {
		want = append(want, decision{day, "news.acme.example/", "hold/1"}, decision{day, "news.acme.example/192.0.2.1", "hold/1"})
	}
	want = append(want,
		decision{"2026-03-07", "news.acme.example/", "pause/1"}, decision{"2026-03-07", "news.acme.example/192.0.2.1", "pause/1"},
		decision{"2026-03-14", "news.acme.example/", "resume/1"}, decision{"2026-03-14", "news.acme.example/192.0.2.1", "resume/1"},
		decision{"2026-03-15", "news.acme.example/", "hold/1"}, decision{"2026-03-15", "news.acme.example/192.0.2.1", "hold/1"})
	if fmt.Sprint(decisions) != fmt.Sprint(want) {
		t.Errorf("decisions\n%v\nwant\n%v", decisions, want)
	}
	for _, d := range decisions {
		if d.day == "2026-03-01" {
			t.Errorf("a decision at the first instant, before anything was sent: %+v", d)
		}
	}
}

// TestRulesBacktestArgs: a wrong command line exits with 2 and says why;
// a data directory without a store exits with 1.
func TestRulesBacktestArgs(t *testing.T) {
	backtestEnv(t)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--to", "2026-03-02"}, 2, "--from: missing"},
		{[]string{"--from", "2026-03-02", "--to", "2026-03-01"}, 2, "--to is before --from"},
		{[]string{"--from", "March", "--to", "2026-03-01"}, 2, `"March": want a DATE`},
		{[]string{"--from", "2026-03-01", "--to", "2026-03-02", "--every", "0s"}, 2, "want a positive duration"},
		{[]string{"--from", "2020-01-01", "--to", "2026-03-02", "--every", "1h"}, 2, "evaluation instants: at most"},
		{[]string{"--from", "2026-03-01", "--to", "2026-03-02", "--rules", filepath.Join(dir, "none.yaml")}, 1, "none.yaml"},
		{[]string{"--from", "2026-03-01", "--to", "2026-03-02"}, 1, "no store in the data directory"},
	} {
		var stdout, stderr bytes.Buffer
		code := runMain(append([]string{"rules", "backtest", "--data", dir}, c.args...), &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("backtest %q: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

// TestBacktestTable: the table names each flag change and decision on its
// instant's line, and an instant without changes says so.
func TestBacktestTable(t *testing.T) {
	active := map[string]rules.Flag{}
	at := backtestDay0
	f := rules.Flag{Rule: "complaint_rate", Scope: rules.Scope{SenderDomain: "a.example"}, Severity: rules.SeverityWarning,
		Value: 0.002, Threshold: 0.001, Sample: 2000, Window: "7d"}
	if ch := flagChanges(active, []rules.Flag{f}, at); len(ch) != 1 || !ch[0].Active {
		t.Fatalf("first: %+v, want one raised", ch)
	}
	if ch := flagChanges(active, []rules.Flag{f}, at); len(ch) != 0 {
		t.Errorf("same flag again: %+v, want no change", ch)
	}
	f.Severity = rules.SeverityCritical
	raised := flagChanges(active, []rules.Flag{f}, at)
	if len(raised) != 1 || !raised[0].Active || raised[0].Flag.Severity != rules.SeverityCritical {
		t.Errorf("severity change: %+v, want raised at critical", raised)
	}
	cleared := flagChanges(active, nil, at.Add(24*time.Hour))
	if len(cleared) != 1 || cleared[0].Active || len(active) != 0 {
		t.Errorf("gone: %+v (active %v), want one cleared", cleared, active)
	}

	var buf bytes.Buffer
	p := newBacktestPrinter(&buf, false)
	p.header(backtestOptions{from: at, to: at.Add(48 * time.Hour), every: 24 * time.Hour}, rules.Defaults(), false)
	p.instant(at, raised, []rules.Decision{{Scope: rules.DecisionScope{SenderDomain: "a.example"}, Action: rules.ActionHold,
		WarmupDay: 3, DailyLimit: 2000, HourlyLimit: 400, Reasons: []rules.Reason{{Rule: "complaint_rate", Value: 0.004, Threshold: 0.003}}}}, 1)
	p.instant(at.Add(24*time.Hour), nil, nil, 1)
	tss := rules.Flag{Rule: "yahoo_tss04", Scope: rules.Scope{SenderDomain: "a.example", SendingIP: "192.0.2.1", ISP: "yahoo"},
		Severity: rules.SeverityWarning, Value: 1, Threshold: 1, Sample: 1, Window: "1h", Action: rules.ActionPause,
		For: 2 * time.Hour, Since: at.Add(38 * time.Hour)}
	p.instant(tss.Since, []rules.FlagEvent{{Flag: tss, Active: true, At: tss.Since}}, nil, 1)
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	// The columns' widths depend on the widest cell: compared with runs of
	// spaces as one.
	out := regexp.MustCompile(` {2,}`).ReplaceAllString(buf.String(), " ")
	for _, want := range []string{
		"# response-pattern rules are skipped",
		"2026-03-01T00:00:00Z raised complaint_rate sender_domain=a.example critical value=0.002 threshold=0.001 sample=2000 window=7d",
		"2026-03-01T00:00:00Z decision hold a.example// day=3 daily=2000 hourly=400 reasons=complaint_rate=0.004/0.003",
		"2026-03-02T00:00:00Z unchanged",
		"2026-03-02T14:00:00Z raised yahoo_tss04 sender_domain=a.example,sending_ip=192.0.2.1,isp=yahoo warning value=1 threshold=1 sample=1 window=1h action=pause until=2026-03-02T16:00:00Z",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestRulesBacktestPatterns replays the pattern rules over stored replies:
// a Yahoo TSS04 deferral at 14:10:30 pauses that provider for the sender
// domain and IP from the end of its minute for 2 h; another at 14:40,
// during the pause, starts nothing; one at 17:00 after it ends starts a
// second episode. A Microsoft 4.7.650 deferral pauses for 1 h, and again
// 24 h when it comes back within a day (critical). A reply no pattern
// matches raises nothing.
func TestRulesBacktestPatterns(t *testing.T) {
	backtestEnv(t)
	dir := t.TempDir()
	st, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	day := backtestDay0.AddDate(0, 0, 1)
	n := 0
	deferral := func(at time.Duration, isp string, code uint16, status, diag string) metrics.Event {
		n++
		rcpt := fmt.Sprintf("r%d@%s.example", n, isp)
		return metrics.Event{EventID: fmt.Sprintf("f%d", n), Time: day.Add(at), Kind: metrics.KindDeferred, Account: "acme",
			SenderDomain: "news.acme.example", SendingIP: "192.0.2.1", Recipient: rcpt, RecipientDomain: isp + ".example",
			ISP: isp, ReplyCode: code, Status: status, Diagnostic: diag}
	}
	tss04 := "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"
	ms := "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation"
	events := []metrics.Event{
		deferral(14*time.Hour+10*time.Minute+30*time.Second, "yahoo", 421, "4.7.0", tss04),
		deferral(14*time.Hour+40*time.Minute, "yahoo", 421, "4.7.0", tss04),
		deferral(17*time.Hour, "yahoo", 421, "4.7.0", tss04),
		deferral(15*time.Hour, "yahoo", 452, "4.2.2", "mailbox full"),
		deferral(24*time.Hour+9*time.Hour, "microsoft", 451, "4.7.650", ms),
		deferral(24*time.Hour+11*time.Hour+30*time.Minute, "microsoft", 451, "4.7.650", ms),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Append(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := runMain([]string{"rules", "backtest", "--data", dir, "--from", "2026-03-01", "--to", "2026-03-04", "--json"},
		&stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
		var bl struct {
			Type   string     `json:"type"`
			At     time.Time  `json:"at"`
			Active *bool      `json:"active"`
			Until  *time.Time `json:"until"`
			Flag   *struct {
				Rule     string            `json:"rule"`
				Scope    map[string]string `json:"scope"`
				Severity string            `json:"severity"`
				Action   string            `json:"action"`
			} `json:"flag"`
			Decision *struct {
				Scope     map[string]string `json:"scope"`
				Action    string            `json:"action"`
				ExpiresAt *time.Time        `json:"expires_at"`
			} `json:"decision"`
		}
		if err := json.Unmarshal([]byte(l), &bl); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		at := bl.At.Format("02T15:04:05")
		switch {
		case bl.Type == "flag" && bl.Flag.Action != "":
			s := fmt.Sprintf("%s %s/%s/%s", bl.Flag.Scope["sender_domain"], bl.Flag.Scope["sending_ip"], bl.Flag.Scope["isp"], bl.Flag.Rule)
			if *bl.Active {
				got = append(got, fmt.Sprintf("%s raised %s %s %s until %s", at, s, bl.Flag.Severity, bl.Flag.Action,
					bl.Until.Format("02T15:04")))
			} else {
				got = append(got, fmt.Sprintf("%s cleared %s", at, s))
			}
		case bl.Type == "decision" && bl.Decision.Scope["isp"] != "":
			got = append(got, fmt.Sprintf("%s decision %s/%s %s expires %s", at, bl.Decision.Scope["sending_ip"],
				bl.Decision.Scope["isp"], bl.Decision.Action, bl.Decision.ExpiresAt.Format("02T15:04")))
		}
	}
	want := []string{
		"02T14:11:00 raised news.acme.example 192.0.2.1/yahoo/yahoo_tss04 warning pause until 02T16:11",
		"02T14:11:00 decision 192.0.2.1/yahoo pause expires 02T16:11",
		"02T16:11:00 cleared news.acme.example 192.0.2.1/yahoo/yahoo_tss04",
		"02T17:00:00 raised news.acme.example 192.0.2.1/yahoo/yahoo_tss04 warning pause until 02T19:00",
		"02T17:00:00 decision 192.0.2.1/yahoo pause expires 02T19:00",
		"02T19:00:00 cleared news.acme.example 192.0.2.1/yahoo/yahoo_tss04",
		"03T09:00:00 raised news.acme.example 192.0.2.1/microsoft/microsoft_throttled warning pause until 03T10:00",
		"03T09:00:00 decision 192.0.2.1/microsoft pause expires 03T10:00",
		"03T10:00:00 cleared news.acme.example 192.0.2.1/microsoft/microsoft_throttled",
		"03T11:30:00 raised news.acme.example 192.0.2.1/microsoft/microsoft_throttled critical pause until 04T11:30",
		"03T11:30:00 decision 192.0.2.1/microsoft pause expires 04T11:30",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("pattern flags and decisions:\n%s\nwant:\n%s\nall output:\n%s", strings.Join(got, "\n"),
			strings.Join(want, "\n"), stdout.String())
	}
}

// BenchmarkBacktestPatterns is a 15-day backtest of the built-in rules over
// a DuckDB store with 2,000 deferrals a day to Yahoo, one in 20 a TSS04
// (100 a day, every 14 minutes 24 s from 00:00): the pattern rules' own
// instants and reads of replies cost what this measures.
func BenchmarkBacktestPatterns(b *testing.B) {
	dir := b.TempDir()
	st, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var events []metrics.Event
	for day := range 15 {
		for i := range 2000 {
			diag := "452 4.2.2 mailbox full"
			if i%20 == 0 {
				diag = "[TSS04] Messages from 192.0.2.1 temporarily deferred"
			}
			events = append(events, metrics.Event{EventID: fmt.Sprintf("f%d.%d", day, i),
				Time: backtestDay0.AddDate(0, 0, day).Add(time.Duration(i) * 24 * time.Hour / 2000), Kind: metrics.KindDeferred,
				Account: "acme", SenderDomain: "news.acme.example", SendingIP: "192.0.2.1", Recipient: fmt.Sprintf("r%d@yahoo.com", i),
				RecipientDomain: "yahoo.com", ISP: "yahoo", ReplyCode: 421, Status: "4.7.0", Diagnostic: diag})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.Append(ctx, events); err != nil {
		b.Fatal(err)
	}
	o := backtestOptions{from: backtestDay0, to: backtestDay0.AddDate(0, 0, 15), every: 24 * time.Hour}
	for b.Loop() {
		var buf bytes.Buffer
		p := newBacktestPrinter(&buf, true)
		if err := backtest(ctx, st, st, rules.Defaults(), o, p); err != nil {
			b.Fatal(err)
		}
		if err := p.flush(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(strings.Count(buf.String(), `"yahoo_tss04"`)), "tss04-flag-changes")
	}
}

// countingStats answers empty statistics and counts the queries.
type countingStats struct{ n int }

func (c *countingStats) Stats(context.Context, metrics.StatsQuery) (*metrics.StatsResult, error) {
	c.n++
	return &metrics.StatsResult{}, nil
}

// At the pattern rules' instants the warm-up's volume of the day in
// progress is the one read at the last --every instant; a day that has
// ended since is read again, once; an --every instant reads afresh.
func TestBacktestVolumes(t *testing.T) {
	cs := &countingStats{}
	clock := &asOfStats{stats: cs}
	v := &backtestVolumes{src: storeVolumes{clock}, clock: clock}
	ctx := context.Background()
	day := backtestDay0
	at := func(d time.Duration, rates bool, wantQueries int) {
		t.Helper()
		clock.now = day.Add(d)
		v.fresh(rates)
		if _, err := v.Volumes(ctx, day); err != nil {
			t.Fatal(err)
		}
		if cs.n != wantQueries {
			t.Errorf("at %v (rates %v): %d queries, want %d", d, rates, cs.n, wantQueries)
		}
	}
	at(12*time.Hour, true, 1)  // an --every instant reads
	at(13*time.Hour, false, 1) // the day in progress: as read at 12:00
	at(25*time.Hour, false, 2) // the day has ended since: read again
	at(26*time.Hour, false, 2) // and kept
	at(36*time.Hour, true, 3)  // the next --every instant reads afresh
}
