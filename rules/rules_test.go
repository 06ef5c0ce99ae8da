package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func TestDefaultsLoad(t *testing.T) {
	rs := Defaults()
	want := map[string]bool{"low_open_rate": true, "low_registration_open_rate": true, "hard_bounce_rate": true,
		"complaint_rate": true}
	for _, r := range rs.Rates {
		delete(want, r.ID)
	}
	for id := range want {
		t.Errorf("defaults lack rate rule %s", id)
	}
	byID := map[string]RateRule{}
	for _, r := range rs.Rates {
		byID[r.ID] = r
	}
	c := byID["complaint_rate"]
	if len(c.Levels) != 3 || c.Levels[0] != (Level{SeverityWarning, 0.001}) || c.Levels[1] != (Level{SeverityCritical, 0.003}) ||
		c.Levels[2] != (Level{SeverityPause, 0.005}) || c.MinSample != 1000 || c.When != Above {
		t.Errorf("complaint_rate = %+v", c)
	}
	o := byID["low_open_rate"]
	if o.Rate != RateHumanOpen || o.MinSample != 200 || o.When != Below || o.MinAge != 24*time.Hour ||
		o.Window != 7*24*time.Hour || o.WindowName() != "24h-7d" || len(o.Scopes) != 2 {
		t.Errorf("low_open_rate = %+v", o)
	}
	if r := byID["low_registration_open_rate"]; r.Where != (Scope{Category: "registration"}) || r.Levels[0].Value != 0.8 {
		t.Errorf("low_registration_open_rate = %+v", r)
	}
	if h := byID["hard_bounce_rate"]; h.Levels[0].Value != 0.05 || h.Levels[1] != (Level{SeverityPause, 0.10}) {
		t.Errorf("hard_bounce_rate = %+v", h)
	}
	if len(rs.Patterns) != 6 {
		t.Errorf("%d pattern rules, want 6", len(rs.Patterns))
	}
}

