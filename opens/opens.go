// Package opens tells opens by machines from opens by people
// (docs/THRESHOLDS.md, "Machine opens"): Apple Mail Privacy Protection's
// proxy, the mailbox providers' image proxies, security scanners and link
// checkers, and fetches within seconds of delivery. A machine's open is
// flagged, never dropped: the event keeps "machine": true and a reason, and
// the open rate is computed from the opens of people.
//
// A Detector is built once (New) and is safe for many goroutines. The
// tracking endpoints call Classify with what the request tells (user agent,
// client address, time) and the send's time; intake calls ClassifyEvent on
// every open and click that arrives without a verdict, whatever its source.
//
// # Reasons
//
// Classify returns one of these stable strings as the event's
// machine_reason, tried in this order (the first that applies wins):
//
//	google_proxy     user agent contains "GoogleImageProxy" (Gmail's image proxy)
//	yahoo_proxy      user agent contains "YahooMailProxy" (Yahoo Mail's image proxy)
//	microsoft_proxy  a Microsoft service fetching on the reader's behalf (link
//	                 previews, Office's link check): see the user-agent table
//	apple_mpp        user agent exactly "Mozilla/5.0" from Apple's egress ranges
//	apple_mpp_ua     user agent exactly "Mozilla/5.0", not from a known Apple
//	                 range (no ranges file, an address outside it, or a client
//	                 address truncated or hashed so it cannot be checked)
//	scanner          security scanners, link checkers, HTTP libraries, headless
//	                 browsers and crawlers, by user agent
//	prefetch         within Options.PrefetchWindow of the send (any user agent)
//
// # Deliberate choices
//
//   - Apple's ranges file is the iCloud Private Relay egress list, which Mail
//     Privacy Protection's proxy shares. A person browsing through Private
//     Relay comes from the same addresses with a full browser user agent, so
//     an Apple address alone is not a machine: only the bare "Mozilla/5.0"
//     user agent is, which no browser or mail client sends by itself.
//   - The bare "Mozilla/5.0" from elsewhere is still a machine (apple_mpp_ua):
//     the published list lags Apple's proxies, and the pixel may see a
//     client address that was truncated for privacy.
//   - Gmail's and Yahoo's proxies fetch the image when the reader opens the
//     message (then cache it), so a person is usually behind such an open;
//     they are flagged because the project counts as human only what a
//     person's own client fetched (THRESHOLDS.md). Their share shows in
//     machine_open_share.
//   - Outlook desktop ("Microsoft Outlook", "ms-office; MSOffice") is a
//     person's client and counts as a person: Microsoft documents no image
//     proxy with a user agent of its own for Outlook.com or Microsoft 365.
package opens

import (
	"net/netip"
	"strings"
	"time"

	"repute/metrics"
)

// The reasons Classify returns: stable strings, stored as machine_reason.
const (
	ReasonAppleMPP       = "apple_mpp"
	ReasonAppleMPPUA     = "apple_mpp_ua"
	ReasonGoogleProxy    = "google_proxy"
	ReasonYahooProxy     = "yahoo_proxy"
	ReasonMicrosoftProxy = "microsoft_proxy"
	ReasonScanner        = "scanner"
	ReasonPrefetch       = "prefetch"
)

// AppleMPPUserAgent is the whole user agent of Apple Mail Privacy
// Protection's image proxy.
const AppleMPPUserAgent = "Mozilla/5.0"

// DefaultPrefetchWindow is how soon after the send an open is taken for a
// machine's fetch on delivery (scanners, gateways) when Options leave it
// unset: no person reads a message within seconds of its sending often
// enough to matter, and scanners fetch in that time.
const DefaultPrefetchWindow = 10 * time.Second

// Options configure a Detector; the zero value works (no Apple ranges, the
// default prefetch window, the built-in user agents).
type Options struct {
	// AppleRangesFile is Apple's egress-ip-ranges.csv (see ParseRanges),
	// read once by New. Empty: no ranges, so an open with Apple's proxy
	// user agent is apple_mpp_ua, never apple_mpp.
	AppleRangesFile string
	// AppleRanges, when set, is used instead of AppleRangesFile (already
	// parsed, e.g. for a reload).
	AppleRanges *Ranges
	// PrefetchWindow: an open within this long after the send is a
	// machine's (prefetch). 0: DefaultPrefetchWindow; negative: off.
	PrefetchWindow time.Duration
	// ExtraUserAgents are the operator's rules, tried before the built-in
	// table (UserAgents).
	ExtraUserAgents []UserAgentRule
}

