package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/rules"
)

// TestRulesThroughServe is the rule engine in a real repute serve: a
// complaint rate over 0.5% on 1,000 deliveries raises the pause flag and a
// pause decision for that sender domain, served to its account and to the
// admin, not to another account; an operator's override is answered.
func TestRulesThroughServe(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.RulesInterval = 200 * time.Millisecond
	cfg.Accounts[0].SenderDomains = []string{"news.acme.example"}
	base, _ := runApp(t, cfg)

	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	var events []metrics.Event
	for i := range 1000 {
		rcpt := fmt.Sprintf("r%d@gmail.example", i)
		id := fmt.Sprintf("<m%d@news.acme.example>", i)
		events = append(events,
			metrics.Event{EventID: fmt.Sprintf("s%d", i), Time: at, Kind: metrics.KindSent, Account: "acme",
				SenderDomain: "news.acme.example", MessageID: id, Recipient: rcpt},
			metrics.Event{EventID: fmt.Sprintf("d%d", i), Time: at.Add(time.Minute), Kind: metrics.KindDelivered, Account: "acme",
				SenderDomain: "news.acme.example", MessageID: id, Recipient: rcpt})
		if i < 6 {
			events = append(events, metrics.Event{EventID: fmt.Sprintf("c%d", i), Time: at.Add(time.Hour), Kind: metrics.KindComplained,
				Account: "acme", SenderDomain: "news.acme.example", MessageID: id, Recipient: rcpt, FeedbackType: "abuse"})
		}
	}
	body, _ := json.Marshal(events)
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}

	var flags struct {
		Flags []struct {
			Rule     string            `json:"rule"`
			Scope    map[string]string `json:"scope"`
			Severity string            `json:"severity"`
			Value    float64           `json:"value"`
			Sample   int64             `json:"sample"`
		} `json:"flags"`
	}
	waitUntil(t, "the complaint flag", 90*time.Second, func() bool {
		status, out := do(t, "GET", base+"/v1/flags?active=true&sender_domain=news.acme.example", "acme-key")
		if status != http.StatusOK {
			t.Fatalf("flags: %d %s", status, out)
		}
		if err := json.Unmarshal([]byte(out), &flags); err != nil {
			t.Fatal(err)
		}
		for _, f := range flags.Flags {
			if f.Rule == "complaint_rate" && f.Scope["isp"] == "" {
				return true
			}
		}
		return false
	})
	for _, f := range flags.Flags {
		if f.Rule == "complaint_rate" && f.Scope["isp"] == "" &&
			(f.Severity != "pause" || f.Value != 0.006 || f.Sample != 1000 || f.Scope["sender_domain"] != "news.acme.example") {
			t.Errorf("complaint flag %+v, want pause at 0.006 over 1000", f)
		}
	}

	var decisions struct {
		Decisions []struct {
			ID     string            `json:"id"`
			Scope  map[string]string `json:"scope"`
			Action string            `json:"action"`
			Source string            `json:"source"`
		} `json:"decisions"`
	}
	waitUntil(t, "the pause decision", 90*time.Second, func() bool {
		status, out := do(t, "GET", base+"/v1/decisions?sender_domain=news.acme.example", "acme-key")
		if status != http.StatusOK {
			t.Fatalf("decisions: %d %s", status, out)
		}
		if err := json.Unmarshal([]byte(out), &decisions); err != nil {
			t.Fatal(err)
		}
		for _, d := range decisions.Decisions {
			if d.Action == "pause" && d.Scope["sender_domain"] == "news.acme.example" && d.Source == "rule" {
				return true
			}
		}
		return false
	})
	if status, out := do(t, "GET", base+"/v1/decisions?sender_domain=news.acme.example", "globex-key"); status != http.StatusForbidden {
		t.Errorf("another account's sender domain: %d %s, want 403", status, out)
	}

	// An operator overrides the pause until a time; the answer is the
	// operator's decision.
	until := time.Now().UTC().Add(time.Hour).Format(time.RFC3339)
	status, out := post(t, base+"/v1/overrides", "admin", "application/json", []byte(`{"scope": {"sender_domain": "news.acme.example"},
		"action": "resume", "expires_at": "`+until+`", "reason": "complaints traced to a list import, removed"}`))
	if status/100 != 2 || !strings.Contains(out, `"source":"operator"`) {
		t.Errorf("override: %d %s", status, out)
	}
}

