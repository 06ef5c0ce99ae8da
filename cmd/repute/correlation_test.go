package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/correlate"
	"repute/metrics"
)

// TestFeedbackCorrelation records sends through POST /v1/events, then posts
// bounces that refer to them in each way a report can — the signed
// X-Repute-ID header, a signed VERP return path, the original Message-ID,
// the ENVID with ORCPT — and one that refers to nothing, through POST
// /v1/feedback of a real repute serve, on both stores: each is attributed
// to its send by the right method, the unmatched one to the poster's
// account, and an account cannot post feedback about another's send.
func TestFeedbackCorrelation(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testFeedbackCorrelation(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testFeedbackCorrelation(t, "clickhouse") })
}

func testFeedbackCorrelation(t *testing.T, backend string) {
	cfg := twoAccounts(t, backend)
	key := strings.Repeat("k", 43)
	if err := os.WriteFile(filepath.Join(cfg.Data, signingKeysFile), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := correlate.New(correlate.Keys{Sign: []byte(key), Verify: [][]byte{[]byte(key)}})
	if err != nil {
		t.Fatal(err)
	}
	base := startApp(t, cfg)

	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	refHeader, refVERP := correlate.NewRef(), correlate.NewRef()
	sends := []metrics.Event{
		{Kind: metrics.KindSent, Account: "acme", Campaign: "winter", SenderDomain: "news.acme.example", SendingIP: "192.0.2.1",
			MessageID: "<m1@news.acme.example>", Recipient: "one@gmail.example", SourceRef: correlate.NewRef().String()},
		{Kind: metrics.KindSent, Account: "acme", Campaign: "spring", SenderDomain: "news.acme.example", SendingIP: "192.0.2.2",
			MessageID: "<m2@news.acme.example>", Recipient: "two@yahoo.example", SourceRef: "ENV-0002"},
		{Kind: metrics.KindSent, Account: "acme", Campaign: "summer", SenderDomain: "news.acme.example", SendingIP: "192.0.2.3",
			MessageID: "<m3@news.acme.example>", Recipient: "three@outlook.example", SourceRef: refHeader.String()},
		{Kind: metrics.KindSent, Account: "acme", Campaign: "autumn", SenderDomain: "news.acme.example", SendingIP: "192.0.2.4",
			MessageID: "<m4@news.acme.example>", Recipient: "four@gmx.example", SourceRef: refVERP.String()},
		{Kind: metrics.KindSent, Account: "globex", Campaign: "theirs", SenderDomain: "mail.globex.example", SendingIP: "198.51.100.9",
			MessageID: "<g1@mail.globex.example>", Recipient: "five@gmail.example", SourceRef: correlate.NewRef().String()},
	}
	for i := range sends {
		sends[i].Time = at
		sends[i].EventID = fmt.Sprintf("send-%d", i)
	}
	for _, acc := range []string{"acme", "globex"} {
		var mine []metrics.Event
		for _, e := range sends {
			if e.Account == acc {
				mine = append(mine, e)
			}
		}
		body, _ := json.Marshal(mine)
		if status, out := post(t, base+"/v1/events?wait=visible", acc+"-key", "application/json", body); status != http.StatusAccepted {
			t.Fatalf("POST sends of %s: %d %s", acc, status, out)
		}
	}

	verp, err := correlate.VERPAddress("bounces", signer.Token(refVERP), "bounces.acme.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, key, query string
		report           string
		status           int
		account          string
		correlation      string
		campaign         string
	}{
		{"message id", "acme-key", "", bounceReport("one@gmail.example", "bounces@bounces.acme.example", "", "", "Message-ID: <m1@news.acme.example>"),
			http.StatusAccepted, "acme", "message_id", "winter"},
		{"envid with orcpt", "acme-key", "", bounceReport("two@yahoo.example", "bounces@bounces.acme.example", "ENV-0002", "two@yahoo.example", ""),
			http.StatusAccepted, "acme", "envid", "spring"},
		{"signed header", "acme-key", "", bounceReport("three@outlook.example", "bounces@bounces.acme.example", "", "",
			"Message-ID: <elsewhere@relay.example>\nX-Repute-ID: "+signer.Token(refHeader)), http.StatusAccepted, "acme", "header", "summer"},
		{"signed verp", "acme-key", "", bounceReport("four@gmx.example", verp, "", "", ""),
			http.StatusAccepted, "acme", "verp", "autumn"},
		{"nothing", "acme-key", "", bounceReport("six@example.org", "bounces@bounces.acme.example", "", "", "Message-ID: <not-ours@else.example>"),
			http.StatusAccepted, "acme", "none", ""},
		{"another account's send", "acme-key", "", bounceReport("five@gmail.example", "bounces@bounces.acme.example", "", "", "Message-ID: <g1@mail.globex.example>"),
			http.StatusForbidden, "", "", ""},
		{"another account's send, admin", "admin", "?account=acme", bounceReport("five@gmail.example", "bounces@bounces.acme.example", "", "", "Message-ID: <g1@mail.globex.example>"),
			http.StatusAccepted, "globex", "message_id", "theirs"},
		{"a forged header token", "acme-key", "", bounceReport("three@outlook.example", "bounces@bounces.acme.example", "", "",
			"Message-ID: <elsewhere2@relay.example>\nX-Repute-ID: "+forgeToken(signer.Token(refHeader))), http.StatusAccepted, "acme", "none", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, out := post(t, base+"/v1/feedback"+tt.query, tt.key, "message/rfc822", []byte(tt.report))
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, out)
			}
			if status != http.StatusAccepted {
				if strings.Contains(out, "globex") {
					t.Errorf("the refusal names the other account: %s", out)
				}
				return
			}
			var res struct {
				Events []metrics.Event `json:"events"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Events) != 1 {
				t.Fatalf("answer %s (%v): want one event", out, err)
			}
			e := res.Events[0]
			if e.Account != tt.account || e.Correlation != tt.correlation || e.Campaign != tt.campaign || e.Kind != metrics.KindBounced {
				t.Errorf("event: account %q correlation %q campaign %q kind %s; want %q %q %q bounced",
					e.Account, e.Correlation, e.Campaign, e.Kind, tt.account, tt.correlation, tt.campaign)
			}
			if tt.correlation != "none" && (e.SenderDomain == "" || e.SendingIP == "") {
				t.Errorf("matched event lacks the send's sender_domain or sending_ip: %+v", e)
			}
			if e.EvidenceID == "" {
				t.Error("event without evidence_id")
			}
		})
	}
}

// bounceReport is a DSN (RFC 3464) for rcpt, delivered to envelopeTo (our
// return path), with an ENVID and ORCPT when given, returning the
// original's header lines.
func bounceReport(rcpt, envelopeTo, envid, orcpt, returned string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nTo: %s\nDelivered-To: %s\n", envelopeTo, envelopeTo)
	fmt.Fprintf(&b, "Subject: Undelivered Mail Returned to Sender\nDate: %s\nMessage-ID: <dsn-%s@mx.example.net>\n",
		time.Now().Add(-time.Hour).UTC().Format(time.RFC1123Z), strings.NewReplacer("@", ".", "+", ".").Replace(rcpt+envelopeTo+envid+returned))
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n")
	b.WriteString("--B\nContent-Type: text/plain\n\nThe mail system could not deliver your message.\n\n")
	b.WriteString("--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n")
	if envid != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\n", envid)
	}
	b.WriteString("\n")
	if orcpt != "" {
		fmt.Fprintf(&b, "Original-Recipient: rfc822; %s\n", orcpt)
	}
	fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\nAction: failed\nStatus: 5.1.1\n", rcpt)
	fmt.Fprintf(&b, "Diagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table\n\n", rcpt)
	fmt.Fprintf(&b, "--B\nContent-Type: text/rfc822-headers\n\nFrom: News <news@news.acme.example>\nTo: %s\nSubject: Our news\n", rcpt)
	if returned != "" {
		b.WriteString(returned + "\n")
	}
	b.WriteString("\n--B--\n")
	return b.String()
}

// forgeToken changes one character of a token: its MAC no longer holds.
func forgeToken(tok string) string {
	c := byte('a')
	if tok[3] == 'a' {
		c = 'b'
	}
	return tok[:3] + string(c) + tok[4:]
}

func post(t *testing.T, url, key, contentType string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", contentType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	return res.StatusCode, buf.String()
}
