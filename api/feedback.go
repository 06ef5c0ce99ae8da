package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"repute/ingest"
	"repute/metrics"
	"repute/spool"
)

// FeedbackFunc converts one raw report read from src into its events and
// evidence (ingest.Processor.Process). account is the account of a report
// that matches no send ("" makes such a report ingest.ErrUnattributed).
// The caller builds a Processor per account over the store's SendLookup
// and the signing keys.
type FeedbackFunc func(ctx context.Context, raw []byte, src ingest.Source, account string) (ingest.Report, error)

// feedbackResponse is the answer of POST /v1/feedback.
type feedbackResponse struct {
	Events []metrics.Event `json:"events"`
	// Ignored: the message is neither a bounce, a complaint nor an
	// unsubscribe request; nothing was stored.
	Ignored    bool   `json:"ignored"`
	EvidenceID string `json:"evidence_id,omitempty"`
	Duplicates int    `json:"duplicates"`
}

// errOtherAccount is the 403 of a report about another account's send.
const errOtherAccount = "this report is about a message sent by another account; this key posts only reports about its own account's messages"

// postFeedback takes one raw message (Content-Type message/rfc822 or
// message/global): a bounce, a complaint or an unsubscribe request. It
// converts it (Options.Feedback), stores its evidence, submits its events
// (durable when it answers 202) and answers with them.
//
// An account key posts for its own account: a report that matches no send
// is that account's, and one that correlates to another account's send is
// refused with 403 (without naming the account). The admin key names the
// account of an unmatched report with ?account=NAME (400 without it).
//
// The events' source is "http" and their source_ref says who posted the
// report: "admin" or "account:NAME" (the evidence id is on each event
// already, as evidence_id).
func (s *server) postFeedback(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "message/rfc822" && mt != "message/global" {
		s.rejected.WithLabelValues("unsupported_media_type").Inc()
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf(
			"Content-Type %q: send one raw message as Content-Type: message/rfc822 (or message/global)", r.Header.Get("Content-Type")))
		return
	}
	p := principalOf(r)
	account := r.URL.Query().Get("account")
	ref := "admin"
	if p.Admin {
		if account != "" && !s.opts.Keys.knownAccount(account) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("account=%q: no such account is configured", account))
			return
		}
	} else {
		if account != "" && account != p.Account {
			writeError(w, http.StatusForbidden, fmt.Sprintf("this key posts only for account %q", p.Account))
			return
		}
		account, ref = p.Account, "account:"+p.Account
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.bodyTooLarge(w)
		return
	}
	lb, ok := s.limitBody(w, r)
	if !ok {
		s.retryLater(w, "request bodies in flight are over their budget (--max-inflight-bytes); nothing was read or stored, retry later")
		return
	}
	defer lb.done()
	raw, err := s.readBody(w, r)
	if err != nil {
		s.bodyError(w, err)
		return
	}
	if s.opts.WriteTimeout > 0 {
		extendWriteDeadline(w, s.opts.WriteTimeout)
	}
	if !ingest.LooksLikeMessage(raw) {
		s.rejected.WithLabelValues("not_a_message").Inc()
		writeError(w, http.StatusUnprocessableEntity, "not an email message: the body does not start with a header field; nothing was stored")
		return
	}

	rep, err := s.opts.Feedback(r.Context(), raw, ingest.Source{Name: ingest.SourceHTTP, Ref: ref}, account)
	switch {
	case err == nil:
	case errors.Is(err, ingest.ErrLookup):
		s.log.Error("feedback: send lookup failed", "err", err)
		s.retryLater(w, "looking up the original send failed; nothing was stored, retry later")
		return
	case errors.Is(err, ingest.ErrUnattributed) && p.Admin:
		s.rejected.WithLabelValues("unattributed").Inc()
		writeError(w, http.StatusBadRequest, "the report matches no send: name the account it belongs to with ?account=NAME; nothing was stored")
		return
	case r.Context().Err() != nil:
		writeError(w, http.StatusServiceUnavailable, "request canceled")
		return
	default:
		s.rejected.WithLabelValues("unusable_report").Inc()
		writeError(w, http.StatusUnprocessableEntity, "unusable report: "+err.Error()+"; nothing was stored")
		return
	}
	for i := range rep.Events {
		// A report posted with an account key is that account's word, not
		// repute's own reading of its mail: it suppresses for that account
		// only (issue 10).
		rep.Events[i].PostedBy = postedBy(p)
	}
	if !p.Admin {
		for _, e := range rep.Events {
			if e.Account != p.Account {
				s.rejected.WithLabelValues("wrong_account").Inc()
				writeError(w, http.StatusForbidden, errOtherAccount+"; nothing was stored")
				return
			}
		}
	}
	resp := feedbackResponse{Events: rep.Events, Ignored: rep.Ignored}
	if resp.Events == nil {
		resp.Events = []metrics.Event{}
	}
	if len(rep.Events) == 0 {
		writeJSON(w, http.StatusAccepted, resp)
		return
	}
	resp.EvidenceID = rep.Events[0].EvidenceID
	// The evidence first: every stored event can then be traced to it.
	if err := s.opts.Evidence.PutEvidence(r.Context(), rep.Evidence); err != nil {
		s.log.Error("feedback: storing evidence failed", "err", err)
		s.retryLater(w, "storing the report failed; nothing was stored, retry later")
		return
	}
	res, err := s.opts.Submitter.Submit(r.Context(), rep.Events)
	if err != nil {
		if errors.Is(err, spool.ErrFull) {
			s.retryLater(w, "spool full: the store is not keeping up or is down; the events were not stored, retry later")
			return
		}
		if de := (*spool.DiskError)(nil); errors.As(err, &de) {
			s.retryLater(w, de.Error()+"; the events were not stored, retry later")
			return
		}
		s.log.Error("feedback: submit failed", "err", err)
		writeError(w, http.StatusInternalServerError, "storing events failed; the events were not stored: "+err.Error())
		return
	}
	resp.Duplicates = res.Duplicates
	writeJSON(w, http.StatusAccepted, resp)
}

