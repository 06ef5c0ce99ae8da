package opens

import (
	"errors"
	"fmt"
	"strings"
)

// Match says how a UserAgentRule's Text is compared with a user agent.
type Match int

const (
	// Contains: the user agent contains Text, ignoring ASCII case.
	Contains Match = iota
	// Prefix: the user agent starts with Text, ignoring ASCII case (an HTTP
	// library's "name/version").
	Prefix
	// WordEnd: the user agent has a token ending in Text, case as written
	// or with its first letter upper-cased, followed by a non-letter or the
	// end: "bot" matches "Googlebot/2.1", "AhrefsBot/7.0" and
	// "Slackbot-LinkExpanding", not "CUBOT X30" (an Android phone) or
	// "Bottle".
	WordEnd
)

// UserAgentRule flags a user agent as a machine's.
type UserAgentRule struct {
	Text   string
	Match  Match
	Reason string // a Reason constant, or the operator's own
	// Who says who sends it, and how sure we are: documented by its owner,
	// or seen in practice (a heuristic).
	Who string
}

func (r UserAgentRule) check() error {
	switch {
	case strings.TrimSpace(r.Text) == "":
		return errors.New("empty text")
	case r.Reason == "":
		return fmt.Errorf("%q: empty reason", r.Text)
	case r.Match < Contains || r.Match > WordEnd:
		return fmt.Errorf("%q: unknown match %d", r.Text, r.Match)
	}
	return nil
}

// compiled is a rule with its text lower-cased once.
type compiled struct {
	UserAgentRule
	lower, title string // Text lower-cased; Text with its first letter upper-cased
}

func compile(rules []UserAgentRule) []compiled {
	out := make([]compiled, len(rules))
	for i, r := range rules {
		out[i] = compiled{r, strings.ToLower(r.Text), strings.ToUpper(r.Text[:1]) + r.Text[1:]}
	}
	return out
}

func (c *compiled) matches(ua, lower string) bool {
	switch c.Match {
	case Prefix:
		return strings.HasPrefix(lower, c.lower)
	case WordEnd:
		return wordEnd(ua, c.Text) || wordEnd(ua, c.title)
	}
	return strings.Contains(lower, c.lower)
}

