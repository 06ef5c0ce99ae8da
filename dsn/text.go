package dsn

import (
	"slices"
	"strings"
)

// This file holds the labelled fallback for bounces with no
// machine-readable delivery-status part: qmail, Exim, Gmail, Yahoo,
// DragonFly and many others write the failure in prose. The heuristics
// find the returned original, the failed addresses and the text around
// each of them.

// bounceSenders are local parts of the addresses bounces come from.
var bounceSenders = []string{
	"mailer-daemon", "postmaster", "mail delivery", "mail-daemon", "maildaemon",
	"mailer_daemon", "mail administrator", "mail system", "nobody", "bounce",
	"daemon", "mmdf",
}

// bounceSubjects are lower-case phrases of bounce subjects.
var bounceSubjects = []string{
	"undeliver", "undelivered", "delivery fail", "delivery status", "failure notice",
	"returned mail", "mail delivery", "delivery problem", "could not be delivered",
	"not delivered", "delivery notification", "nondeliverable", "non-deliverable",
	"non delivery", "mail system error", "delivery report", "bounce", "loop alert",
	"mail error", "delivery failure", "returned to sender", "delivery warning",
	// Exchange's localised NDR subjects: German, French, Spanish,
	// Italian, Portuguese, Dutch, Japanese, Chinese.
	"unzustellbar", "non remis", "no se puede entregar", "non recapitabile",
	"não é possível entregar", "onbestelbaar", "配信不能", "无法投递", "無法傳遞",
}

// looksLikeBounce reports whether a message without a delivery-status part
// is a bounce written in prose.
func looksLikeBounce(m *message) bool {
	h := m.root.header
	from := h.get("From")
	for _, s := range bounceSenders {
		if containsFold(from, s) {
			return true
		}
	}
	subj := h.get("Subject")
	for _, s := range bounceSubjects {
		if containsFold(subj, s) {
			return true
		}
	}
	if h.has("X-Failed-Recipients") {
		return true
	}
	text := m.lowerText()
	if len(text) > 4096 {
		text = text[:4096]
	}
	for _, s := range bounceBodies {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// bounceBodies are lower-case phrases of the text of bounces whose sender
// and subject say nothing: carriers such as KDDI send them from an
// ordinary address with an ordinary subject.
var bounceBodies = []string{
	"could not be delivered to", "was not delivered to", "delivery to the following recipient",
	"unable to deliver", "undeliverable", "delivery has failed", "failed permanently",
	"permanent error", "following addresses had", "mailbox is full", "user unknown",
	// Amazon SES notifications delivered by SNS to an e-mail endpoint
	// are JSON whose notificationType (eventType when published as
	// events) names the event, whatever words the remote server used
	// (see ses.go); an Email-JSON subscription
	// escapes them inside SNS's envelope.
	`"notificationtype":"bounce"`, `"notificationtype":"delivery"`, `"eventtype":"bounce"`,
	`\"notificationtype\":\"bounce\"`, `\"notificationtype\":\"delivery\"`,
}

// originalMarkers are lower-case phrases of the line that introduces the
// returned original in a prose bounce.
var originalMarkers = []string{
	"below this line is a copy of the message",
	"this is a copy of the message",
	"original message follows",
	"original message ---",
	"message headers follow",
	"original message header",
	"headers of the original message",
	"copy of the original message",
	"the header of the original message",
	"--- original message",
	"unsent message below",
	"unsent message follows",
	"message text follows",
	"returned message follows",
	"----- returned message",
	"content-type: message/rfc822",
	"content-type: text/rfc822-headers",
	"-- the header",
	"original message headers",
	"original mail as follows",
}

// splitOriginal splits the text of a prose bounce into the explanation and
// the quoted original (headers first), "" when none is found; lower is the
// text in lower case and lowerExplain the explanation in lower case. The cut is
// at the first line holding a marker phrase, or at the first header line
// (Return-Path, Received) that starts a paragraph.
func splitOriginal(text, lower string) (explain, lowerExplain, orig string) {
	var grams gramSet
	return splitOriginalGrams(text, lower, &grams)
}

// splitOriginalGrams is splitOriginal that leaves in grams the trigrams
// of lower, for the caller to rule out more phrases with.
func splitOriginalGrams(text, lower string, grams *gramSet) (explain, lowerExplain, orig string) {
	grams.add(lower)
	cut := len(text)
	for _, mk := range originalMarkers {
		if !grams.mayContain(mk) {
			continue
		}
		if i := strings.Index(lower[:cut], mk); i >= 0 {
			cut = i
		}
	}
	header := false
	for _, h := range []string{"\nreturn-path:", "\nreceived: "} {
		if i := strings.Index(lower[:cut], h); i > 0 && text[i+1] == h[1]-('a'-'A') {
			cut, header = i+1, true
		}
	}
	if i := headerBlock(lower[:cut]); i >= 0 {
		cut, header = i, true
	}
	if cut == len(text) {
		return text, lower, ""
	}
	start := strings.LastIndexByte(text[:cut], '\n') + 1
	if header && start == cut {
		// A header line: the original starts here.
		return text[:cut], lower[:cut], text[cut:]
	}
	_, rest := cutLine(text[start:])
	return text[:start], lower[:start], strings.TrimLeft(rest, "\n ")
}

// headerBlock returns the offset in the lower-case text of the first
// block of header lines (RFC 5322 §2.2: "Name: value" at the start of a
// line, continuation lines indented) that is the returned original's
// header: three fields a message header has in a row, From: among them
// (RFC 5322 §3.6 requires From: and Date:), or two when one of them only
// a message header has (Received:, Return-Path:, Message-ID:,
// MIME-Version:, List-*:). -1 when there is none. Bounces that summarise
// the original ("  To: …", "  Subject: …") indent it, or give no From:
// (IMail's "To:/CC:/Date:/Subject:"), and are
// not cut there.
func headerBlock(lower string) int {
	run, known, strong, from := 0, 0, false, false
	for pos := 0; pos < len(lower); {
		line := lower[pos:]
		next := len(lower)
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], pos+i+1
		}
		switch {
		case line != "" && (line[0] == ' ' || line[0] == '\t') && known > 0:
			// A continuation of the field above.
		case line != "" && isAlpha(line[0]):
			name, _, ok := strings.Cut(line, ":")
			name = strings.TrimRight(name, " \t")
			if !ok || !isFieldName(name) {
				known, strong, from = 0, false, false
				break
			}
			if known == 0 {
				run = pos
			}
			k, st := headerFieldKind(name)
			if !k {
				// An unknown field (X-…) in a block already started
				// keeps it going; it starts none.
				break
			}
			known++
			strong = strong || st
			from = from || name == "from"
			if (known >= 3 && from) || (known >= 2 && strong) {
				return run
			}
		default:
			known, strong, from = 0, false, false
		}
		pos = next
	}
	return -1
}

