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
// unknown), its enhanced status code (RFC 3463, "" when none), its text,
// and the phase of the transaction it answered (PhaseUnknown when the
// caller does not know). The sender calls it with the command it sent, so
// that "550 User unknown" in reply to RCPT TO is the hard UserUnknown it
// is. Parse applies the same rules to every recipient of a notification.
func ClassifyReply(code int, enhanced, text string, phase Phase) (reason Reason, hard bool) {
	reason, hard, _ = DefaultLexicon().ClassifyReply(code, enhanced, text, phase)
	return reason, hard
}

// ClassifyReply is the package's ClassifyReply with this lexicon, and
// what decided.
func (l *Lexicon) ClassifyReply(code int, enhanced, text string, phase Phase) (Reason, bool, Evidence) {
	rc := Recipient{Diagnostic: text, Status: findStatus(enhanced), Action: "failed"}
	if code > 0 {
		rc.ReplyCode = strconv.Itoa(code)
	} else {
		rc.ReplyCode = findReplyCode(text)
	}
	if rc.Status == "" {
		rc.Status = findStatus(text)
	}
	if code >= 200 && code < 300 || statusClass(rc.Status) == '2' {
		return Delivered, false, Evidence{Rule: RuleSuccess}
	}
	rc.command = phase
	// A synchronous reply is not a delay that expired: the action stays
	// "failed" so that an unexplained 4xx is not Expired.
	var a arena
	a.init()
	// The text as Parse would see a diagnostic: lower case, white
	// space collapsed, addresses masked.
	norm := a.maskAddresses(a.collapseSpace(a.lower(text)))
	classify(&rc, norm, "", l)
	st := rc.Status
	if st == "" && code >= 500 {
		st = "5"
	}
	return rc.Reason, isHard(rc.Reason, st), rc.Evidence
}

// Phase is the stage of the SMTP transaction a reply answered (RFC 5321
// §3.1–§3.3, §4.1.1).
type Phase string

// The phases of an SMTP transaction.
const (
	PhaseUnknown   Phase = ""
	PhaseConnect   Phase = "connect"     // the greeting (RFC 5321 §3.1)
	PhaseHelo      Phase = "helo"        // EHLO or HELO (§4.1.1.1)
	PhaseMail      Phase = "mail"        // MAIL FROM (§4.1.1.2)
	PhaseRcpt      Phase = "rcpt"        // RCPT TO (§4.1.1.3)
	PhaseData      Phase = "data"        // the DATA command itself (§4.1.1.4)
	PhaseEndOfData Phase = "end-of-data" // the final "." after the content (§4.1.1.4)
)

// afterAcceptance reports whether a refusal in phase p came after the
// server had accepted the recipient: at DATA or at the end of data.
func (p Phase) afterAcceptance() bool { return p == PhaseData || p == PhaseEndOfData }

