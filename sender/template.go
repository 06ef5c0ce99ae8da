package sender

import (
	"bytes"
	"errors"
	"fmt"
	htemplate "html/template"
	"mime"
	"net/mail"
	"strings"
	ttemplate "text/template"
	"text/template/parse"

	nethtml "golang.org/x/net/html"
	"golang.org/x/net/idna"
)

// ErrInvalidMessage is wrapped by every error Prepare returns for the
// message as a whole (a request error: nothing of it can be sent).
var ErrInvalidMessage = errors.New("sender: invalid message")

// Categories a Message may name (the event's category; their open rates
// differ), or none.
const (
	CategoryMarketing     = "marketing"
	CategoryTransactional = "transactional"
	CategoryRegistration  = "registration"
)

// UnsubscribeFunc is the name of the template function that writes the
// message's one-click unsubscribe URL (the https URL of List-Unsubscribe):
// <a href="{{unsubscribeURL}}">. Click tracking never rewrites it.
const UnsubscribeFunc = "unsubscribeURL"

// unsubscribePlaceholder is what UnsubscribeFunc writes while the
// templates run; the composer replaces it with the recipient's URL. The
// .invalid TLD (RFC 2606) cannot be a real link, and the text survives
// html/template's URL escaping unchanged.
const unsubscribePlaceholder = "https://unsubscribe.repute.invalid/u"

// stampedHeaders are the fields repute writes itself; Message.Headers may
// not set them (compared case-insensitively; the ones ending in '*' are
// prefixes).
var stampedHeaders = []string{
	"From", "To", "Subject", "Message-ID", "Date", "MIME-Version", "Content-*",
	"List-Unsubscribe*", "Feedback-ID", "X-Repute-ID", "DKIM-Signature", "Return-Path",
}

// RecipientError is a problem with one recipient of a Message: that
// recipient is not sent to, the others are.
type RecipientError struct {
	Recipient string // as given in Message.To
	Err       error
}

func (e *RecipientError) Error() string {
	return fmt.Sprintf("sender: recipient %q: %v", e.Recipient, e.Err)
}

func (e *RecipientError) Unwrap() error { return e.Err }

// Prepared is a validated Message with its templates parsed, ready to be
// rendered and composed for each of its recipients. It is safe for
// concurrent use.
type Prepared struct {
	Msg          *Message
	From         *mail.Address // the From address, its domain an A-label
	SenderDomain string        // From's domain, lower-cased A-label

	// Recipients are the usable recipients in the order of Msg.To, as
	// given there (the key of Msg.Data).
	Recipients []string
	addrs      map[string]*mail.Address // recipient → parsed, domain an A-label

	headers [][2]string // Msg.Headers, validated, encoded, sorted by name

	subject *ttemplate.Template
	text    *ttemplate.Template // nil without a text part
	html    *htemplate.Template // nil without an HTML part
	plan    trackingPlan        // how Compose tracks the HTML's links and opens
}

