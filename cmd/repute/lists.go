package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func init() {
	commands["blocklist"] = command{"list, show or lift blocklist entries on a running server", runBlocklist}
	commands["unsubscribes"] = command{"list, add or remove unsubscribes on a running server", runUnsubscribes}
}

const listsCommon = `
It talks to a running repute serve: --server URL (or $REPUTE_SERVER) and
--key KEY (or $REPUTE_KEY), an account's key or the admin's; the admin key
acts for --account NAME. Output is an aligned table when stdout is a
terminal and JSON otherwise (the server's answer, as the API gives it);
--json and --table force either. An error of the server is printed and the
exit status is 1; a wrong command line exits with 2.

Flags:
`

const blocklistUsage = `Usage:
  repute blocklist list [--reason R] [--since TIME] [--limit N] [--cursor C | --all]
  repute blocklist show ADDRESS
  repute blocklist lift ADDRESS --reason TEXT

list prints the blocklist entries the key may see (GET /v1/blocklist: the
shared entries and the account's own; the admin's every one), newest
first, a page of --limit (100; at most 1000) entries; the next page is
--cursor NEXT (printed after the table, or "next" in the JSON), and --all
follows every page. --since keeps the entries since an RFC 3339 time,
--reason those of one reason. show prints the address's blocklist entries
(GET /v1/suppressions/ADDRESS). lift takes the address off the blocklist
(DELETE /v1/blocklist/ADDRESS): an account may lift an entry its own sends
caused; another account's needs the admin key.
` + listsCommon

const unsubscribesUsage = `Usage:
  repute unsubscribes list [--sender-domain D] [--since TIME] [--limit N] [--cursor C | --all]
  repute unsubscribes add --sender-domain D [--reason R] ADDRESS
  repute unsubscribes remove --sender-domain D --reason R ADDRESS

list prints the account's unsubscribe list (GET /v1/unsubscribes), newest
first, paged as blocklist list; --sender-domain keeps one sender domain's
entries. The admin key lists every account's, or --account NAME's. add
puts ADDRESS on the list of the sender domain (POST /v1/unsubscribes);
remove re-subscribes it (DELETE /v1/unsubscribes), with a reason. With
the admin key, add and remove need --account.
` + listsCommon

// listsCLI is a client of the lists' routes.
type listsCLI struct {
	name                 string // "blocklist" or "unsubscribes"
	server, key, account string
	asJSON, asTable      bool
	stdout, stderr       io.Writer
}

func (c *listsCLI) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", os.Getenv("REPUTE_SERVER"), "a running repute serve's base `URL` (default $REPUTE_SERVER)")
	fs.StringVar(&c.key, "key", os.Getenv("REPUTE_KEY"), "the API `key` (default $REPUTE_KEY): an account's or the admin's")
	fs.StringVar(&c.account, "account", "", "with the admin key: the account to act for")
	fs.BoolVar(&c.asJSON, "json", false, "print JSON (the default when stdout is not a terminal)")
	fs.BoolVar(&c.asTable, "table", false, "print a table (the default on a terminal)")
}

// parseInterleaved parses flags that may come before and after the
// positional arguments, and returns these.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func (c *listsCLI) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "repute %s: %s\n", c.name, fmt.Sprintf(format, a...))
	return 2
}

// check validates the common flags: 0 when they are usable.
func (c *listsCLI) check() int {
	switch {
	case c.server == "":
		return c.usageError("--server URL is required: the lists are a running repute serve's")
	case c.key == "":
		return c.usageError("--key KEY is required")
	case c.asJSON && c.asTable:
		return c.usageError("--json and --table: choose one")
	}
	if u, err := url.ParseRequestURI(c.server); err != nil || u.Host == "" {
		return c.usageError("--server %q: want a URL such as http://127.0.0.1:8080", c.server)
	}
	if !c.asJSON && !c.asTable {
		c.asJSON = !isTerminal(c.stdout)
	}
	return 0
}

// call makes a request and returns the body of a 2xx answer; otherwise it
// prints the server's error and returns ok false.
func (c *listsCLI) call(method, path string, query url.Values, body any) ([]byte, bool) {
	if c.account != "" {
		if query == nil {
			query = url.Values{}
		}
		query.Set("account", c.account)
	}
	u := strings.TrimRight(c.server, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		fmt.Fprintf(c.stderr, "repute %s: %v\n", c.name, err)
		return nil, false
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(c.stderr, "repute %s: %v\n", c.name, err)
		return nil, false
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		fmt.Fprintf(c.stderr, "repute %s: %s: %v\n", c.name, method+" "+path, err)
		return nil, false
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		fmt.Fprintf(c.stderr, "repute %s: %s: %s\n", c.name, res.Status, e.Error)
		return nil, false
	}
	return out, true
}