// headerFieldKind reports whether a lower-case field name is one a
// message header commonly holds, and whether only a message header (not a
// bounce's summary of it) holds it.
func headerFieldKind(name string) (known, strong bool) {
	switch name {
	case "received", "return-path", "message-id", "mime-version", "dkim-signature",
		"delivered-to", "x-original-to", "authentication-results", "content-transfer-encoding",
		"list-id", "list-post", "list-unsubscribe", "list-help", "list-subscribe", "list-archive",
		"in-reply-to", "references", "errors-to", "precedence", "x-mailer", "user-agent":
		return true, true
	case "from", "to", "cc", "subject", "date", "reply-to", "sender", "content-type":
		return true, false
	}
	return false, false
}

// maxTextRecipients caps the addresses taken from prose: a bounce names a
// few, and every one costs a pass over the text.
const maxTextRecipients = 100

// maxExplain bounds the human-readable text of a DSN searched for each
// recipient's paragraph.
const maxExplain = 64 << 10

// maxMarks caps the places per address where the text names it.
const maxMarks = 16

// parseText extracts recipients from a prose bounce.
func parseText(m *message, rep *Report) {
	text, lower := m.text, m.lowerText()
	if text == "" {
		text = m.root.decoded(&m.a)
		lower = m.a.lower(text)
	}
	var grams gramSet // of the whole text, explanation included
	explain, lowerExplain, orig := splitOriginalGrams(text, lower, &grams)
	if m.orig == nil && orig != "" {
		h, _ := m.a.parseHeader(orig)
		if len(h) > 0 {
			m.orig = h
		}
	}
	var addrBuf [4]addrPos // the list starts on the stack
	addrs := failedAddresses(addrBuf[:0], m, explain, lowerExplain)
	action := "failed"
	if isDelayWarning(m.root.header.get("Subject"), lowerExplain, &grams) {
		action = "delayed"
	}
	var cmd Phase
	var prose string
	if len(addrs) == 1 {
		cmd, _ = phaseOf(lowerExplain)
		prose = lowerExplain
	}
	// Where each recipient is named: a segment runs from the line naming
	// a recipient to the line naming another one.
	var markBuf [8]addrPos
	marks := markBuf[:0]
	for _, a := range addrs {
		la := m.a.lower(a.addr)
		for off, n := 0, 0; off < len(lowerExplain) && n < maxMarks; n++ {
			i := strings.Index(lowerExplain[off:], la)
			if i < 0 {
				break
			}
			marks = append(marks, addrPos{a.addr, off + i})
			off += i + len(la)
		}
	}
	slices.SortFunc(marks, func(x, y addrPos) int { return x.pos - y.pos })
	segment := func(k int) (start, end int) {
		start = strings.LastIndexByte(explain[:marks[k].pos], '\n') + 1
		// QUIRK: a Sendmail transcript gives the dialogue before the
		// line naming the recipient ("While talking to …", ">>> MAIL
		// From:", "<<< 550 …"); it belongs to that recipient.
		for start > 0 {
			prev := strings.LastIndexByte(explain[:start-1], '\n') + 1
			line := strings.TrimLeft(lowerExplain[prev:start-1], " \t")
			if !strings.HasPrefix(line, ">>> ") && !strings.HasPrefix(line, "<<< ") && !strings.HasPrefix(line, "while talking to") {
				break
			}
			start = prev
		}
		end = len(explain)
		for j := k + 1; j < len(marks); j++ {
			if !strings.EqualFold(marks[j].addr, marks[k].addr) {
				end = max(start, strings.LastIndexByte(explain[:marks[j].pos], '\n')+1)
				break
			}
		}
		return start, end
	}
	if len(addrs) > 1 {
		rep.Recipients = slices.Grow(rep.Recipients, len(addrs))
	}
	for _, a := range addrs {
		// The diagnostic of a recipient is its first segment that holds
		// a reply code, else its first segment: some MTAs (Mail.ru)
		// list the addresses first and the details after them.
		ds, de := -1, -1
		for k := range marks {
			if !strings.EqualFold(marks[k].addr, a.addr) {
				continue
			}
			s, e := segment(k)
			if ds < 0 {
				ds, de = s, e
			}
			if seg := explain[s:e]; findReplyCode(seg) != "" || findStatus(seg) != "" {
				ds, de = s, e
				break
			}
		}
		if ds < 0 || onlyAddress(explain[ds:de], a.addr) {
			// The line names the address only and nothing follows:
			// the whole explanation is all there is.
			ds, de = 0, len(explain)
		}
		diag := explain[ds:de]
		rc := Recipient{Address: a.addr, Diagnostic: diag, Action: action, scratch: scratch{command: cmd, prose: prose}}
		if diag != explain {
			rc.context, rc.lowerContext = explain, lowerExplain
		}
		rc.Status = replyStatus(diag)
		rc.ReplyCode = findReplyCode(diag)
		rc.temporary = isTemporary(lowerExplain[ds:de])
		if hasSuffixFold(a.addr, "@googlegroups.com") && rc.Status == "" && rc.ReplyCode == "" {
			// QUIRK: Google Groups refuses posts from non-members in
			// the language of the sender, naming no code; the group
			// exists, the sender was refused. A bounce with a code is
			// classified as any other.
			rc.Reason = Rejected
		}
		if rc.Status == "" && rc.ReplyCode == "" && len(addrs) == 1 {
			// QUIRK: some MTAs (MailMarshal) give the code before the
			// line naming the single recipient.
			rc.Status = replyStatus(explain)
			rc.ReplyCode = findReplyCode(explain)
		}
		rep.addRecipient(rc)
	}
}