// Prepare validates m and parses its templates once. The error (wrapping
// ErrInvalidMessage) is about the message as a whole; recipient problems
// (an address that does not parse, a duplicate) are returned one by one in
// bad and leave the other recipients usable. When every recipient is bad,
// Prepare returns bad and an error.
func Prepare(m *Message) (p *Prepared, bad []*RecipientError, err error) {
	fail := func(format string, args ...any) (*Prepared, []*RecipientError, error) {
		return nil, nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, args...)...)
	}
	p = &Prepared{Msg: m, addrs: make(map[string]*mail.Address, len(m.To))}

	if strings.TrimSpace(m.From) == "" {
		return fail("from is required")
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fail("from %q: %v", m.From, err)
	}
	if err := toALabel(from); err != nil {
		return fail("from %q: %v", m.From, err)
	}
	p.From = from
	p.SenderDomain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]

	switch m.Category {
	case "", CategoryMarketing, CategoryTransactional, CategoryRegistration:
	default:
		return fail("category %q is none of %s, %s, %s (or empty)", m.Category, CategoryMarketing, CategoryTransactional, CategoryRegistration)
	}
	if strings.TrimSpace(m.Subject) == "" {
		return fail("subject is required")
	}
	if m.HTML == "" && m.Text == "" {
		return fail("html or text is required")
	}
	if p.headers, err = checkHeaders(m.Headers); err != nil {
		return nil, nil, err
	}

	if p.subject, err = ttemplate.New("subject").Option("missingkey=zero").Funcs(blankFuncs).Parse(m.Subject); err != nil {
		return fail("subject template: %v", err)
	}
	blankMissing(p.subject.Tree)
	if m.Text != "" {
		t := ttemplate.New("text").Option("missingkey=zero").Funcs(ttemplate.FuncMap{
			UnsubscribeFunc: func() string { return unsubscribePlaceholder },
		}).Funcs(blankFuncs)
		if p.text, err = t.Parse(m.Text); err != nil {
			return fail("text template: %v", err)
		}
		blankMissing(p.text.Tree)
	}
	if m.HTML != "" {
		src, comments := keepComments(m.HTML)
		if planStatic {
			src, p.plan = planTracking(src)
		} else {
			p.plan.dynamic = true
		}
		t := htemplate.New("html").Option("missingkey=zero").Funcs(htemplate.FuncMap{
			UnsubscribeFunc: func() htemplate.URL { return unsubscribePlaceholder },
			commentFunc:     func(i int) htemplate.HTML { return comments[i] },
		})
		if p.html, err = t.Parse(src); err != nil {
			return fail("html template: %v", err)
		}
	}

	if len(m.To) == 0 {
		return fail("to has no recipient")
	}
	seen := make(map[string]string, len(m.To))
	for _, r := range m.To {
		a, err := mail.ParseAddress(r)
		if err == nil {
			err = toALabel(a)
		}
		if err != nil {
			bad = append(bad, &RecipientError{Recipient: r, Err: err})
			continue
		}
		key := strings.ToLower(a.Address)
		if first, dup := seen[key]; dup {
			bad = append(bad, &RecipientError{Recipient: r, Err: fmt.Errorf("the same address as %q, listed before", first)})
			continue
		}
		seen[key] = r
		p.addrs[r] = a
		p.Recipients = append(p.Recipients, r)
	}
	if len(p.Recipients) == 0 {
		return nil, bad, fmt.Errorf("%w: no usable recipient among %d", ErrInvalidMessage, len(m.To))
	}
	return p, bad, nil
}

// toALabel rewrites a's domain to lower-case A-labels (RFC 5891 §4: a
// header without SMTPUTF8 is ASCII), and refuses a non-ASCII local part,
// which only SMTPUTF8 (RFC 6531) could carry and which the relay may not
// offer.
func toALabel(a *mail.Address) error {
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return fmt.Errorf("address %q has no local part or no domain", a.Address)
	}
	local, domain := a.Address[:at], a.Address[at+1:]
	if !isASCII(local) {
		return fmt.Errorf("address %q: a non-ASCII local part needs SMTPUTF8, which is not supported", a.Address)
	}
	d, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return fmt.Errorf("domain %q: %v", domain, err)
	}
	a.Address = local + "@" + strings.ToLower(d)
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkHeaders validates the extra header fields of a Message: names as
// RFC 5322 §3.6.8 defines them (printable ASCII but ':'), none repute
// stamps itself, values on one line. Non-ASCII values are written as RFC
// 2047 encoded words. The result is sorted by name, so that the message
// does not depend on map order.
func checkHeaders(h map[string]string) ([][2]string, error) {
	out := make([][2]string, 0, len(h))
	for k, v := range h {
		if k == "" {
			return nil, fmt.Errorf("%w: header with an empty name", ErrInvalidMessage)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c < 33 || c > 126 || c == ':' {
				return nil, fmt.Errorf("%w: header name %q: %q is not allowed in a field name (RFC 5322 §3.6.8)", ErrInvalidMessage, k, k[i])
			}
		}
		for _, s := range stampedHeaders {
			if p, ok := strings.CutSuffix(s, "*"); ok && len(k) >= len(p) && strings.EqualFold(k[:len(p)], p) || strings.EqualFold(k, s) {
				return nil, fmt.Errorf("%w: header %q is stamped by repute and cannot be set", ErrInvalidMessage, k)
			}
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("%w: header %q: the value contains a line break", ErrInvalidMessage, k)
		}
		if !isASCII(v) {
			v = mime.QEncoding.Encode("utf-8", v)
		}
		out = append(out, [2]string{k, v})
	}
	sortPairs(out)
	return out, nil
}

