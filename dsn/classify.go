package dsn

import (
	"strconv"
	"strings"
)

// Reason is the classification of a failure: the taxonomy of the bounce
// corpus (testdata/bounces/README.md).
type Reason string

// Reasons. Hard bounces are only UserUnknown, HostUnknown, HasMoved and
// NotAccept with a permanent (5xx) status: a permanent failure of the
// address itself. Policy and reputation rejections are not hard.
const (
	UserUnknown     Reason = "userunknown"
	HostUnknown     Reason = "hostunknown"
	HasMoved        Reason = "hasmoved"
	NotAccept       Reason = "notaccept"
	MailboxFull     Reason = "mailboxfull"
	ExceedLimit     Reason = "exceedlimit"
	MesgTooBig      Reason = "mesgtoobig"
	Suspend         Reason = "suspend"
	Filtered        Reason = "filtered"
	Rejected        Reason = "rejected"
	Blocked         Reason = "blocked"
	BadReputation   Reason = "badreputation"
	RequirePTR      Reason = "requireptr"
	AuthFailure     Reason = "authfailure"
	SpamDetected    Reason = "spamdetected"
	VirusDetected   Reason = "virusdetected"
	PolicyViolation Reason = "policyviolation"
	ContentError    Reason = "contenterror"
	NotCompliantRFC Reason = "notcompliantrfc"
	SecurityError   Reason = "securityerror"
	FailedSTARTTLS  Reason = "failedstarttls"
	NoRelaying      Reason = "norelaying"
	TooManyConn     Reason = "toomanyconn"
	Speeding        Reason = "speeding"
	Expired         Reason = "expired"
	NetworkError    Reason = "networkerror"
	SystemError     Reason = "systemerror"
	SystemFull      Reason = "systemfull"
	MailerError     Reason = "mailererror"
	SyntaxError     Reason = "syntaxerror"
	Suppressed      Reason = "suppressed"
	OnHold          Reason = "onhold"
	Undefined       Reason = "undefined"
	Delivered       Reason = "delivered"
	Vacation        Reason = "vacation"
	Feedback        Reason = "feedback"
)

// syntheticCodes are the detail numbers of the synthetic status codes the
// corpus uses when a message carries no status code (5.0.9NN, 4.0.9NN).
var syntheticCodes = map[Reason]int{
	Undefined: 900, OnHold: 901, SyntaxError: 902, Suppressed: 903,
	NoRelaying: 909, Filtered: 910, UserUnknown: 911, HostUnknown: 912,
	HasMoved: 916, Rejected: 918, Suspend: 921, MailboxFull: 922,
	ExceedLimit: 923, AuthFailure: 926, SystemError: 930, SystemFull: 931,
	NotAccept: 932, MesgTooBig: 934, MailerError: 939, NetworkError: 944,
	TooManyConn: 945, Speeding: 946, Expired: 947, ContentError: 960,
	SecurityError: 970, Blocked: 971, PolicyViolation: 972, RequirePTR: 973,
	NotCompliantRFC: 974, BadReputation: 975, FailedSTARTTLS: 976,
	SpamDetected: 980, VirusDetected: 981,
}

// SyntheticStatus returns the status code the corpus assigns to a reason
// when the message carries none: 5.0.9NN, or 4.0.9NN when temporary.
// Delivered, Vacation and Feedback have no status code.
func SyntheticStatus(r Reason, temporary bool) string {
	class, n, ok := syntheticCode(r, temporary)
	switch {
	case !ok && r == Delivered:
		return "2.0.0"
	case !ok:
		return ""
	case class == '4':
		return "4.0." + strconv.Itoa(n)
	}
	return "5.0." + strconv.Itoa(n)
}

// syntheticStatus is SyntheticStatus built in the arena.
func (a *arena) syntheticStatus(r Reason, temporary bool) string {
	class, n, ok := syntheticCode(r, temporary)
	if !ok {
		return SyntheticStatus(r, temporary) // a constant
	}
	var buf [16]byte
	b := strconv.AppendInt(append(buf[:0], class, '.', '0', '.'), int64(n), 10)
	start := a.reserve(len(b))
	a.text.Write(b)
	return a.since(start)
}

