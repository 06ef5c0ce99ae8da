package dsn

import (
	"encoding/json"
	"strings"
)

// Amazon SES publishes bounces, deliveries and complaints as JSON
// ("Contents of event data that Amazon SES publishes to Amazon SNS", SES
// Developer Guide); an SNS topic with an e-mail subscription delivers that
// JSON as the body of a plain message, with SNS's footer under it, or
// wrapped in SNS's own envelope ({"Type":"Notification","Message":"…"})
// for an Email-JSON subscription. The failed recipients are the
// bouncedRecipients; every other address in the JSON (the source, the
// sending identity's ARN, the headers of the original) is not one.

// sesNotification is the part of an SES notification read here.
type sesNotification struct {
	NotificationType string `json:"notificationType"` // SNS notifications
	EventType        string `json:"eventType"`        // event publishing
	Bounce           *struct {
		BounceType        string `json:"bounceType"` // Permanent, Transient, Undetermined
		BounceSubType     string `json:"bounceSubType"`
		ReportingMTA      string `json:"reportingMTA"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Delivery *struct {
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
		ReportingMTA string   `json:"reportingMTA"`
	} `json:"delivery"`
	Mail struct {
		MessageID     string `json:"messageId"` // SES's own id, the Message-ID's local part
		CommonHeaders struct {
			MessageID string `json:"messageId"`
		} `json:"commonHeaders"`
	} `json:"mail"`
}

// sesSubTypes are the bounce subtypes SES documents ("Bounce types") that
// name a reason; General and Undetermined name none.
var sesSubTypes = map[string]Reason{
	"NoEmail":                  UserUnknown, // the recipient's mailbox does not exist
	"Suppressed":               Suppressed,  // on SES's global suppression list
	"OnAccountSuppressionList": Suppressed,
	"MailboxFull":              MailboxFull,
	"MessageTooLarge":          MesgTooBig,
	"ContentRejected":          ContentError,
	"AttachmentRejected":       ContentError,
}

// snsEnvelope is what an Email-JSON subscription wraps a notification in.
type snsEnvelope struct {
	Type    string `json:"Type"`
	Message string `json:"Message"`
}

// sesJSON returns the SES notification in text, nil when text holds none.
func sesJSON(text string) *sesNotification {
	start := strings.IndexByte(text, '{')
	end := strings.LastIndexByte(text, '}')
	if start < 0 || end < start || !strings.Contains(text[start:end], `"notificationType"`) && !strings.Contains(text[start:end], `"eventType"`) &&
		!strings.Contains(text[start:end], `"Type"`) {
		return nil
	}
	raw := text[start : end+1]
	// QUIRK: RFC 5321 §4.5.3.1.6 caps a line at 1000 octets; Sendmail
	// breaks a longer one with "!" and a newline, which leaves the JSON
	// invalid until they are taken out.
	raw = strings.ReplaceAll(raw, "!\n", "")
	var n sesNotification
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		return nil
	}
	if n.NotificationType == "" && n.EventType == "" {
		var env snsEnvelope
		if json.Unmarshal([]byte(raw), &env) != nil || env.Type != "Notification" || json.Unmarshal([]byte(env.Message), &n) != nil {
			return nil
		}
	}
	return &n
}

// parseSES fills rep from an SES notification: one recipient per bounced
// (or delivered) recipient. It reports whether the notification was a
// bounce or a delivery; a complaint is left to the complaint parser.
func parseSES(a *arena, n *sesNotification, rep *Report) bool {
	kind := n.NotificationType
	if kind == "" {
		kind = n.EventType
	}
	switch {
	case strings.EqualFold(kind, "Bounce") && n.Bounce != nil:
		rep.ReportingMTA = typedValue(n.Bounce.ReportingMTA)
		for _, b := range n.Bounce.BouncedRecipients {
			addr := cleanAddress(b.EmailAddress)
			if !plainAddress(addr) || len(rep.Recipients) >= maxRecipients {
				continue
			}
			rc := Recipient{Address: addr, Action: a.lower(b.Action), Status: findStatus(b.Status), Diagnostic: typedValue(b.DiagnosticCode)}
			if rc.Action == "" {
				// SES has stopped trying either way: a Transient
				// bounce is a soft failure, not a delay.
				rc.Action = "failed"
			}
			if rc.Diagnostic == "" && rc.Status == "" {
				// No DSN came back: SES's own verdict is all
				// there is.
				if r := sesSubTypes[n.Bounce.BounceSubType]; r != "" {
					rc.Reason = r
					rc.Evidence = Evidence{Rule: RuleSESSubType}
				}
			}
			rc.ReplyCode = findReplyCode(rc.Diagnostic)
			if d := replyStatus(rc.Diagnostic); rc.Status == "" && d != "" {
				rc.Status = d
			}
			rep.addRecipient(rc)
		}
	case strings.EqualFold(kind, "Delivery") && n.Delivery != nil:
		rep.ReportingMTA = n.Delivery.ReportingMTA
		for _, r := range n.Delivery.Recipients {
			addr := cleanAddress(r)
			if !plainAddress(addr) || len(rep.Recipients) >= maxRecipients {
				continue
			}
			rep.addRecipient(Recipient{Address: addr, Action: "delivered", Status: "2.0.0", Diagnostic: n.Delivery.SMTPResponse})
		}
	default:
		return false
	}
	rep.Structured = true
	if id := n.Mail.CommonHeaders.MessageID; id != "" {
		rep.Original.MessageID = strings.Trim(id, "<> ")
	}
	return true
}