// A rules file that does not load stops the start, naming its lines.
func TestRulesFileRefused(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.RulesFile = filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(cfg.RulesFile, []byte("rates:\n  - id: x\n    rate: nonsense_rate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newRuleEngine(cfg, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "rules_file "+cfg.RulesFile) || !strings.Contains(err.Error(), "3") {
		t.Errorf("a bad rules file: %v; want an error naming the file and line 3", err)
	}
}

// TestSendingObeysDecisions: the built-in sender obeys the rule engine's
// decisions end to end — an operator's pause holds the queue, and its
// cancellation (a resume) sends what waited at once, not after the time
// the pause named.
func TestSendingObeysDecisions(t *testing.T) {
	relay := startTestRelay(t, nil)
	cfg, _ := sendingConfig(t, "", relay.addr)
	cfg.Sender.WarmedDomains = []string{"news.acme.example"}
	cfg.RulesInterval = 200 * time.Millisecond
	base, _, _ := runSendingApp(t, cfg)

	until := time.Now().UTC().Add(time.Hour).Format(time.RFC3339)
	status, out := post(t, base+"/v1/overrides", "admin", "application/json", []byte(`{"scope": {"sender_domain": "news.acme.example"},
		"action": "pause", "expires_at": "`+until+`", "reason": "checking a list before it goes out"}`))
	var answer struct {
		Decision struct {
			ID     string `json:"id"`
			Action string `json:"action"`
		} `json:"decision"`
	}
	err := json.Unmarshal([]byte(out), &answer)
	paused := answer.Decision
	if status/100 != 2 || err != nil || paused.Action != "pause" || paused.ID == "" {
		t.Fatalf("override: %d %s", status, out)
	}
	check(t, base, "acme-key", "news.acme.example", "x@y.example") // waits for the lists to load
	ans := sendMessage(t, base, "acme-key", map[string]any{
		"from": "News <news@news.acme.example>", "to": []string{"a@x.example", "b@y.example", "c@z.example"},
		"subject": "Winter", "text": "Hello",
	})
	for _, a := range ans {
		if a.Status != "queued" {
			t.Fatalf("answer %+v", ans)
		}
	}
	time.Sleep(time.Second)
	if n := len(relay.received()); n != 0 {
		t.Fatalf("%d messages sent during the pause", n)
	}
	status, out = do(t, "GET", base+"/v1/queue", "acme-key")
	if status != http.StatusOK || !strings.Contains(out, `"paced":3`) {
		t.Errorf("queue during the pause: %d %s, want 3 paced", status, out)
	}

	status, out = post(t, base+"/v1/decisions/"+paused.ID+"/cancel", "admin", "application/json",
		[]byte(`{"reason": "list checked"}`))
	if status/100 != 2 || !strings.Contains(out, `"action":"resume"`) {
		t.Fatalf("cancel: %d %s", status, out)
	}
	waitUntil(t, "the messages after the resume", 10*time.Second, func() bool { return len(relay.received()) == 3 })
}

// skip_warmup: the account's sender domains skip the warm-up, read from
// the config as the rule engine and the pacer see them.
func TestSkipWarmupDomains(t *testing.T) {
	accounts := []accountConfig{
		{Name: "acme", SenderDomains: []string{"news.acme.example", "codes.acme.example"}, SkipWarmup: true},
		{Name: "globex", SenderDomains: []string{"mail.globex.example"}},
	}
	skip := skipWarmupDomains(accounts)
	if len(skip) != 2 || !skip["news.acme.example"] || !skip["codes.acme.example"] || skip["mail.globex.example"] {
		t.Errorf("skipWarmupDomains = %v, want acme's two domains", skip)
	}
}

// seedWarmup stores a rule engine state in cfg's store in which domain
// is on warm-up day day (judged up to yesterday), as an evaluator that ran
// for days would have left it: without it a test could not tell a kept
// warm-up from one started over.
func seedWarmup(t *testing.T, cfg serveConfig, domain string, day int) {
	t.Helper()
	st, err := openStore(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	yesterday := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).Format(time.RFC3339)
	state := fmt.Sprintf(`{"last_seq": 0, "warmup": {"last": %q, "states": [{"Scope": {"sender_domain": %q}, "Day": %d,
		"LastAdvanced": %q, "DaysSent": %d, "Recent": [true, true, true, true, true, true, true], "Action": "advance",
		"Why": {"rule": "warmup_sent"}, "IPs": 1}]}, "flags": [], "current": []}`, yesterday, domain, day, yesterday, day)
	if err := st.(rules.Shared).SaveRulesState(context.Background(), 1, []byte(state)); err != nil {
		t.Fatal(err)
	}
}

// checkSavedState checks that the evaluator saved its state over the
// seeded one (version 1): a later version, the warm-up day kept, the
// decisions up to at least seq. A state is saved at the end of a cycle:
// it waits for one.
func checkSavedState(t *testing.T, cfg serveConfig, day int, seq int64) {
	t.Helper()
	var problem string
	deadline := time.Now().Add(10 * time.Second)
	for problem = savedStateProblem(t, cfg, day, seq); problem != "" && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		problem = savedStateProblem(t, cfg, day, seq)
	}
	if problem != "" {
		t.Error(problem)
	}
}

