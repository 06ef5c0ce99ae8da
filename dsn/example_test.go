package dsn_test

import (
	"fmt"
	"strings"

	"repute/dsn"
)

func ExampleParse() {
	msg := `From: MAILER-DAEMON@mx.example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; gone@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: User unknown

--b--
`
	rep, err := dsn.Parse(strings.NewReader(msg))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, rc := range rep.Recipients {
		fmt.Println(rc.Address, rc.Status, rc.ReplyCode, rc.Reason, rc.Hard)
	}
	// Output: gone@example.com 5.1.1 550 userunknown true
}

func ExampleClassifyReply() {
	reason, hard := dsn.ClassifyReply(550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", dsn.PhaseRcpt)
	fmt.Println(reason, hard)
	reason, hard = dsn.ClassifyReply(552, "5.2.2", "Mailbox full", dsn.PhaseRcpt)
	fmt.Println(reason, hard)
	// Output:
	// blocked false
	// mailboxfull false
}