// The default patterns against replies as providers write them: which
// rule takes each (the first that matches, in file order).
func TestDefaultPatternsMatch(t *testing.T) {
	rs := Defaults()
	for _, tc := range []struct {
		kind metrics.Kind
		code uint16
		diag string
		want string
	}{
		{metrics.KindDeferred, 421, "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "yahoo_tss04"},
		{metrics.KindDeferred, 421, "421 4.7.0 [TS1S04] temporarily deferred", "yahoo_tss04"},
		{metrics.KindDeferred, 421, "421 4.7.0 [TSS05] Messages from 192.0.2.1 temporarily deferred", "yahoo_tss05"},
		{metrics.KindDeferred, 421, "421 4.7.0 [IPTS05] Messages from 192.0.2.1 temporarily deferred", "yahoo_tss05"},
		{metrics.KindDeferred, 421, "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. Mail has been temporarily rate limited.", "gmail_unusual_rate"},
		{metrics.KindBounced, 550, "550-5.7.1 Our system has detected that this message is likely unsolicited mail.", "gmail_detected_unsolicited"},
		{metrics.KindDeferred, 451, "451 4.7.650 The mail server [192.0.2.9] has been temporarily rate limited due to IP reputation.", "microsoft_throttled"},
		{metrics.KindDeferred, 451, "451 4.7.500 Server busy. Please try again later from [192.0.2.9]. (S77714)", "microsoft_throttled"},
		{metrics.KindBounced, 550, "550 5.7.1 Unfortunately, messages from [192.0.2.9] weren't sent. (S3150)", "microsoft_throttled"},
		{metrics.KindDeferred, 421, "421 4.3.2 Server busy, try again later", "generic_rate_limited"},
		{metrics.KindDeferred, 450, "450 too many connections from your IP", "generic_rate_limited"},
		{metrics.KindBounced, 550, "550 server busy", ""}, // generic reads deferrals only
		{metrics.KindDeferred, 450, "450 4.2.1 mailbox busy", ""},
		{metrics.KindBounced, 550, "550 5.1.1 user unknown", ""},
	} {
		p := rs.match(Response{Kind: tc.kind, ReplyCode: tc.code, Diagnostic: tc.diag})
		got := ""
		if p != nil {
			got = p.ID
		}
		if got != tc.want {
			t.Errorf("match(%s %q) = %q, want %q", tc.kind, tc.diag, got, tc.want)
		}
	}
}

func TestLoadErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // "line N: fragment"
	}{
		{"syntax", "rates:\n  - id: a\n    rate: x\n    scopes: [a, b\n", []string{"line 4: did not find expected ',' or ']'"}},
		{"syntax block", "rates:\n  - id: a\n   rate: x\n", []string{"line 2: did not find expected '-' indicator"}},
		// yaml.v3 names where the value being scanned starts (line 2).
		{"scanner", "rates:\n  - id: a\n\t- rate: x\n", []string{"line 2: found a tab character"}},
		{"empty", "", []string{"empty"}},
		{"unknown top", "ratez: []\n", []string{"line 1: the file: unknown field \"ratez\""}},
		{"bad rule", `rates:
  - id: low
    rate: open_rate
    scopes: [sender_domain+planet]
    window: 7x
    when: under
    min_sample: -3
    thresholds:
      - {severity: warning, value: 0.5}
      - {severity: fatal, value: 2}
`, []string{
			`line 3: rate "open_rate"`,
			`line 4: scope "sender_domain+planet": unknown dimension "planet"`,
			`line 5: window: "7x"`,
			`line 7: min_sample`,
			`line 6: when "under"`,
			`line 10: severity "fatal"`,
			`line 10: value "2"`,
		}},
		{"order", `rates:
  - id: r
    rate: complaint_rate
    scopes: [sender_domain]
    window: 7d
    min_age: 8d
    when: above
    thresholds:
      - {severity: critical, value: 0.003}
      - {severity: warning, value: 0.001}
`, []string{"line 6: min_age 8d must be shorter", "line 10: thresholds must rise in severity", "line 10: threshold 0.001 does not go further above"}},
		{"pattern", `patterns:
  - id: p
    match: '(unclosed'
    action: stop
    kinds: [opened]
    scope: isp+campaign
    extra: 1
  - id: p
    match: x
    action: slow
    for: 1h
`, []string{"line 3: match:", `line 4: action "stop"`, `line 5: kinds: "opened"`,
			`line 6: scope "isp+campaign": unknown dimension "campaign"`, `line 7: a pattern rule: unknown field "extra"`,
			"line 2: rule p: for", "line 8: rule p: a slow action needs", `line 8: rule id "p" is used already (line 2)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Load(strings.NewReader(tc.yaml))
			if err == nil {
				t.Fatalf("Load = %+v, want an error", rs)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T %v, want *LoadError", err, err)
			}
			got := make([]string, len(le.Problems))
			for i, p := range le.Problems {
				got[i] = p.String()
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					if strings.Contains(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem %q among:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

func TestLoadMinimal(t *testing.T) {
	rs, err := Load(strings.NewReader(`patterns:
  - id: only
    match: 'busy'
    action: pause
    for: 90m
`))
	if err != nil {
		t.Fatal(err)
	}
	p := rs.Patterns[0]
	if p.Count != 1 || p.Within != time.Hour || p.Severity != SeverityWarning || len(p.Kinds) != 2 ||
		p.For != 90*time.Minute || len(p.Scope) != 3 || p.Line != 2 {
		t.Errorf("defaults of a pattern rule: %+v", p)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		d    time.Duration
		back string
	}{{"7d", 7 * 24 * time.Hour, "7d"}, {"24h", 24 * time.Hour, "24h"}, {"1d", 24 * time.Hour, "24h"},
		{"90m", 90 * time.Minute, "1h30m"}, {"2h", 2 * time.Hour, "2h"}, {"30m", 30 * time.Minute, "30m"}} {
		d, err := parseDuration(tc.in)
		if err != nil || d != tc.d || fmtDuration(d) != tc.back {
			t.Errorf("parseDuration(%q) = %v, %v (%q), want %v (%q)", tc.in, d, err, fmtDuration(d), tc.d, tc.back)
		}
	}
}
