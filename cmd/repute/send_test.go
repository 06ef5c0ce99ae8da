package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"repute/sender"
)

// TestSendCommand checks what repute send posts, from flags and from a
// file, and how it prints the answer.
func TestSendCommand(t *testing.T) {
	var got sender.Message
	var auth, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/messages" {
			http.Error(w, `{"error":"wrong route"}`, http.StatusNotFound)
			return
		}
		auth, query = r.Header.Get("Authorization"), r.URL.RawQuery
		b, _ := io.ReadAll(r.Body)
		got = sender.Message{}
		if err := json.Unmarshal(b, &got); err != nil {
			http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
			return
		}
		if got.Subject == "refuse" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"subject template: unexpected EOF"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"messages":[{"recipient":"a@x.example","message_id":"<m1@news.acme.example>","status":"queued"},`+
			`{"recipient":"b@y.example","status":"dropped","reason":"blocklisted"}]}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	html := write("body.html", "<p>Hi {{.name}}</p>")
	data := write("data.json", `{"a@x.example": {"name": "Ann"}}`)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(append([]string{"send", "--server", srv.URL, "--key", "k1"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := run("--table", "--from", "News <news@news.acme.example>", "--to", "a@x.example", "--to", "b@y.example",
		"--subject", "Hello", "--html", html, "--data", data, "--header", "X-Campaign-Code: w26", "--campaign", "winter", "--category", "marketing")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if auth != "Bearer k1" || query != "" {
		t.Errorf("auth %q query %q", auth, query)
	}
	if got.From != "News <news@news.acme.example>" || strings.Join(got.To, ",") != "a@x.example,b@y.example" ||
		got.Subject != "Hello" || got.HTML != "<p>Hi {{.name}}</p>" || got.Text != "" || got.Campaign != "winter" ||
		got.Category != "marketing" || got.Headers["X-Campaign-Code"] != "w26" || got.Data["a@x.example"]["name"] != "Ann" {
		t.Errorf("posted %+v", got)
	}
	for _, want := range []string{"RECIPIENT", "a@x.example  queued   <m1@news.acme.example>  -", "b@y.example  dropped  -                       blocklisted"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// A file, with a flag replacing one of its fields; JSON out.
	msg := write("msg.json", `{"from": "news@news.acme.example", "to": ["c@z.example"], "subject": "From the file", "text": "plain"}`)
	code, out, errs = run("--json", "--file", msg, "--subject", "Flag wins", "--account", "acme")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got.Subject != "Flag wins" || got.Text != "plain" || strings.Join(got.To, ",") != "c@z.example" || query != "account=acme" {
		t.Errorf("posted %+v (query %q)", got, query)
	}
	if !strings.HasPrefix(out, `{"messages":[`) {
		t.Errorf("JSON out: %s", out)
	}

	// The server's refusal: printed, exit 1.
	code, _, errs = run("--from", "news@news.acme.example", "--to", "a@x.example", "--subject", "refuse", "--text", msg)
	if code != 1 || !strings.Contains(errs, "subject template: unexpected EOF") {
		t.Errorf("refused: exit %d, %q", code, errs)
	}
	// Wrong command lines: exit 2, naming what is missing.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "a@x.example", "--subject", "s", "--text", msg}, "--from is required"},
		{[]string{"--from", "n@acme.example", "--subject", "s", "--text", msg}, "--to is required"},
		{[]string{"--from", "n@acme.example", "--to", "a@x.example", "--text", msg}, "--subject is required"},
		{[]string{"--from", "n@acme.example", "--to", "a@x.example", "--subject", "s"}, "--html or --text is required"},
		{[]string{"--file", filepath.Join(dir, "missing.json")}, "--file"},
		{[]string{"--file", html}, "not a message"},
		{[]string{"--header", "no colon", "--file", msg}, `--header "no colon"`},
		{[]string{"--file", msg, "extra"}, `unexpected argument "extra"`},
	} {
		code, _, errs := run(c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}