// addFound appends a to list unless the list holds it already (in any
// case) or is full.
func addFound(list []addrPos, a addrPos) []addrPos {
	for _, f := range list {
		if strings.EqualFold(f.addr, a.addr) {
			return list
		}
	}
	if len(list) >= maxTextRecipients {
		return list
	}
	return append(list, a)
}

// failedAddresses appends to dst the addresses a prose bounce says failed, in
// the order the explanation names them (explain is the text before the
// returned original, lowerExplain the same in lower case).
//
// An address counts only when the report itself names it: in the
// X-Failed-Recipients header (Exim, Gmail), or in the explanation. There,
// an address tied to the failure by the MTA's own layout (see isTied) wins
// over one merely mentioned. Addresses of the bounce's own header and of
// the returned original's senders are taken only when tied and nothing
// else is (a sender that mailed itself gets its own bounce); the
// addresses of a returned mailing-list posting (its list, its -bounces
// and -request addresses, its To and Cc) never are. When nothing is
// named, there is no recipient: the original's To is no guess for it,
// since a list posting is addressed to the list, not to the subscriber.
func failedAddresses(dst []addrPos, m *message, explain, lowerExplain string) []addrPos {
	var weakBuf, listBuf [8]addrPos // the lists start on the stack
	weak, list := weakBuf[:0], listBuf[:0]
	for i := range m.root.header {
		f := &m.root.header[i]
		if isSenderField(f.name) || equalFoldASCII(f.name, "To") {
			weak = appendAddresses(weak, f.unfolded())
		}
	}
	if o := m.orig; o != nil {
		// RFC 2369 List-* and RFC 2919 List-Id mark a list posting:
		// its To and Cc name the list and its readers, and the
		// addresses of its List-* fields and Errors-To belong to the
		// list server. None of them is the subscriber that failed.
		posting := false
		for i := range o {
			f := &o[i]
			switch {
			case isSenderField(f.name):
				weak = appendAddresses(weak, f.unfolded())
			case hasPrefixFold(f.name, "List-"):
				posting = true
				list = appendAddresses(list, f.unfolded())
			case equalFoldASCII(f.name, "Errors-To"):
				list = appendAddresses(list, f.unfolded())
			case equalFoldASCII(f.name, "Precedence"):
				posting = posting || strings.EqualFold(strings.TrimSpace(f.unfolded()), "list")
			}
		}
		if posting {
			list = appendAddresses(list, o.get("To"))
			list = appendAddresses(list, o.get("Cc"))
		}
	}
	in := func(set []addrPos, a string) bool {
		return slices.ContainsFunc(set, func(w addrPos) bool { return equalFoldASCII(a, w.addr) })
	}
	// Every address the explanation names, in order, with its tier:
	// 0 tied to the failure, 1 merely named, 2 tied but weak, 3 named
	// only in a quoted header line or weak and untied (kept for
	// X-Failed-Recipients only).
	type candidate struct {
		addrPos
		tier uint8
	}
	var candBuf [8]candidate
	cands := candBuf[:0]
	best := uint8(3)
	for off := 0; ; {
		addr, pos, next := nextAddress(explain, off)
		if addr == "" {
			break
		}
		off = next
		if inIDField(lowerExplain, pos) || in(list, addr) {
			continue
		}
		tier := uint8(3)
		switch {
		case isSkipped(addr):
			// A role address (postmaster@, abuse@) is named in
			// bounces as the one to write to; it failed only when the
			// text lists it as failed and the original was sent to it.
			if m.orig == nil || !isTied(lowerExplain, pos, next) || !containsFold(m.orig.get("To"), addr) {
				continue
			}
			tier = 2
		case inAddressField(lowerExplain, pos):
			// A header line of the original quoted in the text.
		default:
			switch t, w := isTied(lowerExplain, pos, next), in(weak, addr); {
			case t && !w:
				tier = 0
			case !t && !w:
				tier = 1
			case t:
				tier = 2
			}
		}
		dup := false
		for i := range cands {
			if equalFoldASCII(cands[i].addr, addr) {
				cands[i].tier = min(cands[i].tier, tier)
				dup = true
				break
			}
		}
		if !dup && len(cands) < maxTextRecipients {
			cands = append(cands, candidate{addrPos{addr, pos}, tier})
		}
		best = min(best, tier)
	}
	if xf := m.root.header.get("X-Failed-Recipients"); xf != "" {
		// Exim and Google name the failed recipients in a header: it
		// is the list. Keep the text's order for the addresses it
		// names, then add the ones it does not.
		var listedBuf [4]addrPos
		listed := appendAddresses(listedBuf[:0], xf)
		if len(listed) > maxTextRecipients {
			listed = listed[:maxTextRecipients]
		}
		for _, c := range cands {
			if in(listed, c.addr) {
				dst = addFound(dst, c.addrPos)
			}
		}
		for _, l := range listed {
			if !isSkipped(l.addr) {
				dst = addFound(dst, addrPos{l.addr, len(explain)})
			}
		}
		return dst
	}
	if best < 3 {
		for _, c := range cands {
			if c.tier == best {
				dst = addFound(dst, c.addrPos)
			}
		}
		return dst
	}
	if m.orig != nil {
		// Sendmail names the destination host of a failed mailer
		// rather than each address: "example.com (smtp)... Deferred:
		// Connection timed out". The
		// original's recipients at that domain are those it means.
		var toBuf [4]addrPos
		for _, a := range appendAddresses(appendAddresses(toBuf[:0], m.orig.get("To")), m.orig.get("Cc")) {
			if in(list, a.addr) {
				continue
			}
			_, domain, _ := strings.Cut(a.addr, "@")
			if d := m.a.lower(domain); d != "" && (strings.Contains(lowerExplain, d+" (smtp)...") || strings.Contains(lowerExplain, d+"... ")) {
				dst = addFound(dst, addrPos{a.addr, len(explain)})
			}
		}
	}
	return dst
}