func savedStateProblem(t *testing.T, cfg serveConfig, day int, seq int64) string {
	t.Helper()
	st, err := openStore(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	version, raw, err := st.(rules.Shared).LoadRulesState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		LastSeq int64 `json:"last_seq"`
		Warmup  struct {
			States []struct {
				Scope rules.Scope
				Day   int
			} `json:"states"`
		} `json:"warmup"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatalf("the saved state: %v: %s", err, raw)
	}
	if version <= 1 || state.LastSeq < seq || len(state.Warmup.States) != 1 || state.Warmup.States[0].Day != day {
		return fmt.Sprintf("the saved state: version %d, %s; want a version after the seeded 1, last_seq ≥ %d, day %d", version, raw, seq, day)
	}
	return ""
}

type servedDecision struct {
	ID        string            `json:"id"`
	Scope     map[string]string `json:"scope"`
	Action    string            `json:"action"`
	WarmupDay int               `json:"warmup_day"`
	Source    string            `json:"source"`
}

// currentDecisions is base's GET /v1/decisions, as the admin.
func currentDecisions(t *testing.T, base string) []servedDecision {
	t.Helper()
	status, out := do(t, "GET", base+"/v1/decisions", "admin")
	if status != http.StatusOK {
		t.Fatalf("GET %s/v1/decisions: %d %s", base, status, out)
	}
	var body struct {
		Decisions []servedDecision `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		t.Fatal(err)
	}
	return body.Decisions
}

