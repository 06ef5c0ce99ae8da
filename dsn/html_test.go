package dsn

import (
	"strings"
	"testing"
)

func TestStripTags(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"<p>one</p><p>two</p>", "\none\n\ntwo\n"},
		{"a<br>b<br/>c<BR />d", "a\nb\nc\nd"},
		{"<div>x</div><h1>T</h1><ul><li>a</li></ul>", "\nx\n\nT\n\n\na\n\n"},
		{"<table><tr><td>a</td><td>b</td></tr></table>", "\n\n a b\n\n"},
		{"it&#x27;s &eacute;t&eacute; &amp; &lt;x@y.example&gt; &#8212; &euro;", "it's été & <x@y.example> — €"},
		{"a&nbsp;b&#160;c\u00a0d", "a b c d"},
		{"no &unknown; entity &", "no &unknown; entity &"},
		{"<style>p { color: red } a > b</style>kept", "kept"},
		{"<SCRIPT type='text/javascript'>if (a < b) x = '</p>';</script >kept", "kept"},
		{"<!-- hidden@example.com -->kept<!-- unclosed", "kept"},
		{"<!DOCTYPE html><?xml version='1.0'?>kept", "kept"},
		{`<a href="x>y" title='>'>link</a>`, "link"},
		{"1 < 2 and 3 <4", "1 < 2 and 3 <4"},
		{"<b>un</b>closed <i", "unclosed "},
	} {
		a := newTestArena()
		if got := a.stripTags(tc.in); got != tc.want {
			t.Errorf("stripTags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// htmlBounce is a bounce whose only text is HTML, in windows-1252 and
// quoted-printable.
const htmlBounce = `From: Mail Delivery System <MAILER-DAEMON@mx.example.fr>
To: sender@example.org
Subject: Delivery failure
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/html; charset=windows-1252
Content-Transfer-Encoding: quoted-printable

<html><head><title>Undeliverable</title>
<style type=3D"text/css">
p.err { color: red; } /* user@style.example */
</style></head>
<body><!-- comment@hidden.example -->
<p>Your message to <b>user@example.fr</b> couldn&#x27;t be delivered.</p>
<p>Remote server said: 552 5.2.2 Bo=EEte pleine &ndash; d&eacute;passement de=
 quota&nbsp;(&#8220;over quota&#8221;)</p>
</body></html>
--b1--
`

func TestHTMLBounce(t *testing.T) {
	rep, err := ParseBytes([]byte(htmlBounce))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("recipients = %+v", rep.Recipients)
	}
	rc := rep.Recipients[0]
	if rc.Address != "user@example.fr" {
		t.Errorf("Address = %q", rc.Address)
	}
	for _, want := range []string{"couldn't be delivered", "552 5.2.2 Boîte pleine – dépassement de quota (“over quota”)"} {
		if !strings.Contains(rc.Diagnostic, want) {
			t.Errorf("Diagnostic = %q, want it to contain %q", rc.Diagnostic, want)
		}
	}
	for _, bad := range []string{"color", "style.example", "hidden.example", "<", "&"} {
		if strings.Contains(rc.Diagnostic, bad) {
			t.Errorf("Diagnostic = %q holds %q", rc.Diagnostic, bad)
		}
	}
	if rc.Status != "5.2.2" || rc.Reason != MailboxFull {
		t.Errorf("Status %q Reason %q, want 5.2.2 %q", rc.Status, rc.Reason, MailboxFull)
	}
}