// isSenderField reports whether a header field names the sender of a
// message (RFC 5322 §3.6.2, RFC 5321 §4.4 Return-Path).
func isSenderField(name string) bool {
	return equalFoldASCII(name, "From") || equalFoldASCII(name, "Sender") ||
		equalFoldASCII(name, "Reply-To") || equalFoldASCII(name, "Return-Path")
}

// inAddressField reports whether offset i of the lower-case text is on a
// header line naming the sender or recipients of a message (From:, To:,
// Cc:, Reply-To:, Sender:, Return-Path:, List-*:, …) or on a continuation
// of one: bounces quote the original's header that way, and the To of a
// list posting is the list, not the recipient that failed.
func inAddressField(lower string, i int) bool {
	ls := strings.LastIndexByte(lower[:i], '\n') + 1
	for n := 0; n < 50; n++ {
		line := lower[ls:]
		if line == "" || (line[0] != ' ' && line[0] != '\t') || ls == 0 {
			break
		}
		// A continuation line: look at the line it continues.
		prev := strings.LastIndexByte(lower[:ls-1], '\n') + 1
		if strings.TrimSpace(lower[prev:ls-1]) == "" {
			break // a blank line ends a header field
		}
		ls = prev
	}
	line := strings.TrimLeft(lower[ls:i], " \t")
	for _, name := range addressFields {
		if strings.HasPrefix(line, name) {
			return true
		}
	}
	return false
}

