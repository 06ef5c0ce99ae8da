package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"repute/api"
)

func TestRateLimitsConfig(t *testing.T) {
	load := func(yaml string) (serveConfig, error) {
		path := writeFile(t, "repute.yaml", yaml, 0o600)
		return loadServeConfig([]string{"--config", path}, func(string) string { return "" }, io.Discard)
	}
	cfg, err := load(`rate_limits:
  pixel: {rate: 0}
  feedback: {rate: 5}
auth_lockout: {failures: 0}
query_timeout: 5s
accounts:
  - name: acme
    keys: []
    rate_limit: {rate: 2, burst: 5}
  - name: globex
`)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.guardOptions()
	if o.AddressRates[api.LimitPixel].PerSecond != 0 || o.AddressRates[api.LimitClick] != (api.Rate{PerSecond: 500, Burst: 5000}) {
		t.Errorf("pixel off and click default: %+v", o.AddressRates)
	}
	// A rate without a burst keeps the default's burst: the file sets
	// keys one by one.
	if o.AddressRates[api.LimitFeedback] != (api.Rate{PerSecond: 5, Burst: 500}) {
		t.Errorf("feedback %+v, want rate 5, burst 500", o.AddressRates[api.LimitFeedback])
	}
	if r, ok := o.AccountRates["acme"]; !ok || r != (api.Rate{PerSecond: 2, Burst: 5}) {
		t.Errorf("acme's own rate %+v", r)
	}
	if _, ok := o.AccountRates["globex"]; ok {
		t.Error("globex, without rate_limit, has a rate of its own; want rate_limits.key")
	}
	if o.Lockout.Failures != 0 || cfg.QueryTimeout != 5*time.Second {
		t.Errorf("lock-out %+v, query_timeout %s", o.Lockout, cfg.QueryTimeout)
	}

	for _, c := range []struct{ yaml, want string }{
		{"rate_limits:\n  pixel: {rate: -1}\n", "rate_limits.pixel"},
		{"accounts:\n  - name: acme\n    rate_limit: {burst: -2}\n", `account "acme": rate_limit`},
		{"auth_lockout: {failures: 3, window: 0s}\n", "auth_lockout"},
		{"rate_limits:\n  pixels: {rate: 1}\n", `unknown key "pixels"`},
		{"max_result_rows: 0\n", "--max-result-rows"},
		{"query_timeout: 0s\n", "--query-timeout"},
	} {
		if _, err := load(c.yaml); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
}
