package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"repute/dsn"
	"repute/metrics"
)

// KumoRecord is the part of a KumoMTA JSON log record (kumod's
// JsonLogRecord, one per line of its log, or one per Kafka record with a
// Kafka log hook) that the mapping reads. Fields not listed are ignored.
type KumoRecord struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Sender    string          `json:"sender"`
	Recipient json.RawMessage `json:"recipient"` // a string; a list in some versions
	Queue     string          `json:"queue"`
	Site      string          `json:"site"`
	Size      int64           `json:"size"`
	Response  struct {
		Code         int `json:"code"`
		EnhancedCode *struct {
			Class   int `json:"class"`
			Subject int `json:"subject"`
			Detail  int `json:"detail"`
		} `json:"enhanced_code"`
		Content string `json:"content"`
		Command string `json:"command"`
	} `json:"response"`
	PeerAddress *struct {
		Name string `json:"name"`
		Addr string `json:"addr"`
	} `json:"peer_address"`
	Timestamp     int64  `json:"timestamp"` // unix seconds
	Created       int64  `json:"created"`
	NumAttempts   int    `json:"num_attempts"`
	EgressPool    string `json:"egress_pool"`
	EgressSource  string `json:"egress_source"`
	SourceAddress *struct {
		Address string `json:"address"` // ip:port
	} `json:"source_address"`
	FeedbackReport *struct {
		FeedbackType string `json:"feedback_type"`
		UserAgent    string `json:"user_agent"`
	} `json:"feedback_report"`
	Headers map[string]json.RawMessage `json:"headers"`
	Meta    map[string]json.RawMessage `json:"meta"`
}

// KumoMTA record types (kumod's RecordType).
const (
	kumoReception        = "Reception"
	kumoDelivery         = "Delivery"
	kumoBounce           = "Bounce"
	kumoTransientFailure = "TransientFailure"
	kumoExpiration       = "Expiration"
	kumoAdminBounce      = "AdminBounce"
	kumoOOB              = "OOB"
	kumoFeedback         = "Feedback"
)

// kumoIgnored are record types KumoMTA logs that are no fact about a
// message we sent to a recipient: a refused inbound message, an
// administrative move between queues, a deferred injection. They yield no
// event and are not errors.
var kumoIgnored = map[string]bool{
	"Rejection":         true,
	"AdminRebind":       true,
	"DeferredInjection": true,
	"Any":               true,
}

// ErrUnknownKumoType is returned for a KumoMTA record whose type is not
// known.
var ErrUnknownKumoType = errors.New("kafka: unknown KumoMTA record type")

// earliest is the earliest event time the event model takes.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// KumoEvents maps one KumoMTA JSON log record to events: one per
// recipient (one, unless the record lists several), none for the types
// that are no delivery fact (Rejection, AdminRebind, …). account is used
// when the record's meta has no "account"; fallback is the time used when
// the record has no timestamp or one the event model would refuse (before
// 2000, more than an hour after fallback): the Kafka record's timestamp. The events are not normalized; their Source
// and SourceRef are left to the caller. The mapping is described in the
// README ("KumoMTA log records").
func KumoEvents(value []byte, account string, fallback time.Time) ([]metrics.Event, error) {
	var r KumoRecord
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("kafka: KumoMTA record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("kafka: KumoMTA record: more than one JSON value")
	}
	return r.Events(account, fallback)
}

