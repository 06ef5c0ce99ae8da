package track

import (
	"context"
	"html/template"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"repute/correlate"
	"repute/metrics"
)

// The unsubscribe endpoint, /t/u/TOKEN:
//
//   - GET (and HEAD) shows a page saying what the person leaves — the
//     sender domain and the account's display name — with one button, a
//     form that POSTs back to the same URL. It records nothing: link
//     scanners fetch every URL of a message.
//   - POST unsubscribes: RFC 8058 §3.2's one-click body
//     "List-Unsubscribe=One-Click" (application/x-www-form-urlencoded or
//     multipart/form-data, no cookie, no redirect), or the page's form
//     (field "unsubscribe" = "page"). The unsubscribed event is durable in
//     intake before the answer: the page's confirmation, or a short 200 for
//     one-click.
//
// The event is the same as the one ingest derives from a mailto unsubscribe
// (unsubscribe+TOKEN@bounce domain): kind unsubscribed, the send's account,
// sender domain and recipient, so both end in the same entry of the
// unsubscribe list (package suppress keys it by account, sender domain and
// address). Its source and reason say which way it came: "one-click" or
// "page".
//
// The pages load nothing from elsewhere (Content-Security-Policy
// default-src 'none'), run no script, set no cookie and are never cached.

// Form fields of a POST.
const (
	// oneClickField and oneClickValue are RFC 8058 §3.2's body.
	oneClickField = "List-Unsubscribe"
	oneClickValue = "One-Click"
	// pageField and pageValue are the page's hidden field.
	pageField = "unsubscribe"
	pageValue = "page"
)

// maxFormBytes caps a POST body: the one-click body is 26 bytes.
const maxFormBytes = 64 << 10