// addressFields are the lower-case names, with their colon, of the header
// fields (RFC 5322 §3.6.2, §3.6.3, §3.6.7; RFC 2369; RFC 5321 §4.4) that
// name a message's senders and recipients rather than a failure.
var addressFields = []string{
	"from:", "to:", "cc:", "bcc:", "reply-to:", "sender:", "return-path:", "errors-to:",
	"list-", "delivered-to:", "x-original-to:", "envelope-to:", "resent-", "mail-followup-to:",
	"disposition-notification-to:", "x-sender:", "x-beenthere:",
}

// isTied reports whether the address at lower[start:end] is tied to the
// failure by the layout MTAs use to list failed recipients:
//
//   - it starts its line, alone or followed by the reason: qmail and
//     Yahoo ("<addr>:" paragraphs), Postfix ("<addr>: host … said:"),
//     Exim ("  addr" blocks with the reason indented below), Sendmail
//     ("<addr>... User unknown"), Exchange and Office 365, Lotus Domino,
//     Kerio, Novell GroupWise and Mercury (one address a line under
//     "… failed to these recipients", "was not delivered to:");
//   - a phrase of the failure comes just before it: "RCPT TO:<addr>"
//     (RFC 5321 transcripts, Exim's "SMTP error from remote mail server
//     after RCPT TO:<addr>"), Gmail's "wasn't delivered to addr",
//     "Your message to addr couldn't be delivered" (Office 365), IMail's
//     "Unknown user: addr", "Final-Recipient: rfc822; addr" (RFC 3464
//     fields pasted in prose), "the following recipient(s): addr";
//   - the failure comes just after it: Sendmail's "addr... User
//     unknown", a remote reply "<addr>: Recipient address rejected".
func isTied(lower string, start, end int) bool {
	ls := strings.LastIndexByte(lower[:start], '\n') + 1
	le := strings.IndexByte(lower[end:], '\n')
	if le < 0 {
		le = len(lower)
	} else {
		le += end
	}
	before := strings.TrimRight(lower[ls:start], " \t<\"'([:")
	if strings.TrimLeft(before, " \t*-") == "" {
		return true
	}
	for _, p := range tiedBefore {
		if strings.HasSuffix(before, p) {
			return true
		}
	}
	if strings.HasSuffix(before, "rfc822;") && !strings.Contains(before, "original-recipient") {
		return true
	}
	after := strings.TrimLeft(lower[end:le], ">\"' \t")
	if strings.HasPrefix(after, "...") {
		return true // Sendmail: "<addr>... User unknown"
	}
	after = strings.TrimLeft(after, ":;, \t")
	for _, p := range tiedAfter {
		if strings.HasPrefix(after, p) {
			return true
		}
	}
	return false
}

