package sender

import (
	"fmt"
	"strings"
	"testing"
)

// newsletter returns a realistic HTML newsletter of about 20 KiB with 30
// links, and its text part.
func newsletter() *Message {
	var h strings.Builder
	h.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Winter</title>" +
		"<style>body{font-family:Arial,sans-serif}td{padding:8px}.btn{background:#0a6;color:#fff}</style></head>\n" +
		"<body style=\"margin:0;padding:0\"><table width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\">\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&h, "<tr><td class=\"item\" style=\"border-bottom:1px solid #eee;font-size:15px;line-height:22px;color:#333\">"+
			"<h2 style=\"margin:0 0 6px 0;font-size:18px\">Offer %d for {{.name}}</h2>"+
			"<p style=\"margin:0 0 10px 0\">Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "+
			"Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat, %d.</p>"+
			"<a class=\"btn\" href=\"https://shop.acme.example/products/%d?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=winter\" style=\"display:inline-block;padding:10px 16px;text-decoration:none\">See offer</a>"+
			"</td></tr>\n", i, i, i)
	}
	h.WriteString("</table><p style=\"font-size:12px;color:#999\"><a href=\"{{unsubscribeURL}}\">Unsubscribe</a> · <a href=\"mailto:help@acme.example\">Help</a></p></body></html>\n")
	return &Message{
		From: "Acme News <news@news.acme.example>", To: []string{"a@x.example"},
		Subject: "Winter offers for {{.name}}", HTML: h.String(),
		Text:     "Hello {{.name}}, our winter offers: https://shop.acme.example/winter\nUnsubscribe: {{unsubscribeURL}}\n",
		Campaign: "winter", Category: CategoryMarketing,
		Data: map[string]map[string]any{"a@x.example": {"name": "Ann"}},
	}
}

// BenchmarkCompose composes, stamps and signs one newsletter to one
// recipient per iteration.
func BenchmarkCompose(b *testing.B) {
	m := newsletter()
	if n := len(m.HTML); n < 18<<10 || n > 24<<10 {
		b.Fatalf("newsletter of %d bytes, want about 20 KiB", n)
	}
	for _, bc := range []struct {
		name string
		keys func() []DKIMKey
	}{
		{"none", func() []DKIMKey { return nil }},
		{"ed25519", func() []DKIMKey {
			return []DKIMKey{{Domain: "news.acme.example", Selector: "ed", Signer: testEd25519(b)}}
		}},
		{"rsa2048", func() []DKIMKey {
			return []DKIMKey{{Domain: "news.acme.example", Selector: "rsa", Signer: testRSA(b, 2048)}}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTestComposer(b, "bounces.acme.example", bc.keys()...)
			p := mustPrepare(b, m)
			b.ReportAllocs()
			var size int
			for b.Loop() {
				it, _, err := c.Compose(p, "acme", "a@x.example")
				if err != nil {
					b.Fatal(err)
				}
				size = len(it.Data)
			}
			b.ReportMetric(float64(size), "bytes/msg")
		})
	}
}
