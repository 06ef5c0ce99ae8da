package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"repute/metrics"
	"repute/suppress"
)

// Suppressions are the suppression lists as repute serve keeps them
// (package suppress, each change written to the store's log). Every method
// answers ErrNotReady (503 with Retry-After) while the lists are loading;
// the others are suppress's errors: ErrForbidden (403), ErrNotFound (404),
// ErrNoReason and ErrMalformed (400).
type Suppressions interface {
	Check(by suppress.Principal, senderDomain string, recipients []string) ([]suppress.Verdict, error)
	Lookup(by suppress.Principal, address string) ([]suppress.Entry, error)
	// Blocklist and Unsubscribes return a page of a list, newest first,
	// and the cursor of the next ("" on the last).
	Blocklist(by suppress.Principal, q suppress.ListQuery) ([]suppress.Entry, string, error)
	Unsubscribes(by suppress.Principal, q suppress.ListQuery) ([]suppress.Entry, string, error)
	Lift(by suppress.Principal, address, reason string) error
	Unsubscribe(by suppress.Principal, senderDomain, address, reason string) error
	Resubscribe(by suppress.Principal, senderDomain, address, reason string) error
	// Audit returns the changes of the lists q selects, oldest first.
	Audit(ctx context.Context, q metrics.SuppressionQuery) ([]metrics.SuppressionChange, error)
}

// MaxAuditChanges caps one page of GET /v1/audit.
const MaxAuditChanges = 1000

// ErrNotReady is what Suppressions answer while they cannot (loading).
var ErrNotReady = errors.New("the suppression lists are being loaded from the store")

// MaxCheckRecipients bounds the recipients of one check.
const MaxCheckRecipients = 10_000

type checkRequest struct {
	SenderDomain string   `json:"sender_domain"`
	Recipients   []string `json:"recipients"`
}

// checkResult is one recipient's answer, as issue 10 pins it.
type checkResult struct {
	Recipient string `json:"recipient"`
	Allowed   bool   `json:"allowed"`
	List      string `json:"list,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Since     string `json:"since,omitempty"`
	Until     string `json:"until,omitempty"` // absent for unsubscribes
	EventID   string `json:"event_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// suppressionPrincipal is the principal of a suppression call: an account
// key acts within its account; the admin key for ?account=NAME, or as the
// admin alone. ok is false when it answered an error.
func (s *server) suppressionPrincipal(w http.ResponseWriter, r *http.Request) (suppress.Principal, bool) {
	p := principalOf(r)
	by := suppress.Principal{Account: p.Account, Admin: p.Admin}
	if p.Admin {
		by.Account = r.URL.Query().Get("account")
		if by.Account != "" && !s.opts.Keys.knownAccount(by.Account) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("account=%q: no such account is configured", by.Account))
			return by, false
		}
	}
	return by, true
}

// suppressionError answers an error of the lists.
func (s *server) suppressionError(w http.ResponseWriter, err error) {
	var fe *suppress.ForbiddenError
	switch {
	case errors.Is(err, ErrNotReady):
		s.retryLater(w, "the suppression lists cannot answer yet: "+err.Error())
	case errors.As(err, &fe):
		writeError(w, http.StatusForbidden, fe.Error())
	case errors.Is(err, suppress.ErrForbidden):
		writeError(w, http.StatusForbidden, strings.TrimPrefix(err.Error(), "suppress: "))
	case errors.Is(err, suppress.ErrNotFound):
		writeError(w, http.StatusNotFound, strings.TrimPrefix(err.Error(), "suppress: "))
	case errors.Is(err, suppress.ErrNoReason), errors.Is(err, suppress.ErrMalformed), errors.Is(err, errNoAccount),
		errors.Is(err, suppress.ErrMalformedCursor):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "suppress: "))
	default:
		s.log.Error("suppression lists", "err", err)
		s.retryLater(w, "the suppression lists failed: "+err.Error())
	}
}

// errNoAccount: the admin key acting on an account's unsubscribe list
// without naming the account.
var errNoAccount = errors.New("the unsubscribe list is per account: with the admin key, name it with ?account=NAME")

// entryJSON is a list entry as GET /v1/suppressions/{address} shows it.
type entryJSON struct {
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

// getSuppression answers GET /v1/suppressions/{address}: every entry for
// the address the caller may see.
func (s *server) getSuppression(w http.ResponseWriter, r *http.Request) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	entries, err := s.opts.Suppressions.Lookup(by, r.PathValue("address"))
	if err != nil {
		s.suppressionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entriesJSON(entries)})
}

func entriesJSON(entries []suppress.Entry) []entryJSON {
	out := make([]entryJSON, len(entries))
	for i, e := range entries {
		out[i] = entryJSON{List: string(e.List), Address: e.Address, Account: e.Account, Shared: e.Shared,
			SenderDomain: e.SenderDomain, Reason: e.Reason, Since: e.Since.UTC().Format(time.RFC3339), EventID: e.EventID}
		if !e.Until.IsZero() {
			out[i].Until = e.Until.UTC().Format(time.RFC3339)
		}
	}
	return out
}