// phaseMarkers are the words with which MTAs say which command a reply
// answered, lower case.
var phaseMarkers = []struct {
	phase   Phase
	phrases []string
}{
	// Postfix smtp(8) bounces: "(in reply to RCPT TO command)".
	{PhaseRcpt, []string{"in reply to rcpt to command"}},
	{PhaseEndOfData, []string{"in reply to end of data command"}},
	{PhaseData, []string{"in reply to data command"}},
	{PhaseMail, []string{"in reply to mail from command"}},
	{PhaseHelo, []string{"in reply to ehlo command", "in reply to helo command", "in reply to lhlo command"}},
	// Postfix: a server whose greeting refused us "refused to talk to me".
	{PhaseConnect, []string{"refused to talk to me"}},
	// Exim: "SMTP error from remote mail server after RCPT TO:<a@b>:",
	// "after end of data", "after MAIL FROM:<…>", "after initial
	// connection", "after EHLO host"; with PIPELINING "after pipelined
	// RCPT TO". Newer Exim: "SMTP error from remote server for RCPT TO
	// command".
	{PhaseRcpt, []string{"after rcpt to", "after pipelined rcpt to"}},
	{PhaseEndOfData, []string{"after end of data", "after sending data block"}},
	{PhaseData, []string{"after data", "after pipelined data"}},
	{PhaseMail, []string{"after mail from", "after pipelined mail from"}},
	{PhaseHelo, []string{"after ehlo", "after helo"}},
	{PhaseConnect, []string{"after initial connection"}},
	{PhaseRcpt, []string{"for rcpt to command"}},
	{PhaseMail, []string{"for mail from command"}},
	{PhaseData, []string{"for data command"}},
	// Sendmail and Courier quote the dialogue: ">>> RCPT To:<a@b>" then
	// "<<< 550 …".
	{PhaseRcpt, []string{">>> rcpt to"}},
	{PhaseMail, []string{">>> mail from"}},
	{PhaseData, []string{">>> data"}},
	{PhaseHelo, []string{">>> ehlo", ">>> helo"}},
	// qmail-remote: "a.b.c does not like recipient.", "Connected to
	// 192.0.2.1 but sender was rejected.", "… but my name was
	// rejected.", "… but greeting failed.", "… failed on DATA
	// command.", "… failed after I sent the message."; qmail-send's
	// summary: "most progress was RCPT TO response".
	{PhaseRcpt, []string{"does not like recipient"}},
	{PhaseMail, []string{"sender was rejected"}},
	{PhaseHelo, []string{"my name was rejected"}},
	{PhaseConnect, []string{"but greeting failed"}},
	{PhaseData, []string{"failed on data command"}},
	{PhaseEndOfData, []string{"failed after i sent the message"}},
	{PhaseRcpt, []string{"most progress was rcpt to"}},
	{PhaseMail, []string{"most progress was mail from"}},
	{PhaseData, []string{"most progress was data"}},
	{PhaseHelo, []string{"most progress was helo", "most progress was ehlo"}},
	{PhaseConnect, []string{"most progress was connect"}},
	// DragonFly's dma: "host did not like our RCPT TO: 550 …".
	{PhaseRcpt, []string{"did not like our rcpt to"}},
	{PhaseMail, []string{"did not like our mail from"}},
	{PhaseData, []string{"did not like our data"}},
	{PhaseEndOfData, []string{"did not like our final data"}},
	// 1&1's Exim says "SMTP error from remote server for TEXT command"
	// for the message text; m-FILTER (Digital Arts) writes
	// "-------SMTP command" and the command on the next line.
	{PhaseEndOfData, []string{"for text command"}},
	{PhaseRcpt, []string{"smtp command rcpt to", "smtp command: rcpt to"}},
	{PhaseMail, []string{"smtp command mail from", "smtp command: mail from"}},
	{PhaseData, []string{"smtp command data", "smtp command: data"}},
	// Sun/Oracle Messaging Server: "Remote SMTP server has rejected
	// address".
	{PhaseRcpt, []string{"server has rejected address"}},
	// The words of Postfix smtpd's own restriction replies name what
	// they refused: "Recipient address rejected: …" answers RCPT TO,
	// "Sender address rejected" MAIL FROM, "Helo command rejected"
	// EHLO, "Client host rejected" the connection (postconf(5),
	// smtpd_*_restrictions).
	{PhaseRcpt, []string{"recipient address rejected"}},
	{PhaseMail, []string{"sender address rejected"}},
	{PhaseHelo, []string{"helo command rejected"}},
	{PhaseConnect, []string{"client host rejected"}},
	// Gmail as the sending MTA: "The recipient server did not accept
	// our requests to connect."
	{PhaseConnect, []string{"did not accept our requests to connect"}},
}

// phaseIndex indexes the phrases of phaseMarkers by their first three
// bytes, so that phaseOf reads a text once.
var phaseIndex, phasePhrases = func() (*trigramIndex, []phasePhrase) {
	x := new(trigramIndex)
	var list []phasePhrase
	for _, g := range phaseMarkers {
		for _, p := range g.phrases {
			x.add(p, int32(len(list)))
			list = append(list, phasePhrase{p, g.phase})
		}
	}
	return x, list
}()

