package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"repute/metrics"
	"repute/sender"
	"repute/suppress"
)

// Sender is repute's built-in sender as POST /v1/messages and GET
// /v1/queue use it.
type Sender interface {
	// Compose renders, stamps and signs p for one recipient (as given in
	// p.Msg.To) of account. An error about that recipient alone is a
	// *sender.RecipientError.
	Compose(p *sender.Prepared, account, recipient string) (*sender.Item, error)
	// Record records dropped events durably (intake's Submit).
	Record(ctx context.Context, dropped []metrics.Event) error
	// Enqueue queues items durably, all or none.
	Enqueue(items []*sender.Item) error
	// Summary summarises what waits in the queue, for one account ("":
	// every account).
	Summary(account string) sender.QueueSummary
}

// MaxMessageRecipients bounds the recipients of one POST /v1/messages: the
// bound of a suppression check.
const MaxMessageRecipients = MaxCheckRecipients

// errSenderOff answers the sender's routes when no relay is configured.
const errSenderOff = "the built-in sender is off: set sender.relay in the configuration file (see README, Sending)"

// messageResult is one recipient's answer of POST /v1/messages, as issue
// 11 pins it.
type messageResult struct {
	Recipient string `json:"recipient"`
	MessageID string `json:"message_id,omitempty"`
	Status    string `json:"status"` // queued | dropped
	Reason    string `json:"reason,omitempty"`
}

// Statuses of a messageResult.
const (
	statusQueued  = "queued"
	statusDropped = "dropped"
)

// messageAccount is the account a sender call acts for: an account key's
// own; the admin key names it with ?account= (required). ok is false when
// it answered an error.
func (s *server) messageAccount(w http.ResponseWriter, r *http.Request, required bool) (string, bool) {
	p := principalOf(r)
	account := r.URL.Query().Get("account")
	if !p.Admin {
		if account != "" && account != p.Account {
			writeError(w, http.StatusForbidden, fmt.Sprintf("this key acts only for account %q", p.Account))
			return "", false
		}
		return p.Account, true
	}
	switch {
	case account == "" && required:
		writeError(w, http.StatusBadRequest, "with the admin key, name the account the message is sent for with ?account=NAME")
		return "", false
	case account != "" && !s.opts.Keys.knownAccount(account):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("account=%q: no such account is configured", account))
		return "", false
	}
	return account, true
}

