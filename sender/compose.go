package sender

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	nethtml "golang.org/x/net/html"

	"repute/correlate"
	"repute/dsn"
)

// Prefixes of the VERP local parts the composer writes (RFC 5233
// subaddresses of the bounce domain's mailboxes).
const (
	BouncePrefix      = "bounces"
	UnsubscribePrefix = "unsubscribe"
)

// NoTrackAttr is the attribute that keeps click tracking off one link:
// <a href="…" data-repute-notrack>.
const NoTrackAttr = "data-repute-notrack"

// messageIDRandSize is the random part of a Message-ID: 128 bits, 26
// characters of base32.
const messageIDRandSize = 16

// ComposerOptions configures a Composer.
type ComposerOptions struct {
	// Correlate signs the correlation token of the X-Repute-ID header, the
	// VERP return path and the List-Unsubscribe mailto. Required.
	Correlate *correlate.Signer
	// Tracking signs the pixel, click and unsubscribe tokens. Required.
	Tracking *TrackingSigner
	// TrackingURL is the public base URL of the tracking endpoints, e.g.
	// https://t.acme.example; a trailing slash is dropped. Required.
	TrackingURL string
	// BounceDomain receives bounces (MAIL FROM bounces+TOKEN@) and mailto
	// unsubscribes. Empty: the envelope sender is the From address and
	// List-Unsubscribe has no mailto.
	BounceDomain string
	// DKIM holds the signing keys, any number per sender domain.
	DKIM []DKIMKey
	// Rand is the source of references, Message-IDs and boundaries
	// (default crypto/rand).
	Rand io.Reader
	// Now is the clock of the Date field (default time.Now).
	Now func() time.Time
}

// Composer writes the messages the relay gets: rendered for their
// recipient, stamped with the marks that make feedback traceable, signed.
// It is safe for concurrent use when Rand is.
type Composer struct {
	corr     *correlate.Signer
	trk      *TrackingSigner
	base     string // TrackingURL without a trailing slash
	bounce   string
	keys     map[string][]DKIMKey
	rand     io.Reader
	now      func() time.Time
	ownLinks string // base + "/t/": links to our endpoints are not tracked
}