// Events is KumoEvents for a decoded record.
func (r *KumoRecord) Events(account string, fallback time.Time) ([]metrics.Event, error) {
	if kumoIgnored[r.Type] {
		return nil, nil
	}
	var kind metrics.Kind
	switch r.Type {
	case kumoReception:
		kind = metrics.KindSent
	case kumoDelivery:
		kind = metrics.KindDelivered
	case kumoBounce, kumoExpiration, kumoOOB:
		kind = metrics.KindBounced
	case kumoTransientFailure:
		kind = metrics.KindDeferred
	case kumoFeedback:
		kind = metrics.KindComplained
	case kumoAdminBounce:
		kind = metrics.KindDropped
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownKumoType, r.Type)
	}
	recipients, err := r.recipients()
	if err != nil {
		return nil, err
	}
	if len(recipients) == 0 {
		return nil, fmt.Errorf("kafka: KumoMTA %s record %q has no recipient", r.Type, r.ID)
	}
	if a := r.metaString("account"); a != "" {
		account = a
	}
	t := fallback
	if r.Timestamp > 0 {
		// A time the event model would refuse (before 2000, or more than
		// an hour after the Kafka record was written) falls through to
		// the record's time, as a report's would.
		reported := time.Unix(r.Timestamp, 0).UTC()
		if !reported.Before(earliest) && (fallback.IsZero() || !reported.After(fallback.Add(time.Hour))) {
			t = reported
		}
	}
	base := metrics.Event{
		Time:         t,
		Kind:         kind,
		Account:      account,
		SenderDomain: domainOf(r.Sender),
		SendingIP:    r.sendingIP(),
		Campaign:     r.metaString("campaign"),
		MessageID:    r.header("Message-ID"),
	}
	if r.PeerAddress != nil {
		base.RemoteMTA = r.PeerAddress.Name
		if base.RemoteMTA == "" {
			base.RemoteMTA = r.PeerAddress.Addr
		}
	}
	switch r.Type {
	case kumoBounce, kumoOOB, kumoTransientFailure, kumoExpiration:
		base.ReplyCode = uint16(max(0, min(r.Response.Code, 65535)))
		base.Status = r.status()
		base.Diagnostic = metrics.Truncate(r.Response.Content, metrics.MaxLongField)
		reason, hard := dsn.ClassifyReply(r.Response.Code, base.Status, r.Response.Content, kumoPhase(r.Response.Command))
		if r.Type == kumoExpiration {
			// KumoMTA gives up after its retry schedule: the message
			// expired in the queue, whatever the last reply said.
			reason, hard = dsn.Expired, false
		}
		base.Reason = string(reason)
		if kind == metrics.KindBounced {
			base.BounceType = metrics.BounceSoft
			if hard {
				base.BounceType = metrics.BounceHard
			}
		}
	case kumoAdminBounce:
		// An operator (kcli bounce, the HTTP admin API) removed queued
		// messages: not sent because sending was stopped by a person,
		// which docs/events.md calls paused.
		base.Reason = metrics.DropPaused
		base.Diagnostic = metrics.Truncate(r.Response.Content, metrics.MaxLongField)
	case kumoFeedback:
		base.FeedbackType = "abuse"
		if r.FeedbackReport != nil && r.FeedbackReport.FeedbackType != "" {
			base.FeedbackType = r.FeedbackReport.FeedbackType
		}
	}
	identity := "kumomta:" + r.ID + "\x00" + r.Type + "\x00" + strconv.FormatInt(r.Timestamp, 10)
	events := make([]metrics.Event, 0, len(recipients))
	for _, rcpt := range recipients {
		e := base
		e.Recipient = rcpt
		e.EventID = metrics.DerivedID(identity, rcpt, kind)
		events = append(events, e)
	}
	return events, nil
}

// recipients decodes "recipient": a string, or a list of strings.
func (r *KumoRecord) recipients() ([]string, error) {
	raw := bytes.TrimSpace(r.Recipient)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '[' {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("kafka: KumoMTA record: recipient: %w", err)
		}
		out := list[:0]
		for _, s := range list {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("kafka: KumoMTA record: recipient: %w", err)
	}
	if s = strings.TrimSpace(s); s == "" {
		return nil, nil
	}
	return []string{s}, nil
}

// status is the enhanced status code, "class.subject.detail", or "".
func (r *KumoRecord) status() string {
	ec := r.Response.EnhancedCode
	if ec == nil || ec.Class == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec.Class, ec.Subject, ec.Detail)
}

// sendingIP is the local address the message left from when KumoMTA logs
// it (source_address), else the egress source's name, else the pool's.
func (r *KumoRecord) sendingIP() string {
	if r.SourceAddress != nil && r.SourceAddress.Address != "" {
		if host, _, err := net.SplitHostPort(r.SourceAddress.Address); err == nil {
			return host
		}
		return r.SourceAddress.Address
	}
	if r.EgressSource != "" {
		return r.EgressSource
	}
	return r.EgressPool
}

// metaString is meta[key] when it is a string.
func (r *KumoRecord) metaString(key string) string {
	return stringValue(r.Meta[key])
}

// header is the logged header name (matched without regard to case) when
// its value is a string. KumoMTA logs only the headers its log config names
// (headers = { "Message-ID", … }).
func (r *KumoRecord) header(name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return strings.TrimSpace(stringValue(v))
		}
	}
	return ""
}

func stringValue(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// kumoPhase is the SMTP phase of the command KumoMTA logs with a reply
// ("RCPT TO:<a@b>\r\n", "DATA\r\n", ".\r\n", …); no command: the reply
// came before any (the greeting) or the phase is unknown.
func kumoPhase(command string) dsn.Phase {
	c := strings.ToUpper(strings.TrimSpace(command))
	switch {
	case c == "":
		return dsn.PhaseUnknown
	case strings.HasPrefix(c, "RCPT TO"):
		return dsn.PhaseRcpt
	case strings.HasPrefix(c, "MAIL FROM"):
		return dsn.PhaseMail
	case c == ".":
		return dsn.PhaseEndOfData
	case c == "DATA" || c == "BDAT" || strings.HasPrefix(c, "BDAT "):
		return dsn.PhaseData
	case strings.HasPrefix(c, "EHLO") || strings.HasPrefix(c, "HELO") || strings.HasPrefix(c, "LHLO"):
		return dsn.PhaseHelo
	case strings.HasPrefix(c, "STARTTLS"):
		return dsn.PhaseHelo
	}
	return dsn.PhaseUnknown
}

func domainOf(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