// lowerASCII lower-cases the ASCII letters of s (user agents are ASCII;
// other bytes are kept), allocating only when s has an upper-case letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// wordEnd reports whether s has w followed by a byte that is not an ASCII
// letter, or by the end.
func wordEnd(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		end := i + j + len(w)
		if end == len(s) || !isLetter(s[end]) {
			return true
		}
		i = i + j + 1
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// UserAgents is the built-in table, in one place: who fetches mail images
// or follows links without a person, by user agent. Rules whose reason is
// not scanner (the providers' proxies) are tried before Apple's, scanners
// after. Sources are named per entry; "seen in practice" means a pattern
// known from deliverability practice and the vendors' own user agents,
// not a string the vendor documents, and such entries are heuristics.
//
// Many security gateways (Mimecast, Proofpoint, Microsoft Defender's Safe
// Links, …) fetch with an ordinary browser's user agent: only the prefetch
// window catches those, and only when the send's time is known.
var UserAgents = []UserAgentRule{
	// Gmail's image proxy (web and apps) fetches on open and caches; its
	// user agent ends "(via ggpht.com GoogleImageProxy)". Documented by
	// Google for senders (Gmail image proxying) and THRESHOLDS.md.
	{Text: "GoogleImageProxy", Reason: ReasonGoogleProxy, Who: "Gmail image proxy (documented)"},
	// Yahoo Mail's image proxy: "YahooMailProxy;
	// https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html" — the user
	// agent links Yahoo's own help page describing it (SLN28749).
	{Text: "YahooMailProxy", Reason: ReasonYahooProxy, Who: "Yahoo Mail image proxy (documented, help.yahoo.com SLN28749)"},
	// Microsoft: no image proxy user agent is documented for Outlook.com
	// or Microsoft 365; these are Microsoft services that fetch on a
	// person's behalf without the person reading: Bing's page preview
	// (used for link previews in Outlook and Teams) and the Office apps'
	// check that a link exists. Seen in practice; heuristics.
	{Text: "BingPreview", Reason: ReasonMicrosoftProxy, Who: "Bing page preview, used by Outlook/Teams link previews (seen in practice)"},
	{Text: "Microsoft Office Existence Discovery", Reason: ReasonMicrosoftProxy, Who: "Office apps checking a link exists (seen in practice)"},
	{Text: "SkypeUriPreview", Reason: ReasonMicrosoftProxy, Who: "Skype/Teams link preview (seen in practice)"},

	// Security gateways that name themselves (when they do; most do not).
	{Text: "Barracuda", Reason: ReasonScanner, Who: "Barracuda Email Security Gateway / link protection (seen in practice)"},
	{Text: "Mimecast", Reason: ReasonScanner, Who: "Mimecast URL Protect (seen in practice)"},
	{Text: "Proofpoint", Reason: ReasonScanner, Who: "Proofpoint URL Defense / TAP (seen in practice)"},
	{Text: "MessageLabs", Reason: ReasonScanner, Who: "Symantec (Broadcom) Email Security.cloud, formerly MessageLabs (seen in practice)"},
	{Text: "Symantec", Reason: ReasonScanner, Who: "Symantec click-time URL protection (seen in practice)"},
	{Text: "TrendMicro", Reason: ReasonScanner, Who: "Trend Micro email and web reputation scanners (seen in practice)"},
	{Text: "Trend Micro", Reason: ReasonScanner, Who: "Trend Micro, spelt with a space (seen in practice)"},
	{Text: "Cisco-IronPort", Reason: ReasonScanner, Who: "Cisco Secure Email (IronPort) URL scanning (seen in practice)"},
	{Text: "FortiGuard", Reason: ReasonScanner, Who: "Fortinet FortiMail/FortiGuard URL rating (seen in practice)"},

	// HTTP libraries and tools: their default user agents, documented by
	// each project; a person's mail client sends none of them.
	{Text: "python-requests/", Match: Prefix, Reason: ReasonScanner, Who: "Python requests' default (documented)"},
	{Text: "python-urllib", Match: Prefix, Reason: ReasonScanner, Who: "Python urllib's default, Python-urllib/3.x (documented)"},
	{Text: "curl/", Match: Prefix, Reason: ReasonScanner, Who: "curl's default (documented)"},
	{Text: "Wget/", Match: Prefix, Reason: ReasonScanner, Who: "GNU Wget's default (documented)"},
	{Text: "Go-http-client/", Match: Prefix, Reason: ReasonScanner, Who: "Go net/http's default (documented)"},
	{Text: "Java/", Match: Prefix, Reason: ReasonScanner, Who: "Java HttpURLConnection's default (documented)"},
	{Text: "Apache-HttpClient/", Match: Prefix, Reason: ReasonScanner, Who: "Apache HttpClient's default (documented)"},
	{Text: "okhttp/", Match: Prefix, Reason: ReasonScanner, Who: "OkHttp's default (documented)"},
	{Text: "HeadlessChrome", Reason: ReasonScanner, Who: "headless Chrome: sandboxes that render links (documented token of headless mode)"},
	{Text: "PhantomJS", Reason: ReasonScanner, Who: "PhantomJS headless browser (documented)"},

	// Crawlers and link expanders name themselves with these words
	// (Googlebot, bingbot, Slackbot, Twitterbot, AhrefsBot, Bytespider,
	// …): heuristics, matched at the end of a word so that "CUBOT" (a
	// phone maker) is not a bot.
	{Text: "bot", Match: WordEnd, Reason: ReasonScanner, Who: "crawlers and link expanders (heuristic)"},
	{Text: "spider", Match: WordEnd, Reason: ReasonScanner, Who: "crawlers (heuristic)"},
	{Text: "crawler", Match: WordEnd, Reason: ReasonScanner, Who: "crawlers (heuristic)"},
	{Text: "facebookexternalhit", Reason: ReasonScanner, Who: "Facebook/Meta link preview (documented)"},
}

func errorf(format string, args ...any) error { return fmt.Errorf("opens: "+format, args...) }