type phasePhrase struct {
	text  string
	phase Phase
}

// phaseOf returns the phase the lower-case text says a reply answered and
// the words that say it, PhaseUnknown when it names none. The last marker
// in the text wins: transcripts list the commands in order.
func phaseOf(lower string) (Phase, string) {
	best := -1
	for i := 0; i+3 <= len(lower); i++ {
		h := trigramKey(lower[i], lower[i+1], lower[i+2])
		if !phaseIndex.has(h) {
			continue
		}
		for _, id := range phaseIndex.buckets[h] {
			if strings.HasPrefix(lower[i:], phasePhrases[id].text) {
				best = int(id)
				break
			}
		}
	}
	if best < 0 {
		return PhaseUnknown, ""
	}
	return phasePhrases[best].phase, phasePhrases[best].text
}

// Evidence says what decided a recipient's Reason, for `repute parse
// --explain` and for anyone who asks why an address was blocklisted.
type Evidence struct {
	// Phase is the SMTP phase the refusal answered, PhaseUnknown when
	// nothing said; PhaseWords are the words that said it.
	Phase      Phase  `json:"phase,omitempty"`
	PhaseWords string `json:"phase_words,omitempty"`
	// Rule names the step that decided (the Rule constants).
	Rule string `json:"rule"`
	// Status and ReplyCode are the codes the report gave.
	Status    string `json:"status,omitempty"`
	ReplyCode string `json:"reply_code,omitempty"`
	// Phrase is the lexicon phrase found, and Entry where it is
	// written ("lexicon.txt:120", or the configuration).
	Phrase string `json:"phrase,omitempty"`
	Entry  string `json:"entry,omitempty"`
	// RecastFrom is the reason the phrase named when the phase (or a
	// temporary last reply) changed it.
	RecastFrom Reason `json:"recast_from,omitempty"`
}

// The steps of classification, in the order they are tried (Evidence.Rule).
const (
	RuleSuccess       = "success"        // Action delivered/relayed/expanded or a 2.X.X status
	RuleLocalDelivery = "local-delivery" // an X-Unix diagnostic: a local delivery agent failed
	RuleFinal         = "lexicon-final"  // a phrase of a final group
	RuleStatus        = "status"         // an enhanced code whose meaning is precise (RFC 3463)
	RuleLexicon       = "lexicon"        // a phrase of the reply, diagnostic or prose
	RuleStatusSubject = "status-subject" // the enhanced code's class.subject.detail
	RuleReplyCode     = "reply-code"     // the basic reply code (RFC 5321 §4.2.3)
	RulePhase         = "phase"          // the phase alone (MAIL: the sender; connection: the host)
	RuleDelayed       = "delayed"        // a delay that gave no cause has expired
	RuleOnHold        = "onhold"         // words that nothing recognised
	RuleUndefined     = "undefined"      // nothing to go on
	RuleSESSubType    = "ses-subtype"    // Amazon SES's bounceSubType, when no DSN came back
)

// definitiveStatus are status codes whose meaning is specific enough to
// win over the diagnostic's words (RFC 3463 §3; RFC 7372 for x.7.23–x.7.26;
// RFC 5248 for x.7.13). Codes that servers are known to use for something
// else than the registry says are left to the words: Microsoft sends 5.1.10
// for any unknown recipient (RESOLVER.ADR.RecipientNotFound), not only for
// a null MX (RFC 7505), and Sendmail sends 5.7.27 for the recipient's null
// MX where RFC 7505 means the sender's.
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
	"5.7.13": Suspend,
	"5.7.25": RequirePTR,
	"5.7.26": AuthFailure, "5.7.23": AuthFailure,
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
// domain name rather than an address: "example.com does not exist" is
// about the domain.
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

// maxContext bounds the prose searched for phrases.
const maxContext = 4096