// NewComposer checks o and returns a Composer.
func NewComposer(o ComposerOptions) (*Composer, error) {
	if o.Correlate == nil || o.Tracking == nil {
		return nil, errors.New("sender: composer: the correlation and tracking signers are required")
	}
	base := strings.TrimRight(o.TrackingURL, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sender: composer: tracking URL %q is not an absolute http(s) URL without query", o.TrackingURL)
	}
	if o.BounceDomain != "" {
		if _, err := correlate.VERPAddress(BouncePrefix, strings.Repeat("a", correlate.TokenLen), o.BounceDomain); err != nil {
			return nil, fmt.Errorf("sender: composer: bounce domain %q: %w", o.BounceDomain, err)
		}
	}
	c := &Composer{
		corr: o.Correlate, trk: o.Tracking, base: base, bounce: strings.ToLower(o.BounceDomain),
		keys: map[string][]DKIMKey{}, rand: o.Rand, now: o.Now, ownLinks: base + "/t/",
	}
	for _, k := range o.DKIM {
		if k.Domain == "" || k.Selector == "" || k.Signer == nil {
			return nil, fmt.Errorf("sender: composer: DKIM key for %q, selector %q: domain, selector and key are required", k.Domain, k.Selector)
		}
		d := strings.ToLower(k.Domain)
		c.keys[d] = append(c.keys[d], k)
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Signs reports whether messages from domain get a DKIM signature.
func (c *Composer) Signs(domain string) bool { return len(c.keys[strings.ToLower(domain)]) > 0 }

// Compose renders p for recipient (as given in Message.To), stamps and
// signs it, and returns the Item the queue keeps, its Ref, MessageID,
// EnvelopeFrom and Data filled. signed is false when the sender domain has
// no DKIM key: the message is then sent unsigned (say so once in the log).
// An error about the recipient alone (its templates failed) is a
// *RecipientError; other errors (reading Rand, signing) are the composer's.
//
// What it writes, top to bottom:
//
//   - DKIM-Signature, one per key of the sender domain (RFC 6376, RFC 8463)
//   - From, To, Subject, Date (RFC 5322 §3.6); Message-ID <random@sender-domain>
//   - X-Repute-ID: the correlation token (dsn.CorrelationHeader)
//   - List-Unsubscribe with the https one-click URL and, with a bounce
//     domain, a mailto whose VERP token is the correlation token (RFC 2369
//     §3.2); List-Unsubscribe-Post (RFC 8058 §3.1)
//   - Feedback-ID campaign:category:account:sender-domain (Gmail's format;
//     see feedbackIDPart for the escaping)
//   - Message.Headers, sorted by name
//   - MIME-Version, and the body: multipart/alternative of text/plain then
//     text/html (RFC 2046 §5.1.4: the preferred last) when both are given,
//     the single part otherwise, each part quoted-printable UTF-8.
//
// Quoted-printable always: it keeps the message 7-bit, so no relay
// downgrades it (RFC 6152) and breaks the body hash, and it folds the
// long lines of generated HTML below RFC 5322's 998 octets.
//
// The HTML part gets click tracking (rewriteLinks) and the open pixel;
// a text-only message gets neither. Links in the text part are left as they
// are: a rewritten plain-text URL is what a reader copies and pastes, and an
// opaque redirect in plain sight looks like phishing.
func (c *Composer) Compose(p *Prepared, account, recipient string) (it *Item, signed bool, err error) {
	rcpt, ok := p.addrs[recipient]
	if !ok {
		return nil, false, fmt.Errorf("sender: compose: %q is not a usable recipient of the message", recipient)
	}
	r, err := p.render(recipient)
	if err != nil {
		return nil, false, err
	}
	ref, err := correlate.ReadRef(c.rand)
	if err != nil {
		return nil, false, fmt.Errorf("sender: compose: %w", err)
	}
	var idr [messageIDRandSize]byte
	if _, err := io.ReadFull(c.rand, idr[:]); err != nil {
		return nil, false, fmt.Errorf("sender: compose: reading a Message-ID: %w", err)
	}
	idRand := b32.EncodeToString(idr[:])
	msgID := "<" + idRand + "@" + p.SenderDomain + ">"
	ctoken := c.corr.Token(ref)
	m := p.Msg

	envFrom := p.From.Address
	unsubURL := c.base + "/t/u/" + c.trk.UnsubscribeToken(ref)
	listUnsub := "<" + unsubURL + ">"
	if c.bounce != "" {
		if envFrom, err = correlate.VERPAddress(BouncePrefix, ctoken, c.bounce); err != nil {
			return nil, false, fmt.Errorf("sender: compose: %w", err)
		}
		mailto, err := correlate.VERPAddress(UnsubscribePrefix, ctoken, c.bounce)
		if err != nil {
			return nil, false, fmt.Errorf("sender: compose: %w", err)
		}
		listUnsub += ", <mailto:" + mailto + ">"
	}

	text := strings.ReplaceAll(r.Text, unsubscribePlaceholder, unsubURL)
	html := ""
	if r.HTML != "" {
		html = strings.ReplaceAll(r.HTML, unsubscribePlaceholder, unsubURL)
		if p.plan.dynamic {
			html = c.rewriteHTML(html, ref, unsubURL)
		} else {
			html = c.trackPlanned(html, &p.plan, ref, unsubURL)
		}
	}

	fields := make([]string, 0, 16+len(p.headers))
	fields = append(fields,
		"From", p.From.String(),
		"To", rcpt.String(),
		"Subject", encodeWord(r.Subject),
		"Date", c.now().Format(time.RFC1123Z),
		"Message-ID", msgID,
		dsn.CorrelationHeader, ctoken,
		"List-Unsubscribe", listUnsub,
		"List-Unsubscribe-Post", "List-Unsubscribe=One-Click",
		"Feedback-ID", feedbackID(m.Campaign, m.Category, account, p.SenderDomain),
	)
	for _, h := range p.headers {
		fields = append(fields, h[0], h[1])
	}
	fields = append(fields, "MIME-Version", "1.0")
	boundary := "=_" + idRand // "=_" cannot occur in quoted-printable text
	switch {
	case text != "" && html != "":
		fields = append(fields, "Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	case html != "":
		fields = append(fields, "Content-Type", "text/html; charset=utf-8", "Content-Transfer-Encoding", "quoted-printable")
	default:
		fields = append(fields, "Content-Type", "text/plain; charset=utf-8", "Content-Transfer-Encoding", "quoted-printable")
	}

	var buf bytes.Buffer
	buf.Grow(len(text) + len(html)*11/10 + 2048)
	if err := writeMessage(&buf, fields, text, html); err != nil {
		return nil, false, fmt.Errorf("sender: compose: %w", err)
	}
	data := buf.Bytes()
	if keys := c.keys[p.SenderDomain]; len(keys) > 0 {
		sig, err := dkimSign(data, keys)
		if err != nil {
			return nil, false, err
		}
		data = append(sig, data...)
		signed = true
	}
	return &Item{
		Ref:          ref,
		Account:      account,
		SenderDomain: p.SenderDomain,
		Campaign:     m.Campaign,
		Category:     m.Category,
		MessageID:    msgID,
		Recipient:    rcpt.Address,
		EnvelopeFrom: envFrom,
		Data:         data,
	}, signed, nil
}

// writeMessage writes the header fields (name, value pairs, in order) and
// the body with go-message.
func writeMessage(w io.Writer, fields []string, text, html string) error {
	var h message.Header
	// textproto writes the fields last added first.
	for i := len(fields) - 2; i >= 0; i -= 2 {
		h.AddRaw(foldField(fields[i], fields[i+1]))
	}
	mw, err := message.CreateWriter(w, h)
	if err != nil {
		return err
	}
	if text != "" && html != "" {
		for _, part := range [][2]string{{"text/plain", text}, {"text/html", html}} {
			var ph message.Header
			ph.AddRaw([]byte("Content-Transfer-Encoding: quoted-printable\r\n"))
			ph.AddRaw([]byte("Content-Type: " + part[0] + "; charset=utf-8\r\n"))
			pw, err := mw.CreatePart(ph)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(pw, part[1]); err != nil {
				return err
			}
			if err := pw.Close(); err != nil {
				return err
			}
		}
	} else if _, err := io.WriteString(mw, text+html); err != nil {
		return err
	}
	return mw.Close()
}

// foldField returns "name: value" CRLF, folded at spaces so that lines stay
// within 78 characters where the value allows (RFC 5322 §2.1.1, §2.2.3).
func foldField(name, value string) []byte {
	const max = 78
	b := make([]byte, 0, len(name)+len(value)+8)
	b = append(b, name...)
	b = append(b, ": "...)
	line := len(b)
	for value != "" {
		word, rest, found := strings.Cut(value, " ")
		if line > 1 && line+len(word) > max && len(b) > len(name)+2 {
			// the space before word becomes the fold's white space
			b = append(b[:len(b)-1], "\r\n "...)
			line = 1
		}
		b = append(b, word...)
		line += len(word)
		if found {
			b = append(b, ' ')
			line++
		}
		value = rest
	}
	return append(b, "\r\n"...)
}

// encodeWord returns s as is when it is ASCII, else as RFC 2047 encoded
// words.
func encodeWord(s string) string {
	if isASCII(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

// feedbackID returns the Feedback-ID value campaign:category:account:
// sender-domain, the order of Gmail's Feedback Loop (the last field is the
// sender ID, the others identifiers Gmail aggregates by). Empty parts stay
// empty.
func feedbackID(campaign, category, account, sender string) string {
	return feedbackIDPart(campaign) + ":" + feedbackIDPart(category) + ":" + feedbackIDPart(account) + ":" + feedbackIDPart(sender)
}

// feedbackIDPart percent-encodes (RFC 3986 §2.1) what would break the
// Feedback-ID format: ':' (the separator), '%' (so the encoding stays
// reversible), space, controls and non-ASCII bytes. Gmail compares the
// parts as opaque strings, so an escaped part still groups correctly.
func feedbackIDPart(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != ':' && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)+8), s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return s
	}
	return string(b)
}

// rewriteHTML tracks the clicks on the links of html and appends the open
// pixel, leaving every other byte as it is. It uses the x/net/html
// tokenizer to find the tags (so that comments, scripts and attribute
// values that look like tags are skipped as a browser would) and its own
// scanner for the href of an <a> start tag, which the tokenizer gives
// unescaped and without its position.
func (c *Composer) rewriteHTML(html string, ref correlate.Ref, unsubURL string) string {
	var out strings.Builder
	out.Grow(len(html) + len(html)/4 + 256)
	z := nethtml.NewTokenizer(strings.NewReader(html))
	pos, body := 0, -1
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			break
		}
		raw := z.Raw()
		switch tt {
		case nethtml.StartTagToken, nethtml.SelfClosingTagToken:
			if name, hasAttr := z.TagName(); hasAttr && len(name) == 1 && name[0] == 'a' {
				if s, ok := c.rewriteAnchor(raw, ref, unsubURL); ok {
					out.WriteString(s)
					pos += len(raw)
					continue
				}
			}
		case nethtml.EndTagToken:
			if name, _ := z.TagName(); string(name) == "body" {
				body = out.Len()
			}
		}
		out.Write(raw)
		pos += len(raw)
	}
	out.WriteString(html[min(pos, len(html)):]) // what the tokenizer left at EOF, if anything
	s := out.String()
	pixel := c.pixel(ref)
	if body < 0 {
		return s + pixel
	}
	return s[:body] + pixel + s[body:]
}