// listQuery reads the paging and filters of GET /v1/blocklist and GET
// /v1/unsubscribes; ok is false when it answered an error.
func listQuery(w http.ResponseWriter, r *http.Request) (suppress.ListQuery, bool) {
	v := r.URL.Query()
	q := suppress.ListQuery{Cursor: v.Get("cursor"), Reason: v.Get("reason"), SenderDomain: v.Get("sender_domain")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > suppress.MaxListLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit=%q: want 1 to %d", l, suppress.MaxListLimit))
			return q, false
		}
		q.Limit = n
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since=%q: want an RFC 3339 time such as 2026-11-02T09:30:00Z", s))
			return q, false
		}
		q.Since = t
	}
	return q, true
}

// writePage answers a page of a list: {"entries": […], "next": "…"}, next
// absent on the last page.
func writePage(w http.ResponseWriter, entries []suppress.Entry, next string) {
	resp := map[string]any{"entries": entriesJSON(entries)}
	if next != "" {
		resp["next"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

// getBlocklist answers GET /v1/blocklist?limit=&cursor=&reason=&since=: a
// page of the blocklist entries the caller may see (the shared ones and
// its account's own; the admin every one, or with ?account= that
// account's view), newest first, DefaultListLimit a page (at most
// MaxListLimit). "next" is the ?cursor= of the following page.
func (s *server) getBlocklist(w http.ResponseWriter, r *http.Request) {
	s.getList(w, r, s.opts.Suppressions.Blocklist, "sender_domain",
		"sender_domain filters GET /v1/unsubscribes; the blocklist is not per sender domain")
}

// getUnsubscribes answers GET /v1/unsubscribes?sender_domain=&since=&limit=&cursor=:
// a page of the account's unsubscribe list, newest first. The admin key
// names the account with ?account=, or lists every account's without it.
func (s *server) getUnsubscribes(w http.ResponseWriter, r *http.Request) {
	s.getList(w, r, s.opts.Suppressions.Unsubscribes, "reason",
		"reason filters GET /v1/blocklist, not the unsubscribe list")
}

// getList answers a page of one list; the filter named foreign belongs to
// the other list and is refused with why.
func (s *server) getList(w http.ResponseWriter, r *http.Request,
	list func(suppress.Principal, suppress.ListQuery) ([]suppress.Entry, string, error), foreign, why string) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	q, ok := listQuery(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get(foreign) != "" {
		writeError(w, http.StatusBadRequest, why)
		return
	}
	entries, next, err := list(by, q)
	if err != nil {
		s.suppressionError(w, err)
		return
	}
	writePage(w, entries, next)
}

// deleteBlocklist answers DELETE /v1/blocklist/{address}?reason=TEXT: an
// account lifts an entry its own sends caused; another account's needs the
// admin key (403 says so, and the refusal is in the audit).
func (s *server) deleteBlocklist(w http.ResponseWriter, r *http.Request) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	addr := r.PathValue("address")
	if err := s.opts.Suppressions.Lift(by, addr, r.URL.Query().Get("reason")); err != nil {
		s.suppressionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lifted": addr})
}

type unsubscribeRequest struct {
	SenderDomain string `json:"sender_domain"`
	Recipient    string `json:"recipient"`
	Reason       string `json:"reason"`
}

// postUnsubscribe answers POST /v1/unsubscribes: the recipient is put on
// the account's unsubscribe list of the sender domain.
func (s *server) postUnsubscribe(w http.ResponseWriter, r *http.Request) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.bodyError(w, err)
		return
	}
	var req unsubscribeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `malformed unsubscribe: want {"sender_domain", "recipient", "reason"}: `+err.Error())
		return
	}
	if by.Account == "" {
		s.suppressionError(w, errNoAccount)
		return
	}
	if err := s.opts.Suppressions.Unsubscribe(by, req.SenderDomain, req.Recipient, req.Reason); err != nil {
		s.suppressionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"unsubscribed": req.Recipient, "sender_domain": req.SenderDomain})
}

// deleteUnsubscribe answers DELETE
// /v1/unsubscribes?sender_domain=&recipient=&reason=: a re-subscription.
func (s *server) deleteUnsubscribe(w http.ResponseWriter, r *http.Request) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	if by.Account == "" {
		s.suppressionError(w, errNoAccount)
		return
	}
	q := r.URL.Query()
	if err := s.opts.Suppressions.Resubscribe(by, q.Get("sender_domain"), q.Get("recipient"), q.Get("reason")); err != nil {
		s.suppressionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"resubscribed": q.Get("recipient"), "sender_domain": q.Get("sender_domain")})
}

