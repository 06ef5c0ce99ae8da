package kafka_test

import (
	"fmt"
	"time"

	"repute/ingest/kafka"
)

func ExampleKumoEvents() {
	record := []byte(`{"type":"Bounce","id":"1d98076abbbc11ed940250ebf67f93bd","sender":"news@shop.example",
		"recipient":"nobody@example.org","timestamp":1796115600,"egress_source":"ip-1",
		"response":{"code":550,"enhanced_code":{"class":5,"subject":1,"detail":1},
		"content":"user unknown","command":"RCPT TO:<nobody@example.org>\r\n"},
		"meta":{"campaign":"winter"}}`)
	events, err := kafka.KumoEvents(record, "acme", time.Time{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Println(e.Kind, e.Recipient, e.BounceType, e.Reason, e.Status, e.SendingIP, e.Campaign, e.Time.Format(time.RFC3339))
	}
	// Output: bounced nobody@example.org hard userunknown 5.1.1 ip-1 winter 2026-12-01T09:00:00Z
}