// syntheticCode returns the class digit and the detail number of the
// synthetic status code of r; ok is false when r has none.
func syntheticCode(r Reason, temporary bool) (class byte, n int, ok bool) {
	n, ok = syntheticCodes[r]
	switch {
	case !ok:
		return 0, 0, false
	case temporary && r == Filtered:
		return '4', 924, true
	case temporary:
		return '4', n, true
	}
	return '5', n, true
}

// isHard reports whether a reason with a status is a hard bounce: a
// permanent failure of the address itself.
func isHard(r Reason, status string) bool {
	switch r {
	case UserUnknown, HostUnknown, HasMoved:
		return true
	case NotAccept:
		return statusClass(status) == '5'
	}
	return false
}

// ClassifyReply classifies an SMTP reply: its code (RFC 5321 §4.2, 0 when
// unknown), its enhanced status code (RFC 3463, "" when none) and its
// text. The sender uses it on synchronous rejections; Parse uses the same
// rules for every recipient of a notification.
func ClassifyReply(code int, enhanced, text string) (reason Reason, hard bool) {
	rc := Recipient{Diagnostic: text, Status: findStatus(enhanced), Action: "failed"}
	if code > 0 {
		rc.ReplyCode = strconv.Itoa(code)
	}
	if rc.Status == "" {
		rc.Status = findStatus(text)
	}
	if code >= 200 && code < 300 || statusClass(rc.Status) == '2' {
		return Delivered, false
	}
	// A synchronous reply is not a delay that expired: the action stays
	// "failed" so that an unexplained 4xx is Undefined, not Expired.
	classifyRecipient(&rc)
	st := rc.Status
	if st == "" && code >= 500 {
		st = "5"
	}
	return rc.Reason, isHard(rc.Reason, st)
}

// SMTP commands a failure can be attributed to.
const (
	cmdConnect = "CONN"
	cmdHelo    = "HELO"
	cmdMail    = "MAIL"
	cmdRcpt    = "RCPT"
	cmdData    = "DATA"
)

// commandMarkers map lower-case phrases that MTAs use to say which SMTP
// command a reply answered to the command. Each group is guarded by a word
// all its phrases contain, so that most texts are ruled out cheaply.
var commandMarkers = []struct {
	guard   string
	cmd     string
	phrases []string
}{
	{"data", cmdData, []string{
		"in reply to end of data command", "in reply to data command", "after end of data",
		">>> data", "did not like our final data", "did not like our data",
	}},
	{"after i sent", cmdData, []string{"failed after i sent the message"}},
	{"rcpt", cmdRcpt, []string{"in reply to rcpt to command", "after rcpt to", ">>> rcpt to", "did not like our rcpt to", "smtp:rcpt"}},
	{"my name", cmdHelo, []string{"my name was rejected"}},
	{"recipient", cmdRcpt, []string{"does not like recipient"}},
	{"mail from", cmdMail, []string{"in reply to mail from command", "after mail from", ">>> mail from", "did not like our mail from"}},
	{"sender", cmdMail, []string{"sender was rejected"}},
	{"ehlo", cmdHelo, []string{"in reply to ehlo command", "after ehlo"}},
	{"helo", cmdHelo, []string{"in reply to helo command", "after helo"}},
	{"connect", cmdConnect, []string{"after initial connection", "while connected to"}},
}

// smtpCommand returns the SMTP command the lower-case text attributes the
// failure to, "" when it names none. The last marker wins: transcripts
// list the commands in order.
func smtpCommand(lower string) string {
	var grams *gramSet
	if len(lower) > 256 {
		grams = new(gramSet)
		grams.add(lower)
	}
	best, at := "", -1
	for _, g := range commandMarkers {
		if grams != nil && !grams.mayContain(g.guard) || !strings.Contains(lower, g.guard) {
			continue
		}
		for _, p := range g.phrases {
			// strings.Index is much faster than LastIndex; most
			// phrases are absent, so look backwards only for those
			// present.
			if i := strings.Index(lower, p); i < 0 {
				continue
			}
			if i := strings.LastIndex(lower, p); i > at {
				best, at = g.cmd, i
			}
		}
	}
	return best
}