// tiedBefore are lower-case phrases that, right before an address (white
// space, "<", quotes and ":" aside), say it is a recipient that failed.
var tiedBefore = []string{
	"rcpt to", "rcpt", "delivered to", "deliver to", "delivering to", "delivery to",
	"deliverable to", "message to", "failed for", "recipient", "recipients", "recipient(s)",
	"recipient address", "addressee", "unknown user", "user unknown", "unknown recipient",
	"invalid recipient", "invalid address", "bad recipient", "user", "mailbox", "final-recipient",
	"x-failed-recipients", "following address", "following addresses", "address(es)",
	"could not reach", "not reach",
}

// tiedAfter are lower-case phrases of a failure that follow an address
// (after ">", ":" and white space).
var tiedAfter = []string{
	"user unknown", "unknown user", "no such user", "recipient address rejected",
	"mailbox unavailable", "mailbox not found", "does not exist", "is not a valid",
	"unknown or illegal alias", "mailbox is full", "over quota", "host unknown",
	"action: failed", "action: delayed",
}

// isDelayWarning reports whether a prose report (its Subject and its
// explanation in lower case; grams holds at least its trigrams) is a
// warning that delivery is delayed and still being tried, not a final
// failure.
func isDelayWarning(subject, lower string, grams *gramSet) bool {
	delay := false
	for _, p := range delaySubjects {
		if containsFold(subject, p) {
			delay = true
			break
		}
	}
	if !delay {
		for _, p := range delayPhrases {
			if grams.mayContain(p) && strings.Contains(lower, p) {
				delay = true
				break
			}
		}
	}
	if !delay {
		return false
	}
	for _, p := range finalPhrases {
		if strings.Contains(lower, p) {
			return false
		}
	}
	return true
}

// delaySubjects are subjects of delay warnings: Exim ("Warning: message
// 1abc-… delayed 24 hours"), Sendmail ("Warning: could not send message
// for past 4 hours"), Exchange ("Delivery Status Notification (Delay)",
// "Delivery delayed:"), Postfix ("Delayed Mail (still being retried)"),
// OpenSMTPD ("Delivery status notification: delayed").
var delaySubjects = []string{
	"delayed mail", "(delay)", "delivery delayed", "mail delivery delayed", "delivery delay",
	"could not send message for past", "still being retried", "notification: delayed",
	"message delayed", "still undelivered", "delivery warning",
}

// delayPhrases are lower-case phrases of the text of delay warnings:
// Exim ("has not yet been delivered", "No action is required on your
// part", "Delivery attempts will continue"), Sendmail ("Warning: could not
// send message for past 4 hours", "Will keep trying until message is 5
// days old"), Postfix ("THIS IS A WARNING ONLY", "It will be retried
// until"), qmail-style "still trying", Gmail ("will retry for 47 more
// hours"), Exchange and Office 365 ("This message hasn't been delivered
// yet. Delivery will continue to be attempted.").
var delayPhrases = []string{
	"has not yet been delivered", "have not yet received", "not yet been delivered",
	"no action is required on your part", "delivery attempts will continue",
	"could not send message for past", "will keep trying", "will continue trying",
	"will continue to try", "still trying", "will retry", "will be retried",
	"this is a warning only", "warning message only", "only a temporary failure report", "do not need to re-send",
	"no need to resend", "notification about a delay", "has been delayed",
	"still undelivered after", "warning: message", "will try again",
	"will continue to be attempted", "hasn't been delivered yet", "has not been delivered yet",
}

