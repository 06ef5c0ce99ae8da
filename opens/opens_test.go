package opens

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

// Real user agents, as mail clients and proxies send them.
const (
	uaIPhoneMail   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
	uaMacMailNoMPP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
	uaGmailApp     = "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.105 Mobile Safari/537.36"
	uaOutlookDesk  = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
	uaOutlookMSO   = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
	uaThunderbird  = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0"
	uaChromeWin    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36"
	uaCubotPhone   = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
	uaGoogleProxy  = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
	uaYahooProxy   = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
	uaBingPreview  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Safari/537.36 Edg/112.0.1722.68 BingPreview/1.0b"
	uaOfficeCheck  = "Microsoft Office Existence Discovery"
	uaHeadless     = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.6261.94 Safari/537.36"
	uaGooglebot    = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaAhrefs       = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"
	uaBytespider   = "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)"
	uaBarracuda    = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
)

func detector(t *testing.T, opts Options) *Detector {
	t.Helper()
	if opts.AppleRangesFile == "" && opts.AppleRanges == nil {
		opts.AppleRangesFile = "testdata/egress-ip-ranges.csv"
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMachineClassify(t *testing.T) {
	d := detector(t, Options{})
	apple := netip.MustParseAddr("172.224.224.7")
	appleLast := netip.MustParseAddr("172.224.224.63") // the end of two touching /27s
	outside := netip.MustParseAddr("172.224.224.64")   // just past it
	apple6 := netip.MustParseAddr("2a02:26f7:b3c0:4000::1f")
	outside6 := netip.MustParseAddr("2a02:26f7:b3c0:4001::1")
	mapped := netip.MustParseAddr("::ffff:172.224.224.9")
	home := netip.MustParseAddr("203.0.113.5")
	none := netip.Addr{}
	sent := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	later := sent.Add(2 * time.Hour)

	tests := []struct {
		name       string
		ua         string
		ip         netip.Addr
		at, sentAt time.Time
		machine    bool
		reason     string
	}{
		// People.
		{"iPhone Mail, MPP off", uaIPhoneMail, home, later, sent, false, ""},
		{"Apple Mail on macOS, MPP off", uaMacMailNoMPP, home, later, sent, false, ""},
		{"Gmail app (Android WebView)", uaGmailApp, home, later, sent, false, ""},
		{"Outlook desktop", uaOutlookDesk, home, later, sent, false, ""},
		{"Outlook desktop, ms-office", uaOutlookMSO, home, later, sent, false, ""},
		{"Thunderbird", uaThunderbird, home, later, sent, false, ""},
		{"webmail in Chrome", uaChromeWin, home, later, time.Time{}, false, ""},
		{"a CUBOT phone is no bot", uaCubotPhone, home, later, sent, false, ""},
		{"Safari through Private Relay: an Apple address, a browser", uaMacMailNoMPP, apple, later, sent, false, ""},
		{"no user agent, nothing known", "", none, later, time.Time{}, false, ""},

		// Apple Mail Privacy Protection.
		{"MPP from an Apple range", "Mozilla/5.0", apple, later, sent, true, ReasonAppleMPP},
		{"MPP, last address of merged ranges", "Mozilla/5.0", appleLast, later, sent, true, ReasonAppleMPP},
		{"MPP over IPv6", "Mozilla/5.0", apple6, later, sent, true, ReasonAppleMPP},
		{"MPP, IPv4-mapped", "Mozilla/5.0", mapped, later, sent, true, ReasonAppleMPP},
		{"MPP user agent outside the range", "Mozilla/5.0", outside, later, sent, true, ReasonAppleMPPUA},
		{"MPP user agent outside the IPv6 range", "Mozilla/5.0", outside6, later, sent, true, ReasonAppleMPPUA},
		{"MPP user agent, address unknown", " Mozilla/5.0 ", none, later, sent, true, ReasonAppleMPPUA},
		{"MPP within seconds: MPP wins over prefetch", "Mozilla/5.0", apple, sent.Add(time.Second), sent, true, ReasonAppleMPP},

		// Providers' proxies.
		{"Gmail image proxy", uaGoogleProxy, netip.MustParseAddr("66.249.84.1"), later, sent, true, ReasonGoogleProxy},
		{"Yahoo Mail proxy", uaYahooProxy, home, later, sent, true, ReasonYahooProxy},
		{"Bing preview", uaBingPreview, home, later, sent, true, ReasonMicrosoftProxy},
		{"Office link check", uaOfficeCheck, home, later, sent, true, ReasonMicrosoftProxy},

		// Scanners and tools.
		{"python-requests", "python-requests/2.31.0", home, later, sent, true, ReasonScanner},
		{"curl", "curl/8.5.0", home, later, sent, true, ReasonScanner},
		{"Go", "Go-http-client/1.1", home, later, sent, true, ReasonScanner},
		{"headless Chrome", uaHeadless, home, later, sent, true, ReasonScanner},
		{"Googlebot", uaGooglebot, home, later, sent, true, ReasonScanner},
		{"AhrefsBot", uaAhrefs, home, later, sent, true, ReasonScanner},
		{"Bytespider", uaBytespider, home, later, sent, true, ReasonScanner},
		{"Barracuda", uaBarracuda, home, later, sent, true, ReasonScanner},
		{"Proofpoint, case aside", "proofpoint url defense", home, later, sent, true, ReasonScanner},

		// Timing.
		{"a browser 3 s after the send", uaChromeWin, home, sent.Add(3 * time.Second), sent, true, ReasonPrefetch},
		{"exactly the window", uaChromeWin, home, sent.Add(10 * time.Second), sent, true, ReasonPrefetch},
		{"just past the window", uaChromeWin, home, sent.Add(11 * time.Second), sent, false, ""},
		{"a little before the send (clock skew)", uaThunderbird, home, sent.Add(-2 * time.Second), sent, true, ReasonPrefetch},
		{"no user agent, 1 s after the send", "", none, sent.Add(time.Second), sent, true, ReasonPrefetch},
		{"send unknown", uaChromeWin, home, sent.Add(time.Second), time.Time{}, false, ""},
	}
	for _, tt := range tests {
		machine, reason := d.Classify(tt.ua, tt.ip, tt.at, tt.sentAt)
		if machine != tt.machine || reason != tt.reason {
			t.Errorf("%s: Classify(%q, %v) = %v, %q; want %v, %q", tt.name, tt.ua, tt.ip, machine, reason, tt.machine, tt.reason)
		}
	}
}

func TestMachineWithoutRangesOrPrefetch(t *testing.T) {
	d, err := New(Options{PrefetchWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if m, r := d.Classify("Mozilla/5.0", netip.MustParseAddr("172.224.224.7"), sent, sent); !m || r != ReasonAppleMPPUA {
		t.Errorf("no ranges file: %v %q, want apple_mpp_ua", m, r)
	}
	if m, r := d.Classify(uaChromeWin, netip.Addr{}, sent.Add(time.Second), sent); m {
		t.Errorf("prefetch off: %v %q, want a person", m, r)
	}
	custom := detector(t, Options{PrefetchWindow: time.Minute})
	if m, r := custom.Classify(uaChromeWin, netip.Addr{}, sent.Add(50*time.Second), sent); !m || r != ReasonPrefetch {
		t.Errorf("a minute's window, 50 s: %v %q", m, r)
	}
}

func TestMachineExtraUserAgents(t *testing.T) {
	d := detector(t, Options{ExtraUserAgents: []UserAgentRule{
		{Text: "AcmeGateway", Reason: "acme_gateway"},
		{Text: "ThunderScan", Reason: ReasonScanner},
	}})
	if m, r := d.Classify("Mozilla/5.0 AcmeGateway/2", netip.Addr{}, time.Time{}, time.Time{}); !m || r != "acme_gateway" {
		t.Errorf("an operator's rule: %v %q", m, r)
	}
	if m, r := d.Classify("ThunderScan/1", netip.Addr{}, time.Time{}, time.Time{}); !m || r != ReasonScanner {
		t.Errorf("an operator's scanner: %v %q", m, r)
	}
	if _, err := New(Options{ExtraUserAgents: []UserAgentRule{{Text: "", Reason: "x"}}}); err == nil {
		t.Error("an empty rule: no error")
	}
	if _, err := New(Options{ExtraUserAgents: []UserAgentRule{{Text: "x"}}}); err == nil {
		t.Error("a rule without a reason: no error")
	}
}

func TestMachineBuiltInTable(t *testing.T) {
	for _, r := range UserAgents {
		if err := r.check(); err != nil {
			t.Errorf("built-in rule: %v", err)
		}
		if r.Who == "" {
			t.Errorf("built-in rule %q says not who sends it", r.Text)
		}
		// No built-in rule may take a person's client.
		for _, ua := range []string{uaIPhoneMail, uaMacMailNoMPP, uaGmailApp, uaOutlookDesk, uaOutlookMSO, uaThunderbird, uaChromeWin, uaCubotPhone} {
			if c := compile([]UserAgentRule{r})[0]; c.matches(ua, lowerASCII(ua)) {
				t.Errorf("built-in rule %q matches a person's client %q", r.Text, ua)
			}
		}
	}
}

func TestMachineClassifyEvent(t *testing.T) {
	d := detector(t, Options{})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sent := at.Add(-time.Hour)
	open := func(ua, ip string) metrics.Event {
		return metrics.Event{Time: at, Kind: metrics.KindOpened, Account: "acme", Recipient: "a@example.com", UserAgent: ua, ClientIP: ip}
	}
	verdict := func(e metrics.Event) string {
		switch {
		case e.Machine == nil:
			return "none"
		case *e.Machine:
			return "machine " + e.MachineReason
		}
		return "person " + e.MachineReason
	}
	posterMachine := open(uaThunderbird, "203.0.113.5")
	posterMachine.Machine, posterMachine.MachineReason = metrics.Verdict(true), "their_own"
	posterPerson := open("Mozilla/5.0", "172.224.224.7")
	posterPerson.Machine = metrics.Verdict(false)
	click := open("curl/8.5.0", "")
	click.Kind = metrics.KindClicked
	sentEvent := open("curl/8.5.0", "")
	sentEvent.Kind = metrics.KindSent
	early := open(uaThunderbird, "203.0.113.5")
	early.Time = sent.Add(2 * time.Second)
	hashed := open("Mozilla/5.0", "a3f1c09e")

	tests := []struct {
		name string
		e    metrics.Event
		want string
	}{
		{"apple proxy", open("Mozilla/5.0", "172.224.224.7"), "machine apple_mpp"},
		{"apple proxy, truncated address", open("Mozilla/5.0", "172.224.224.0"), "machine apple_mpp"},
		{"apple proxy user agent, hashed address", hashed, "machine apple_mpp_ua"},
		{"apple proxy over IPv6", open("Mozilla/5.0", "2606:54c0:1c21::9"), "machine apple_mpp"},
		{"Thunderbird", open(uaThunderbird, "203.0.113.5"), "person "},
		{"no user agent: no verdict", open("", "203.0.113.5"), "none"},
		{"the poster's machine verdict", posterMachine, "machine their_own"},
		{"the poster's person verdict", posterPerson, "person "},
		{"a scanner's click", click, "machine scanner"},
		{"not an open or a click", sentEvent, "none"},
		{"within seconds of the send", early, "machine prefetch"},
	}
	for _, tt := range tests {
		e := tt.e
		id := e.ComputeID()
		d.ClassifyEvent(&e, sent)
		if got := verdict(e); got != tt.want {
			t.Errorf("%s: verdict %s, want %s", tt.name, got, tt.want)
		}
		if e.ComputeID() != id {
			t.Errorf("%s: the verdict changed the event id", tt.name)
		}
		if err := e.Normalize(metrics.NewISPMap(nil), at.Add(time.Hour)); err != nil {
			t.Errorf("%s: the classified event does not validate: %v", tt.name, err)
		}
	}
}

func TestParseRanges(t *testing.T) {
	rs, err := ParseRanges(strings.NewReader("\ufeff# comment\r\n10.0.0.0/8,US,US-CA,X,\r\n\r\n10.1.0.0/16\n192.0.2.1\n2001:db8::/32,,,,\n::ffff:198.51.100.0/120\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Len() != 4 { // 10/8 holds 10.1/16; the rest apart
		t.Errorf("Len = %d, want 4", rs.Len())
	}
	for ip, want := range map[string]bool{
		"10.0.0.0": true, "10.255.255.255": true, "11.0.0.0": false, "9.255.255.255": false,
		"192.0.2.1": true, "192.0.2.2": false, "2001:db8:ffff::1": true, "2001:db9::": false,
		"198.51.100.77": true, "198.51.101.0": false, "fe80::1%eth0": false,
	} {
		if got := rs.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", ip, got, want)
		}
	}
	for _, bad := range []struct{ in, want string }{
		{"10.0.0.0/8\nnot-a-prefix,US\n", "line 2: \"not-a-prefix\""},
		{"# x\n\n10.0.0.0/33\n", "line 3:"},
		{"1.2.3.4/8,US\n,US\n", "line 2:"},
	} {
		if _, err := ParseRanges(strings.NewReader(bad.in)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseRanges(%q) = %v, want an error containing %q", bad.in, err, bad.want)
		}
	}
	if _, err := LoadRanges("testdata/missing.csv"); err == nil {
		t.Error("a missing file: no error")
	}
	var empty *Ranges
	if empty.Contains(netip.MustParseAddr("10.0.0.1")) || empty.Len() != 0 {
		t.Error("a nil Ranges contains something")
	}
}

func BenchmarkClassify(b *testing.B) {
	d, err := New(Options{AppleRangesFile: "testdata/egress-ip-ranges.csv"})
	if err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("203.0.113.5")
	at := time.Now()
	for b.Loop() {
		d.Classify(uaIPhoneMail, ip, at, at.Add(-time.Hour))
	}
}

// FuzzParseRanges: no panic, and every range read contains its own first
// address.
func FuzzParseRanges(f *testing.F) {
	f.Add("172.224.224.0/27,US,US-CA,Los Angeles,\n2a02:26f7::/32,GB\n# c\n")
	f.Add("::ffff:1.2.3.0/120\n1.2.3.4\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseRanges(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, spans := range [][]span{rs.v4, rs.v6} {
			for _, s := range spans {
				if !rs.Contains(s.lo) || !rs.Contains(s.hi) {
					t.Fatalf("range %v–%v does not contain its ends", s.lo, s.hi)
				}
			}
		}
	})
}