// rewriteAnchor returns the <a> start tag raw with its href pointing to the
// click redirect, and whether it changed it. A link is tracked when its
// href is an absolute http or https URL of at most MaxClickURL bytes, not
// the unsubscribe URL nor another of our tracking URLs, and the tag has no
// NoTrackAttr. mailto:, tel:, fragments (#…), relative and other URLs are
// left alone.
func (c *Composer) rewriteAnchor(raw []byte, ref correlate.Ref, unsubURL string) (string, bool) {
	a := scanAnchor(raw)
	if a.hrefStart < 0 || a.notrack {
		return "", false
	}
	u := a.url(raw)
	if !trackable(u) || u == unsubURL || strings.HasPrefix(u, c.ownLinks) {
		return "", false
	}
	return a.withHref(raw, c.clickURL(ref, u)), true
}

// pixel is the open pixel's tag for ref.
func (c *Composer) pixel(ref correlate.Ref) string {
	return `<img src="` + nethtml.EscapeString(c.base+"/t/o/"+c.trk.OpenToken(ref)+".gif") +
		`" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">`
}

// clickURL is the click redirect of u for ref.
func (c *Composer) clickURL(ref correlate.Ref, u string) string {
	return c.base + "/t/c/" + c.trk.ClickToken(ref, u)
}