// auditJSON is one change as GET /v1/audit shows it.
type auditJSON struct {
	ID           string `json:"id"`
	Time         string `json:"time"`
	Action       string `json:"action"`
	List         string `json:"list"`
	Address      string `json:"address"`
	Account      string `json:"account,omitempty"`
	Shared       bool   `json:"shared"`
	SenderDomain string `json:"sender_domain,omitempty"`
	Reason       string `json:"reason,omitempty"`
	EventID      string `json:"event_id,omitempty"`
	Since        string `json:"since,omitempty"`
	Until        string `json:"until,omitempty"`
	By           string `json:"by,omitempty"`
}

// getAudit answers GET /v1/audit?address=&account=&limit=&after=: every
// change of the lists — added, extended, counted, expired, lifted, a
// refused lift, unsubscribed, re-subscribed — with who, when, why and the
// event that caused it, oldest first. An account key sees its own
// account's changes; the admin any, filtered by ?account=. A page ends
// with "next", the value of ?after= for the following page.
func (s *server) getAudit(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	v := r.URL.Query()
	q := metrics.SuppressionQuery{Account: v.Get("account"), Limit: MaxAuditChanges}
	if !p.Admin {
		if q.Account != "" && q.Account != p.Account {
			writeError(w, http.StatusForbidden, fmt.Sprintf("this key reads only the audit of account %q", p.Account))
			return
		}
		q.Account = p.Account
	}
	if a := v.Get("address"); a != "" {
		addr, err := suppress.NormalizeAddress(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "suppress: "))
			return
		}
		q.Address = addr
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > MaxAuditChanges {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit=%q: want 1 to %d", l, MaxAuditChanges))
			return
		}
		q.Limit = n
	}
	if a := v.Get("after"); a != "" {
		ns, id, ok := strings.Cut(a, ".")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" { // a SuppressionChangeID
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after=%q: want the \"next\" of the previous page", a))
			return
		}
		q.AfterTime, q.AfterID = time.Unix(0, n), id
	}
	changes, err := s.opts.Suppressions.Audit(r.Context(), q)
	if err != nil {
		s.suppressionError(w, err)
		return
	}
	out := make([]auditJSON, len(changes))
	for i, c := range changes {
		out[i] = auditJSON{ID: c.ID, Time: c.Time.UTC().Format(time.RFC3339Nano), Action: c.Action, List: c.List,
			Address: c.Address, Account: c.Account, Shared: c.Shared, SenderDomain: c.SenderDomain, Reason: c.Reason,
			EventID: c.EventID, By: c.By}
		if !c.Since.IsZero() {
			out[i].Since = c.Since.UTC().Format(time.RFC3339)
		}
		if !c.Until.IsZero() {
			out[i].Until = c.Until.UTC().Format(time.RFC3339)
		}
	}
	resp := map[string]any{"changes": out}
	if len(changes) == q.Limit {
		last := changes[len(changes)-1]
		resp["next"] = strconv.FormatInt(last.Time.UnixNano(), 10) + "." + last.ID
	}
	writeJSON(w, http.StatusOK, resp)
}

// postSuppressionCheck answers POST /v1/suppressions/check: may the
// caller's account send from sender_domain to each recipient? An account
// key checks for its account; the admin key for ?account=NAME, or against
// the shared blocklist alone without it. Answers come in the order given;
// a recipient that is not an address gets "error" and the rest are
// answered.
func (s *server) postSuppressionCheck(w http.ResponseWriter, r *http.Request) {
	by, ok := s.suppressionPrincipal(w, r)
	if !ok {
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.bodyError(w, err)
		return
	}
	var req checkRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `malformed check: want {"sender_domain": "news.example.com", "recipients": ["a@example.org", …]}: `+err.Error())
		return
	}
	switch {
	case req.SenderDomain == "":
		writeError(w, http.StatusBadRequest, "sender_domain is required: the unsubscribe list is kept per sender domain")
		return
	case len(req.Recipients) > MaxCheckRecipients:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d recipients: at most %d a check", len(req.Recipients), MaxCheckRecipients))
		return
	}
	verdicts, err := s.opts.Suppressions.Check(by, req.SenderDomain, req.Recipients)
	if err != nil {
		s.suppressionError(w, err)
		return
	}
	results := make([]checkResult, len(verdicts))
	for i, v := range verdicts {
		res := checkResult{Recipient: v.Recipient, Allowed: v.Allowed, List: string(v.List), Reason: v.Reason,
			EventID: v.EventID, Error: v.Error}
		if !v.Since.IsZero() {
			res.Since = v.Since.UTC().Format(time.RFC3339)
		}
		if !v.Until.IsZero() {
			res.Until = v.Until.UTC().Format(time.RFC3339)
		}
		results[i] = res
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}
