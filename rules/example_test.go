package rules_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"repute/metrics"
	"repute/rules"
)

// counts is a Source with fixed counts, whatever the window.
type counts map[rules.Scope]metrics.Counts

func (c counts) Counts(_ context.Context, _, _ time.Time, by []metrics.GroupBy) (map[rules.Scope]metrics.Counts, error) {
	return c, nil
}

func ExampleEngine_Evaluate() {
	rs, err := rules.Load(strings.NewReader(`
rates:
  - id: complaint_rate
    rate: complaint_rate
    scopes: [sender_domain]
    window: 7d
    min_sample: 1000
    when: above
    thresholds:
      - {severity: warning, value: 0.001}
      - {severity: critical, value: 0.003}
`))
	if err != nil {
		log.Fatal(err)
	}
	e := &rules.Engine{Rules: rs, Source: counts{
		{SenderDomain: "news.acme.example"}: {Delivered: 5000, Complained: 20},
		{SenderDomain: "tiny.example"}:      {Delivered: 50, Complained: 5}, // under the sample
	}}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	flags, err := e.Evaluate(context.Background(), now)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range flags {
		fmt.Printf("%s %s: %s, %.4f ≥ %.4f over %d delivered (%s)\n", f.Rule, f.Scope, f.Severity, f.Value,
			f.Threshold, f.Sample, f.Window)
	}
	// Output: complaint_rate sender_domain=news.acme.example: critical, 0.0040 ≥ 0.0030 over 5000 delivered (7d)
}

func ExampleLoad_problems() {
	_, err := rules.Load(strings.NewReader(`rates:
  - id: bounces
    rate: bounce_rate
    scopes: [sender_domain]
    window: 7d
    when: above
    thresholds: [{severity: warning, value: 0.05}]
`))
	for _, p := range err.(*rules.LoadError).Problems {
		fmt.Println(p)
	}
	// Output: line 3: rate "bounce_rate": one of hard_bounce_rate, complaint_rate, human_open_rate, machine_open_share, deferral_rate, unsubscribe_rate
}