// finalPhrases say the MTA gave up: a report saying so is a final
// failure, never a delay, even when it was delayed first (Exim's "retry
// timeout exceeded", qmail's "I've given up", Sendmail's "Message could
// not be delivered for 5 days").
var finalPhrases = []string{
	"permanent error", "permanent failure", "failed permanently", "giving up", "given up",
	"gave up", "retry timeout exceeded", "been failing for a long time", "deleted from queue",
	"has expired", "too long in the queue", "in the queue too long", "could not be delivered for 5",
}

// onlyAddress reports whether seg holds nothing but addr, any number of
// times, and white space, angle brackets and colons: what
// strings.Trim(strings.ReplaceAll(seg, addr, ""), " \t\n<>:") == "" says,
// without building the string.
func onlyAddress(seg, addr string) bool {
	for seg != "" {
		switch {
		case addr != "" && strings.HasPrefix(seg, addr):
			seg = seg[len(addr):]
		case strings.IndexByte(" \t\n<>:", seg[0]) >= 0:
			seg = seg[1:]
		default:
			return false
		}
	}
	return true
}

// isTemporary reports whether lower-case prose says the failure was
// temporary: Exim gives up on "retry timeout exceeded" and Gmail on a
// "temporary failure" without a permanent code.
func isTemporary(lower string) bool {
	for _, p := range []string{"details of temporary failure", "retry timeout exceeded", "have been failing for a long time"} {
		if strings.Contains(lower, p) {
			return true
		}
	}
	return false
}

// inIDField reports whether offset i of the lower-case text is on a
// Message-ID, In-Reply-To or References line, whose values look like
// addresses but are not.
func inIDField(lower string, i int) bool {
	line := strings.TrimLeft(lower[strings.LastIndexByte(lower[:i], '\n')+1:i], " \t")
	return strings.HasPrefix(line, "message-id:") || strings.HasPrefix(line, "in-reply-to:") ||
		strings.HasPrefix(line, "references:")
}

// isSkipped reports whether the address a, in any case, belongs to a role
// that never is a failed recipient.
func isSkipped(a string) bool {
	local, _, _ := strings.Cut(a, "@")
	for _, role := range []string{"postmaster", "mailer-daemon", "abuse", "root", "noreply", "no-reply", "hostmaster"} {
		if equalFoldASCII(local, role) {
			return true
		}
	}
	return false
}

// addrPos is an address named in a text and its offset there.
type addrPos struct {
	addr string
	pos  int
}

// appendAddresses appends to dst the email addresses in s with their
// offsets.
func appendAddresses(dst []addrPos, s string) []addrPos {
	for off := 0; ; {
		addr, pos, next := nextAddress(s, off)
		if addr == "" {
			return dst
		}
		dst = append(dst, addrPos{addr, pos})
		off = next
	}
}

// nextAddress returns the first email address in s at or after offset
// from, its offset and the offset to look for the next one at; addr is ""
// when there is none.
func nextAddress(s string, from int) (addr string, pos, next int) {
	for i := from; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		start := i
		for start > 0 && isLocalChar(s[start-1]) {
			start--
		}
		end := i + 1
		for end < len(s) && isDomainChar(s[end]) {
			end++
		}
		for end > i+1 && (s[end-1] == '.' || s[end-1] == '-') {
			end--
		}
		if start == i || end == i+1 || !strings.Contains(s[i+1:end], ".") {
			i = end - 1
			continue
		}
		for start < i && s[start] == '.' {
			start++
		}
		// Skip message identifiers and URLs.
		if start > 0 && (s[start-1] == '/' || s[start-1] == '=') {
			i = end - 1
			continue
		}
		return s[start:end], start, end
	}
	return "", 0, len(s)
}