// overrides are phrases that decide the reason whatever the status code
// says. An override with mta set applies only to bounces whose text
// contains it; one with notMTA set, only to the others.
var overrides = []struct {
	phrase      string
	reason      Reason
	mta, notMTA string
}{
	// QUIRK: qmail gives the status of its retries (#4.4.1) to a
	// connection it never made (see lhost-qmail-07).
	{phrase: "wasn't able to establish an smtp connection", reason: NetworkError, mta: "qmail-send"},
	// QUIRK: qmail appends "in the queue too long" to the last error,
	// which stays the cause; qmail-like MTAs (X2) report the expiry
	// itself (see lhost-x2-05).
	{phrase: "in the queue too long", reason: Expired, notMTA: "qmail-send"},
	// QUIRK: Facebook refuses by the recipient's preferences under 5.1.1
	// (see rhost-facebook-03).
	{phrase: "email preferences of the person", reason: Filtered},
	{phrase: "refused due to recipient preferences", reason: Filtered},
	// QUIRK: EZweb says the account is disabled in a paragraph of its
	// own and "user unknown" next to the address (see lhost-ezweb-02).
	{phrase: "account is disabled", reason: Suspend},
}

// definitiveStatus are status codes whose meaning is specific enough to
// win over the diagnostic text (RFC 3463 §3).
var definitiveStatus = map[string]Reason{
	"5.1.1": UserUnknown, "4.1.1": UserUnknown,
	"5.1.2": HostUnknown,
	"5.1.6": HasMoved,
	"5.1.8": Rejected, "5.1.7": Rejected,
	"5.2.2": MailboxFull, "4.2.2": MailboxFull,
	"5.2.3":  ExceedLimit,
	"5.3.4":  MesgTooBig,
	"5.3.2":  NotAccept,
	"4.4.5":  SystemFull,
	"4.4.1":  Expired,
	"5.7.13": Suspend,
	"5.7.25": RequirePTR,
	"5.7.26": AuthFailure, "5.7.23": AuthFailure,
	"5.7.27": NotAccept,
}

// classifyRecipient sets rc.Reason from its status code and diagnostic.
func classifyRecipient(rc *Recipient) {
	classify(rc, lowerASCII(rc.Diagnostic), "")
}

// serverReply returns the part of a lower-case diagnostic from the first
// failure reply code (4xx, 5xx) on: the remote server's own words, without
// the boilerplate of the MTA that wrote the bounce, nor the positive
// replies of a transcript before the failure.
func serverReply(text string) string {
	for i := 0; i < len(text); {
		rc := findReplyCode(text[i:])
		if rc == "" {
			return ""
		}
		j := i + strings.Index(text[i:], rc)
		if rc[0] == '4' || rc[0] == '5' {
			if j == 0 {
				return ""
			}
			return text[j:]
		}
		i = j + 3
	}
	return ""
}

// domainBefore reports whether the word before phrase in text is a
// domain name rather than an address.
func domainBefore(text, phrase string) bool {
	i := strings.Index(text, phrase)
	if i <= 0 {
		return false
	}
	w := strings.TrimRight(text[:i], " ")
	if j := strings.LastIndexAny(w, " \t\n<>:;"); j >= 0 {
		w = w[j+1:]
	}
	return strings.Count(w, ".") >= 1 && !strings.ContainsAny(w, "@'\"") && len(w) > 3
}

// failedAttempts reports whether lower-case text says delivery failed
// after a number of attempts ("delivery failed 20 attempts").
func failedAttempts(text string) bool {
	i := strings.Index(text, "failed ")
	if i < 0 {
		return false
	}
	rest := text[i+len("failed "):]
	n := digits(rest)
	return n > 0 && strings.HasPrefix(rest[n:], " attempts")
}

// maxContext bounds the prose searched for phrases.
const maxContext = 4096