// Detector classifies opens. It is immutable once built.
type Detector struct {
	apple    *Ranges
	prefetch time.Duration
	rules    []compiled
}

// New builds a Detector; it reads Options.AppleRangesFile if set.
func New(opts Options) (*Detector, error) {
	d := &Detector{apple: opts.AppleRanges, prefetch: opts.PrefetchWindow}
	if d.apple == nil && opts.AppleRangesFile != "" {
		rs, err := LoadRanges(opts.AppleRangesFile)
		if err != nil {
			return nil, err
		}
		d.apple = rs
	}
	if d.prefetch == 0 {
		d.prefetch = DefaultPrefetchWindow
	}
	for i, r := range opts.ExtraUserAgents {
		if err := r.check(); err != nil {
			return nil, errorf("extra user agent %d: %v", i, err)
		}
	}
	d.rules = compile(append(append([]UserAgentRule(nil), opts.ExtraUserAgents...), UserAgents...))
	return d, nil
}

// AppleRanges returns the Apple ranges in use; nil when there are none.
func (d *Detector) AppleRanges() *Ranges { return d.apple }

// Classify tells whether an open (or click) was a machine's, and which
// (one of the Reason constants, or an ExtraUserAgents reason); reason is
// empty for a person. ua is the request's User-Agent, ip the client
// address (invalid when unknown), at the time of the fetch and sentAt the
// send's (zero when unknown: no prefetch verdict then).
func (d *Detector) Classify(ua string, ip netip.Addr, at, sentAt time.Time) (machine bool, reason string) {
	ua = strings.TrimSpace(ua)
	if ua != "" {
		lower := lowerASCII(ua)
		for i := range d.rules {
			if d.rules[i].Reason != ReasonScanner && d.rules[i].matches(ua, lower) {
				return true, d.rules[i].Reason
			}
		}
		if ua == AppleMPPUserAgent {
			if d.apple.Contains(ip) {
				return true, ReasonAppleMPP
			}
			return true, ReasonAppleMPPUA
		}
		for i := range d.rules {
			if d.rules[i].Reason == ReasonScanner && d.rules[i].matches(ua, lower) {
				return true, d.rules[i].Reason
			}
		}
	}
	if d.prefetch > 0 && !sentAt.IsZero() && !at.IsZero() {
		// Before the send counts too, within the window: clocks of the
		// sender and of the tracker disagree by a little.
		if dt := at.Sub(sentAt); dt <= d.prefetch && dt >= -d.prefetch {
			return true, ReasonPrefetch
		}
	}
	return false, ""
}

// ClassifyEvent gives an opened or clicked event without a verdict
// (Machine nil) the Detector's verdict, in place, from its UserAgent,
// ClientIP and Time, and sentAt (zero when the send is unknown). An event
// with a verdict is left as it is: the poster's verdict wins. Other kinds
// are left alone.
//
// A person's verdict needs a user agent to judge: an event with neither a
// user agent nor a machine signal keeps no verdict (it counts as human and
// unverified in the stats), so a feed that says only "opened" is not
// reported as verified. Clicks get the same rules (scanners follow links);
// the stats count every click so far, machine or not.
//
// ClientIP is parsed as an address; a truncated (a.b.c.0) address is
// checked as it is, a hashed one cannot be and counts as unknown.
func (d *Detector) ClassifyEvent(e *metrics.Event, sentAt time.Time) {
	if e.Machine != nil || (e.Kind != metrics.KindOpened && e.Kind != metrics.KindClicked) {
		return
	}
	ip, _ := netip.ParseAddr(strings.TrimSpace(e.ClientIP))
	machine, reason := d.Classify(e.UserAgent, ip, e.Time, sentAt)
	if !machine && strings.TrimSpace(e.UserAgent) == "" {
		return
	}
	e.Machine = metrics.Verdict(machine)
	e.MachineReason = reason
}