// EvidenceResponse is the JSON of GET /v1/evidence/{id} (and of repute
// evidence --json).
type EvidenceResponse struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	Stored    time.Time `json:"stored"`
	Source    string    `json:"source"`
	SourceRef string    `json:"source_ref"`
	// Size is the original message's size in bytes.
	Size int `json:"size"`
	// Truncated says Message is a reduction of the original.
	Truncated bool `json:"truncated"`
	// Message is the stored message: its text, or base64 when it is not
	// valid UTF-8 (Encoding says so).
	Message  string `json:"message"`
	Encoding string `json:"encoding,omitempty"`
}

// NewEvidenceResponse returns the JSON form of stored evidence.
func NewEvidenceResponse(ev metrics.Evidence) (EvidenceResponse, error) {
	msg, err := ev.Message()
	if err != nil {
		return EvidenceResponse{}, err
	}
	out := EvidenceResponse{ID: ev.ID, Account: ev.Account, Stored: ev.Stored.UTC(), Source: ev.Source,
		SourceRef: ev.SourceRef, Size: ev.Size, Truncated: ev.Truncated}
	if utf8.Valid(msg) {
		out.Message = string(msg)
	} else {
		out.Message, out.Encoding = base64.StdEncoding.EncodeToString(msg), "base64"
	}
	return out, nil
}

// getEvidence answers GET /v1/evidence/{id}: the stored report, as JSON
// or, with Accept: message/rfc822, as the message itself. An account key
// sees only its own account's evidence: another account's id is 404, as an
// unknown one, so ids of other accounts are not confirmed.
func (s *server) getEvidence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !metrics.ValidEvidenceID(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("evidence id %q: want 32 lower-case hex digits (an event's evidence_id)", id))
		return
	}
	p := principalOf(r)
	account := ""
	if !p.Admin {
		account = p.Account
	}
	ev, found, err := s.opts.EvidenceReader.Evidence(r.Context(), account, id)
	if err != nil {
		s.log.Error("evidence read failed", "err", err)
		s.retryLater(w, "reading the evidence failed: "+err.Error())
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no evidence %s", id))
		return
	}
	if acceptsRFC822(r) {
		msg, err := ev.Message()
		if err != nil {
			s.log.Error("evidence unreadable", "id", id, "err", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "message/rfc822")
		w.WriteHeader(http.StatusOK)
		w.Write(msg)
		return
	}
	out, err := NewEvidenceResponse(ev)
	if err != nil {
		s.log.Error("evidence unreadable", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// acceptsRFC822 reports whether the request asks for the raw message:
// message/rfc822 in Accept, without application/json before it.
func acceptsRFC822(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			switch mt {
			case "message/rfc822":
				return true
			case "application/json":
				return false
			}
		}
	}
	return false
}