// classify sets rc.Reason from, in order: a local delivery agent's
// failure and a few overriding phrases; a specific status code (it is
// structured); the phrases of the lower-case diagnostic text, which names
// the cause more precisely than a generic code, adjusted by the SMTP
// command that failed; the lower-case context (prose around the
// recipient); the action; the status code's subject; the command alone.
func classify(rc *Recipient, text, context string) {
	if statusClass(rc.Status) == '2' || rc.Action == "delivered" || rc.Action == "relayed" || rc.Action == "expanded" {
		rc.Reason = Delivered
		return
	}
	if rc.diagType == "x-unix" || strings.Contains(text, "procmail") {
		// A local delivery agent failed (RFC 3464 §2.3.6: an X-Unix
		// diagnostic is its exit status), whatever code the MTA chose
		// (see lhost-postfix-01, lhost-sendmail-55).
		rc.Reason = MailerError
		return
	}
	for _, o := range overrides {
		if !strings.Contains(text, o.phrase) && !strings.Contains(context, o.phrase) && !strings.Contains(rc.prose, o.phrase) {
			continue
		}
		byMTA := func(s string) bool { return strings.Contains(rc.prose, s) || strings.Contains(context, s) }
		if o.mta != "" && !byMTA(o.mta) || o.notMTA != "" && byMTA(o.notMTA) {
			continue
		}
		rc.Reason = o.reason
		return
	}
	if r, ok := definitiveStatus[rc.Status]; ok {
		rc.Reason = r
		return
	}
	if len(context) > maxContext {
		context = context[:maxContext]
	}
	cmd := smtpCommand(text)
	if cmd == "" {
		cmd = rc.command
	}
	if cmd == "" && context != text {
		cmd = smtpCommand(context)
	}
	reply := serverReply(text)
	r, phrase := reasonFromText(reply)
	if r == "" && reply != "" {
		// The server's reply names no cause: its status code does
		// better than the rest of the text (see lhost-postfix-75,
		// whose transcript mentions STARTTLS).
		r = reasonFromStatus(rc.Status)
	}
	if r == "" && reply != text {
		r, phrase = reasonFromText(text)
	}
	if r == "" && failedAttempts(text) {
		r = Expired // see lhost-imailserver-04
	}
	if r == "" && context != text {
		r, phrase = reasonFromText(context)
	}
	if r == "" && rc.Action == "delayed" {
		// A delay with nothing said but a code: it expired (see
		// rfc3464-07).
		r = Expired
	}
	switch {
	case r == UserUnknown && cmd != cmdRcpt && !strings.HasPrefix(rc.Status[min(2, len(rc.Status)):], "1.") &&
		(phrase == "user unknown" || phrase == "unknown user" || phrase == "no such user" ||
			(phrase == "user doesn't have" && rc.ReplyCode == "")):
		// "User unknown" said anywhere but in reply to RCPT TO, under
		// a status other than a bad-address one: the address was
		// accepted, a filter refused the message.
		r = Filtered
	case (r == UserUnknown || r == HostUnknown || r == Filtered || (r == SecurityError && phrase == "access denied")) && cmd == cmdMail:
		r = Rejected
	case (r == UserUnknown || r == HostUnknown || r == Filtered || r == SecurityError) && (cmd == cmdHelo || cmd == cmdConnect):
		// Refused before any command: the connecting host is blocked.
		r = Blocked
	case r == UserUnknown && phrase == "does not exist" && domainBefore(text, phrase):
		r = HostUnknown // "example.com does not exist" (see lhost-exim-37)
	}
	if r == NetworkError && rc.Status == "" && strings.HasPrefix(rc.ReplyCode, "4") && rc.prose != "" {
		// A prose bounce whose last word from the remote host was a
		// temporary refusal: the MTA retried until the message expired
		// (see lhost-zoho-05).
		r = Expired
	}
	if r == "" {
		r = reasonFromStatus(rc.Status)
	}
	if r == "" {
		switch cmd {
		case cmdMail:
			r = Rejected
		case cmdConnect, cmdHelo:
			r = Blocked
		}
	}
	if r == "" {
		r = Undefined
	}
	rc.Reason = r
}