func sortPairs(p [][2]string) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j][0] < p[j-1][0]; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// blankMissing makes every printing action of a text/template tree pass
// its value through blankNil, so that a key missing from the recipient's
// data prints nothing.
//
// QUIRK: text/template prints "<no value>" for a key missing from a
// map[string]any even with missingkey=zero (the zero of an interface is
// nil); html/template already prints nothing.
func blankMissing(t *parse.Tree) {
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 {
				id := parse.NewIdentifier("blankNil").SetTree(t).SetPos(n.Pos)
				n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{id}})
			}
		case *parse.IfNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.List)
			walk(n.ElseList)
		}
	}
	walk(t.Root)
}

var blankFuncs = ttemplate.FuncMap{"blankNil": blankNil}

func blankNil(v any) any {
	if v == nil {
		return ""
	}
	return v
}

// rendered is a Message's subject and bodies for one recipient.
type rendered struct {
	Subject, Text, HTML string
}

// render executes the templates for recipient (as given in Msg.To) with
// its Msg.Data entry (none: an empty map). The error (a *RecipientError)
// is about this recipient only. In the bodies, the template function
// UnsubscribeFunc wrote a placeholder the composer replaces.
func (p *Prepared) render(recipient string) (rendered, error) {
	data := p.Msg.Data[recipient]
	if data == nil {
		data = map[string]any{}
	}
	var r rendered
	var b bytes.Buffer
	fail := func(part string, err error) (rendered, error) {
		return rendered{}, &RecipientError{Recipient: recipient, Err: fmt.Errorf("%s template: %v", part, err)}
	}
	if err := p.subject.Execute(&b, data); err != nil {
		return fail("subject", err)
	}
	// A subject is one line: data with a line break must not add header
	// fields.
	r.Subject = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(b.String())
	if p.text != nil {
		b.Reset()
		if err := p.text.Execute(&b, data); err != nil {
			return fail("text", err)
		}
		r.Text = b.String()
	}
	if p.html != nil {
		b.Reset()
		if err := p.html.Execute(&b, data); err != nil {
			return fail("html", err)
		}
		r.HTML = b.String()
	}
	return r, nil
}

// planStatic turns the tracking plan of HTML templates on (planTracking);
// tests turn it off to compare with the per-recipient rewrite.
var planStatic = true

// commentFunc is the template function keepComments writes in place of
// each comment.
const commentFunc = "reputeComment"

// keepComments replaces the HTML comments of an html template with calls
// of commentFunc, which prints each verbatim. html/template drops comments
// (one could hide an escaping context), but email HTML needs them:
// Outlook for Windows renders with Word's engine and reads conditional
// comments (<!--[if mso]> … <![endif]-->, Microsoft's "conditional
// comments" documentation) for its VML buttons, table widths and fonts; a
// newsletter without them breaks there. The tokenizer of
// golang.org/x/net/html finds the comments as a browser would, so the
// text of <style> and <script> (raw text, HTML §13.1.2) is left as it is.
// What is inside a comment is not a template: its {{…}} stay as written.
func keepComments(src string) (string, []htemplate.HTML) {
	if !strings.Contains(src, "<!--") {
		return src, nil
	}
	var (
		out      strings.Builder
		comments []htemplate.HTML
		off      int
	)
	z := nethtml.NewTokenizer(strings.NewReader(src))
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			break
		}
		raw := z.Raw()
		if tt == nethtml.CommentToken && strings.HasPrefix(string(raw), "<!--") {
			fmt.Fprintf(&out, "{{%s %d}}", commentFunc, len(comments))
			comments = append(comments, htemplate.HTML(raw))
		} else {
			out.Write(raw)
		}
		off += len(raw)
	}
	out.WriteString(src[off:])
	return out.String(), comments
}
