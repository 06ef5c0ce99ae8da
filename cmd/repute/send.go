package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"repute/sender"
)

func init() {
	commands["send"] = command{"send a message through a running server's sender", runSend}
}

const sendUsage = `Usage:
  repute send --from ADDR --to ADDR [--to ADDR …] --subject S (--html FILE | --text FILE) [flags]
  repute send --file MESSAGE.json [flags]

send posts one message to a running repute serve (POST /v1/messages), which
checks every recipient against the suppression lists, then composes, stamps,
signs and queues a copy for each; it prints, per recipient, "queued" with
the Message-ID or "dropped" with the reason. --file reads the request as
the API takes it ({"from", "to", "subject", "html", "text", "headers",
"campaign", "category", "data"}; - is stdin); the other flags set or
replace its fields. --html and --text name files (- is stdin), and hold Go
templates filled per recipient from --data, a JSON file of
{"recipient": {"name": "value", …}}.

It talks to a running repute serve: --server URL (or $REPUTE_SERVER) and
--key KEY (or $REPUTE_KEY), an account's key (the admin key acts for
--account NAME). Output is an aligned table when stdout is a terminal and
JSON otherwise (the server's answer); --json and --table force either. An
error of the server is printed and the exit status is 1; a wrong command
line exits with 2.

Flags:
`

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// sendAnswer is POST /v1/messages's answer.
type sendAnswer struct {
	Messages []struct {
		Recipient string `json:"recipient"`
		MessageID string `json:"message_id,omitempty"`
		Status    string `json:"status"`
		Reason    string `json:"reason,omitempty"`
	} `json:"messages"`
}

func runSend(args []string, stdout, stderr io.Writer) int {
	c := &listsCLI{name: "send", stdout: stdout, stderr: stderr}
	fs := newListsFlags(c, sendUsage)
	var (
		file, from, subject, htmlFile, textFile, campaign, category, dataFile string
		to, headers                                                           stringList
	)
	fs.StringVar(&file, "file", "", "the request as JSON, from this `file` (- is stdin)")
	fs.StringVar(&from, "from", "", "the From `address`, e.g. \"News <news@news.acme.example>\"")
	fs.Var(&to, "to", "a recipient `address` (repeat for more)")
	fs.StringVar(&subject, "subject", "", "the subject (a template)")
	fs.StringVar(&htmlFile, "html", "", "the HTML body's template, from this `file` (- is stdin)")
	fs.StringVar(&textFile, "text", "", "the text body's template, from this `file` (- is stdin)")
	fs.Var(&headers, "header", "an extra header `\"Name: value\"` (repeat for more)")
	fs.StringVar(&campaign, "campaign", "", "the campaign `name`")
	fs.StringVar(&category, "category", "", "marketing, transactional or registration")
	fs.StringVar(&dataFile, "data", "", "each recipient's template values, a JSON `file` of {\"recipient\": {…}}")
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return c.usageError("unexpected argument %q: recipients go in --to", fs.Arg(0))
	}
	if code := c.check(); code != 0 {
		return code
	}
	stdinUsed := false
	read := func(flagName, name string) ([]byte, error) {
		if name == "-" {
			if stdinUsed {
				return nil, fmt.Errorf("--%s -: stdin is read by another flag already", flagName)
			}
			stdinUsed = true
			return io.ReadAll(os.Stdin)
		}
		return os.ReadFile(name)
	}
	var m sender.Message
	if file != "" {
		b, err := read("file", file)
		if err != nil {
			return c.usageError("--file: %v", err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return c.usageError("--file %s: not a message as POST /v1/messages takes it: %v", file, err)
		}
	}
	for _, f := range []struct {
		flag, value string
		field       *string
	}{{"from", from, &m.From}, {"subject", subject, &m.Subject}, {"campaign", campaign, &m.Campaign}, {"category", category, &m.Category}} {
		if f.value != "" {
			*f.field = f.value
		}
	}
	if len(to) > 0 {
		m.To = to
	}
	for _, f := range []struct {
		flag, name string
		field      *string
	}{{"html", htmlFile, &m.HTML}, {"text", textFile, &m.Text}} {
		if f.name == "" {
			continue
		}
		b, err := read(f.flag, f.name)
		if err != nil {
			return c.usageError("--%s: %v", f.flag, err)
		}
		*f.field = string(b)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return c.usageError("--header %q: want \"Name: value\"", h)
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	if dataFile != "" {
		b, err := read("data", dataFile)
		if err != nil {
			return c.usageError("--data: %v", err)
		}
		if err := json.Unmarshal(b, &m.Data); err != nil {
			return c.usageError("--data %s: want a JSON object of {\"recipient\": {\"name\": value}}: %v", dataFile, err)
		}
	}
	switch {
	case m.From == "":
		return c.usageError("--from is required (or \"from\" in --file)")
	case len(m.To) == 0:
		return c.usageError("--to is required (or \"to\" in --file)")
	case m.Subject == "":
		return c.usageError("--subject is required (or \"subject\" in --file)")
	case m.HTML == "" && m.Text == "":
		return c.usageError("--html or --text is required (or \"html\" or \"text\" in --file)")
	}

	body, ok := c.call("POST", "/v1/messages", nil, m)
	if !ok {
		return 1
	}
	if c.asJSON {
		c.stdout.Write(body)
		return 0
	}
	var ans sendAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		fmt.Fprintf(c.stderr, "repute send: the server's answer: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPIENT\tSTATUS\tMESSAGE-ID\tREASON")
	for _, r := range ans.Messages {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Recipient, r.Status, orDash(r.MessageID), orDash(r.Reason))
	}
	tw.Flush()
	return 0
}