// phraseTable lists each reason with the lower-case phrases that name it
// in a diagnostic. Rows are checked in order and the first match wins, so
// the most specific phrases come first; a reason may appear in several
// rows to give some of its phrases priority.
var phraseTable = []struct {
	reason  Reason
	phrases []string
}{
	// Specific phrases that would otherwise be caught by broader ones
	// further down.
	{MailerError, []string{"procmail", "couldn't create", "mailer error", "command failed", "exit code", "pipe to", "delivery program", "local delivery failed"}},
	{UserUnknown, []string{"not listed in domino directory", "not listed in public name", "user not listed", "address couldn't be found", "recipient address rejected: access denied"}},
	{NoRelaying, []string{
		"relay access denied", "relaying denied", "relay denied", "not permitted to relay",
		"unable to relay", "relay not permitted", "relaying not allowed", "no relaying",
		"relay not allowed", "not a gateway", "we do not relay", "relaying mail to",
		"relay prohibited", "cannot relay", "insecure mail relay", "not configured to relay",
	}},
	{HostUnknown, []string{"host or domain name not found", "account or domain may not exist"}},
	{SpamDetected, []string{"blacklisted url"}},
	{BadReputation, []string{"user complaints"}},
	{FailedSTARTTLS, []string{"does not support tls"}},
	{PolicyViolation, []string{"content presents a potential"}},
	{Blocked, []string{"connection refused by", "service refuse", "no access from mail server"}},
	// QUIRK: a refusal at connection for missing reverse DNS is a block
	// of the host; elsewhere reverse DNS means RequirePTR (see
	// lhost-exim-46, lhost-exim-34).
	{Blocked, []string{"missing reverse dns"}},
	// QUIRK: fml's loop alert for a duplicated Message-ID (see
	// lhost-fml-03).
	{SystemError, []string{"duplicated message-id"}},
	// QUIRK: Orange (France) refuses spam with "Mail rejete" and a
	// code of its own (see rhost-franceptt-04).
	{SpamDetected, []string{"mail rejete"}},
	{NetworkError, []string{"wasn't able to establish an smtp connection"}},
	{SystemError, []string{"unable to contact ldap"}},
	{Filtered, []string{"email preferences of the person"}},
	{Rejected, []string{"'send mail as'", "not a registered gateway user"}},
	{SecurityError, []string{"delivery not authorized"}},
	{ContentError, []string{"media error"}},
	{OnHold, []string{"on hold"}},
	{SpamDetected, []string{"spam classification"}},
	{NotCompliantRFC, []string{"multiple addresses in from"}},
	{TooManyConn, []string{"frequency limited"}},
	{NetworkError, []string{"dns error", "name service error", "malformed or unexpected name server reply", "dns query failed"}},
	{Expired, []string{
		"did not accept our requests to connect", "will be retried", "failing for a long time",
		"retry time not reached", "message expired", "not delivered within", "timed out", "delivery time expired",
		"could not be delivered within", "too long in queue", "delivery expired",
	}},
	{NotAccept, []string{
		"does not accept mail", "null mx", "not accepting mail", "accepts no mail",
		"no mx record", "no mx found", "couldn't find a mail exchanger", "couldn't find any host",
	}},
	{RequirePTR, []string{
		"no ptr record", "reverse dns", "reverse lookup", "no reverse", "ptr record",
		"rdns", "cannot find your hostname", "reverse address", "cannot resolve your address",
		"ip name lookup failed", "hostname does not match", "mismatches client ip",
		"unverifyable sending ip",
	}},
	{AuthFailure, []string{
		"dmarc", "spf check", "spf fail", "spf record", "spf:", "sender policy framework", "spf)",
		"dkim", "authentication checks failed", "unauthenticated email", "authentication information",
		"is not authorized to send", "does not designate",
	}},
	{NotCompliantRFC, []string{"rfc 5322", "rfc5322", "rfc 2822", "rfc2822", "duplicate header", "not rfc compliant"}},
	{BadReputation, []string{"poor reputation", "bad reputation", "low reputation", "sender reputation", "ip reputation", "reputation is"}},
	{Blocked, []string{
		"client host blocked", "spamhaus.org/query", "blocked using", "client host rejected",
		"blacklist", "blocklist", "block list", "black list", "dnsbl", "has been blocked",
		"ip address blacklisted", "invalid ip for sending", "ip blocked", "blocked ip",
		"my name was rejected",
	}},
	{VirusDetected, []string{"virus", "malware", "infected", "security policies"}},
	{SpamDetected, []string{
		"spam", "junk mail", "unsolicited", "bulk mail", "message content rejected", "ube",
		"content filter", "blacklisted url", "url blacklist",
	}},
	{Blocked, []string{
		"listed in", "rbl", "your ip", "ip address", "your host", "connection refused by",
		"not allowed to send from", "banned", "sender ip", "connecting ip", "ip is",
		"host is blocked", "refused to talk", "connections from",
	}},
	{PolicyViolation, []string{
		"policy violation", "violates our policy", "policy reasons", "local policy",
		"acceptable use", "prohibited", "not permitted by policy", "protocol violation",
	}},
	{FailedSTARTTLS, []string{"starttls", "tls required", "encryption required"}},
	{SecurityError, []string{
		"authentication required", "authentication failed", "auth failed", "certificate",
		"must authenticate", "smtp auth", "insecure", "not authenticated", "unauthenticated senders",
	}},
	{TooManyConn, []string{
		"too many connections", "too many simultaneous", "connection limit", "too many recipients",
		"too many messages", "frequency limited", "connection frequency",
	}},
	{Speeding, []string{"rate limit", "sending rate", "temporarily deferred", "throttl", "too fast"}},
	{HasMoved, []string{"has moved", "address has changed", "no longer with", "forwarding address"}},
	{MailboxFull, []string{
		"mailbox full", "mailbox is full", "over quota", "quota exceeded", "exceeded storage",
		"insufficient disk space on user", "mailbox size limit", "mailbox exceeds", "full mailbox",
		"account is full", "quota", "box full", "mail box full", "user is over", "mailbox exceeded",
		"exceeds the size limit of the mailbox", "not enough storage space", "mailfolder is full",
	}},
	{SystemFull, []string{"system full", "disk full", "out of disk", "insufficient system storage", "queue full", "insufficient disk space"}},
	{Suspend, []string{
		"suspended", "disabled", "inactive", "deactivated", "not active", "frozen",
		"account has been locked", "is locked", "account expired", "expired account",
	}},
	{ExceedLimit, []string{"too large for this recipient", "recipsizelimit", "exceeds the maximum", "limit exceeded"}},
	{ContentError, []string{"headers too large", "content error", "illegal character", "header error", "invalid header", "8-bit"}},
	{MesgTooBig, []string{
		"message too large", "message too big", "message size exceeds", "message is too large",
		"message is too big", "size limit", "exceeds size", "message length exceeds", "too large",
	}},
	{HostUnknown, []string{
		"host unknown", "unknown host", "host not found", "domain not found", "no such domain",
		"domain does not exist", "name or service not known", "unrouteable mail domain",
		"unrouteable address", "host or domain name not found", "nxdomain", "domain name not found",
		"invalid domain", "unknown domain", "domain is not", "no route to host", "domain may not exist",
	}},
	{UserUnknown, []string{
		"user unknown", "unknown user", "no such user", "no such mailbox", "mailbox not found",
		"does not exist", "doesn't exist", "unknown recipient", "recipient unknown",
		"invalid recipient", "user not found", "recipient name is not recognized",
		"did not reach the following recipient", "address is possibly incorrect", "no valid recipients",
		"no mailbox", "not a valid mailbox", "mailbox unavailable", "unknown address", "bad address",
		"invalid address", "no such recipient", "account does not exist", "unknown local part",
		"unknown or illegal alias", "recipient not found", "no account", "invalid mailbox",
		"user doesn't have", "recipient rejected", "addressee unknown", "is not a valid",
		"mailbox does not exist", "account not found", "undeliverable address", "no valid recipients",
		"unknown in local recipient table", "address is correct", "not our customer",
		"recipientnotfound", "not found by smtp address lookup",
	}},
	{Rejected, []string{
		"sender address rejected", "sender rejected", "domain of sender", "sender domain",
		"envelope sender", "sender verify failed", "sender is", "from address", "sender not",
		"return path", "purported responsible address", "mail rejected by destination",
	}},
	{SecurityError, []string{"access denied"}},
	{Filtered, []string{
		"filtered", "rejected by", "refused by", "not accept", "recipient refused",
		"content rejected", "denied",
	}},
	{SyntaxError, []string{"syntax error", "command unrecognized", "unrecognized command"}},
	{NetworkError, []string{
		"network error", "connection refused", "could not connect", "unable to connect", "loop",
		"lookup failed", "temporary failure in name resolution", "no route", "host not reachable",
		"not reachable", "lookup failure",
	}},
	{SystemError, []string{
		"system error", "internal error", "server error", "local error", "temporary error",
		"try again later", "service unavailable", "i/o error", "system config error",
		"unable to contact ldap", "could not load",
	}},
	{Expired, []string{"retry timeout exceeded", "in the queue too long", "expired", "given up", "too long", "timeout exceeded", "has not been delivered"}},
}

