package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/metrics"
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