// listEntry is an entry as the API shows it (api's entryJSON).
type listEntry struct {
	List         string `json:"list"`
	Address      string `json:"address"`
	Account      string `json:"account,omitempty"`
	Shared       bool   `json:"shared"`
	SenderDomain string `json:"sender_domain,omitempty"`
	Reason       string `json:"reason"`
	Since        string `json:"since"`
	Until        string `json:"until,omitempty"`
	EventID      string `json:"event_id,omitempty"`
}

type listPage struct {
	Entries []listEntry `json:"entries"`
	Next    string      `json:"next,omitempty"`
}

// pagingFlags are list's flags.
type pagingFlags struct {
	since, cursor string
	limit         int
	all           bool
}

func (p *pagingFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&p.since, "since", "", "list: only entries since this RFC 3339 `time`")
	fs.StringVar(&p.cursor, "cursor", "", "list: continue at this page (the previous page's next)")
	fs.IntVar(&p.limit, "limit", 0, "list: entries a page (default 100, at most 1000)")
	fs.BoolVar(&p.all, "all", false, "list: follow every page")
}

// list prints the pages of path that q selects.
func (c *listsCLI) list(path string, q url.Values, p pagingFlags, table func(w io.Writer, entries []listEntry)) int {
	if p.since != "" {
		if _, err := time.Parse(time.RFC3339, p.since); err != nil {
			return c.usageError("--since %q: want an RFC 3339 time such as 2026-11-02T09:30:00Z", p.since)
		}
		q.Set("since", p.since)
	}
	if p.limit != 0 {
		if p.limit < 0 || p.limit > 1000 {
			return c.usageError("--limit %d: want 1 to 1000", p.limit)
		}
		q.Set("limit", strconv.Itoa(p.limit))
	}
	if p.all && p.cursor != "" {
		return c.usageError("--all starts at the first page: drop --cursor")
	}
	if p.cursor != "" {
		q.Set("cursor", p.cursor)
	}
	var all listPage
	for {
		body, ok := c.call("GET", path, q, nil)
		if !ok {
			return 1
		}
		if c.asJSON && !p.all {
			c.stdout.Write(body)
			return 0
		}
		var page listPage
		if err := json.Unmarshal(body, &page); err != nil {
			fmt.Fprintf(c.stderr, "repute %s: the server's answer: %v\n", c.name, err)
			return 1
		}
		all.Entries = append(all.Entries, page.Entries...)
		all.Next = page.Next
		if !p.all || page.Next == "" {
			break
		}
		q.Set("cursor", page.Next)
	}
	if c.asJSON {
		return c.printJSON(all)
	}
	table(c.stdout, all.Entries)
	if all.Next != "" {
		fmt.Fprintf(c.stderr, "more: --cursor %s (or --all)\n", all.Next)
	}
	return 0
}

func (c *listsCLI) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "repute %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func blocklistTable(w io.Writer, entries []listEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSCOPE\tREASON\tSINCE\tUNTIL\tACCOUNT\tEVENT")
	for _, e := range entries {
		scope := "shared"
		if !e.Shared {
			scope = "own"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Address, scope, e.Reason, e.Since, orDash(e.Until),
			orDash(e.Account), orDash(e.EventID))
	}
	tw.Flush()
}

func unsubscribesTable(w io.Writer, entries []listEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tACCOUNT\tSENDER DOMAIN\tREASON\tSINCE\tEVENT")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Address, e.Account, orDash(e.SenderDomain), e.Reason, e.Since,
			orDash(e.EventID))
	}
	tw.Flush()
}

// newListsFlags returns the flag set of a lists command; help is printed
// to stdout for --help.
func newListsFlags(c *listsCLI, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	c.flags(fs)
	return fs
}

// parseLists parses a lists command line: the action, the positional
// arguments after it, and the flags anywhere. done is true when it has
// answered (help, or a usage error: code).
func parseLists(c *listsCLI, fs *flag.FlagSet, usage string, args []string) (action string, pos []string, code int, done bool) {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(c.stdout)
			fs.Usage()
			return "", nil, 0, true
		}
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, 0, true
		}
		return "", nil, 2, true
	}
	if len(pos) == 0 {
		fmt.Fprint(c.stderr, usage)
		return "", nil, 2, true
	}
	if code := c.check(); code != 0 {
		return "", nil, code, true
	}
	return pos[0], pos[1:], 0, false
}

