package arf_test

import (
	"errors"
	"fmt"
	"strings"

	"repute/arf"
)

func ExampleParse() {
	const msg = `From: feedback@isp.example.net
To: fbl@example.com
Subject: FW: Weekly deals
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b"

--b
Content-Type: text/plain

This is an email abuse report.

--b
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <alice@isp.example.net>
Source-IP: 192.0.2.7

--b
Content-Type: text/rfc822-headers

From: news@example.com
To: alice@isp.example.net
Subject: Weekly deals
Message-ID: <20261101.42@example.com>
X-Repute-ID: 3f2c9a1e-0000-4000-8000-000000000042

--b--
`
	r, err := arf.Parse(strings.NewReader(msg))
	switch {
	case errors.Is(err, arf.ErrNotFeedback):
		fmt.Println("not a complaint: try the bounce parser")
		return
	case r == nil:
		fmt.Println("unreadable:", err)
		return
	case err != nil:
		fmt.Println("usable, but:", err)
	}
	fmt.Println(r.FeedbackType, r.Recipients, r.RecipientRecoveredFrom)
	fmt.Println(r.Original.MessageID, r.Original.CorrelationID, r.SourceIP)

	_, err = arf.Parse(strings.NewReader("From: mailer-daemon@example.org\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"))
	fmt.Println(err)
	// Output:
	// abuse [alice@isp.example.net] original-rcpt-to
	// 20261101.42@example.com 3f2c9a1e-0000-4000-8000-000000000042 192.0.2.7
	// arf: not a feedback report
}

func ExampleParseBytes() {
	bounce := []byte("From: MAILER-DAEMON@example.org\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x--\n")
	if _, err := arf.ParseBytes(bounce); errors.Is(err, arf.ErrNotFeedback) {
		fmt.Println("not a complaint")
	}
	// Output: not a complaint
}
