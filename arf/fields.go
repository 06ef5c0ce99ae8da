package arf

import (
	"mime"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// reportFields parses the fields of a message/feedback-report part (RFC 5965
// §3, RFC 6591 §3, RFC 6692 §2).
func (p *parser) reportFields(body []byte) {
	r := &p.rep
	var arrival, received string
	for len(body) > 0 {
		// QUIRK: blank lines before or between the fields, where
		// RFC 5965 §3 has one block — see testdata/malformed.eml.
		line, next := nextLine(body, 0)
		if len(line) == 0 {
			body = body[next:]
			continue
		}
		n, _ := headerEnd(body)
		forEachField(body[:n], func(name, raw []byte) bool {
			v := unfold(raw)
			switch strings.ToLower(string(name)) {
			case "feedback-type":
				r.FeedbackType = strings.ToLower(v)
			case "user-agent":
				r.UserAgent = v
			case "version":
				r.Version = v
			case "original-envelope-id":
				r.OriginalEnvelopeID = v
			case "original-mail-from":
				r.OriginalMailFrom = cleanAddr(v)
			case "original-rcpt-to":
				// RFC 5965 §3.2: one field per recipient, may repeat.
				if a := cleanAddr(v); a != "" && len(p.rcptTo) <= maxRecipients {
					p.rcptTo = append(p.rcptTo, a)
				}
			case "removal-recipient":
				// The ARF drafts' field for the address to take off
				// the list (RFC 5965 Appendix B.2 still shows it);
				// some feedback loops send it instead of
				// Original-Rcpt-To.
				if a := cleanAddr(v); a != "" && len(p.removal) <= maxRecipients {
					p.removal = append(p.removal, a)
				}
			case "arrival-date":
				arrival = v
			case "received-date":
				// QUIRK: older Yahoo and AOL reports name
				// Arrival-Date Received-Date, as an ARF draft did.
				received = v
			case "source-ip":
				r.SourceIP = strings.Trim(v, "[]")
				if _, err := netip.ParseAddr(r.SourceIP); err != nil {
					p.odd("Source-IP %q is not an IP address", v)
				}
			case "source-port":
				port, err := strconv.Atoi(v)
				if err != nil || port < 0 || port > 65535 {
					p.odd("Source-Port %q is not a port number", v)
				} else {
					r.SourcePort = port
				}
			case "reporting-mta":
				r.ReportingMTA = stripType(v)
			case "reported-domain":
				r.ReportedDomain = append(r.ReportedDomain, v)
			case "reported-uri":
				r.ReportedURI = append(r.ReportedURI, v)
			case "incidents":
				if n, err := strconv.Atoi(v); err == nil && n >= 0 {
					r.Incidents = n
				} else {
					p.odd("Incidents %q is not a number", v)
				}
			case "authentication-results":
				if r.AuthenticationResults == "" {
					r.AuthenticationResults = v
				}
			case "auth-failure":
				r.AuthFailure = strings.ToLower(v)
			case "delivery-result":
				r.DeliveryResult = strings.ToLower(v)
			case "dkim-domain":
				r.DKIM.Domain = v
			case "dkim-identity":
				r.DKIM.Identity = v
			case "dkim-selector":
				r.DKIM.Selector = v
			case "dkim-canonicalized-header":
				r.DKIM.CanonicalizedHeader = v
			case "dkim-canonicalized-body":
				r.DKIM.CanonicalizedBody = v
			case "spf-dns":
				r.SPFDNS = append(r.SPFDNS, v)
			case "identity-alignment":
				r.IdentityAlignment = strings.ToLower(v)
			case "redacted-address":
				// QUIRK: AOL lists the redacted recipient as
				// "Redacted-Address: redacted" — see
				// testdata/aol-abuse.eml.
				r.RecipientRedacted = true
			case "message-id":
				// QUIRK: some reporters copy the original's
				// Message-ID into the report fields; the embedded
				// original's wins.
				p.reportMessageID = cleanID(v)
			}
			return true
		})
		body = body[n:]
	}
	if arrival == "" {
		arrival = received
	}
	if arrival != "" {
		t, err := parseDate(arrival)
		if err != nil {
			p.odd("Arrival-Date %q: %v", arrival, err)
		} else {
			r.ArrivalDate = t
		}
	}
}

// originalHeader parses the header of the reported original message.
func (p *parser) originalHeader(hdr []byte) {
	o := &p.rep.Original
	var dec mime.WordDecoder
	// decode decodes RFC 2047 encoded words when their charset is known.
	decode := func(v string) string {
		if strings.Contains(v, "=?") {
			if d, err := dec.DecodeHeader(v); err == nil {
				return strings.ToValidUTF8(d, "\uFFFD")
			}
		}
		return v
	}
	forEachField(hdr, func(name, raw []byte) bool {
		n := strings.ToLower(string(name))
		switch n {
		case "message-id":
			o.MessageID = cleanID(unfold(raw))
		case "x-repute-id": // CorrelationHeader
			o.CorrelationID = unfold(raw)
		case "feedback-id":
			o.FeedbackID = unfold(raw)
		case "from":
			o.From = decode(unfold(raw))
		case "to":
			o.To = decode(unfold(raw))
		case "subject":
			o.Subject = decode(unfold(raw))
		case "date":
			o.Date = unfold(raw)
		case "return-path":
			o.ReturnPath = cleanAddr(unfold(raw))
		case "dkim-signature":
			if o.DKIMDomain == "" {
				o.DKIMDomain = dkimTag(unfold(raw), "d")
			}
		case "x-hmxmroriginalrecipient":
			p.hmxmr = cleanAddr(unfold(raw))
		case "x-apparently-to":
			// Yahoo: "addr; date" or "addr via IP; date".
			v := unfold(raw)
			if i := strings.IndexAny(v, " ;"); i >= 0 {
				v = v[:i]
			}
			p.apparentlyTo = cleanAddr(v)
		// Trace fields of the receiving side name the envelope
		// recipient; each delivery adds one on top, so the first is
		// the one of the mailbox whose user complained.
		case "x-original-to":
			if p.xOriginalTo == "" {
				p.xOriginalTo = unfold(raw)
			}
		case "envelope-to":
			if p.envelopeTo == "" {
				p.envelopeTo = unfold(raw)
			}
		case "x-envelope-to":
			if p.xEnvelopeTo == "" {
				p.xEnvelopeTo = unfold(raw)
			}
		case "delivered-to":
			if p.deliveredTo == "" {
				p.deliveredTo = unfold(raw)
			}
		case "x-mailru-msgtype":
			o.MailruMsgtype = unfold(raw)
		default:
			if strings.HasPrefix(n, "x-aol-") {
				p.xAOL = true
			}
		}
		return true
	})
}

// finish checks the required fields, names the dialect and recovers the
// recipients.
func (p *parser) finish() {
	r := &p.rep
	if r.Original.MessageID == "" {
		r.Original.MessageID = p.reportMessageID
	}
	if r.Provider == "" {
		r.Provider = p.provider()
	}
	if r.Provider == ProviderJMRP && r.FeedbackType == "" {
		// QUIRK: JMRP's report part, when it sends one, may be nearly
		// empty; every JMRP report is a user's "junk" click, as
		// without a report part — see testdata/jmrp-report.eml.
		r.FeedbackType = "abuse"
	}
	if p.fields && r.Provider != ProviderJMRP {
		// RFC 5965 §3.1: Feedback-Type, User-Agent and Version are
		// required.
		if r.FeedbackType == "" {
			p.odd("no Feedback-Type")
			r.FeedbackType = "other"
		}
		if r.UserAgent == "" {
			p.odd("no User-Agent")
		}
		if r.Version == "" {
			p.odd("no Version")
		}
		// RFC 6591 §3.1: Auth-Failure is required in auth-failure
		// reports.
		if r.FeedbackType == "auth-failure" && r.AuthFailure == "" {
			p.odd("auth-failure report without Auth-Failure")
		}
	}
	p.recipients()
}

// provider names the dialect of the report from the reporter's address, the
// User-Agent and the headers the reporter added to the original.
func (p *parser) provider() string {
	ua := strings.ToLower(p.rep.UserAgent)
	dom := reporterDomain(p.top.from)
	switch {
	case p.hmxmr != "" || strings.Contains(ua, "jmrp") || p.top.jmrp():
		return ProviderJMRP
	case strings.HasPrefix(ua, "yahoo!-mail-feedback") || dom == "arf.mail.yahoo.com":
		return ProviderYahoo
	// QUIRK: AOL reports come from scomp@aol.net with User-Agent
	// "AOL SComp", and AOL's inbound servers add X-AOL-* fields to the
	// original — see testdata/aol-abuse.eml.
	case strings.Contains(ua, "aol") || dom == "aol.net" || dom == "aol.com" || p.xAOL:
		return ProviderAOL
	case strings.Contains(ua, "mail.ru") || dom == "mail.ru" || strings.HasSuffix(dom, ".mail.ru"):
		return ProviderMailRu
	}
	return ""
}

// recipients fills Recipients from the most trusted source that names a
// recipient that is not redacted. The order:
//
//  1. Original-Rcpt-To, the report's field for it (RFC 5965 §3.2);
//  2. Removal-Recipient, the ARF drafts' field (RFC 5965 Appendix B.2);
//  3. fields the receiving side adds to the message it delivers, found in
//     the returned message: X-HmXmrOriginalRecipient (Microsoft),
//     X-Original-To (Postfix: the recipient before alias expansion),
//     Envelope-To (Exim), X-Envelope-To, X-Apparently-To (Yahoo),
//     Delivered-To (Postfix, qmail: the mailbox after alias expansion);
//  4. the returned message's To, written by the sender, which may name a
//     list or no one.
//
// A redacted address (RFC 6590) is skipped, sets RecipientRedacted, and
// lets a later source answer; when none is left, Recipients stays empty.
func (p *parser) recipients() {
	sources := [...]struct {
		from  string
		addrs []string
	}{
		{RecoveredOriginalRcptTo, p.rcptTo},
		{RecoveredRemovalRecipient, p.removal},
		// Microsoft JMRP gives no Original-Rcpt-To and puts the
		// recipient in X-HmXmrOriginalRecipient of the returned
		// message (its To is often masked).
		{RecoveredHmXmr, single(p.hmxmr)},
		// Postfix's local delivery adds X-Original-To with the
		// envelope recipient as received, before aliases.
		{RecoveredXOriginalTo, addressList(p.xOriginalTo)},
		// Exim adds Envelope-To (envelope_to_add) with the envelope
		// recipients.
		{RecoveredEnvelopeTo, addressList(p.envelopeTo)},
		// Other MTAs and mailbox providers (Sendmail milters, Courier,
		// Fastmail) use X-Envelope-To.
		{RecoveredXEnvelopeTo, addressList(p.xEnvelopeTo)},
		// Yahoo records the envelope recipient in X-Apparently-To.
		{RecoveredApparentlyTo, single(p.apparentlyTo)},
		// Postfix, qmail and Gmail add Delivered-To with the mailbox
		// delivered to, after alias expansion: after X-Original-To.
		{RecoveredDeliveredTo, addressList(p.deliveredTo)},
		// Reports without any of these (Yahoo CFL, ReturnPath) leave
		// only the returned message's To.
		{RecoveredTo, addressList(p.rep.Original.To)},
	}
	for _, s := range sources {
		var addrs []string
		for _, a := range s.addrs {
			if redacted(a) {
				p.rep.RecipientRedacted = true
				continue
			}
			if !validAddr(a) || contains(addrs, a) {
				continue
			}
			if len(addrs) == maxRecipients {
				p.odd("more than %d recipients", maxRecipients)
				break
			}
			addrs = append(addrs, a)
		}
		if len(addrs) > 0 {
			p.rep.Recipients = addrs
			p.rep.RecipientRecoveredFrom = s.from
			return
		}
	}
}

func single(a string) []string {
	if a == "" {
		return nil
	}
	return []string{a}
}

func contains(list []string, a string) bool {
	for _, b := range list {
		if strings.EqualFold(a, b) {
			return true
		}
	}
	return false
}

// redacted reports whether the address a was redacted by the reporter
// (RFC 6590 §3: the local part is replaced, the domain kept).
func redacted(a string) bool {
	l := strings.ToLower(a)
	// AOL and Yahoo replace the local part with a placeholder such as
	// "redacted@…" — see testdata/aol-abuse.eml and yahoo-cfl.eml.
	if strings.Contains(l, "redacted") {
		return true
	}
	at := strings.LastIndexByte(l, '@')
	if at < 0 {
		return false
	}
	local := l[:at]
	switch {
	case local == "":
		// The local part removed altogether: "@example.com".
		return true
	case len(local) >= 3 && strings.Trim(local, "x*#") == "":
		// Microsoft and others mask it with x's or stars —
		// see testdata/jmrp-report.eml.
		return true
	}
	return hashLike(local)
}

// hashLike reports whether a local part is a hex-encoded hash, which
// RFC 6590 §3 recommends reporters put in place of the local part: at least
// 16 hex digits (an MD5 has 32, a SHA-1 40), with both digits and letters.
func hashLike(local string) bool {
	if len(local) < 16 {
		return false
	}
	var digit, letter bool
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c && c <= 'f':
			letter = true
		default:
			return false
		}
	}
	return digit && letter
}

