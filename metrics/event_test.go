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
		{"long posted_by", func(e *Event) { e.PostedBy = strings.Repeat("x", 256) }, "posted_by", ErrFieldTooLong},
		{"posted_by not utf-8", func(e *Event) { e.PostedBy = "acme\xff" }, "posted_by", ErrInvalidUTF8},
		{"invalid utf-8", func(e *Event) { e.Diagnostic = "550 \xff" }, "diagnostic", ErrInvalidUTF8},
		{"bad bounce type", func(e *Event) { e.Kind = KindBounced; e.BounceType = "medium" }, "bounce_type", ErrInvalidValue},
		{"bad category", func(e *Event) { e.Category = "promotional" }, "category", ErrInvalidValue},
		{"category in capitals", func(e *Event) { e.Category = "Marketing" }, "category", ErrInvalidValue},
		{"dropped without reason", func(e *Event) { e.Kind = KindDropped }, "reason", ErrMissingField},
		{"dropped for a bounce reason", func(e *Event) { e.Kind = KindDropped; e.Reason = "userunknown" }, "reason", ErrInvalidValue},
		{"machine_reason without verdict", func(e *Event) { e.Kind = KindOpened; e.MachineReason = "apple_mpp" }, "machine_reason", ErrInvalidValue},
		{"machine_reason on a human", func(e *Event) {
			e.Kind, e.Machine, e.MachineReason = KindOpened, Verdict(false), "apple_mpp"
		}, "machine_reason", ErrInvalidValue},
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
	if got, err := ParseGroupBy("category,isp"); err != nil || len(got) != 2 || got[0] != GroupCategory {
		t.Errorf("ParseGroupBy(category,isp) = %v, %v", got, err)
	}
	if _, err := ParseGroupBy("week"); err == nil || !strings.Contains(err.Error(), "sending_ip, category, day, hour") {
		t.Errorf("ParseGroupBy(week) = %v, want the known dimensions listed", err)
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

// Messages speak the poster's language: the field, the value, the problem
// and what would have been accepted; never Go's layout strings.
func TestValidationMessages(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Event)
		want   string
	}{
		{"category", func(e *Event) { e.Category = "promo" },
			`metrics: category "promo": invalid value: want marketing, transactional or registration, or no category`},
		{"dropped without reason", func(e *Event) { e.Kind = KindDropped },
			`metrics: reason: missing field: want blocklisted, unsubscribed, paused or invalid_recipient for a dropped event (the detail goes in diagnostic)`},
		{"dropped for spam", func(e *Event) { e.Kind = KindDropped; e.Reason = "spam" },
			`metrics: reason "spam": invalid value: want blocklisted, unsubscribed, paused or invalid_recipient for a dropped event (the detail goes in diagnostic)`},
		{"machine_reason alone", func(e *Event) { e.MachineReason = "scanner" },
			`metrics: machine_reason "scanner": invalid value: want "machine": true beside it (a reason comes only with a machine verdict)`},
		{"unknown kind", func(e *Event) { e.Kind = "exploded" },
			`metrics: kind "exploded": unknown kind: want sent, delivered, deferred, bounced, complained, opened, clicked, unsubscribed or dropped`},
		{"before 2000", func(e *Event) { e.Time = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC) },
			`metrics: time "1999-12-31T23:59:59Z": time out of range: want a time between 2000-01-01 and one hour from now (2026-11-25T13:00:00Z)`},
		{"no time", func(e *Event) { e.Time = time.Time{} },
			`metrics: time: missing field: want RFC 3339, e.g. 2026-11-29T10:00:00Z, between 2000-01-01 and one hour from now`},
		{"long campaign", func(e *Event) { e.Campaign = strings.Repeat("x", 300) },
			`metrics: campaign: field too long: want at most 255 bytes, not 300`},
	}
	for _, tt := range tests {
		e := validEvent()
		tt.modify(&e)
		err := e.Normalize(ISPMap{}, testNow)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: Normalize() = %v\nwant %s", tt.name, err, tt.want)
		}
	}
}

