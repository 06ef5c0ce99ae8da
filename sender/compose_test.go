package sender

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/compose")

func goldenMessage() *Message {
	return &Message{
		From:     "News <news@News.acme.example>",
		To:       []string{"a@x.example", "b@y.example"},
		Subject:  "Winter offers for {{.name}} – ünïcode",
		Text:     "Hello {{.name}},\nsee https://acme.example/winter\nUnsubscribe: {{unsubscribeURL}}\n",
		HTML:     "<html><head><title>Winter</title></head>\n<body><p>Hello {{.name}},</p>\n<p><a href=\"https://acme.example/winter?a=1&amp;b=2\">Offers</a>\n<a href=\"mailto:help@acme.example\">Help</a>\n<a href=\"{{unsubscribeURL}}\">Unsubscribe</a></p>\n</body></html>\n",
		Headers:  map[string]string{"X-Mailer-Campaign": "w26", "Reply-To": "help@acme.example"},
		Campaign: "winter:26",
		Category: CategoryMarketing,
		Data:     map[string]map[string]any{"a@x.example": {"name": "Ann <&>"}},
	}
}

// TestComposeGolden compares whole messages, byte for byte, with the
// golden files; go test -run Golden -update rewrites them.
func TestComposeGolden(t *testing.T) {
	text := goldenMessage()
	text.HTML = ""
	html := goldenMessage()
	html.Text = ""
	for name, m := range map[string]*Message{"alternative": goldenMessage(), "text": text, "html": html} {
		t.Run(name, func(t *testing.T) {
			c := newTestComposer(t, "bounces.acme.example")
			it, signed, err := c.Compose(mustPrepare(t, m), "acme", "a@x.example")
			if err != nil {
				t.Fatal(err)
			}
			if signed {
				t.Error("signed without a DKIM key")
			}
			file := filepath.Join("testdata", "compose", name+".eml")
			if *update {
				if err := os.WriteFile(file, it.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(it.Data, want) {
				t.Errorf("message differs from %s:\n%s", file, it.Data)
			}
			if bytes.Contains(bytes.ReplaceAll(it.Data, []byte("\r\n"), nil), []byte("\n")) {
				t.Error("a bare LF in the message")
			}
			if it.MessageID[0] != '<' || !strings.HasSuffix(it.MessageID, "@news.acme.example>") || len(it.MessageID) < 2+26+1 {
				t.Errorf("MessageID = %q", it.MessageID)
			}
			tok := c.corr.Token(it.Ref)
			if want := "bounces+" + tok + "@bounces.acme.example"; it.EnvelopeFrom != want {
				t.Errorf("EnvelopeFrom = %q, want %q", it.EnvelopeFrom, want)
			}
			if !bytes.Contains(it.Data, []byte("X-Repute-ID: "+tok+"\r\n")) {
				t.Error("no X-Repute-ID with the correlation token")
			}
			if it.Account != "acme" || it.SenderDomain != "news.acme.example" || it.Recipient != "a@x.example" || it.Campaign != "winter:26" || it.Category != "marketing" {
				t.Errorf("item fields: %+v", it)
			}
			pixel := bytes.Contains(it.Data, []byte("/t/o/"))
			if pixel != (name != "text") {
				t.Errorf("pixel present = %v", pixel)
			}
		})
	}
}

func TestComposeWithoutBounceDomain(t *testing.T) {
	c := newTestComposer(t, "")
	it, _, err := c.Compose(mustPrepare(t, goldenMessage()), "acme", "b@y.example")
	if err != nil {
		t.Fatal(err)
	}
	if it.EnvelopeFrom != "news@news.acme.example" {
		t.Errorf("EnvelopeFrom = %q, want the From address", it.EnvelopeFrom)
	}
	if bytes.Contains(it.Data, []byte("mailto:unsubscribe")) {
		t.Error("List-Unsubscribe has a mailto without a bounce domain")
	}
	if !bytes.Contains(it.Data, []byte("List-Unsubscribe: <https://t.acme.example/t/u/")) {
		t.Errorf("no https List-Unsubscribe:\n%s", it.Data)
	}
}

func TestComposeUniqueIDs(t *testing.T) {
	c := newTestComposer(t, "bounces.acme.example")
	p := mustPrepare(t, goldenMessage())
	a, _, _ := c.Compose(p, "acme", "a@x.example")
	b, _, _ := c.Compose(p, "acme", "a@x.example")
	if a.MessageID == b.MessageID || a.Ref == b.Ref {
		t.Errorf("two composes share a Message-ID or a Ref: %s %s", a.MessageID, a.Ref)
	}
	if _, _, err := c.Compose(p, "acme", "nobody@x.example"); err == nil {
		t.Error("Compose to a recipient not in To: no error")
	}
}

func TestPixelPlacement(t *testing.T) {
	c := newTestComposer(t, "")
	for _, tc := range []struct{ in, before, after string }{
		{"<html><body><p>x</p></body></html>", "<html><body><p>x</p>", "</body></html>"},
		{"<HTML><BODY><p>x</p></BODY></HTML>", "<HTML><BODY><p>x</p>", "</BODY></HTML>"},
		{"<p>no body</p>", "<p>no body</p>", ""},
		// the last </body> wins
		{"<body>a</body>b</body >c", "<body>a</body>b", "</body >c"},
	} {
		p := mustPrepare(t, &Message{From: "a@acme.example", To: []string{"r@x.example"}, Subject: "s", HTML: tc.in})
		it, _, err := c.Compose(p, "", "r@x.example")
		if err != nil {
			t.Fatal(err)
		}
		html := decodeHTML(t, it.Data)
		i := strings.Index(html, "<img src=\"https://t.acme.example/t/o/")
		if i < 0 {
			t.Fatalf("%q: no pixel in %q", tc.in, html)
		}
		j := i + strings.Index(html[i:], ">") + 1
		if html[:i] != tc.before || html[j:] != tc.after {
			t.Errorf("%q: pixel between %q and %q, want between %q and %q", tc.in, html[:i], html[j:], tc.before, tc.after)
		}
		tok := strings.TrimSuffix(html[i+len("<img src=\"https://t.acme.example/t/o/"):i+strings.Index(html[i:], ".gif")+4], ".gif")
		if ref, err := c.trk.ParseOpenToken(tok); err != nil || ref != it.Ref {
			t.Errorf("pixel token %q: %v, %v, want %v", tok, ref, err, it.Ref)
		}
	}
}

func TestLinkRewriting(t *testing.T) {
	c := newTestComposer(t, "bounces.acme.example")
	for _, tc := range []struct {
		in    string
		track string // the URL the click token must carry, "" = left as is
	}{
		{`<a href="https://acme.example/a">`, "https://acme.example/a"},
		{`<A HREF='http://acme.example/b?x=1&amp;y=2' class="c">`, "http://acme.example/b?x=1&y=2"},
		{`<a class=x href=https://acme.example/c>`, "https://acme.example/c"},
		{`<a href = " https://acme.example/d ">`, "https://acme.example/d"},
		{`<a href="mailto:x@acme.example">`, ""},
		{`<a href="tel:+3312345">`, ""},
		{`<a href="#top">`, ""},
		{`<a href="/relative">`, ""},
		{`<a href="javascript:alert(1)">`, ""},
		{`<a data-repute-notrack href="https://acme.example/e">`, ""},
		{`<a href="https://acme.example/f" DATA-REPUTE-NOTRACK="1">`, ""},
		{`<a href="https://t.acme.example/t/u/xyz">`, ""},
		{`<a name="anchor">`, ""},
		{`<area href="https://acme.example/h">`, ""},
	} {
		src := "<p>before</p>" + tc.in + "text</a><p>after</p>"
		p := mustPrepare(t, &Message{From: "a@acme.example", To: []string{"r@x.example"}, Subject: "s", HTML: src})
		it, _, err := c.Compose(p, "", "r@x.example")
		if err != nil {
			t.Fatal(err)
		}
		html := decodeHTML(t, it.Data)
		html = html[:strings.Index(html, "<img src=\"https://t.acme.example/t/o/")]
		const prefix = "https://t.acme.example/t/c/"
		i := strings.Index(html, prefix)
		if tc.track == "" {
			if html != src {
				t.Errorf("%s: rewritten to %s, want it as it is", tc.in, html)
			}
			continue
		}
		if i < 0 {
			t.Errorf("%s: not tracked: %s", tc.in, html)
			continue
		}
		end := i + strings.IndexAny(html[i:], `"' >`)
		ref, u, err := c.trk.ParseClickToken(html[i+len(prefix) : end])
		if err != nil || ref != it.Ref || u != tc.track {
			t.Errorf("%s: click token gives %v, %q, %v; want %v, %q", tc.in, ref, u, err, it.Ref, tc.track)
		}
		if !strings.HasPrefix(html, "<p>before</p>") || !strings.HasSuffix(html, "text</a><p>after</p>") {
			t.Errorf("%s: bytes around the tag changed: %s", tc.in, html)
		}
	}
}

// TestHTMLBytesKept runs rewriteHTML on HTML html/template would refuse
// or change (it drops comments, Outlook's conditional ones too): only the
// tracked href and the pixel may change.
func TestHTMLBytesKept(t *testing.T) {
	c := newTestComposer(t, "")
	src := "<!DOCTYPE html>\n<html><head><style>a{color:red}</style><script>if (a < b) document.write('<a href=\"https://x.example\">')</script></head>" +
		"<body><!--[if mso]><a href=\"https://c.example\"><![endif]--> &nbsp;&amp;<br/><img src=x><textarea><a href=https://y.example></textarea>\n" +
		"<a\thref=https://z.example\ttitle='t'>z</a>\u00e9 \x00 <p unclosed attr='1\n"
	want := strings.Replace(src, "href=https://z.example", `href="https://t.acme.example/t/c/`+c.trk.ClickToken(refOf(1), "https://z.example")+`"`, 1)
	got := c.rewriteHTML(src, refOf(1), "")
	if i := strings.Index(got, "<img src=\"https://t.acme.example/t/o/"); i < 0 || got[:i] != want {
		t.Errorf("HTML changed:\n got %q\nwant %q", got, want)
	}
}

func TestFeedbackID(t *testing.T) {
	for _, tc := range []struct{ campaign, category, account, sender, want string }{
		{"winter", "marketing", "acme", "news.acme.example", "winter:marketing:acme:news.acme.example"},
		{"", "", "", "news.acme.example", ":::news.acme.example"},
		{"a:b", "", "100%", "d.example", "a%3Ab::100%25:d.example"},
		{"spring sale é", "transactional", "x\r\ny", "d.example", "spring%20sale%20%C3%A9:transactional:x%0D%0Ay:d.example"},
	} {
		if got := feedbackID(tc.campaign, tc.category, tc.account, tc.sender); got != tc.want {
			t.Errorf("feedbackID(%q, %q, %q, %q) = %q, want %q", tc.campaign, tc.category, tc.account, tc.sender, got, tc.want)
		}
	}
	c := newTestComposer(t, "")
	m := goldenMessage()
	m.Category = ""
	it, _, err := c.Compose(mustPrepare(t, m), "acme", "a@x.example")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(it.Data, []byte("\r\nFeedback-ID: winter%3A26::acme:news.acme.example\r\n")) {
		t.Errorf("no Feedback-ID in\n%s", it.Data)
	}
}

func TestFoldField(t *testing.T) {
	long := strings.Repeat("word ", 40)
	f := string(foldField("X-Long", long))
	for _, l := range strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n") {
		if len(l) > 78 {
			t.Errorf("line of %d characters: %q", len(l), l)
		}
	}
	if got := strings.ReplaceAll(f, "\r\n ", " "); got != "X-Long: "+long+"\r\n" {
		t.Errorf("unfolded = %q", got)
	}
}

// The tracking plan made once per message gives the bytes the full
// rewrite of each recipient's HTML gives, whatever the links and the
// markup around them.
func TestTrackingPlanMatchesRewrite(t *testing.T) {
	long := "https://shop.acme.example/" + strings.Repeat("x", MaxClickURL)
	for i, html := range []string{
		`<html><body><a href="https://a.example/1">one</a> <a href='https://a.example/2?x=1&amp;y=2'>two</a> <a href=https://a.example/3>three</a></body></html>`,
		`<p><A HREF="https://a.example/up">up</A><a data-repute-notrack href="https://a.example/no">no</a><a href="mailto:x@y.example">m</a><a href="tel:+100">t</a><a href="#top">#</a><a href="/rel">r</a></p>`,
		`<p><a href="https://t.acme.example/t/c/already">own</a><a href="` + long + `">long</a><a href="{{unsubscribeURL}}">unsub</a><a href="{{ unsubscribeURL }}">unsub2</a></p></BODY>`,
		`<!-- <a href="https://a.example/commented">c</a> --><script>var s = '<a href="https://a.example/script">';</script><body><a href=" https://a.example/spaced ">s</a></body><p>after</p></body>`,
		`<ul>{{range .items}}<li><a href="https://a.example/item">{{.}}</a></li>{{end}}</ul>{{if .vip}}<a href="https://a.example/vip">vip</a>{{end}}`,
		`<p>no links, no body</p>`,
		`<a href="https://click.repute.invalid/7/">looks like ours</a><p>https://click.repute.invalid/x/ in text</p>`,
	} {
		m := &Message{From: "news@news.acme.example", To: []string{"a@x.example"}, Subject: "s", HTML: html,
			Data: map[string]map[string]any{"a@x.example": {"items": []string{"p", "q"}, "vip": true}}}
		compose := func(static bool) string {
			planStatic = static
			defer func() { planStatic = true }()
			p := mustPrepare(t, m)
			if p.plan.dynamic == static {
				t.Fatalf("case %d: plan dynamic=%v with planStatic=%v", i, p.plan.dynamic, static)
			}
			it, _, err := newTestComposer(t, "bounces.acme.example").Compose(p, "acme", "a@x.example")
			if err != nil {
				t.Fatal(err)
			}
			return string(it.Data)
		}
		if planned, rewritten := compose(true), compose(false); planned != rewritten {
			t.Errorf("case %d: the plan's message differs from the rewrite's:\n%s\n----\n%s", i, planned, rewritten)
		}
	}
	// An href holding an action is rewritten per recipient.
	p := mustPrepare(t, &Message{From: "news@news.acme.example", To: []string{"a@x.example"}, Subject: "s",
		HTML: `<a href="https://a.example/u/{{.id}}">me</a>`})
	if !p.plan.dynamic {
		t.Errorf("an href with an action: plan %+v, want dynamic", p.plan)
	}
}
