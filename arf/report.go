package arf

import (
	"errors"
	"time"
)

// CorrelationHeader is the header our sender stamps on every message so that
// feedback can be traced back to the send. Its value in the reported original
// message is Original.CorrelationID.
const CorrelationHeader = "X-Repute-ID"

// ErrNotFeedback is returned by Parse when the input is not a complaint
// (feedback) report.
var ErrNotFeedback = errors.New("arf: not a feedback report")

// ErrMalformed is wrapped by the error Parse returns together with a
// best-effort Report when the report is usable but deviates from the RFCs
// (for example a missing required field).
var ErrMalformed = errors.New("arf: malformed report")

// Providers, the values of Report.Provider.
const (
	ProviderJMRP   = "jmrp"   // Microsoft Junk Mail Reporting Program
	ProviderYahoo  = "yahoo"  // Yahoo Complaint Feedback Loop
	ProviderMailRu = "mailru" // Mail.ru feedback loop
	ProviderAOL    = "aol"    // AOL feedback loop (SComp)
)

// Values of Report.RecipientRecoveredFrom, in the order of trust in which
// the sources are tried: the report's own fields first, then the trace
// fields the receiving side added to the returned message, then the
// returned message's To, which only the sender wrote.
const (
	RecoveredOriginalRcptTo   = "original-rcpt-to"         // RFC 5965 §3.2, report field
	RecoveredRemovalRecipient = "removal-recipient"        // ARF drafts, RFC 5965 Appendix B.2; report field
	RecoveredHmXmr            = "x-hmxmroriginalrecipient" // Microsoft JMRP, returned message
	RecoveredXOriginalTo      = "x-original-to"            // Postfix, returned message
	RecoveredEnvelopeTo       = "envelope-to"              // Exim, returned message
	RecoveredXEnvelopeTo      = "x-envelope-to"            // returned message
	RecoveredApparentlyTo     = "x-apparently-to"          // Yahoo, returned message
	RecoveredDeliveredTo      = "delivered-to"             // Postfix, qmail, returned message
	RecoveredTo               = "to"                       // the returned message's To header
)

// Report is a parsed complaint report.
type Report struct {
	// FeedbackType is the lower-cased Feedback-Type (RFC 5965 §3.1, §7.3):
	// abuse, fraud, virus, other, not-spam, auth-failure (RFC 6591),
	// opt-out, …
	FeedbackType string
	// Provider names the dialect: "" for plain RFC 5965, or one of the
	// Provider constants.
	Provider string

	// Recipients are the recipients of the reported message: the
	// Original-Rcpt-To values (RFC 5965 §3.2), or recovered from the embedded
	// original message.
	Recipients []string
	// RecipientRecoveredFrom says where Recipients came from (one of the
	// Recovered constants), "" when none was found.
	RecipientRecoveredFrom string
	// RecipientRedacted is set when the reporter redacted a recipient
	// address (RFC 6590; AOL, Yahoo, Microsoft): a redacted address is
	// never put in Recipients.
	RecipientRedacted bool

	UserAgent          string    // RFC 5965 §3.1
	Version            string    // RFC 5965 §3.1
	OriginalEnvelopeID string    // RFC 5965 §3.2
	OriginalMailFrom   string    // RFC 5965 §3.2
	ArrivalDate        time.Time // RFC 5965 §3.2 Arrival-Date; zero when absent or unparsable
	SourceIP           string    // RFC 5965 §3.2
	SourcePort         int       // RFC 6692 §2; 0 when absent
	ReportingMTA       string    // RFC 5965 §3.2, without the "dns;" type
	ReportedDomain     []string  // RFC 5965 §3.2
	ReportedURI        []string  // RFC 5965 §3.2
	Incidents          int       // RFC 5965 §3.2; 0 when absent
	// AuthenticationResults is the report's first Authentication-Results
	// field (RFC 5965 §3.2), unfolded.
	AuthenticationResults string

	// RFC 6591 authentication failure fields.
	AuthFailure       string // RFC 6591 §3.1: adsp, bodyhash, revoked, signature, spf, dmarc (RFC 7489)
	DeliveryResult    string // RFC 6591 §3.1: delivered, spam, policy, reject, other
	DKIM              DKIMFields
	SPFDNS            []string // RFC 6591 §3.2
	IdentityAlignment string   // RFC 7489 §7.3 Identity-Alignment

	// Original holds what the report carries of the reported message.
	Original Original
}

// DKIMFields are the RFC 6591 §3.2 fields of a DKIM failure report.
type DKIMFields struct {
	Domain              string // DKIM-Domain
	Identity            string // DKIM-Identity
	Selector            string // DKIM-Selector
	CanonicalizedHeader string // DKIM-Canonicalized-Header (base64, as given)
	CanonicalizedBody   string // DKIM-Canonicalized-Body (base64, as given)
}

// Original is what a report carries of the reported message's header.
type Original struct {
	MessageID     string // Message-ID, without angle brackets
	CorrelationID string // the value of CorrelationHeader
	FeedbackID    string // Feedback-ID (Gmail / Yahoo sender feedback identifier)
	From          string
	To            string
	Subject       string
	Date          string
	ReturnPath    string
	// DKIMDomain is the d= tag of the first DKIM-Signature; Yahoo keys its
	// feedback loop on it.
	DKIMDomain string
	// MailruMsgtype is X-Mailru-Msgtype, the sender's tag Mail.ru groups
	// its feedback by.
	MailruMsgtype string
	// HeadersOnly is set when the report carried only the header of the
	// original (text/rfc822-headers, RFC 5965 §2 (d)).
	HeadersOnly bool
}
