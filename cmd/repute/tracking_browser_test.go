package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// TestUnsubscribePageInChromium is issue 12's end-to-end case in a real
// browser: headless Chromium opens the unsubscribe page of a running
// repute serve, presses the button, sees the confirmation; then the event
// is stored and the unsubscribe list says so. Without /usr/bin/chromium it
// skips, unless REPUTE_REQUIRE_CHROMIUM is set (make test sets it and
// installs the browser).
func TestUnsubscribePageInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("REPUTE_REQUIRE_CHROMIUM") != "" {
			t.Fatalf("%s: %v (REPUTE_REQUIRE_CHROMIUM is set; scripts/testenv.sh install brings the chromium package)", chromiumPath, err)
		}
		t.Skipf("no %s: run make test, which installs Debian's chromium", chromiumPath)
	}
	cfg := twoAccounts(t, "")
	cfg.Accounts[0].DisplayName = "Acme Newsletters"
	env := newTrackEnv(t, cfg)
	pageURL := env.base + "/t/u/" + env.signer.UnsubscribeToken(env.acme)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844), // a phone
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL), chromedp.WaitVisible("#unsubscribe")); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	before, err := chromedp.Run(ctx, chromedp.Text("main"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(before, acmeDomain) || !strings.Contains(before, "Acme Newsletters") {
		t.Errorf("page text %q: want the sender domain and the display name", before)
	}
	buttonWidth, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("unsubscribe").getBoundingClientRect().width`))
	if err != nil {
		t.Fatal(err)
	}
	if buttonWidth < 250 {
		t.Errorf("button %.0f px wide on a 390 px screen: want a big one", buttonWidth)
	}
	// Opening the page unsubscribed nobody.
	if r := check(t, env.base, "acme-key", acmeDomain, acmeRcpt)[0]; !r.Allowed {
		t.Fatalf("after opening the page: %+v; want allowed", r)
	}
	if err := chromedp.Do(ctx, chromedp.Click("#unsubscribe"), chromedp.WaitNotPresent("#unsubscribe")); err != nil {
		t.Fatalf("pressing the button: %v", err)
	}
	after, err := chromedp.Run(ctx, chromedp.Text("h1"))
	if err != nil {
		t.Fatal(err)
	}
	if after != "You are unsubscribed" {
		t.Errorf("confirmation heading %q", after)
	}
	if r := waitUnsubscribed(t, env.base, "acme-key", acmeDomain, acmeRcpt); r.Allowed {
		t.Errorf("after the button: %+v; want unsubscribed", r)
	}
	waitAccounted(t, env.base)
	cancel()
	cancelBrowser()
	env.stop()
	var unsub []storedHit
	for _, h := range storedTrackingEvents(t, cfg) {
		if h.Kind == "unsubscribed" {
			unsub = append(unsub, h)
		}
	}
	if len(unsub) != 1 || unsub[0].Account != "acme" || unsub[0].Source != "page" || unsub[0].Recipient != acmeRcpt ||
		unsub[0].Domain != acmeDomain || !strings.Contains(unsub[0].UA, "Chrome") {
		t.Errorf("stored unsubscribes: %+v; want one of acme's, from the page, by Chromium", unsub)
	}
}
