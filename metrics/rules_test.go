package metrics

import (
	"testing"
	"time"
)

func TestFlagChangeID(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 1, time.UTC)
	c := StoredFlagChange{Time: at, Rule: "complaint_rate", Account: "acme", SenderDomain: "news.acme.test",
		SendingIP: "192.0.2.7", ISP: "gmail", Campaign: "spring", Category: "marketing", Severity: "warning",
		Value: 0.002, Threshold: 0.001, Sample: 1000, Window: "7d", Raised: true}
	id := FlagChangeID(c)
	if len(id) != 32 {
		t.Fatalf("FlagChangeID = %q, want 32 hex digits", id)
	}
	// The same instant in another zone, and what the id does not cover.
	same := c
	same.Time = at.In(time.FixedZone("x", -7*3600))
	same.Value, same.Threshold, same.Sample, same.Window, same.ID = 0.5, 0.4, 1, "1h", "ignored"
	if got := FlagChangeID(same); got != id {
		t.Errorf("FlagChangeID changed with the zone or uncovered fields: %s, want %s", got, id)
	}
	for name, change := range map[string]func(*StoredFlagChange){
		"time":          func(c *StoredFlagChange) { c.Time = c.Time.Add(1) },
		"rule":          func(c *StoredFlagChange) { c.Rule = "hard_bounce_rate" },
		"account":       func(c *StoredFlagChange) { c.Account = "" },
		"sender domain": func(c *StoredFlagChange) { c.SenderDomain = "other.test" },
		"sending ip":    func(c *StoredFlagChange) { c.SendingIP = "192.0.2.8" },
		"isp":           func(c *StoredFlagChange) { c.ISP = "yahoo" },
		"campaign":      func(c *StoredFlagChange) { c.Campaign = "autumn" },
		"category":      func(c *StoredFlagChange) { c.Category = "registration" },
		"severity":      func(c *StoredFlagChange) { c.Severity = "critical" },
		"raised":        func(c *StoredFlagChange) { c.Raised = false },
		// Length prefixes: moving a byte between fields changes the id.
		"boundary": func(c *StoredFlagChange) { c.Account, c.SenderDomain = "acmen", "ews.acme.test" },
	} {
		x := c
		change(&x)
		if got := FlagChangeID(x); got == id {
			t.Errorf("FlagChangeID ignores the %s: %s", name, got)
		}
	}
}
