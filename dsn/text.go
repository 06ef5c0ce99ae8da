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
// and subject say nothing (see lhost-kddi-01).
var bounceBodies = []string{
	"could not be delivered to", "was not delivered to", "delivery to the following recipient",
	"unable to deliver", "undeliverable", "delivery has failed", "failed permanently",
	"permanent error", "following addresses had", "mailbox is full", "user unknown",
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
	for _, h := range []string{"\nreturn-path:", "\nreceived: "} {
		if i := strings.Index(lower[:cut], h); i > 0 && text[i+1] == h[1]-('a'-'A') {
			cut = i + 1
		}
	}
	if cut == len(text) {
		return text, lower, ""
	}
	start := strings.LastIndexByte(text[:cut], '\n') + 1
	if text[cut] == 'R' && start == cut {
		// A header line: the original starts here.
		return text[:cut], lower[:cut], text[cut:]
	}
	_, rest := cutLine(text[start:])
	return text[:start], lower[:start], strings.TrimLeft(rest, "\n ")
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
	explain, lowerExplain, orig := splitOriginal(text, lower)
	if m.orig == nil && orig != "" {
		h, _ := m.a.parseHeader(orig)
		if len(h) > 0 {
			m.orig = h
		}
	}
	// Addresses that are probably not failed recipients: the bounce's
	// own sender and recipient and the original's sender. They are used
	// only when the text names no other address (see lhost-qmail-08,
	// where the sender bounced to itself).
	var weakBuf [6]string // the slices below start on the stack
	weak := weakBuf[:0]
	for _, v := range []string{m.root.header.get("From"), m.root.header.get("To")} {
		if a := cleanAddress(v); a != "" {
			weak = append(weak, a)
		}
	}
	if m.orig != nil {
		for _, name := range []string{"From", "Return-Path", "Sender", "Reply-To"} {
			if a := cleanAddress(m.orig.get(name)); a != "" {
				weak = append(weak, a)
			}
		}
	}
	var addrBuf, weakAddrBuf [4]addrPos
	addrs, weakAddrs := addrBuf[:0], weakAddrBuf[:0]
	for off := 0; ; {
		addr, pos, next := nextAddress(explain, off)
		if addr == "" {
			break
		}
		off = next
		if isSkipped(addr) || inIDField(lowerExplain, pos) {
			continue
		}
		if slices.ContainsFunc(weak, func(w string) bool { return equalFoldASCII(addr, w) }) {
			weakAddrs = addFound(weakAddrs, addrPos{addr, pos})
		} else {
			addrs = addFound(addrs, addrPos{addr, pos})
		}
	}
	if len(addrs) == 0 {
		addrs = weakAddrs
	}
	named := len(addrs) > 0
	if len(addrs) == 0 && m.orig != nil {
		// QUIRK: the text names no address (see lhost-exim-07, "save
		// to xxxx"); the recipient is the To of the returned original.
		if a := cleanAddress(firstAddress(m.orig.get("To"))); a != "" {
			addrs = append(addrs, addrPos{a, len(explain)})
		}
	}
	if xf := m.root.header.get("X-Failed-Recipients"); xf != "" && (named || len(addrs) == 0) {
		// Exim and Google name the failed recipients in a header; keep
		// the addresses found in the text that it lists, in text order,
		// and add the ones the text does not name.
		var listedBuf, keepBuf [4]addrPos // the lists start on the stack
		listed := appendAddresses(listedBuf[:0], xf)
		if len(listed) > maxTextRecipients {
			listed = listed[:maxTextRecipients]
		}
		keep := keepBuf[:0]
		for _, a := range addrs {
			for _, l := range listed {
				if strings.EqualFold(l.addr, a.addr) {
					keep = append(keep, a)
					break
				}
			}
		}
		for _, l := range listed {
			dup := false
			for _, k := range keep {
				if strings.EqualFold(k.addr, l.addr) {
					dup = true
					break
				}
			}
			if !dup {
				keep = append(keep, addrPos{l.addr, len(explain)})
			}
		}
		addrs = keep
	}
	var cmd, prose string
	if len(addrs) == 1 {
		cmd = smtpCommand(lowerExplain)
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
		// From:", "<<< 550 …"); it belongs to that recipient (see
		// lhost-v5sendmail-07).
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
		// a reply code, else its first segment (see lhost-mailru-03,
		// which lists the addresses before the details).
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
		rc := Recipient{Address: a.addr, Diagnostic: diag, Action: "failed", scratch: scratch{command: cmd, prose: prose}}
		if diag != explain {
			rc.context, rc.lowerContext = explain, lowerExplain
		}
		rc.Status = replyStatus(diag)
		rc.ReplyCode = findReplyCode(diag)
		rc.temporary = isTemporary(lowerExplain[ds:de])
		if hasSuffixFold(a.addr, "@googlegroups.com") {
			// QUIRK: Google Groups refuses posts from non-members in
			// the language of the sender, naming no code; the group
			// exists, the sender was refused (see
			// lhost-googlegroups-03).
			rc.Reason = Rejected
		}
		if rc.Status == "" && rc.ReplyCode == "" && len(addrs) == 1 {
			// QUIRK: the code comes before the address (see
			// lhost-mailmarshalsmtp-02).
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
// addresses but are not (see lhost-zoho-05).
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
			// the recipient's paragraph (see lhost-opensmtpd-17) or,
			// for a single recipient, in a transcript (see
			// lhost-sendmail-18).
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
		rc.command = smtpCommand(lower)
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
