package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func TestProcessorEvidence(t *testing.T) {
	raw := []byte(hardBounce().String())
	conv, err := NewConverter(Options{Account: "acme", Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcessor(conv, 0, func() time.Time { return time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) })
	rep, err := p.Process(context.Background(), raw, Source{Name: SourceFile, Ref: "x.eml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) == 0 || len(rep.Evidence) != 1 {
		t.Fatalf("events %d, evidence %d: want events and one evidence", len(rep.Events), len(rep.Evidence))
	}
	ev := rep.Evidence[0]
	for _, e := range rep.Events {
		if e.EvidenceID != ev.ID {
			t.Errorf("event evidence_id %q, want %q", e.EvidenceID, ev.ID)
		}
	}
	if !metrics.ValidEvidenceID(ev.ID) || ev.Account != "acme" || ev.Truncated || ev.Size != len(raw) {
		t.Errorf("evidence %+v", ev)
	}
	got, err := ev.Message()
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("stored message differs from the original (err %v)", err)
	}
	// The same report read again elsewhere is the same evidence.
	rep2, err := p.Process(context.Background(), raw, Source{Name: SourceIMAP, Ref: "b/INBOX/1/2"})
	if err != nil || rep2.Evidence[0].ID != ev.ID {
		t.Fatalf("second reading: id %v, err %v", rep2.Evidence, err)
	}
}

func TestReduceEvidence(t *testing.T) {
	attachment := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xAB}, 3<<20))
	msg := "From: MAILER-DAEMON@mx.example\r\nTo: bounces@acme.example\r\nSubject: Undelivered\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n" +
		"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" +
		"--B\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <orig@acme.example>\r\nSubject: hi\r\n" +
		"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + attachment + "\r\n" +
		"--B--\r\n"
	out, truncated := reduceEvidence([]byte(msg), DefaultMaxEvidence)
	if !truncated || len(out) > DefaultMaxEvidence+64 {
		t.Fatalf("truncated %v, %d bytes: want a reduction under the cap", truncated, len(out))
	}
	for _, want := range []string{"Subject: Undelivered", "Status: 5.1.1", "Final-Recipient: rfc822; a@x.example",
		"Message-ID: <orig@acme.example>", "The mail could not be delivered.", "over the evidence cap of 262144"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("reduction lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), attachment[:100]) {
		t.Error("reduction keeps the returned message's body")
	}
	// A message that is not MIME at all is cut at the cap.
	blob := bytes.Repeat([]byte("x"), 1<<20)
	out, truncated = reduceEvidence(blob, 1000)
	if !truncated || len(out) > 1100 {
		t.Errorf("blob: truncated %v, %d bytes", truncated, len(out))
	}
}
