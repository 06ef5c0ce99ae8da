package suppress

import (
	"fmt"
	"testing"

	"repute/metrics"
)

// Every reason of the taxonomy (testdata/bounces/README.md) and some that
// are not in it, each in every variant of status, reply code and bounce
// type: the class depends on the reason alone, except notaccept, which
// needs a permanent status or reply code.
func TestClassifyGenerated(t *testing.T) {
	hard := map[string]bool{"userunknown": true, "hostunknown": true, "hasmoved": true}
	soft := map[string]bool{"mailboxfull": true, "suspend": true, "exceedlimit": true}
	reasons := []string{"userunknown", "hostunknown", "hasmoved", "notaccept", "mailboxfull",
		"exceedlimit", "mesgtoobig", "suspend", "filtered", "rejected", "blocked", "badreputation",
		"requireptr", "authfailure", "spamdetected", "virusdetected", "policyviolation", "contenterror",
		"notcompliantrfc", "securityerror", "failedstarttls", "norelaying", "toomanyconn", "speeding",
		"expired", "networkerror", "systemerror", "systemfull", "mailererror", "syntaxerror",
		"suppressed", "onhold", "undefined", "delivered", "vacation", "feedback",
		"", "UserUnknown", "user unknown", "newreason"}
	statuses := []string{"", "5.1.1", "5.7.1", "5.0.932", "4.2.2", "4.7.0", "2.0.0", "5", "x.y.z"}
	codes := []uint16{0, 250, 421, 450, 550, 554, 599, 600}
	types := []string{"", metrics.BounceHard, metrics.BounceSoft, metrics.BounceUndetermined}
	n := 0
	for _, reason := range reasons {
		for _, status := range statuses {
			for _, code := range codes {
				for _, bt := range types {
					e := metrics.Event{Kind: metrics.KindBounced, Reason: reason, Status: status,
						ReplyCode: code, BounceType: bt}
					want := Never
					switch {
					case hard[reason]:
						want = Hard
					case reason == "notaccept" && (len(status) > 1 && status[:2] == "5." || code >= 500 && code < 600):
						want = Hard
					case soft[reason]:
						want = Soft
					}
					if got := Classify(&e); got != want {
						t.Errorf("Classify(reason %q, status %q, reply %d, type %q) = %v, want %v",
							reason, status, code, bt, got, want)
					}
					n++
					// The same bounce as any other kind of event never counts.
					for _, k := range metrics.Kinds {
						if k == metrics.KindBounced {
							continue
						}
						e.Kind = k
						if got := Classify(&e); got != Never {
							t.Errorf("Classify(kind %s, reason %q) = %v, want never", k, reason, got)
						}
					}
				}
			}
		}
	}
	t.Logf("%d variants", n)
}

// A Gmail reputation block: 550 5.7.1 with the words of a low reputation,
// whatever bounce_type the poster gave, never blocklists.
func TestClassifyGmailReputation(t *testing.T) {
	for _, reason := range []string{"blocked", "badreputation", "policyviolation", "spamdetected", "authfailure"} {
		e := metrics.Event{Kind: metrics.KindBounced, Reason: reason, Status: "5.7.1", ReplyCode: 550,
			BounceType: metrics.BounceHard,
			Diagnostic: "550-5.7.1 Our system has detected that this message is likely suspicious due to the very low reputation of the sending domain."}
		if got := Classify(&e); got != Never {
			t.Errorf("Classify(%s 550 5.7.1) = %v, want never: %s", reason, got, fmt.Sprint(e.Diagnostic))
		}
	}
}
