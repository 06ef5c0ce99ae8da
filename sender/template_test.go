package sender

import (
	"errors"
	"strings"
	"testing"
)

func validMessage() *Message {
	return &Message{From: "News <news@acme.example>", To: []string{"a@x.example"}, Subject: "s", Text: "t"}
}

func TestPrepareErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *Message)
		want   string // in the error
	}{
		{"no from", func(m *Message) { m.From = "" }, "from is required"},
		{"bad from", func(m *Message) { m.From = "not an address" }, "from"},
		{"no subject", func(m *Message) { m.Subject = " " }, "subject is required"},
		{"no body", func(m *Message) { m.Text = "" }, "html or text is required"},
		{"category", func(m *Message) { m.Category = "newsletter" }, `category "newsletter"`},
		{"no to", func(m *Message) { m.To = nil }, "to has no recipient"},
		{"header name", func(m *Message) { m.Headers = map[string]string{"X Bad": "v"} }, `header name "X Bad"`},
		{"header colon", func(m *Message) { m.Headers = map[string]string{"X:Bad": "v"} }, `header name "X:Bad"`},
		{"header From", func(m *Message) { m.Headers = map[string]string{"from": "x@y.example"} }, `header "from" is stamped`},
		{"header Content", func(m *Message) { m.Headers = map[string]string{"Content-Disposition": "x"} }, `header "Content-Disposition" is stamped`},
		{"header List-Unsub", func(m *Message) { m.Headers = map[string]string{"list-unsubscribe-post": "x"} }, `header "list-unsubscribe-post" is stamped`},
		{"header X-Repute-ID", func(m *Message) { m.Headers = map[string]string{"X-REPUTE-ID": "x"} }, `header "X-REPUTE-ID" is stamped`},
		{"header DKIM", func(m *Message) { m.Headers = map[string]string{"DKIM-Signature": "x"} }, `header "DKIM-Signature" is stamped`},
		{"header injection", func(m *Message) { m.Headers = map[string]string{"X-A": "a\r\nBcc: x@y.example"} }, `header "X-A": the value contains a line break`},
		{"template", func(m *Message) { m.HTML = "{{.x" }, "html template"},
		{"subject template", func(m *Message) { m.Subject = "{{end}}" }, "subject template"},
		{"all recipients bad", func(m *Message) { m.To = []string{"nope"} }, "no usable recipient"},
	} {
		m := validMessage()
		tc.change(m)
		_, _, err := Prepare(m)
		if err == nil || !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Prepare error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

func TestPrepareRecipients(t *testing.T) {
	m := validMessage()
	m.From = "News <news@BÜCHER.example>"
	m.To = []string{"a@x.example", "bad", "Bee <b@Y.example>", "A@X.example", "ü@x.example", "c@bücher.example"}
	p, bad, err := Prepare(m)
	if err != nil {
		t.Fatal(err)
	}
	if p.SenderDomain != "xn--bcher-kva.example" || p.From.Address != "news@xn--bcher-kva.example" {
		t.Errorf("sender domain %q, from %q", p.SenderDomain, p.From.Address)
	}
	if got := strings.Join(p.Recipients, ","); got != "a@x.example,Bee <b@Y.example>,c@bücher.example" {
		t.Errorf("recipients %s", got)
	}
	if p.addrs["c@bücher.example"].Address != "c@xn--bcher-kva.example" || p.addrs["Bee <b@Y.example>"].Address != "b@y.example" {
		t.Errorf("addresses not A-labels: %v %v", p.addrs["c@bücher.example"], p.addrs["Bee <b@Y.example>"])
	}
	var got []string
	for _, b := range bad {
		got = append(got, b.Recipient)
	}
	if strings.Join(got, ",") != "bad,A@X.example,ü@x.example" {
		t.Errorf("bad recipients %q: %v", got, bad)
	}
}

func TestRenderPerRecipient(t *testing.T) {
	m := validMessage()
	m.To = []string{"a@x.example", "b@x.example"}
	m.Subject = "Hi {{.name}}{{if .vip}} (VIP){{end}}"
	m.Text = "Dear {{.name}}, code {{.code}}.\n"
	m.HTML = `<p title="{{.name}}">{{.name}}</p><a href="{{.url}}">x</a>`
	m.Data = map[string]map[string]any{
		"a@x.example": {"name": "Ann <b>", "vip": true, "code": 42, "url": "javascript:alert(1)"},
	}
	p := mustPrepare(t, m)
	a, err := p.render("a@x.example")
	if err != nil {
		t.Fatal(err)
	}
	want := rendered{Subject: "Hi Ann <b> (VIP)", Text: "Dear Ann <b>, code 42.\n",
		HTML: `<p title="Ann &lt;b&gt;">Ann &lt;b&gt;</p><a href="#ZgotmplZ">x</a>`}
	if a != want {
		t.Errorf("a: %+v\nwant %+v", a, want)
	}
	// b has no data: missing keys print nothing
	b, err := p.render("b@x.example")
	if err != nil {
		t.Fatal(err)
	}
	want = rendered{Subject: "Hi ", Text: "Dear , code .\n", HTML: `<p title=""></p><a href="">x</a>`}
	if b != want {
		t.Errorf("b: %+v\nwant %+v", b, want)
	}
	// data with a line break cannot add a header field
	m.Data["b@x.example"] = map[string]any{"name": "x\r\nBcc: e@vil.example"}
	if b, _ = p.render("b@x.example"); strings.ContainsAny(b.Subject, "\r\n") {
		t.Errorf("subject with a line break: %q", b.Subject)
	}
}

func TestRenderError(t *testing.T) {
	m := validMessage()
	m.Text = "{{.a.b}}"
	m.Data = map[string]map[string]any{"a@x.example": {"a": 3}}
	p := mustPrepare(t, m)
	_, err := p.render("a@x.example")
	var re *RecipientError
	if !errors.As(err, &re) || re.Recipient != "a@x.example" {
		t.Errorf("Render error %v, want a *RecipientError", err)
	}
}

// Comments survive the html template: Outlook's conditional comments
// carry what Outlook for Windows renders; the text of <style> is not
// taken for comments; a comment's {{…}} stay as written.
func TestRenderKeepsComments(t *testing.T) {
	html := `<!DOCTYPE html><html><head><style><!-- p { color: red } --></style></head><body>` +
		`<!--[if mso]><v:roundrect href="https://acme.example/"><center>Buy</center></v:roundrect><![endif]-->` +
		`<!--[if !mso]><!--><a href="https://acme.example/">Buy, {{.name}}</a><!--<![endif]-->` +
		`<p>{{if .vip}}<!-- vip {{.name}} -->VIP{{end}}</p></body></html>`
	for _, vip := range []bool{true, false} {
		m := &Message{From: "news@acme.example", To: []string{"a@x.example"}, Subject: "s", HTML: html,
			Data: map[string]map[string]any{"a@x.example": {"name": "<Ann>", "vip": vip}}}
		p, bad, err := Prepare(m)
		if err != nil || len(bad) > 0 {
			t.Fatalf("Prepare: %v %v", err, bad)
		}
		r, err := p.render("a@x.example")
		if err != nil {
			t.Fatal(err)
		}
		want := `<!DOCTYPE html><html><head><style><!-- p { color: red } --></style></head><body>` +
			`<!--[if mso]><v:roundrect href="https://acme.example/"><center>Buy</center></v:roundrect><![endif]-->` +
			`<!--[if !mso]><!--><a href="` + clickPlaceholder + `0/">Buy, &lt;Ann&gt;</a><!--<![endif]-->`
		if vip {
			want += `<p><!-- vip {{.name}} -->VIP</p>` + pixelMarker + `</body></html>`
		} else {
			want += `<p></p>` + pixelMarker + `</body></html>`
		}
		if r.HTML != want {
			t.Errorf("vip=%v:\n got %s\nwant %s", vip, r.HTML, want)
		}
	}
}