// classify sets rc.Reason and rc.Evidence from the evidence, in this
// order: success; a local delivery agent's failure; the lexicon's
// final phrases; an enhanced status code whose meaning is precise;
// the lexicon's phrases in the remote server's reply, the whole
// diagnostic, then the prose about the recipient, adjusted by the SMTP
// phase; the enhanced code's class.subject.detail; the reply code; the
// phase alone; the action. text and context are lower case with white
// space collapsed.
func classify(rc *Recipient, text, context string, lex *Lexicon) {
	ev := &rc.Evidence
	ev.Status, ev.ReplyCode = rc.Status, rc.ReplyCode
	decide := func(r Reason, rule string) {
		rc.Reason, ev.Rule = r, rule
	}
	if statusClass(rc.Status) == '2' || rc.Action == "delivered" || rc.Action == "relayed" || rc.Action == "expanded" {
		decide(Delivered, RuleSuccess)
		return
	}
	if rc.diagType == "x-unix" {
		// RFC 3464 §2.3.6: an X-Unix diagnostic is the exit status of
		// the local delivery agent (procmail, a pipe), whatever code
		// the MTA chose.
		decide(MailerError, RuleLocalDelivery)
		return
	}
	if len(context) > maxContext {
		context = context[:maxContext]
	}
	reply := serverReply(text)
	srcs := lexSources{texts: [3]string{reply, text, context}}
	if reply == text {
		srcs.texts[1] = ""
	}
	if context == text {
		srcs.texts[2] = ""
	}
	find := func(t tier, from, to int) (lexMatch, bool) {
		return srcs.find(lex, t, from, to)
	}
	if m, ok := find(tierFinal, 0, 3); ok {
		ev.Phrase, ev.Entry = m.phrase, m.entry
		decide(m.reason, RuleFinal)
		return
	}
	if r, ok := definitiveStatus[rc.Status]; ok {
		decide(r, RuleStatus)
		return
	}

	phase, words := phaseOf(text)
	if phase == PhaseUnknown {
		phase = rc.command
	}
	if phase == PhaseUnknown && context != text {
		phase, words = phaseOf(context)
	}
	ev.Phase, ev.PhaseWords = phase, words

	// A phrase's reason, adjusted by the phase.
	byPhrase := func(m lexMatch) {
		ev.Phrase, ev.Entry = m.phrase, m.entry
		r := recast(m.reason, m.phrase, text, phase)
		if r != m.reason {
			ev.RecastFrom = m.reason
		}
		if r == NetworkError && rc.Status == "" && strings.HasPrefix(rc.ReplyCode, "4") && rc.prose != "" {
			// A prose bounce whose last word from the remote host
			// was a temporary refusal: the MTA retried until the
			// message expired (qmail, Exim and Zoho write such
			// bounces when they give up).
			ev.RecastFrom, r = r, Expired
		}
		decide(r, RuleLexicon)
	}
	m, ok := find(tierNormal, 0, 1)
	if !ok && (reply == "" || reasonFromStatus(rc.Status) == "") {
		// When the remote server's own reply names no cause, the
		// status code it sent says more than the words of the MTA
		// that wrote the bounce around it; without a reply, those
		// words are all there is.
		m, ok = find(tierNormal, 1, 3)
	}
	if ok {
		byPhrase(m)
		return
	}
	if r := reasonFromStatus(rc.Status); r != "" {
		decide(r, RuleStatusSubject)
		return
	}
	if m, ok := find(tierWeak, 0, 3); ok {
		byPhrase(m)
		return
	}
	if r := reasonFromReplyCode(rc.ReplyCode); r != "" {
		decide(r, RuleReplyCode)
		return
	}
	switch phase {
	case PhaseMail:
		decide(Rejected, RulePhase) // the sender was refused
		return
	case PhaseConnect, PhaseHelo:
		decide(Blocked, RulePhase) // the connecting host was refused
		return
	}
	if rc.Action == "delayed" {
		// A delay with nothing said but a code: the MTA kept trying
		// until it gave up.
		decide(Expired, RuleDelayed)
		return
	}
	if hasWords(text) || serverReply(context) != "" {
		// The report has words nothing here recognises: the failure
		// is on hold for a person (or a lexicon entry) to decide,
		// which is not the same as a report that says nothing.
		decide(OnHold, RuleOnHold)
		return
	}
	decide(Undefined, RuleUndefined)
}

