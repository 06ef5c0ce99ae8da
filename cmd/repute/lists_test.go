package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

type pageJSON struct {
	Entries []listEntry `json:"entries"`
	Next    string      `json:"next"`
}

// getPages reads every page of path (with query) over HTTP.
func getPages(t *testing.T, base, path, query, key string) []listEntry {
	t.Helper()
	var all []listEntry
	cursor := ""
	for range 100 {
		u := base + path + "?" + query
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		status, out := do(t, "GET", u, key)
		var p pageJSON
		if err := json.Unmarshal([]byte(out), &p); status != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %s", u, status, out)
		}
		all = append(all, p.Entries...)
		if p.Next == "" {
			return all
		}
		cursor = p.Next
	}
	t.Fatalf("GET %s: paging does not end", path)
	return nil
}

func addresses(entries []listEntry) string {
	var a []string
	for _, e := range entries {
		a = append(a, e.Address)
	}
	return strings.Join(a, " ")
}

// TestListsThroughServe pages the blocklist and the unsubscribe lists of a
// real repute serve over HTTP and with the CLI (issue 10, items 4 and 5).
func TestListsThroughServe(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testListsThroughServe(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testListsThroughServe(t, "clickhouse") })
}

func testListsThroughServe(t *testing.T, backend string) {
	cfg := twoAccounts(t, backend)
	base, _ := runApp(t, cfg)

	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	bounce := func(id, account, rcpt, reason string, ago time.Duration) metrics.Event {
		return metrics.Event{EventID: id, Time: at.Add(-ago), Kind: metrics.KindBounced, Account: account,
			SenderDomain: "news." + account + ".example", Recipient: rcpt, BounceType: metrics.BounceHard, Reason: reason, Status: "5.1.1"}
	}
	unsub := func(id, account, domain, rcpt string, kind metrics.Kind, ago time.Duration) metrics.Event {
		return metrics.Event{EventID: id, Time: at.Add(-ago), Kind: kind, Account: account, SenderDomain: domain, Recipient: rcpt}
	}
	postEvents := func(key string, events ...metrics.Event) {
		t.Helper()
		body, _ := json.Marshal(events)
		if status, out := post(t, base+"/v1/events?wait=visible", key, "application/json", body); status != http.StatusAccepted {
			t.Fatalf("POST events: %d %s", status, out)
		}
	}
	check(t, base, "admin", "x.example", "a@b.example") // waits for the lists to load
	postEvents("admin",
		bounce("b1", "acme", "one@gmail.example", "userunknown", 0),
		bounce("b2", "acme", "two@gmail.example", "hostunknown", time.Hour),
		bounce("b3", "globex", "three@gmail.example", "userunknown", 2*time.Hour),
		bounce("b4", "acme", "four@gmail.example", "userunknown", 3*time.Hour),
		bounce("b5", "acme", "five@gmail.example", "blocked", 0), // never blocklisted
		unsub("c1", "acme", "news.acme.example", "angry@yahoo.example", metrics.KindComplained, 0),
		unsub("u1", "acme", "offers.acme.example", "bye@yahoo.example", metrics.KindUnsubscribed, time.Hour),
		unsub("u2", "globex", "news.globex.example", "gone@yahoo.example", metrics.KindUnsubscribed, 0),
	)
	postEvents("globex-key", bounce("g1", "globex", "mine@outlook.example", "userunknown", 30*time.Minute))

	// The blocklist, newest first, paged.
	all := getPages(t, base, "/v1/blocklist", "limit=2", "admin")
	if got := addresses(all); got != "one@gmail.example mine@outlook.example two@gmail.example three@gmail.example four@gmail.example" {
		t.Errorf("admin's blocklist: %s", got)
	}
	acme := getPages(t, base, "/v1/blocklist", "limit=3", "acme-key")
	if got := addresses(acme); got != "one@gmail.example two@gmail.example three@gmail.example four@gmail.example" {
		t.Errorf("acme's blocklist: %s (globex's own entry must not show)", got)
	}
	for _, e := range acme {
		if (e.EventID != "") != (e.Account == "acme") || !e.Shared || e.Until == "" {
			t.Errorf("acme sees %+v; event ids only of entries its sends caused", e)
		}
	}
	if g := getPages(t, base, "/v1/blocklist", "", "globex-key"); len(g) != 5 || g[1].Shared || g[1].EventID != "g1" {
		t.Errorf("globex's blocklist: %+v", g)
	}
	if got := addresses(getPages(t, base, "/v1/blocklist", "reason=hostunknown", "acme-key")); got != "two@gmail.example" {
		t.Errorf("reason=hostunknown: %s", got)
	}
	since := url.QueryEscape(at.Add(-90 * time.Minute).Format(time.RFC3339))
	if got := addresses(getPages(t, base, "/v1/blocklist", "since="+since, "acme-key")); got != "one@gmail.example two@gmail.example" {
		t.Errorf("since: %s", got)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "since=yesterday", "cursor=nonsense", "sender_domain=x.example"} {
		if status, out := do(t, "GET", base+"/v1/blocklist?"+q, "acme-key"); status != http.StatusBadRequest {
			t.Errorf("GET /v1/blocklist?%s: %d %s; want 400", q, status, out)
		}
	}

	// The unsubscribe lists, per account.
	if got := addresses(getPages(t, base, "/v1/unsubscribes", "limit=1", "acme-key")); got != "angry@yahoo.example bye@yahoo.example" {
		t.Errorf("acme's unsubscribes: %s", got)
	}
	if got := addresses(getPages(t, base, "/v1/unsubscribes", "sender_domain=offers.acme.example", "acme-key")); got != "bye@yahoo.example" {
		t.Errorf("acme's unsubscribes from offers.acme.example: %s", got)
	}
	if got := addresses(getPages(t, base, "/v1/unsubscribes", "account=globex", "admin")); got != "gone@yahoo.example" {
		t.Errorf("the admin for globex: %s", got)
	}
	if got := getPages(t, base, "/v1/unsubscribes", "", "admin"); len(got) != 3 {
		t.Errorf("the admin: %d entries, want every account's 3", len(got))
	}

	// The CLI: JSON when stdout is not a terminal.
	code, out, errOut := runCmd(t, "blocklist", "list", "--server", base, "--key", "admin", "--json")
	var page pageJSON
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Entries) != 5 || page.Next != "" {
		t.Errorf("blocklist list --json: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "blocklist", "list", "--server", base, "--key", "admin", "--limit", "2")
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Entries) != 2 || page.Next == "" {
		t.Errorf("blocklist list --limit 2 (not a terminal: JSON): %d %s", code, out)
	}
	code, out, _ = runCmd(t, "blocklist", "list", "--server", base, "--key", "admin", "--limit", "2", "--all", "--json")
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Entries) != 5 {
		t.Errorf("blocklist list --all: %d %s", code, out)
	}
	code, out, errOut = runCmd(t, "blocklist", "list", "--server", base, "--key", "acme-key", "--table", "--limit", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 4 ||
		!strings.HasPrefix(lines[0], "ADDRESS ") || strings.Join(strings.Fields(lines[1])[:3], " ") != "one@gmail.example shared userunknown" ||
		!strings.Contains(errOut, "more: --cursor ") {
		t.Errorf("blocklist list --table: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "blocklist", "show", "Two@GMAIL.example", "--server", base, "--key", "acme-key", "--json")
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Entries) != 1 || page.Entries[0].EventID != "b2" {
		t.Errorf("blocklist show: %d %s", code, out)
	}
	code, _, errOut = runCmd(t, "blocklist", "lift", "three@gmail.example", "--server", base, "--key", "acme-key", "--reason", "mine")
	if code != 1 || !strings.Contains(errOut, "403") || !strings.Contains(errOut, "another account") {
		t.Errorf("acme lifting globex's entry: %d %s; want 1 and the server's 403", code, errOut)
	}
	if code, _, errOut = runCmd(t, "blocklist", "lift", "three@gmail.example", "--server", base, "--key", "admin"); code != 2 {
		t.Errorf("lift without --reason: %d %s; want 2", code, errOut)
	}
	code, out, errOut = runCmd(t, "blocklist", "lift", "three@gmail.example", "--server", base, "--key", "admin", "--reason", "ticket 7", "--table")
	if code != 0 || out != "lifted three@gmail.example\n" {
		t.Errorf("the admin lifting: %d %q %s", code, out, errOut)
	}
	if got := addresses(getPages(t, base, "/v1/blocklist", "", "acme-key")); strings.Contains(got, "three@") {
		t.Errorf("after the lift: %s", got)
	}

	code, _, errOut = runCmd(t, "unsubscribes", "add", "--server", base, "--key", "admin", "--account", "acme",
		"--sender-domain", "news.acme.example", "--reason", "phone call", "asked@gmail.example")
	if code != 0 {
		t.Errorf("unsubscribes add: %d %s", code, errOut)
	}
	code, out, _ = runCmd(t, "unsubscribes", "list", "--server", base, "--key", "acme-key", "--sender-domain", "news.acme.example")
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || addresses(page.Entries) != "asked@gmail.example angry@yahoo.example" ||
		page.Entries[0].Reason != "phone call" {
		t.Errorf("unsubscribes list: %d %s", code, out)
	}
	if code, _, errOut = runCmd(t, "unsubscribes", "remove", "--server", base, "--key", "acme-key",
		"--sender-domain", "news.acme.example", "angry@yahoo.example"); code != 2 {
		t.Errorf("remove without --reason: %d %s", code, errOut)
	}
	code, _, errOut = runCmd(t, "unsubscribes", "remove", "--server", base, "--key", "acme-key",
		"--sender-domain", "news.acme.example", "--reason", "came back", "angry@yahoo.example")
	if code != 0 {
		t.Errorf("unsubscribes remove: %d %s", code, errOut)
	}
	code, _, errOut = runCmd(t, "unsubscribes", "remove", "--server", base, "--key", "acme-key",
		"--sender-domain", "news.acme.example", "--reason", "again", "angry@yahoo.example")
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("removing what is not listed: %d %s; want 1 and the server's 404", code, errOut)
	}
	code, out, _ = runCmd(t, "unsubscribes", "list", "--server", base, "--key", "acme-key", "--table")
	if code != 0 || !strings.Contains(out, "SENDER DOMAIN") || !strings.Contains(out, "asked@gmail.example") || strings.Contains(out, "angry@") {
		t.Errorf("unsubscribes list --table: %d\n%s", code, out)
	}
	if code, _, errOut = runCmd(t, "unsubscribes", "add", "--server", base, "--key", "admin",
		"--sender-domain", "news.acme.example", "x@gmail.example"); code != 1 || !strings.Contains(errOut, "account") {
		t.Errorf("the admin adding without --account: %d %s; want 1 and the server's 400", code, errOut)
	}
}

func TestListsCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"blocklist", "--help"}, 0, "repute blocklist lift ADDRESS --reason TEXT"},
		{[]string{"unsubscribes", "--help"}, 0, "JSON otherwise"},
		{[]string{"blocklist"}, 2, "Usage:"},
		{[]string{"blocklist", "list", "--key", "k"}, 2, "--server URL is required"},
		{[]string{"blocklist", "list", "--server", "http://127.0.0.1:1"}, 2, "--key KEY is required"},
		{[]string{"blocklist", "frob", "--server", "http://127.0.0.1:1", "--key", "k"}, 2, `unknown action "frob"`},
		{[]string{"blocklist", "show", "--server", "http://127.0.0.1:1", "--key", "k"}, 2, "one ADDRESS"},
		{[]string{"blocklist", "list", "--server", "nowhere", "--key", "k"}, 2, "want a URL"},
		{[]string{"blocklist", "list", "--server", "http://127.0.0.1:1", "--key", "k", "--since", "today"}, 2, "RFC 3339"},
		{[]string{"unsubscribes", "add", "a@b.example", "--server", "http://127.0.0.1:1", "--key", "k"}, 2, "--sender-domain"},
		{[]string{"unsubscribes", "list", "--server", "http://127.0.0.1:1", "--key", "k"}, 1, "repute unsubscribes:"},
	} {
		code, out, errOut := runCmd(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%v: %d\n%s%s\nwant %d and %q", tt.args, code, out, errOut, tt.code, tt.want)
		}
	}
}