// trackable reports whether a link's URL may be tracked: an absolute http
// or https URL of at most MaxClickURL bytes.
func trackable(u string) bool { return len(u) <= MaxClickURL && hasHTTPScheme(u) }

// anchor is where the href of an <a> start tag is, and whether the tag opts
// out of tracking.
type anchor struct {
	hrefStart, hrefEnd int // the value's bytes; -1 without an href
	quoted             bool
	notrack            bool
}

// url is the link of the href: its value unescaped and trimmed (HTML
// §4.6.1: a URL potentially surrounded by spaces).
func (a anchor) url(raw []byte) string {
	return strings.Trim(nethtml.UnescapeString(string(raw[a.hrefStart:a.hrefEnd])), "\t\n\f\r ")
}

// withHref returns the tag raw with its href value replaced by u, quoted.
func (a anchor) withHref(raw []byte, u string) string {
	href := nethtml.EscapeString(u)
	if !a.quoted {
		href = `"` + href + `"`
	}
	return string(raw[:a.hrefStart]) + href + string(raw[a.hrefEnd:])
}

// scanAnchor finds the href of an <a> start tag (its raw bytes, as the
// tokenizer gives them), following HTML's attribute syntax (§13.2.5.32 ff.).
func scanAnchor(raw []byte) anchor {
	a := anchor{hrefStart: -1, hrefEnd: -1}
	i := 1
	for i < len(raw) && !isHTMLSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' {
		i++ // the tag name
	}
	for i < len(raw) {
		for i < len(raw) && (isHTMLSpace(raw[i]) || raw[i] == '/') {
			i++
		}
		if i >= len(raw) || raw[i] == '>' {
			break
		}
		ns := i
		i++ // a name may begin with '=' (HTML §13.2.5.32)
		for i < len(raw) && !isHTMLSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' && raw[i] != '=' {
			i++
		}
		name := raw[ns:i]
		for i < len(raw) && isHTMLSpace(raw[i]) {
			i++
		}
		vs, ve, q := -1, -1, false
		if i < len(raw) && raw[i] == '=' {
			i++
			for i < len(raw) && isHTMLSpace(raw[i]) {
				i++
			}
			if i < len(raw) && (raw[i] == '"' || raw[i] == '\'') {
				qc := raw[i]
				i++
				vs = i
				for i < len(raw) && raw[i] != qc {
					i++
				}
				ve, q = i, true
				i++
			} else {
				vs = i
				for i < len(raw) && !isHTMLSpace(raw[i]) && raw[i] != '>' {
					i++
				}
				ve = i
			}
		}
		switch {
		case strings.EqualFold(string(name), "href") && a.hrefStart < 0 && vs >= 0:
			a.hrefStart, a.hrefEnd, a.quoted = vs, min(ve, len(raw)), q
		case strings.EqualFold(string(name), NoTrackAttr):
			a.notrack = true
		}
	}
	return a
}

func hasHTTPScheme(u string) bool {
	return len(u) > 7 && strings.EqualFold(u[:7], "http://") || len(u) > 8 && strings.EqualFold(u[:8], "https://")
}

