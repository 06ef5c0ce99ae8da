package suppress

import (
	"fmt"
	"time"

	"repute/metrics"
)

// Rules are the numbers of the blocklist (docs/THRESHOLDS.md,
// "Suppression"; issue 10). A zero field takes its default.
type Rules struct {
	// BlocklistDays is how long an address stays on the blocklist after
	// the latest qualifying event's time (blocklist_days; default 14).
	BlocklistDays int
	// SoftThreshold is how many mailbox-side soft bounces within
	// SoftWindow put an address on the blocklist (default 3).
	SoftThreshold int
	// SoftWindow is the span, by event time, those soft bounces must fall
	// within, inclusive (default 7 days).
	SoftWindow time.Duration
}

// Defaults of Rules.
const (
	DefaultBlocklistDays = 14
	DefaultSoftThreshold = 3
	DefaultSoftWindow    = 7 * 24 * time.Hour
)

// withDefaults returns r with its zero fields set to their defaults, or an
// error for a negative one.
func (r Rules) withDefaults() (Rules, error) {
	if r.BlocklistDays < 0 || r.SoftThreshold < 0 || r.SoftWindow < 0 {
		return r, fmt.Errorf("suppress: rules %+v: negative value: want positive numbers, or zero for the defaults", r)
	}
	if r.BlocklistDays == 0 {
		r.BlocklistDays = DefaultBlocklistDays
	}
	if r.SoftThreshold == 0 {
		r.SoftThreshold = DefaultSoftThreshold
	}
	if r.SoftWindow == 0 {
		r.SoftWindow = DefaultSoftWindow
	}
	return r, nil
}

func (r Rules) lifetime() int64 { return int64(r.BlocklistDays) * 86400 }

// Class is what a bounce means for the blocklist.
type Class uint8

const (
	// Never: the bounce says nothing about the address (a policy or
	// reputation refusal, a transient fault, an unknown reason) or the
	// event is no bounce.
	Never Class = iota
	// Hard: the address itself failed permanently; one such bounce
	// blocklists it.
	Hard
	// Soft: the mailbox refused for a reason of its own; SoftThreshold
	// of them within SoftWindow blocklist it.
	Soft
)

func (c Class) String() string {
	switch c {
	case Hard:
		return "hard"
	case Soft:
		return "soft"
	}
	return "never"
}

// The reasons (testdata/bounces/README.md, dsn.Reason) that say something
// about the recipient's address or mailbox. This is an allow-list: every
// other reason — the policy and reputation refusals (blocked,
// badreputation, spamdetected, policyviolation, authfailure, rejected,
// requireptr, toomanyconn, speeding, securityerror, contenterror,
// virusdetected, syntaxerror, …), transient faults (expired, networkerror,
// systemerror, …), undecided ones (onhold, undefined) and any reason
// added later — never blocklists the recipient. THRESHOLDS.md: "A policy
// or reputation rejection … is the sender's problem, not the recipient's:
// it must not put the recipient on the blocklist."
var (
	// hardReasons: a permanent failure of the address itself (dsn's Hard
	// flag). notaccept counts only with a 5xx status or reply code: a 4xx
	// "accepts no mail" is a passing state of the host.
	hardReasons = map[string]bool{"userunknown": true, "hostunknown": true, "hasmoved": true}
	// softReasons: the mailbox is over quota, disabled, or over its
	// per-recipient limit — about the recipient, but possibly passing, so
	// counted (issue 10).
	softReasons = map[string]bool{"mailboxfull": true, "suspend": true, "exceedlimit": true}
)

// Classify says what an event means for the blocklist. Only bounced
// events count; the decision rests on the event's reason (the taxonomy),
// not on its bounce_type, which a poster may set by other rules.
func Classify(e *metrics.Event) Class {
	if e.Kind != metrics.KindBounced {
		return Never
	}
	switch {
	case hardReasons[e.Reason]:
		return Hard
	case e.Reason == "notaccept" && permanent(e):
		return Hard
	case softReasons[e.Reason]:
		return Soft
	}
	return Never
}

// permanent reports whether the event's enhanced status (RFC 3463 class 5)
// or its reply code (RFC 5321 5yz) says the failure is permanent.
func permanent(e *metrics.Event) bool {
	return len(e.Status) > 1 && e.Status[0] == '5' && e.Status[1] == '.' ||
		e.ReplyCode >= 500 && e.ReplyCode <= 599
}