// waitDecision waits until base serves a current decision that ok
// accepts, and returns it.
func waitDecision(t *testing.T, base, what string, ok func(servedDecision) bool) servedDecision {
	t.Helper()
	var found servedDecision
	waitUntil(t, what+" on "+base, 60*time.Second, func() bool {
		for _, d := range currentDecisions(t, base) {
			if ok(d) {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// postOverride posts an override of domain's mail to isp to base and
// returns the decision it answers.
func postOverride(t *testing.T, base, domain, isp string) servedDecision {
	t.Helper()
	until := time.Now().UTC().Add(time.Hour).Format(time.RFC3339)
	status, out := post(t, base+"/v1/overrides", "admin", "application/json", []byte(`{"scope": {"sender_domain": "`+domain+
		`", "isp": "`+isp+`"}, "action": "hold", "expires_at": "`+until+`", "reason": "the provider asked"}`))
	var answer struct {
		Decision servedDecision `json:"decision"`
	}
	if err := json.Unmarshal([]byte(out), &answer); status/100 != 2 || err != nil || answer.Decision.ID == "" {
		t.Fatalf("override on %s: %d %s", base, status, out)
	}
	return answer.Decision
}

type sseEvent struct {
	seq int64
	id  string // the decision's
}

// readStream reads base's decision stream from Last-Event-ID last until
// an event of the decision id, and returns the events read.
func readStream(t *testing.T, base, last, id string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/decisions/stream", nil)
	req.Header.Set("Authorization", "Bearer admin")
	req.Header.Set("Last-Event-ID", last)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var (
		events []sseEvent
		seq    int64
	)
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			seq, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
		case strings.HasPrefix(line, "data: "):
			var d servedDecision
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
				t.Fatalf("stream of %s: %q: %v", base, line, err)
			}
			events = append(events, sseEvent{seq: seq, id: d.ID})
			if d.ID == id {
				return events
			}
		}
	}
	t.Fatalf("stream of %s from %s ended without %s: %v (%v)", base, last, id, events, sc.Err())
	return nil
}

// consecutive reports whether events are numbered first, first+1, ….
func consecutive(events []sseEvent, first int64) bool {
	for i, e := range events {
		if e.seq != first+int64(i) {
			return false
		}
	}
	return len(events) > 0
}

const domainScope = "news.acme.example"

func isDomainDecision(day int) func(servedDecision) bool {
	return func(d servedDecision) bool {
		return d.Scope["sender_domain"] == domainScope && d.Scope["sending_ip"] == "" && d.Scope["isp"] == "" &&
			d.WarmupDay == day && d.Source == "rule"
	}
}

func hasID(id string) func(servedDecision) bool {
	return func(d servedDecision) bool { return d.ID == id }
}

// stillCurrent checks, after a few cycles, that base serves the decision
// id still (a restarted evaluator that forgot the warm-up or an override
// would replace it).
func stillCurrent(t *testing.T, base string, id, what string) {
	t.Helper()
	time.Sleep(time.Second) // 5 cycles
	for _, d := range currentDecisions(t, base) {
		if d.ID == id {
			return
		}
	}
	t.Errorf("%s: %s is no longer current on %s: %+v", what, id, base, currentDecisions(t, base))
}

// TestRulesTwoProcesses: two repute serve on one ClickHouse database.
// The evaluator's decision is served by the follower; an override posted
// to the follower is issued by the evaluator and served by both; after a
// restart of the evaluator the warm-up day and the overrides are kept and
// the stream's sequence continues, on both.
func TestRulesTwoProcesses(t *testing.T) {
	cfgA := twoAccounts(t, "clickhouse")
	cfgA.RulesInterval = 200 * time.Millisecond
	seedWarmup(t, cfgA, domainScope, 7)
	baseA, stopA := runApp(t, cfgA)
	d1 := waitDecision(t, baseA, "the day-7 decision", isDomainDecision(7))

	cfgB := cfgA
	cfgB.Data = t.TempDir()
	baseB, _ := runApp(t, cfgB)
	waitDecision(t, baseB, "the evaluator's decision", hasID(d1.ID))

	o := postOverride(t, baseB, domainScope, "gmail")
	waitDecision(t, baseA, "the override posted to the follower", hasID(o.ID))
	waitDecision(t, baseB, "the override posted to it", hasID(o.ID))
	events := readStream(t, baseB, "0", o.ID)
	if !consecutive(events, 1) {
		t.Errorf("follower's stream from 0: %v, want seq 1, 2, … up to the override", events)
	}
	if a := readStream(t, baseA, "0", o.ID); fmt.Sprint(a) != fmt.Sprint(events) {
		t.Errorf("streams differ: evaluator %v, follower %v", a, events)
	}
	last := events[len(events)-1].seq
	checkSavedState(t, cfgA, 7, last)

	stopA()
	baseA2, _ := runApp(t, cfgA)
	o2 := postOverride(t, baseA2, domainScope, "yahoo")
	waitDecision(t, baseA2, "the override after the restart", hasID(o2.ID))
	waitDecision(t, baseB, "the override after the restart", hasID(o2.ID))
	for _, base := range []string{baseA2, baseB} {
		if ev := readStream(t, base, strconv.FormatInt(last, 10), o2.ID); len(ev) != 1 || ev[0].seq != last+1 {
			t.Errorf("stream of %s from %d: %v, want %s as %d", base, last, ev, o2.ID, last+1)
		}
		stillCurrent(t, base, d1.ID, "the warm-up day after the restart")
		stillCurrent(t, base, o.ID, "the override after the restart")
	}
}

// TestRulesRestartDuckDB: one repute serve on DuckDB, restarted, keeps
// its warm-up day and overrides, and numbers its decisions on.
func TestRulesRestartDuckDB(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.RulesInterval = 200 * time.Millisecond
	seedWarmup(t, cfg, domainScope, 7)
	base, stop := runApp(t, cfg)
	d1 := waitDecision(t, base, "the day-7 decision", isDomainDecision(7))
	o := postOverride(t, base, domainScope, "gmail")
	events := readStream(t, base, "0", o.ID)
	if !consecutive(events, 1) {
		t.Errorf("stream from 0: %v, want seq 1, 2, … up to the override", events)
	}
	last := events[len(events)-1].seq
	time.Sleep(time.Second) // the override written at the next poll
	stop()
	checkSavedState(t, cfg, 7, last)

	base, _ = runApp(t, cfg)
	waitDecision(t, base, "the override after the restart", hasID(o.ID))
	stillCurrent(t, base, d1.ID, "the warm-up day after the restart")
	stillCurrent(t, base, o.ID, "the override after the restart")
	o2 := postOverride(t, base, domainScope, "yahoo")
	if ev := readStream(t, base, strconv.FormatInt(last, 10), o2.ID); len(ev) != 1 || ev[0].seq != last+1 {
		t.Errorf("stream from %d: %v, want %s as %d", last, ev, o2.ID, last+1)
	}
	if ev := readStream(t, base, "0", o2.ID); !consecutive(ev, 1) {
		t.Errorf("stream from 0 after the restart: %v, want seq 1, 2, … up to the new override", ev)
	}
}

// The engine's counters of the shared store register and read.
func TestRulesEngineCollectors(t *testing.T) {
	cfg := twoAccounts(t, "")
	st, err := openStore(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := newRuleEngine(cfg, st, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		m := f.GetMetric()[0]
		got[f.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	want := map[string]float64{"repute_rules_history_write_failures_total": 0, "repute_rules_decisions_lost_total": 0,
		"repute_rules_history_queued": 0, "repute_rules_operator_actions_rejected_total": 0, "repute_rules_evaluating": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("collectors = %v, want %v (a process that has not cycled does not evaluate)", got, want)
	}
}

// storeVolumes reads a store's roll-ups when it keeps them: the same
// volumes as its statistics, for a past day and the current one, after a
// refresh; a day not on whole UTC hours (a warm-up in Asia/Kolkata) reads
// the statistics.
func TestStoreVolumesFromRollups(t *testing.T) {
	st, err := duckdb.Open(filepath.Join(t.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	start := time.Now().UTC().Add(-30 * time.Hour) // to 6 minutes ago: yesterday and today
	var events []metrics.Event
	for i := range 300 {
		e := metrics.Event{EventID: fmt.Sprintf("v%d", i), Kind: metrics.KindSent, Source: "test",
			Time:    start.Add(time.Duration(i) * 6 * time.Minute),
			Account: "acme", SenderDomain: []string{"a.example", "b.example"}[i%2],
			SendingIP: []string{"192.0.2.1", "192.0.2.2", ""}[i%3], Recipient: fmt.Sprintf("r%d@gmail.com", i)}
		if err := e.Normalize(metrics.ISPMap{}, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := st.Append(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	kolkata := time.FixedZone("IST", 5*3600+1800) // Asia/Kolkata, UTC+05:30
	k := time.Now().In(kolkata)
	kolkataDay := time.Date(k.Year(), k.Month(), k.Day(), 0, 0, 0, 0, kolkata) // 18:30 UTC
	for _, day := range []time.Time{today.Add(-24 * time.Hour), today, kolkataDay} {
		got, err := storeVolumes{st}.Volumes(ctx, day)
		if err != nil {
			t.Fatal(err)
		}
		want, err := storeVolumes{statsOnly{st}}.Volumes(ctx, day)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !maps.Equal(got, want) {
			t.Errorf("volumes of %s = %v, want %v (the statistics)", day, got, want)
		}
	}
}

// statsOnly hides every method of a store but Stats.
type statsOnly struct{ metrics.StatsReader }