// isHTMLSpace reports ASCII whitespace as HTML defines it.
func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// The tracking plan of an HTML template. Links are found once per message,
// in its template, not per recipient in the rendered HTML: each static link
// to track becomes a placeholder URL, and the place of the pixel a marker,
// which Compose replaces for each recipient by plain string search. Only
// the template's own text can hold links (html/template escapes what the
// data brings, so a value cannot add a tag); a template whose href holds an
// action ({{…}}, other than {{unsubscribeURL}}) is planned as dynamic and
// rewritten per recipient in full (rewriteHTML). The .invalid TLD
// (RFC 2606) keeps a placeholder from being a real link.
const (
	clickPlaceholder = "https://click.repute.invalid/" // + the link's index + "/"
	pixelMarker      = "<img src=\"https://open.repute.invalid/\">"
)

// trackingPlan says how Compose tracks a prepared HTML template.
type trackingPlan struct {
	dynamic     bool     // rewrite the rendered HTML per recipient (rewriteHTML)
	links       []string // the URL of each click placeholder, by index
	pixelMarked bool     // pixelMarker stands before the last </body>; else the pixel is appended
}

// planTracking replaces the trackable links of an HTML template src with
// placeholders and marks the pixel's place, following rewriteHTML's rules;
// it returns src as it is, and a dynamic plan, when an href holds an action.
func planTracking(src string) (string, trackingPlan) {
	var (
		out  strings.Builder
		plan trackingPlan
		pos  int
		body = -1
	)
	out.Grow(len(src) + 64)
	z := nethtml.NewTokenizer(strings.NewReader(src))
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			break
		}
		raw := z.Raw()
		pos += len(raw)
		switch tt {
		case nethtml.StartTagToken, nethtml.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if !hasAttr || len(name) != 1 || name[0] != 'a' {
				break
			}
			a := scanAnchor(raw)
			if a.hrefStart < 0 || a.notrack {
				break
			}
			value := string(raw[a.hrefStart:a.hrefEnd])
			if strings.Contains(value, "{{") {
				if isUnsubscribeAction(value) {
					break
				}
				return src, trackingPlan{dynamic: true}
			}
			if u := a.url(raw); trackable(u) {
				out.WriteString(a.withHref(raw, clickPlaceholder+strconv.Itoa(len(plan.links))+"/"))
				plan.links = append(plan.links, u)
				continue
			}
		case nethtml.EndTagToken:
			if name, _ := z.TagName(); string(name) == "body" {
				body = out.Len()
			}
		}
		out.Write(raw)
	}
	out.WriteString(src[min(pos, len(src)):])
	s := out.String()
	if body >= 0 {
		s = s[:body] + pixelMarker + s[body:]
		plan.pixelMarked = true
	}
	return s, plan
}

// isUnsubscribeAction reports whether an href value is only the action
// that writes the unsubscribe URL, which is never tracked.
func isUnsubscribeAction(v string) bool {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "{{") || !strings.HasSuffix(v, "}}") {
		return false
	}
	v = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(v, "{{"), "}}"), "-"), "-"))
	return v == UnsubscribeFunc
}

// trackPlanned applies a static plan to the rendered html for ref: each
// click placeholder becomes its link's redirect, the marker the pixel.
func (c *Composer) trackPlanned(html string, plan *trackingPlan, ref correlate.Ref, unsubURL string) string {
	var out strings.Builder
	out.Grow(len(html) + len(plan.links)*160 + 256)
	for {
		i := strings.Index(html, clickPlaceholder)
		if i < 0 {
			break
		}
		rest := html[i+len(clickPlaceholder):]
		j := strings.IndexByte(rest, '/')
		n, err := strconv.Atoi(rest[:max(j, 0)])
		if j < 0 || err != nil || n < 0 || n >= len(plan.links) {
			// Not ours (a value that looks like one): kept as it is.
			out.WriteString(html[:i+len(clickPlaceholder)])
			html = rest
			continue
		}
		out.WriteString(html[:i])
		u := plan.links[n]
		if strings.HasPrefix(u, c.ownLinks) || u == unsubURL {
			out.WriteString(nethtml.EscapeString(u))
		} else {
			out.WriteString(nethtml.EscapeString(c.clickURL(ref, u)))
		}
		html = rest[j+1:]
	}
	out.WriteString(html)
	s := out.String()
	pixel := c.pixel(ref)
	if plan.pixelMarked {
		return strings.ReplaceAll(s, pixelMarker, pixel)
	}
	return s + pixel
}
