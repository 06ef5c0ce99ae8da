package api

import (
	"fmt"
	"net/http"
	"time"
)

// Webhooks are the accounts' webhook dispatchers as repute serve runs
// them: each tells its account's URL of the changes of its unsubscribe
// list, in order, retrying with backoff.
type Webhooks interface {
	// Deliveries returns the status of account's webhook, or of every
	// account's when account is ""; an account without a webhook has
	// none.
	Deliveries(account string) []WebhookStatus
}

// WebhookStatus is the state of one account's webhook.
type WebhookStatus struct {
	Account string `json:"account"`
	URL     string `json:"url"`
	// Cursor is the last change delivered (or skipped: not of the
	// unsubscribe list); zero before the first.
	Cursor WebhookCursor `json:"cursor"`
	// Pending counts the changes read after the cursor and not yet
	// delivered.
	Pending int `json:"pending"`
	// Attempts are the last delivery attempts, oldest first.
	Attempts []WebhookAttempt `json:"attempts"`
}

// WebhookCursor is a position in the store's log of suppression changes.
type WebhookCursor struct {
	Time time.Time `json:"time"`
	// Logged is when the store took the change: the dispatcher follows
	// the log in the order it was written.
	Logged time.Time `json:"logged"`
	ID     string    `json:"id,omitempty"`
}

// WebhookAttempt is one POST of a change to the account's URL.
type WebhookAttempt struct {
	ChangeID string    `json:"change_id"`
	Time     time.Time `json:"time"`
	URL      string    `json:"url"`
	Attempt  int       `json:"attempt"`          // 1 for the first POST of the change
	Status   int       `json:"status,omitempty"` // the HTTP status answered, if any
	Error    string    `json:"error,omitempty"`  // why it failed, if it did
	// NextRetry is when the change is tried again, after a failure.
	NextRetry *time.Time `json:"next_retry,omitempty"`
}

// getWebhookDeliveries answers GET /v1/webhooks/deliveries: an account
// key its own webhook; the admin key every account's, or ?account=NAME's.
func (s *server) getWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	account := r.URL.Query().Get("account")
	switch {
	case p.Admin:
		if account != "" && !s.opts.Keys.knownAccount(account) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("account=%q: no such account is configured", account))
			return
		}
	case account != "" && account != p.Account:
		writeError(w, http.StatusForbidden, fmt.Sprintf("this key reads only the webhook of account %q", p.Account))
		return
	default:
		account = p.Account
	}
	status := s.opts.Webhooks.Deliveries(account)
	if status == nil {
		status = []WebhookStatus{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": status})
}