// hasWords reports whether text holds a word of at least two letters: a
// diagnostic that says something, beyond codes and masked addresses.
func hasWords(text string) bool {
	run := 0
	for i := 0; i < len(text); i++ {
		if isAlpha(text[i]) || text[i] >= 0x80 {
			if run++; run >= 2 {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// lexSources are the texts classify searches for phrases, most precise
// first: the remote server's reply, the whole diagnostic, the prose about
// the recipient; each is scanned once, when first asked.
type lexSources struct {
	texts   [3]string
	scanned [3]bool
	best    [3]tierBest
}

// find returns the first match of tier t in texts[from:to].
func (s *lexSources) find(lex *Lexicon, t tier, from, to int) (lexMatch, bool) {
	for i := from; i < to; i++ {
		if s.texts[i] == "" {
			continue
		}
		if !s.scanned[i] {
			s.best[i], s.scanned[i] = lex.scan(s.texts[i]), true
		}
		if id := s.best[i][t]; id != noMatch {
			return lex.matchOf(id), true
		}
	}
	return lexMatch{}, false
}

// recast adjusts the reason a phrase named by the phase the refusal
// answered; phase evidence only ever narrows, and an unknown phase
// changes nothing.
func recast(r Reason, phrase, text string, phase Phase) Reason {
	switch {
	case (r == UserUnknown || r == HostUnknown || r == Filtered || (r == SecurityError && phrase == "access denied")) && phase == PhaseMail:
		// Refused at MAIL FROM: the words are about the sender.
		return Rejected
	case (r == UserUnknown || r == HostUnknown || r == Filtered || r == SecurityError) && (phase == PhaseHelo || phase == PhaseConnect):
		// Refused before any recipient was named: the connecting host
		// is blocked.
		return Blocked
	case r == UserUnknown && !namesMailbox(phrase) && domainBefore(text, phrase):
		// "example.com does not exist": a phrase that names no mailbox
		// is about the word before it, here a domain.
		return HostUnknown
	case r == UserUnknown && phase.afterAcceptance():
		// The recipient was accepted at RCPT TO: a "user unknown"
		// after DATA is a filter's verdict on the message, not a dead
		// address (Sendmail milters, content gateways).
		return Filtered
	}
	return r
}

// namesMailbox reports whether a user-unknown phrase names what does not
// exist ("no such user", "mailbox not found"), rather than leaving it to
// the word before it ("does not exist", "not found").
func namesMailbox(phrase string) bool {
	for _, w := range []string{"user", "mailbox", "recipient", "account", "address", "person", "addressee", "alias", "local part"} {
		if strings.Contains(phrase, w) {
			return true
		}
	}
	return false
}

// reasonFromReplyCode maps a basic reply code to a reason where RFC 5321
// §4.2.2–§4.2.3 (and the RFCs that added codes) give it one meaning;
// the many-purpose codes (421, 450, 550, 554) decide nothing alone.
func reasonFromReplyCode(code string) Reason {
	switch code {
	case "500", "501", "502", "503", "504", "555":
		return SyntaxError // syntax, unknown command, bad sequence, unknown parameter
	case "451":
		return SystemError // local error in processing
	case "452":
		return SystemFull // insufficient system storage
	case "552":
		return MailboxFull // exceeded storage allocation
	case "553":
		return UserUnknown // mailbox name not allowed (a malformed address)
	case "530", "535", "538":
		return SecurityError // authentication required / failed (RFC 4954 §6)
	case "521", "556":
		return NotAccept // the host or domain accepts no mail (RFC 7504)
	}
	return ""
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

// reasonFromStatus maps an enhanced status code to a reason by its
// subject and detail: RFC 3463 §3 and every code of the IANA "Enumerated
// Status Codes" registry (RFC 3886, 4468, 4865, 4954, 5248, 6531, 6710,
// 7293, 7372, 7505, 8617, 8689). The x.0.0-style "other or undefined"
// codes name a subject only, and the codes that are not failures
// (x.1.5 destination address valid, x.1.9 relayed to a non-compliant
// mailer, x.3.6 priority changed) decide nothing.
func reasonFromStatus(st string) Reason {
	if len(st) < 5 {
		return ""
	}
	switch st[2:] {
	case "1.1", "1.3", "1.4":
		return UserUnknown // bad destination mailbox address, its syntax, ambiguous
	case "1.2":
		return HostUnknown // bad destination system address
	case "1.6":
		return HasMoved // destination mailbox has moved, no forwarding address
	case "1.7", "1.8":
		return Rejected // bad sender's mailbox address syntax / system address
	case "1.10":
		return NotAccept // recipient address has null MX (RFC 7505)
	case "2.1":
		return Suspend // mailbox disabled, not accepting messages
	case "2.2":
		return MailboxFull
	case "2.3":
		return ExceedLimit // message length exceeds administrative limit
	case "2.4":
		return SystemError // mailing list expansion problem
	case "3.0", "3.3", "3.5":
		return SystemError // other mail system status, feature not supported, misconfigured
	case "3.1":
		return SystemFull // mail system full
	case "3.2":
		return NotAccept // system not accepting network messages
	case "3.4":
		return MesgTooBig // message too big for system
	case "4.0", "4.1", "4.2", "4.3", "4.6":
		return NetworkError // routing, no answer, bad connection, directory failure, loop
	case "4.4":
		return HostUnknown // unable to route
	case "4.5":
		return SystemFull // mail system congestion
	case "4.7":
		return Expired // delivery time expired
	case "5.3":
		return TooManyConn // too many recipients
	case "5.1", "5.2", "5.4", "5.5":
		// Invalid command, syntax error, invalid arguments, wrong
		// protocol version. (x.5.0 decides nothing: Sendmail falls
		// back to it for server replies it cannot map.)
		return SyntaxError
	case "5.6":
		return SecurityError // authentication exchange line too long (RFC 4954)
	case "6.0", "6.1", "6.2", "6.3", "6.4", "6.5", "6.6", "6.7", "6.8", "6.9", "6.10":
		// Media and conversion (RFC 3463), content not available
		// (RFC 4468), non-ASCII addresses or headers (RFC 6531).
		return ContentError
	case "7.0":
		return PolicyViolation // other security or policy status
	case "7.1":
		return Blocked // delivery not authorized, message refused
	case "7.2":
		return Filtered // mailing list expansion prohibited
	case "7.3", "7.4", "7.5", "7.6", "7.7", "7.8", "7.9", "7.10", "7.11", "7.12", "7.14", "7.19":
		// Security conversion, cryptography, integrity; authentication
		// (RFC 4954, 5248); RRVS test incomplete (RFC 7293).
		return SecurityError
	case "7.13":
		return Suspend // user account disabled (RFC 5248)
	case "7.15":
		return PolicyViolation // priority level too low (RFC 6710)
	case "7.16":
		return MesgTooBig // message too big for the specified priority (RFC 6710)
	case "7.17", "7.18":
		return HasMoved // mailbox or domain owner has changed (RFC 7293)
	case "7.20", "7.21", "7.22", "7.23", "7.24", "7.26", "7.29":
		// DKIM, SPF, multiple checks (RFC 7372), ARC (RFC 8617).
		return AuthFailure
	case "7.25":
		return RequirePTR // reverse DNS validation failed (RFC 7372)
	case "7.27":
		return Rejected // sender address has null MX (RFC 7505): the sender's problem
	case "7.28":
		return Speeding // mail flood detected (IANA registry)
	case "7.30":
		return FailedSTARTTLS // REQUIRETLS support required (RFC 8689)
	}
	return ""
}