// validAddr reports whether a has a local part and a domain and no white
// space: a value split by odd folding ("user@" and "example.com") is none.
func validAddr(a string) bool {
	at := strings.LastIndexByte(a, '@')
	return at > 0 && at < len(a)-1 && !strings.ContainsAny(a, " \t\r\n")
}

// addressList returns the addresses of an address-list header value.
func addressList(v string) []string {
	if v == "" {
		return nil
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		addrs := make([]string, 0, len(list))
		for _, a := range list {
			addrs = append(addrs, a.Address)
		}
		return addrs
	}
	// Not RFC 5322: take every word with an @.
	var addrs []string
	for _, w := range strings.FieldsFunc(v, func(c rune) bool {
		return c == ',' || c == ';' || c == ' ' || c == '\t'
	}) {
		if a := cleanAddr(w); strings.Contains(a, "@") {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// cleanAddr returns the address in v without angle brackets, quotes or an
// address type.
func cleanAddr(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = stripType(v)
	return strings.Trim(v, " \t\"'<>")
}

// stripType removes an RFC 3464-style type prefix ("rfc822;", "dns;").
func stripType(v string) string {
	if i := strings.IndexByte(v, ';'); i > 0 && i < 8 && !strings.ContainsAny(v[:i], "@ <") {
		return strings.TrimSpace(v[i+1:])
	}
	return v
}

// cleanID returns a Message-ID without angle brackets and white space.
func cleanID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return strings.Trim(v, "<> \t")
}

// dkimTag returns the value of tag in a DKIM-Signature (RFC 6376 §3.5).
func dkimTag(sig, tag string) string {
	for _, t := range strings.Split(sig, ";") {
		k, v, ok := strings.Cut(t, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

// reporterDomain returns the lower-cased domain of the report's From.
func reporterDomain(from []byte) string {
	s := strings.ToLower(unfold(from))
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
	}
	_, dom, ok := strings.Cut(s, "@")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(dom, "> \t,;"); i >= 0 {
		dom = dom[:i]
	}
	return dom
}

// parseDate parses an RFC 5322 date. It gives the obsolete zone names of
// RFC 5322 §4.3 their offsets itself: time.Parse knows only the local zone's
// abbreviations, which would make the result depend on the machine.
func parseDate(v string) (time.Time, error) {
	if i := strings.LastIndexByte(v, ' '); i > 0 {
		offsets := [...]struct{ name, offset string }{
			{"UT", "+0000"}, {"GMT", "+0000"},
			{"EST", "-0500"}, {"EDT", "-0400"},
			{"CST", "-0600"}, {"CDT", "-0500"},
			{"MST", "-0700"}, {"MDT", "-0600"},
			{"PST", "-0800"}, {"PDT", "-0700"},
		}
		for _, z := range offsets {
			if strings.EqualFold(v[i+1:], z.name) {
				v = v[:i+1] + z.offset
				break
			}
		}
	}
	return mail.ParseDate(v)
}