func isLocalChar(c byte) bool {
	return isDigit(c) || isAlpha(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

func isDomainChar(c byte) bool {
	return isDigit(c) || isAlpha(c) || c == '.' || c == '-' || c == '_'
}

// firstAddress returns the first address of an address-list header value.
func firstAddress(v string) string {
	a, _, _ := nextAddress(v, 0)
	return a
}

// isAutoReply reports whether the header block is an automatic reply
// (RFC 3834 §5: Auto-Submitted: auto-replied) or one of the common
// non-standard markers.
func isAutoReply(h header) bool {
	if hasPrefixFold(h.get("Auto-Submitted"), "auto-replied") {
		return true
	}
	if h.has("X-Autoreply") || h.has("X-Autorespond") || strings.EqualFold(h.get("Precedence"), "auto_reply") {
		return true
	}
	subj := h.get("Subject")
	// Without the headers, only a subject that says so: "Auto reply:",
	// "Automatic reply:", "Out of Office: …".
	for _, p := range []string{"auto reply:", "auto-reply:", "autoreply:", "automatic reply:", "vacation reply:", "out of office", "out of the office"} {
		if hasPrefixFold(subj, p) || containsSpaceFold(subj, p) {
			return true
		}
	}
	return false
}

// containsSpaceFold reports whether lowerASCII(s) contains " "+p, p in
// lower case.
func containsSpaceFold(s, p string) bool {
	for i := strings.IndexByte(s, ' '); i >= 0; {
		if hasPrefixFold(s[i+1:], p) {
			return true
		}
		j := strings.IndexByte(s[i+1:], ' ')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// parseAutoReply reports the author of an automatic reply as its
// recipient: the address our message reached.
func parseAutoReply(m *message, rep *Report) {
	rep.Kind = KindAutoReply
	a := cleanAddress(firstAddress(m.root.header.get("From")))
	if a == "" {
		return
	}
	rep.addRecipient(Recipient{
		Address:    a,
		Diagnostic: m.text,
		Reason:     Vacation,
	})
}

// verpToken returns the token of a VERP return path found in the bounce's
// envelope headers: <prefix>+<token>@<domain>.
func verpToken(h header) string {
	for _, name := range []string{"X-Original-To", "Delivered-To", "Envelope-To", "To"} {
		a := cleanAddress(firstAddress(h.get(name)))
		local, _, ok := strings.Cut(a, "@")
		if !ok {
			continue
		}
		if _, tok, ok := strings.Cut(local, "+"); ok && tok != "" {
			return tok
		}
	}
	return ""
}

// addContext gives every recipient of a DSN the paragraph of the
// human-readable part that names it: Postfix, Sendmail and others say
// there which command failed, and some leave Diagnostic-Code empty.
func addContext(m *message, rep *Report) {
	if m.text == "" {
		return
	}
	explain, lower, _ := splitOriginal(m.text, m.lowerText())
	if len(explain) > maxExplain {
		// Every recipient searches the text for its paragraph.
		explain, lower = explain[:maxExplain], lower[:maxExplain]
	}
	for i := range rep.Recipients {
		rc := &rep.Recipients[i]
		rc.context, rc.lowerContext = paragraphOf(explain, lower, m.a.lower(rc.Address))
		if replyStatus(rc.Diagnostic) == "" && (rc.Status == "" || rc.Status[2:] == "0.0") {
			// QUIRK: Diagnostic-Code is missing or without a code and
			// Status generic; the text holds the server's reply, in
			// the recipient's paragraph (OpenSMTPD) or, for a single
			// recipient, in a transcript (Sendmail).
			src := rc.context
			if len(rep.Recipients) == 1 && replyStatus(src) == "" {
				src = explain
			}
			if st := replyStatus(src); st != "" && (rc.Status == "" || st[0] == rc.Status[0]) {
				rc.Status = st
			}
			if rc.ReplyCode == "" {
				rc.ReplyCode = findReplyCode(src)
			}
		}
	}
	if len(rep.Recipients) == 1 {
		rc := &rep.Recipients[0]
		rc.command, _ = phaseOf(lower)
		rc.prose = lower
		if rc.context == "" && rc.Diagnostic == "" {
			rc.context, rc.lowerContext = explain, lower
		}
	}
}

// paragraphOf returns the paragraph of text that names addr (lower is
// text in lower case), extended by the next paragraph when the first holds
// little more than the address, and the paragraph in lower case.
func paragraphOf(text, lower, addr string) (para, lowerPara string) {
	i := strings.Index(lower, addr)
	if i < 0 || addr == "" {
		return "", ""
	}
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := paragraphEnd(text, i)
	if len(strings.TrimSpace(text[start:end])) < len(addr)+8 && end < len(text) {
		end = paragraphEnd(text, end+1)
	}
	return text[start:end], lower[start:end]
}

// paragraphEnd returns the offset of the blank line ending the paragraph
// that holds offset i.
func paragraphEnd(text string, i int) int {
	for i < len(text) {
		j := strings.IndexByte(text[i:], '\n')
		if j < 0 {
			return len(text)
		}
		i += j + 1
		k := i
		for k < len(text) && (text[k] == ' ' || text[k] == '\t') {
			k++
		}
		if k >= len(text) || text[k] == '\n' {
			return i
		}
	}
	return len(text)
}