// reasonFromText returns the first reason whose phrase occurs in the
// lower-case text and the phrase, "" when none does.
func reasonFromText(text string) (Reason, string) {
	if text == "" {
		return "", ""
	}
	// The text is first summarised as a set of trigrams so that most
	// phrases are ruled out without a scan.
	var grams gramSet
	grams.add(text)
	for _, row := range phraseTable {
		for _, p := range row.phrases {
			if !grams.mayContain(p) {
				continue
			}
			if strings.Contains(text, p) {
				return row.reason, p
			}
		}
	}
	return "", ""
}

// gramSet is a bitmap of hashed byte trigrams.
type gramSet [256]uint64

func gramHash(a, b, c byte) uint32 {
	return (uint32(a)*961 + uint32(b)*31 + uint32(c)) & (256*64 - 1)
}

func (g *gramSet) add(s string) {
	for i := 0; i+2 < len(s); i++ {
		h := gramHash(s[i], s[i+1], s[i+2])
		g[h>>6] |= 1 << (h & 63)
	}
}

func (g *gramSet) has(a, b, c byte) bool {
	h := gramHash(a, b, c)
	return g[h>>6]&(1<<(h&63)) != 0
}

// mayContain reports whether s may contain p: false means it surely
// does not.
func (g *gramSet) mayContain(p string) bool {
	n := len(p)
	if n < 3 {
		return true
	}
	m := n / 2
	if m+2 >= n {
		m = n - 3
	}
	return g.has(p[0], p[1], p[2]) && g.has(p[m], p[m+1], p[m+2]) && g.has(p[n-3], p[n-2], p[n-1])
}