func runBlocklist(args []string, stdout, stderr io.Writer) int {
	c := &listsCLI{name: "blocklist", stdout: stdout, stderr: stderr}
	fs := newListsFlags(c, blocklistUsage)
	var p pagingFlags
	p.bind(fs)
	var reason string
	fs.StringVar(&reason, "reason", "", "list: only entries of this reason (e.g. userunknown); lift: why (required)")
	action, pos, code, done := parseLists(c, fs, blocklistUsage, args)
	if done {
		return code
	}
	switch action {
	case "list":
		if len(pos) != 0 {
			return c.usageError("list takes no address (use show ADDRESS)")
		}
		q := url.Values{}
		if reason != "" {
			q.Set("reason", reason)
		}
		return c.list("/v1/blocklist", q, p, blocklistTable)
	case "show", "lift":
		if len(pos) != 1 {
			return c.usageError("%s takes one ADDRESS", action)
		}
		addr := pos[0]
		if action == "lift" {
			if strings.TrimSpace(reason) == "" {
				return c.usageError("lift needs --reason TEXT: why it comes off the list (it is in the audit)")
			}
			body, ok := c.call("DELETE", "/v1/blocklist/"+url.PathEscape(addr), url.Values{"reason": {reason}}, nil)
			if !ok {
				return 1
			}
			if c.asJSON {
				c.stdout.Write(body)
			} else {
				fmt.Fprintf(c.stdout, "lifted %s\n", addr)
			}
			return 0
		}
		body, ok := c.call("GET", "/v1/suppressions/"+url.PathEscape(addr), nil, nil)
		if !ok {
			return 1
		}
		var page listPage
		if err := json.Unmarshal(body, &page); err != nil {
			fmt.Fprintf(c.stderr, "repute blocklist: the server's answer: %v\n", err)
			return 1
		}
		var entries []listEntry
		for _, e := range page.Entries {
			if e.List == "blocklist" {
				entries = append(entries, e)
			}
		}
		if c.asJSON {
			return c.printJSON(listPage{Entries: append([]listEntry{}, entries...)})
		}
		if len(entries) == 0 {
			fmt.Fprintf(c.stdout, "%s is not on the blocklist (as far as this key may see)\n", addr)
			return 0
		}
		blocklistTable(c.stdout, entries)
		return 0
	}
	return c.usageError("unknown action %q: want list, show or lift", action)
}

func runUnsubscribes(args []string, stdout, stderr io.Writer) int {
	c := &listsCLI{name: "unsubscribes", stdout: stdout, stderr: stderr}
	fs := newListsFlags(c, unsubscribesUsage)
	var p pagingFlags
	p.bind(fs)
	var senderDomain, reason string
	fs.StringVar(&senderDomain, "sender-domain", "", "the sender `domain` (list: only its entries; add, remove: required)")
	fs.StringVar(&reason, "reason", "", "add, remove: why (remove: required)")
	action, pos, code, done := parseLists(c, fs, unsubscribesUsage, args)
	if done {
		return code
	}
	switch action {
	case "list":
		if len(pos) != 0 {
			return c.usageError("list takes no address")
		}
		if reason != "" {
			return c.usageError("--reason is for add and remove")
		}
		q := url.Values{}
		if senderDomain != "" {
			q.Set("sender_domain", senderDomain)
		}
		return c.list("/v1/unsubscribes", q, p, unsubscribesTable)
	case "add", "remove":
		if len(pos) != 1 {
			return c.usageError("%s takes one ADDRESS", action)
		}
		if senderDomain == "" {
			return c.usageError("%s needs --sender-domain: the list is kept per sender domain", action)
		}
		addr := pos[0]
		var body []byte
		var ok bool
		if action == "add" {
			body, ok = c.call("POST", "/v1/unsubscribes", nil,
				map[string]string{"sender_domain": senderDomain, "recipient": addr, "reason": reason})
		} else {
			if strings.TrimSpace(reason) == "" {
				return c.usageError("remove needs --reason TEXT: why the address is re-subscribed (it is in the audit)")
			}
			body, ok = c.call("DELETE", "/v1/unsubscribes", url.Values{"sender_domain": {senderDomain}, "recipient": {addr}, "reason": {reason}}, nil)
		}
		if !ok {
			return 1
		}
		switch {
		case c.asJSON:
			c.stdout.Write(body)
		case action == "add":
			fmt.Fprintf(c.stdout, "unsubscribed %s from %s\n", addr, senderDomain)
		default:
			fmt.Fprintf(c.stdout, "re-subscribed %s to %s\n", addr, senderDomain)
		}
		return 0
	}
	return c.usageError("unknown action %q: want list, add or remove", action)
}