type pageData struct {
	Title, Heading, Text string
	Who, Domain          string
	Button               bool
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1.5rem;background:#f6f6f4;color:#1d1d1b;line-height:1.5}
main{max-width:32rem;margin:2rem auto;background:#fff;border-radius:12px;padding:1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.5rem;margin:0 0 1rem}
p{font-size:1.1rem;margin:0 0 1.25rem}
button{display:block;width:100%;min-height:3.25rem;font-size:1.2rem;font-weight:600;border:0;border-radius:10px;background:#b3261e;color:#fff;cursor:pointer}
button:focus{outline:3px solid #1d1d1b;outline-offset:2px}
.domain{font-weight:600;overflow-wrap:anywhere}
</style>
</head>
<body>
<main>
<h1>{{.Heading}}</h1>
{{if .Who}}<p>{{.Text}} <strong>{{.Who}}</strong> (<span class="domain">{{.Domain}}</span>).</p>{{else}}<p>{{.Text}}</p>{{end}}
{{if .Button}}<form method="post">
<input type="hidden" name="unsubscribe" value="page">
<button type="submit" id="unsubscribe">Unsubscribe</button>
</form>{{end}}
</main>
</body>
</html>
`))

func (h *Handler) page(w http.ResponseWriter, status int, d pageData) {
	hd := w.Header()
	hd["Content-Type"] = textHTML
	hd["Content-Security-Policy"] = pageSecurity
	hd["Referrer-Policy"] = noReferrer
	hd["X-Content-Type-Options"] = []string{"nosniff"}
	noCache(hd)
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, d); err != nil {
		h.log.Warn("unsubscribe page", "err", err)
	}
}

var (
	invalidPage = pageData{Title: "Link not valid", Heading: "This unsubscribe link is not valid",
		Text: "Please use the unsubscribe link of the message itself, complete and unchanged."}
	notFoundPage = pageData{Title: "Try again later", Heading: "We could not find this message yet",
		Text: "Please try again in a few minutes."}
	busyPage = pageData{Title: "Try again later", Heading: "Too many requests",
		Text: "You are not unsubscribed yet. Please try again in a minute."}
	errorPage = pageData{Title: "Try again later", Heading: "Something went wrong",
		Text: "You are not unsubscribed yet. Please try again in a few minutes."}
)

func (h *Handler) unsubscribe(w http.ResponseWriter, r *http.Request, tok string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header()["Allow"] = getHeadPost
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.o.Limit != nil {
		if ok, retry := h.o.Limit("unsubscribe", h.clientIP(r)); !ok {
			h.tooMany(w, r, retry)
			return
		}
	}
	ref, err := h.o.Signer.ParseUnsubscribeToken(tok)
	if err != nil {
		h.m.rejUnsub.Inc()
		h.page(w, http.StatusNotFound, invalidPage)
		return
	}
	if r.Method != http.MethodPost {
		h.showPage(w, r, ref)
		return
	}
	source, ok := postKind(r)
	if !ok {
		http.Error(w, `want the body List-Unsubscribe=One-Click (RFC 8058) or the page's form`, http.StatusBadRequest)
		return
	}
	h.m.hitUnsub.Inc()
	s, found, err := h.lookupNow(r.Context(), ref)
	switch {
	case err != nil:
		h.log.Warn("unsubscribe: send lookup failed", "ref", ref.String(), "err", err)
		h.m.dropSubmit.Inc()
		h.retryLater(w, source)
		return
	case !found:
		h.m.unknown.Inc()
		h.m.dropUnknown.Inc()
		if source == SourceOneClick {
			w.Header()["Retry-After"] = []string{"60"}
			http.Error(w, "message not found yet; try again later", http.StatusServiceUnavailable)
			return
		}
		h.page(w, http.StatusServiceUnavailable, notFoundPage)
		return
	}
	now := h.o.Now()
	e := h.event(ref, metrics.KindUnsubscribed, source, source, "", r.UserAgent(), h.clientIP(r), now, s)
	if err := e.Normalize(h.o.ISPs, now); err != nil {
		h.log.Error("unsubscribe event refused", "ref", ref.String(), "err", err)
		h.m.dropSubmit.Inc()
		h.retryLater(w, source)
		return
	}
	dups, err := h.o.Submit(r.Context(), []metrics.Event{e})
	if err != nil {
		h.log.Warn("unsubscribe not taken by intake", "ref", ref.String(), "err", err)
		h.m.dropSubmit.Inc()
		h.retryLater(w, source)
		return
	}
	if dups > 0 {
		h.m.duplicates.Inc()
	} else {
		h.m.events.Inc()
	}
	if source == SourceOneClick {
		noCache(w.Header())
		w.Header()["Content-Type"] = textPlain
		w.Write([]byte("unsubscribed\n"))
		return
	}
	h.page(w, http.StatusOK, pageData{Title: "Unsubscribed", Heading: "You are unsubscribed",
		Text: "You will no longer receive these messages from", Who: h.displayName(s.Account), Domain: s.SenderDomain})
}

// tooMany answers a request over the address's limit: 429 (RFC 6585 §4)
// with Retry-After in whole seconds; plain text to a POST (whose body is
// left unread), the page to a GET.
func (h *Handler) tooMany(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	w.Header()["Retry-After"] = []string{strconv.FormatInt(max(1, int64(math.Ceil(retry.Seconds()))), 10)}
	if r.Method == http.MethodPost {
		http.Error(w, "too many requests from this address; not unsubscribed yet, try again later", http.StatusTooManyRequests)
		return
	}
	h.page(w, http.StatusTooManyRequests, busyPage)
}

func (h *Handler) retryLater(w http.ResponseWriter, source string) {
	w.Header()["Retry-After"] = []string{"60"}
	if source == SourceOneClick {
		http.Error(w, "not unsubscribed yet; try again later", http.StatusServiceUnavailable)
		return
	}
	h.page(w, http.StatusServiceUnavailable, errorPage)
}

func (h *Handler) showPage(w http.ResponseWriter, r *http.Request, ref correlate.Ref) {
	s, found, err := h.lookupNow(r.Context(), ref)
	switch {
	case err != nil:
		h.log.Warn("unsubscribe page: send lookup failed", "ref", ref.String(), "err", err)
		w.Header()["Retry-After"] = []string{"60"}
		h.page(w, http.StatusServiceUnavailable, errorPage)
		return
	case !found:
		h.page(w, http.StatusServiceUnavailable, notFoundPage)
		return
	}
	h.page(w, http.StatusOK, pageData{Title: "Unsubscribe", Heading: "Unsubscribe?",
		Text: "Stop receiving these messages from", Who: h.displayName(s.Account), Domain: s.SenderDomain, Button: true})
}

// lookupNow finds the send of ref for a request, from the cache or the
// store.
func (h *Handler) lookupNow(ctx context.Context, ref correlate.Ref) (metrics.Send, bool, error) {
	if s, found, ok := h.cache.get(ref, h.o.Now()); ok {
		return s, found, nil
	}
	return h.lookup(ctx, ref)
}

func (h *Handler) displayName(account string) string {
	if h.o.DisplayName != nil {
		if n := h.o.DisplayName(account); n != "" {
			return n
		}
	}
	return account
}

// postKind tells an RFC 8058 one-click POST from the page's form by the
// body, whose media type must be one RFC 8058 §3.2 names.
func postKind(r *http.Request) (source string, ok bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" && mt != "multipart/form-data" {
		return "", false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	if mt == "multipart/form-data" {
		if err := r.ParseMultipartForm(maxFormBytes); err != nil {
			return "", false
		}
	} else if err := r.ParseForm(); err != nil {
		return "", false
	}
	switch {
	case strings.EqualFold(r.PostForm.Get(oneClickField), oneClickValue):
		return SourceOneClick, true
	case r.PostForm.Get(pageField) == pageValue:
		return SourcePage, true
	}
	return "", false
}
