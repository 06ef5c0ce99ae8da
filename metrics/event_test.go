package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func validEvent() Event {
	return Event{
		Time:      time.Date(2026, 11, 25, 10, 30, 15, 500_000_000, time.FixedZone("CET", 3600)),
		Kind:      KindDelivered,
		Account:   "acme",
		Recipient: "Kijitora@Mail.Example.JP",
		MessageID: "<1@example.com>",
	}
}

func TestNormalizeDerivesFields(t *testing.T) {
	e := validEvent()
	if err := e.Normalize(ISPMap{}, testNow); err != nil {
		t.Fatal(err)
	}
	if e.Recipient != "kijitora@mail.example.jp" || e.RecipientDomain != "mail.example.jp" || e.ISP != ISPOther {
		t.Errorf("recipient, domain, isp = %q, %q, %q", e.Recipient, e.RecipientDomain, e.ISP)
	}
	if want := time.Date(2026, 11, 25, 9, 30, 15, 0, time.UTC); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v in UTC", e.Time, want)
	}
	if len(e.EventID) != 32 {
		t.Errorf("event_id = %q, want 32 hex digits", e.EventID)
	}
}

func TestNormalizeErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Event)
		field  string
		err    error
	}{
		{"unknown kind", func(e *Event) { e.Kind = "exploded" }, "kind", ErrUnknownKind},
		{"no account", func(e *Event) { e.Account = "" }, "account", ErrMissingField},
		{"no recipient", func(e *Event) { e.Recipient = "" }, "recipient", ErrMissingField},
		{"recipient without domain", func(e *Event) { e.Recipient = "kijitora@" }, "recipient", ErrInvalidValue},
		{"no time", func(e *Event) { e.Time = time.Time{} }, "time", ErrMissingField},
		{"before 2000", func(e *Event) { e.Time = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC) }, "time", ErrTimeRange},
		{"far future", func(e *Event) { e.Time = testNow.Add(61 * time.Minute) }, "time", ErrTimeRange},
		{"long campaign", func(e *Event) { e.Campaign = strings.Repeat("x", 256) }, "campaign", ErrFieldTooLong},
		{"invalid utf-8", func(e *Event) { e.Diagnostic = "550 \xff" }, "diagnostic", ErrInvalidUTF8},
		{"bad bounce type", func(e *Event) { e.Kind = KindBounced; e.BounceType = "medium" }, "bounce_type", ErrInvalidValue},
	}
	for _, tt := range tests {
		e := validEvent()
		tt.modify(&e)
		err := e.Normalize(ISPMap{}, testNow)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field || !errors.Is(err, tt.err) {
			t.Errorf("%s: Normalize() = %v, want %v on field %s", tt.name, err, tt.err, tt.field)
		}
	}
}

func TestNormalizeBounceDefaultsToUndetermined(t *testing.T) {
	e := validEvent()
	e.Kind = KindBounced
	if err := e.Normalize(ISPMap{}, testNow); err != nil {
		t.Fatal(err)
	}
	if e.BounceType != BounceUndetermined {
		t.Errorf("bounce_type = %q, want %q", e.BounceType, BounceUndetermined)
	}
}

func TestComputeIDIsContentDerived(t *testing.T) {
	a, b := validEvent(), validEvent()
	b.Recipient = "kijitora@mail.example.jp" // same after lower-casing
	b.Time = b.Time.Add(200 * time.Millisecond)
	for _, e := range []*Event{&a, &b} {
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Fatal(err)
		}
	}
	if a.EventID != b.EventID {
		t.Errorf("same content gave ids %s and %s", a.EventID, b.EventID)
	}
	c := validEvent()
	c.Campaign = "spring"
	if err := c.Normalize(ISPMap{}, testNow); err != nil {
		t.Fatal(err)
	}
	if c.EventID == a.EventID {
		t.Error("different campaign gave the same id")
	}
	// A client's own id is kept.
	d := validEvent()
	d.EventID = "client-1"
	if err := d.Normalize(ISPMap{}, testNow); err != nil || d.EventID != "client-1" {
		t.Errorf("client id: %q, %v", d.EventID, err)
	}
	// Fields that only differ by adjacent boundaries must not collide.
	x, y := validEvent(), validEvent()
	x.Campaign, x.SenderDomain = "ab", "c"
	y.Campaign, y.SenderDomain = "a", "bc"
	x.Normalize(ISPMap{}, testNow)
	y.Normalize(ISPMap{}, testNow)
	if x.EventID == y.EventID {
		t.Error("shifted field boundaries gave the same id")
	}
}

func TestISPLookup(t *testing.T) {
	m := NewISPMap(map[string]string{"Example.JP": "example", "gmail.com": "google"})
	tests := map[string]string{
		"gmail.com":         "google", // configuration overrides the built-in map
		"googlemail.com":    "gmail",
		"qq.com":            "tencent",
		"foxmail.com":       "tencent",
		"163.com":           "netease",
		"yeah.net":          "netease",
		"hotmail.com":       "microsoft",
		"icloud.com":        "apple",
		"mail.example.jp":   "example",
		"example.jp.":       "example",
		"notgmail.com":      ISPOther,
		"example.org":       ISPOther,
		"eu.yahoo.com":      "yahoo",
		"subdomain.163.com": "netease",
	}
	for domain, want := range tests {
		if got := m.Lookup(domain); got != want {
			t.Errorf("Lookup(%q) = %q, want %q", domain, got, want)
		}
	}
}

func TestParseGroupBy(t *testing.T) {
	got, err := ParseGroupBy("isp, day")
	if err != nil || len(got) != 2 || got[0] != GroupISP || got[1] != GroupDay {
		t.Errorf("ParseGroupBy = %v, %v", got, err)
	}
	if got, err := ParseGroupBy(""); err != nil || got == nil || len(got) != 0 {
		t.Errorf("ParseGroupBy(\"\") = %#v, %v; want empty non-nil", got, err)
	}
	for _, bad := range []string{"week", "isp,isp", "isp,"} {
		if _, err := ParseGroupBy(bad); err == nil {
			t.Errorf("ParseGroupBy(%q) succeeded", bad)
		}
	}
}

func TestRates(t *testing.T) {
	r := Counts{Sent: 200, BouncedHard: 10, Delivered: 100, Complained: 1, OpenedHuman: 40, OpenedMachine: 60}.Rates()
	check := func(name string, got *float64, want float64) {
		if got == nil || *got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("bounce_rate", r.BounceRate, 0.05)
	check("complaint_rate", r.ComplaintRate, 0.01)
	check("open_rate", r.OpenRate, 0.4)
	check("machine_open_share", r.MachineOpenShare, 0.6)
	if z := (Counts{}).Rates(); z.BounceRate != nil || z.ComplaintRate != nil || z.OpenRate != nil || z.MachineOpenShare != nil {
		t.Errorf("rates of zero counts = %+v, want all nil", z)
	}
}