func TestNormalizeAcceptsVocabularies(t *testing.T) {
	for _, c := range append([]string{""}, Categories...) {
		e := validEvent()
		e.Category = c
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Errorf("category %q: %v", c, err)
		}
	}
	for _, r := range DropReasons {
		e := validEvent()
		e.Kind, e.Reason, e.Diagnostic = KindDropped, r, "detail"
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Errorf("dropped for %q: %v", r, err)
		}
	}
	for _, m := range []*bool{nil, Verdict(false), Verdict(true)} {
		e := validEvent()
		e.Kind, e.Machine = KindOpened, m
		if m != nil && *m {
			e.MachineReason = "apple_mpp"
		}
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Errorf("machine %v: %v", m, err)
		}
	}
	// A reason is not required of a machine verdict.
	e := validEvent()
	e.Kind, e.Machine = KindOpened, Verdict(true)
	if err := e.Normalize(ISPMap{}, testNow); err != nil {
		t.Errorf("machine without reason: %v", err)
	}
}

// The id is computed from what was posted, before any verdict: filling in
// machine and machine_reason later never changes it. A category does.
func TestComputeIDIgnoresMachineVerdict(t *testing.T) {
	ids := map[string]bool{}
	for _, v := range []struct {
		machine *bool
		reason  string
	}{{nil, ""}, {Verdict(false), ""}, {Verdict(true), ""}, {Verdict(true), "apple_mpp"}, {Verdict(true), "scanner"}} {
		e := validEvent()
		e.Kind, e.Machine, e.MachineReason = KindOpened, v.machine, v.reason
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Fatal(err)
		}
		ids[e.EventID] = true
	}
	if len(ids) != 1 {
		t.Errorf("machine verdicts gave %d ids, want 1: %v", len(ids), ids)
	}
	e := validEvent()
	e.Kind, e.Category = KindOpened, CategoryMarketing
	if err := e.Normalize(ISPMap{}, testNow); err != nil {
		t.Fatal(err)
	}
	if ids[e.EventID] {
		t.Error("a category did not change the id")
	}
}

// Who posted an event does not make it another event: two events equal
// but for PostedBy have one id.
func TestComputeIDIgnoresPostedBy(t *testing.T) {
	ids := map[string]bool{}
	for _, by := range []string{"", "acme", "other"} {
		e := validEvent()
		e.PostedBy = by
		if err := e.Normalize(ISPMap{}, testNow); err != nil {
			t.Fatal(err)
		}
		if e.PostedBy != by {
			t.Errorf("Normalize changed posted_by %q to %q", by, e.PostedBy)
		}
		ids[e.EventID] = true
	}
	if len(ids) != 1 {
		t.Errorf("posted_by gave %d ids, want 1: %v", len(ids), ids)
	}
}

// Ids of events without a category or verdict are those computed before
// either existed (the values below come from the earlier ComputeID), so a
// retry that spans the upgrade is still one event.
func TestComputeIDStableAcrossUpgrade(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	open := Event{Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Kind: KindOpened, Account: "acme",
		Recipient: "Kijitora@Example.JP", MessageID: "<1@acme.example>", Campaign: "winter",
		UserAgent: "Mozilla/5.0", SenderDomain: "news.acme.example"}
	bounce := Event{Time: time.Date(2026, 11, 25, 10, 0, 5, 0, time.UTC), Kind: KindBounced, Account: "acme",
		Recipient: "kijitora@gmail.com", BounceType: "hard", Reason: "userunknown", Status: "5.1.1", ReplyCode: 550}
	for _, c := range []struct {
		e    Event
		want string
	}{{open, "b1ced7ce430e945f3b6a1f7b7bb1e180"}, {bounce, "fc48d37ba01eb5a3b4d48bbca2667b9d"}} {
		if err := c.e.Normalize(ISPMap{}, now); err != nil {
			t.Fatal(err)
		}
		if c.e.EventID != c.want {
			t.Errorf("%s event: id %s, want %s as before", c.e.Kind, c.e.EventID, c.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("a", 2047) + "é"
	if got := Truncate(s, MaxLongField); got != strings.Repeat("a", 2047) {
		t.Errorf("Truncate cut inside a character: %q", got[2040:])
	}
	if got := Truncate("short", MaxLongField); got != "short" {
		t.Errorf("Truncate(short) = %q", got)
	}
}
