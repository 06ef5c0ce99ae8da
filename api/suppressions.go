package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"repute/suppress"
)

// SuppressionChecker answers the check every send must pass (package
// suppress, as repute serve keeps it). An error means it cannot answer
// yet (its index is loading): 503 with Retry-After.
type SuppressionChecker interface {
	Check(by suppress.Principal, senderDomain string, recipients []string) ([]suppress.Verdict, error)
}

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

// postSuppressionCheck answers POST /v1/suppressions/check: may the
// caller's account send from sender_domain to each recipient? An account
// key checks for its account; the admin key for ?account=NAME, or against
// the shared blocklist alone without it. Answers come in the order given;
// a recipient that is not an address gets "error" and the rest are
// answered.
func (s *server) postSuppressionCheck(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	by := suppress.Principal{Account: p.Account, Admin: p.Admin}
	if p.Admin {
		by.Account = r.URL.Query().Get("account")
		if by.Account != "" && !s.opts.Keys.knownAccount(by.Account) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("account=%q: no such account is configured", by.Account))
			return
		}
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
		s.retryLater(w, "the suppression lists cannot answer yet: "+err.Error())
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