// reasonFromStatus maps an enhanced status code to a reason by its subject
// and detail (RFC 3463 §3, and the IANA registry of enhanced status codes
// for the later 5.7.x codes).
func reasonFromStatus(st string) Reason {
	if len(st) < 5 {
		return ""
	}
	switch st[2:] {
	case "1.1", "1.3", "1.4", "1.5":
		return UserUnknown // bad destination mailbox address / syntax / ambiguous
	case "1.2":
		return HostUnknown // bad destination system address
	case "1.6":
		return HasMoved // destination mailbox has moved (RFC 3463 §3.2)
	case "1.7", "1.8":
		return Rejected // bad sender's mailbox / system address
	case "1.10":
		return NotAccept // recipient address has null MX (RFC 7505)
	case "2.1":
		return Suspend // mailbox disabled
	case "2.2":
		return MailboxFull
	case "2.3":
		return ExceedLimit // message length exceeds administrative limit
	case "2.4":
		return SystemError // mailing list expansion problem
	case "3.1":
		return SystemFull
	case "3.2":
		return NotAccept // system not accepting network messages
	case "3.4":
		return MesgTooBig
	case "3.0", "3.3", "3.5":
		return SystemError
	case "4.1", "4.2", "4.3", "4.6", "4.0":
		return NetworkError
	case "4.4":
		return HostUnknown // unable to route
	case "4.5":
		return SystemFull // mail system congestion
	case "4.7":
		return Expired // delivery time expired
	case "5.3":
		return TooManyConn // too many recipients
	case "5.1", "5.2", "5.4", "5.5", "5.6":
		return SyntaxError
	case "6.0", "6.1", "6.2", "6.3", "6.4", "6.5", "6.6":
		return ContentError
	case "7.1":
		return Blocked // delivery not authorized, message refused
	case "7.2":
		return Filtered
	case "7.7", "7.8", "7.9", "7.10", "7.11", "7.12", "7.14", "7.15", "7.16", "7.17", "7.18", "7.19", "7.29", "7.30":
		return SecurityError
	case "7.13":
		return Suspend // user account disabled (IANA registry)
	case "7.20", "7.21", "7.22", "7.23", "7.24", "7.26", "7.27":
		return AuthFailure // DKIM/SPF/DMARC (RFC 7372)
	case "7.25":
		return RequirePTR // reverse DNS validation failed (RFC 7372)
	case "7.28":
		return SpamDetected // mail flood detected (IANA registry)
	case "7.3", "7.4", "7.5", "7.6":
		return SecurityError
	case "7.0":
		return PolicyViolation
	}
	return ""
}
