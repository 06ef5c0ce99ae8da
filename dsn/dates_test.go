package dsn

import (
	"testing"
	"time"
)

// Arrival-Date (RFC 3464 §2.2.5) and Last-Attempt-Date (§2.3.7) are read
// as RFC 5322 dates; an obsolete zone name gets its offset, and a date that
// does not parse is left zero.
func TestDeliveryStatusDates(t *testing.T) {
	for _, tc := range []struct {
		arrival, last         string
		wantArrival, wantLast time.Time
	}{
		{"Sun, 29 Nov 2026 10:00:00 +0100", "Sun, 29 Nov 2026 10:05:07 +0100",
			time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC), time.Date(2026, 11, 29, 9, 5, 7, 0, time.UTC)},
		{"29 Nov 2026 10:00:00 EST", "not a date",
			time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC), time.Time{}},
	} {
		msg := "From: MAILER-DAEMON@mx.example.jp\nSubject: Undelivered Mail\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nThe message could not be delivered.\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.jp\n" +
			"Arrival-Date: " + tc.arrival + "\n\n" +
			"Final-Recipient: rfc822; info@example.jp\nAction: failed\nStatus: 5.1.1\n" +
			"Last-Attempt-Date: " + tc.last + "\n\n--b--\n"
		rep, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !rep.ArrivalDate().Equal(tc.wantArrival) {
			t.Errorf("Arrival-Date %q = %v, want %v", tc.arrival, rep.ArrivalDate(), tc.wantArrival)
		}
		if got := rep.Recipients[0].LastAttemptDate(); !got.Equal(tc.wantLast) {
			t.Errorf("Last-Attempt-Date %q = %v, want %v", tc.last, got, tc.wantLast)
		}
	}
}