// postMessages answers POST /v1/messages: one message, sent to each of its
// recipients. In the order of "to", a recipient is dropped when it is not
// an address (invalid_recipient) or when the suppression lists refuse it
// for the account and the sender domain (blocklisted, unsubscribed), with a
// dropped event naming the list, the entry's reason and its event; every
// other recipient gets its own composed copy, queued. The dropped events
// are recorded first, then every copy is queued at once: 202 means both
// are durable. A failure of either answers 503 and nothing was queued (the
// dropped events recorded stay: they are facts).
func (s *server) postMessages(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sender == nil {
		s.retryLater(w, errSenderOff)
		return
	}
	account, ok := s.messageAccount(w, r, true)
	if !ok {
		return
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.bodyTooLarge(w)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.bodyError(w, err)
		return
	}
	var m sender.Message
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, `malformed message: want {"from", "to": [...], "subject", "html", "text", "headers", "campaign", "category", "data"}: `+err.Error())
		return
	}
	if len(m.To) > MaxMessageRecipients {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d recipients: at most %d a message; split the list", len(m.To), MaxMessageRecipients))
		return
	}
	p, bad, err := sender.Prepare(&m)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "sender: ")
		for _, b := range bad {
			msg += fmt.Sprintf("; %q: %v", b.Recipient, b.Err)
		}
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if allowed := s.opts.SenderDomains[account]; len(allowed) > 0 && !slices.Contains(allowed, p.SenderDomain) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("sender domain %q is not one of account %q's sender_domains", p.SenderDomain, account))
		return
	}

	// The lists are checked for the usable recipients, by their address.
	addrs := make([]string, len(p.Recipients))
	for i, rc := range p.Recipients {
		if a, err := mail.ParseAddress(rc); err == nil {
			addrs[i] = a.Address
		} else {
			addrs[i] = rc
		}
	}
	by := suppress.Principal{Account: account, Admin: principalOf(r).Admin}
	verdicts, err := s.opts.Suppressions.Check(by, p.SenderDomain, addrs)
	if err != nil {
		if errors.Is(err, ErrNotReady) {
			s.retryLater(w, "the suppression lists cannot answer yet: "+err.Error()+"; nothing was queued, retry later")
			return
		}
		s.log.Error("suppression check", "err", err)
		s.retryLater(w, "the suppression check failed: "+err.Error()+"; nothing was queued, retry later")
		return
	}
	verdictOf := make(map[string]int, len(p.Recipients))
	for i, rc := range p.Recipients {
		verdictOf[rc] = i
	}
	badOf := make(map[string]*sender.RecipientError, len(bad))
	for _, b := range bad {
		if _, dup := badOf[b.Recipient]; !dup {
			badOf[b.Recipient] = b
		}
	}

	now := s.opts.Now()
	results := make([]messageResult, 0, len(m.To))
	var (
		toCompose []int // the results to compose a copy for
		dropped   []metrics.Event
	)
	drop := func(rcpt, addr, reason, diagnostic string) {
		results = append(results, messageResult{Recipient: rcpt, Status: statusDropped, Reason: reason})
		e := metrics.Event{
			Time: now, Kind: metrics.KindDropped, Source: sender.EventSource,
			Account: account, SenderDomain: p.SenderDomain, Campaign: m.Campaign, Category: m.Category,
			Recipient: addr, Reason: reason, Diagnostic: diagnostic,
		}
		if err := e.Normalize(s.opts.ISPs, now); err != nil {
			// Not an address the store can hold (no @): the answer
			// says dropped, and there is no event to record.
			s.log.Info("dropped recipient without an event", "recipient", rcpt, "err", err)
			return
		}
		dropped = append(dropped, e)
	}
	for idx, rc := range m.To {
		i, usable := verdictOf[rc]
		if usable {
			delete(verdictOf, rc) // a repeat of rc is a duplicate
		}
		if !usable {
			why := "not an address"
			if b := badOf[rc]; b != nil {
				why = b.Err.Error()
			}
			addr := rc
			if a, err := mail.ParseAddress(rc); err == nil {
				addr = a.Address
			}
			drop(rc, addr, metrics.DropInvalidRecipient, "to["+fmt.Sprint(idx)+"]: "+why)
			continue
		}
		v := verdicts[i]
		switch {
		case v.Error != "":
			drop(rc, addrs[i], metrics.DropInvalidRecipient, v.Error)
			continue
		case !v.Allowed:
			reason := metrics.DropBlocklisted
			if v.List == suppress.Unsubscribe {
				reason = metrics.DropUnsubscribed
			}
			diag := fmt.Sprintf("on the %s: %s", v.List, v.Reason)
			if v.EventID != "" {
				diag += " (event " + v.EventID + ")"
			}
			if !v.Since.IsZero() {
				diag += ", since " + v.Since.UTC().Format("2006-01-02T15:04:05Z")
			}
			drop(rc, addrs[i], reason, diag)
			continue
		}
		toCompose = append(toCompose, len(results))
		results = append(results, messageResult{Recipient: rc, Status: statusQueued})
	}
	items, err := s.composeAll(p, account, results, toCompose)
	if err != nil {
		var re *sender.RecipientError
		if errors.As(err, &re) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("recipient %q: %v; nothing was queued", re.Recipient, re.Err))
			return
		}
		s.log.Error("composing a message", "err", err)
		writeError(w, http.StatusInternalServerError, "composing the message failed: "+err.Error()+"; nothing was queued")
		return
	}

	// The dropped events first: if the queue then fails, they stay true
	// (those recipients were not sent to), and the retry records them
	// again under the same ids when it comes within the second.
	if len(dropped) > 0 {
		if err := s.opts.Sender.Record(r.Context(), dropped); err != nil {
			s.log.Error("recording dropped events", "err", err)
			s.retryLater(w, "recording the dropped recipients failed: "+err.Error()+"; nothing was queued, retry later")
			return
		}
	}
	if len(items) > 0 {
		if err := s.opts.Sender.Enqueue(items); err != nil {
			s.log.Error("queueing messages", "err", err)
			s.retryLater(w, "queueing the messages failed: "+err.Error()+"; nothing was queued, retry later")
			return
		}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"messages": results})
}

// composeAll composes a copy for each of results[which], on every core (a
// newsletter takes a few hundred microseconds to compose and sign, so a
// request of 10,000 recipients would take seconds on one), fills in their
// Message-IDs and returns the items in the order of which. It stops at the
// first error.
func (s *server) composeAll(p *sender.Prepared, account string, results []messageResult, which []int) ([]*sender.Item, error) {
	items := make([]*sender.Item, len(which))
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), len(which)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(which) {
					return
				}
				it, err := s.opts.Sender.Compose(p, account, results[which[k]].Recipient)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(len(which))) // the others stop
					return
				}
				items[k] = it
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for k, it := range items {
		results[which[k]].MessageID = it.MessageID
	}
	return items, nil
}

// getQueue answers GET /v1/queue: what waits in the sender's queue, by
// sender domain, recipient provider and why. An account key sees its
// account's messages; the admin every account's, or one with ?account=.
func (s *server) getQueue(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sender == nil {
		s.retryLater(w, errSenderOff)
		return
	}
	account, ok := s.messageAccount(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.opts.Sender.Summary(account))
}
