package dsn

import (
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// charsetCase is a diagnostic written in a charset and sent with a
// transfer encoding.
type charsetCase struct {
	charset string
	enc     encoding.Encoding // how the test encodes the text
	cte     string            // 7bit, 8bit, quoted-printable or base64
	diag    string            // UTF-8
}

var charsetCases = []charsetCase{
	{"ISO-2022-JP", japanese.ISO2022JP, "7bit", "宛先のメールアドレスが見つかりません"},
	{"iso-2022-jp", japanese.ISO2022JP, "base64", "メールボックスの容量が一杯です"},
	{"Shift_JIS", japanese.ShiftJIS, "base64", "ユーザが存在しません"},
	{"shift_jis", japanese.ShiftJIS, "8bit", "このメールアドレスは存在しません"},
	{"EUC-JP", japanese.EUCJP, "8bit", "配信できませんでした。宛先不明"},
	{"euc-jp", japanese.EUCJP, "quoted-printable", "受信者のメールボックスが一杯です"},
	{"GB2312", simplifiedchinese.GBK, "base64", "收件人邮箱已满"}, // GB2312 labels are GBK in practice
	{"GBK", simplifiedchinese.GBK, "quoted-printable", "用户不存在，邮件无法投递"},
	{"GB18030", simplifiedchinese.GB18030, "8bit", "邮箱容量不足"},
	{"Big5", traditionalchinese.Big5, "base64", "收件者信箱已滿"},
	{"EUC-KR", korean.EUCKR, "quoted-printable", "받는 사람의 메일함이 가득 찼습니다"},
	{"ks_c_5601-1987", korean.EUCKR, "base64", "존재하지 않는 사용자입니다"},
	{"KOI8-R", charmap.KOI8R, "quoted-printable", "Почтовый ящик переполнен"},
	{"koi8-r", charmap.KOI8R, "8bit", "ПОЛЬЗОВАТЕЛЬ НЕ НАЙДЕН"},
	{"windows-1251", charmap.Windows1251, "8bit", "Пользователь не найден"},
	{"windows-1251", charmap.Windows1251, "base64", "Адресат не существует"},
	{"windows-1252", charmap.Windows1252, "quoted-printable", "Boîte aux lettres pleine – “quota” dépassé"},
	{"ISO-8859-1", charmap.ISO8859_1, "quoted-printable", "Destinatário desconhecido, caixa não existe"},
	{"iso-8859-1", charmap.Windows1252, "8bit", "Empfänger unbekannt – Postfach überfüllt"}, // QUIRK: windows-1252 labelled latin-1
	{"ISO-8859-2", charmap.ISO8859_2, "8bit", "Skrzynka odbiorcza pełna, użytkownik nieznany"},
	{"ISO-8859-5", charmap.ISO8859_5, "base64", "Почтовый ящик переполнен"},
	{"ISO-8859-7", charmap.ISO8859_7, "quoted-printable", "Το γραμματοκιβώτιο είναι γεμάτο"},
	{"ISO-8859-9", charmap.ISO8859_9, "8bit", "Alıcı bulunamadı, posta kutusu dolu"},
	{"ISO-8859-15", charmap.ISO8859_15, "8bit", "Boîte pleine, dépassement de 5 € de quota"},
	{`"utf-8"`, encoding.Nop, "base64", "Адресат не найден"},
	{"", encoding.Nop, "8bit", "Boîte pleine"},
	// QUIRK: Japanese carrier gateways (KDDI's ezweb among them) label 8-bit EUC-JP or
	// Shift_JIS text ISO-2022-JP, a 7-bit charset (RFC 1468): the bytes decide.
	{"ISO-2022-JP", japanese.EUCJP, "8bit", "次のあて先へのメッセージはエラーのため送信できませんでした"},
	{"iso-2022-jp", japanese.ShiftJIS, "8bit", "送信できませんでした"},
	{"iso-2022-jp", encoding.Nop, "8bit", "送信できませんでした"},
}

// encodeBody returns text in the case's charset and transfer encoding.
func (c charsetCase) encodeBody(t testing.TB, text string) string {
	t.Helper()
	b, err := c.enc.NewEncoder().String(text)
	if err != nil {
		t.Fatalf("%s: encode %q: %v", c.charset, text, err)
	}
	switch c.cte {
	case "base64":
		s := base64.StdEncoding.EncodeToString([]byte(b))
		var lines []string
		for len(s) > 76 {
			lines, s = append(lines, s[:76]), s[76:]
		}
		return strings.Join(append(lines, s), "\n")
	case "quoted-printable":
		var sb strings.Builder
		w := quotedprintable.NewWriter(&sb)
		w.Write([]byte(b))
		w.Close()
		return sb.String()
	}
	return b
}

// charsetBounce returns a bounce for rcpt whose text part is in the case's
// charset: a multipart/report DSN without Diagnostic-Code when dsn is set
// (the diagnostic is the paragraph naming the recipient), else a prose
// bounce.
func (c charsetCase) bounce(t testing.TB, dsn bool, rcpt string) []byte {
	t.Helper()
	text := fmt.Sprintf("This is the mail system.\n\n<%s>: %s\n\n--\nPostmaster\n", rcpt, c.diag)
	ct := "text/plain"
	if c.charset != "" {
		ct += "; charset=" + c.charset
	}
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@mx.example.net\nTo: sender@example.org\nSubject: Returned mail\nMIME-Version: 1.0\n")
	if dsn {
		b.WriteString("Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n")
	} else {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"B\"\n\n")
	}
	fmt.Fprintf(&b, "--B\nContent-Type: %s\nContent-Transfer-Encoding: %s\n\n%s\n", ct, c.cte, c.encodeBody(t, text))
	if dsn {
		fmt.Fprintf(&b, "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: 5.0.0\n\n", rcpt)
	}
	b.WriteString("--B--\n")
	return []byte(b.String())
}

func TestCharsetDiagnostic(t *testing.T) {
	for _, c := range charsetCases {
		for _, dsn := range []bool{false, true} {
			name := fmt.Sprintf("%s/%s/dsn=%v", c.charset, c.cte, dsn)
			t.Run(name, func(t *testing.T) {
				msg := c.bounce(t, dsn, "user@example.jp")
				rep, err := ParseBytes(msg)
				if err != nil {
					t.Fatalf("ParseBytes: %v\n%s", err, msg)
				}
				if len(rep.Recipients) != 1 || rep.Recipients[0].Address != "user@example.jp" {
					t.Fatalf("recipients = %+v", rep.Recipients)
				}
				if d := rep.Recipients[0].Diagnostic; !strings.Contains(d, c.diag) {
					t.Errorf("Diagnostic = %q, want it to contain %q", d, c.diag)
				}
			})
		}
	}
}

func TestDecodeCharset(t *testing.T) {
	for _, tc := range []struct{ in, charset, want string }{
		{"plain", "iso-8859-1", "plain"},
		{"caf\xe9", "iso-8859-1", "café"},
		{"caf\xe9", "x-no-such-charset", "caf\xe9"},
		{"caf\xe9", "us-ascii", "caf\xe9"},
		{"\x1b$B$3$s$K$A$O\x1b(B", "iso-2022-jp", "こんにちは"},
		{"\x1b$B$3$", "iso-2022-jp", "こ\ufffd"}, // truncated: keep what decodes
		{"\x82\xb1\x82\xf1\xff", "shift_jis", "こん\ufffd"},
		{"~{<:Ky2;S{~}", "HZ-GB-2312", "己所不欲"},
		{"\xff\xfeh\x00i\x00\r\x00\n\x00", "utf-16", "hi\n"},
		{"\xfe\xff\x00h\x00i", "utf-16", "hi"},
		{"\xef\xbb\xbfcaf\xc3\xa9", "windows-1252", "café"}, // the byte order mark wins
	} {
		a := newTestArena()
		if got := a.decodeCharset(tc.in, tc.charset); got != tc.want {
			t.Errorf("decodeCharset(%q, %q) = %q, want %q", tc.in, tc.charset, got, tc.want)
		}
	}
}

// TestDecodeCharsetASCII checks the fast path: no allocation for text in
// US-ASCII or UTF-8, or ASCII text in an ASCII-compatible charset.
func TestDecodeCharsetASCII(t *testing.T) {
	a := newTestArena()
	for _, tc := range []struct{ s, charset string }{
		{"Mailbox full", ""},
		{"Mailbox full", "us-ascii"},
		{"Boîte pleine", "UTF-8"},
		{"Mailbox full", "iso-8859-1"},
		{"Mailbox full", "iso-2022-jp"},
	} {
		if n := testing.AllocsPerRun(10, func() { a.decodeCharset(tc.s, tc.charset) }); n != 0 {
			t.Errorf("decodeCharset(%q, %q): %v allocations, want 0", tc.s, tc.charset, n)
		}
	}
}

func TestGlobalDeliveryStatusUTF8(t *testing.T) {
	msg := "From: MAILER-DAEMON@mx.example.ru\nSubject: Undelivered Mail\n" +
		"Content-Type: multipart/report; report-type=global-delivery-status; boundary=B\n\n" +
		"--B\nContent-Type: text/plain; charset=koi8-r\n\nmail system\n" +
		"--B\nContent-Type: message/global-delivery-status\n\n" +
		"Reporting-MTA: dns; mx.example.ru\n\n" +
		"Final-Recipient: rfc822; пользователь@пример.рф\nAction: failed\nStatus: 5.2.2\n" +
		"Diagnostic-Code: smtp; 552 5.2.2 ПОЧТОВЫЙ ЯЩИК ПЕРЕПОЛНЕН\n\n--B--\n"
	rep, err := ParseBytes([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("recipients = %+v", rep.Recipients)
	}
	rc := rep.Recipients[0]
	if rc.Address != "пользователь@пример.рф" || rc.Diagnostic != "552 5.2.2 ПОЧТОВЫЙ ЯЩИК ПЕРЕПОЛНЕН" {
		t.Errorf("recipient = %q %q", rc.Address, rc.Diagnostic)
	}
}

// b2047 returns text as one B-encoded word in charset.
func b2047(t testing.TB, charset string, enc encoding.Encoding, text string) string {
	t.Helper()
	b, err := enc.NewEncoder().String(text)
	if err != nil {
		t.Fatal(err)
	}
	return "=?" + charset + "?B?" + base64.StdEncoding.EncodeToString([]byte(b)) + "?="
}

func TestEncodedWords(t *testing.T) {
	// A bounce recognised by its Subject alone, which says so only once
	// decoded: the sender is no daemon and the text uses none of the
	// phrases looksLikeBounce knows.
	for _, subj := range []string{
		b2047(t, "ISO-2022-JP", japanese.ISO2022JP, "Undeliverable: 配信不能"),
		b2047(t, "UTF-8", encoding.Nop, "Undeliverable: Unzustellbar"),
		b2047(t, "iso-8859-1", charmap.ISO8859_1, "Non-deliverable: destinataire inconnu"),
		// RFC 2047 §6.2: the space between two encoded words goes.
		"=?Shift_JIS?B?" + base64.StdEncoding.EncodeToString([]byte("Returned ")) + "?=\n =?utf-8?q?mail?=",
	} {
		msg := "From: " + b2047(t, "ISO-2022-JP", japanese.ISO2022JP, "ヘルプ") + " <help@mx.example.jp>\nTo: sender@example.org\n" +
			"Subject: " + subj + "\nContent-Type: text/plain; charset=utf-8\n\n" +
			"次のあて先に送れませんでした。\n\n<user@example.jp>\n"
		rep, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Errorf("Subject %s: ParseBytes: %v", subj, err)
			continue
		}
		if len(rep.Recipients) != 1 || rep.Recipients[0].Address != "user@example.jp" {
			t.Errorf("Subject %s: recipients = %+v", subj, rep.Recipients)
		}
	}

	// An automatic reply told by its encoded Subject.
	msg := "From: =?UTF-8?B?0JjQstCw0L0=?= <ivan@example.ru>\nTo: sender@example.org\n" +
		"Subject: " + b2047(t, "koi8-r", charmap.KOI8R, "Automatic reply: В отпуске") + "\n\nВернусь 1 мая.\n"
	rep, err := ParseBytes([]byte(msg))
	if err != nil || rep.Kind != KindAutoReply || len(rep.Recipients) != 1 || rep.Recipients[0].Address != "ivan@example.ru" {
		t.Errorf("auto reply: %+v, %v", rep, err)
	}

	// The returned original's Subject, From and To.
	orig := "From: " + b2047(t, "ISO-2022-JP", japanese.ISO2022JP, "山田 太郎") + " <taro@example.jp>\n" +
		"To: =?utf-8?Q?Jos=C3=A9?= <jose@example.com>\n" +
		"Subject: " + b2047(t, "windows-1251", charmap.Windows1251, "Счёт №42") + "\nMessage-ID: <o1@example.jp>\n\nbody\n"
	msg = "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n" +
		"--B\n\nmail system\n--B\nContent-Type: message/delivery-status\n\n" +
		"Final-Recipient: rfc822; jose@example.com\nAction: failed\nStatus: 5.1.1\n\n" +
		"--B\nContent-Type: message/rfc822\n\n" + orig + "--B--\n"
	rep, err = ParseBytes([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := Original{MessageID: "o1@example.jp", From: "山田 太郎 <taro@example.jp>", To: "José <jose@example.com>", Subject: "Счёт №42"}
	if rep.Original != want {
		t.Errorf("Original = %+v, want %+v", rep.Original, want)
	}
}

func TestDecodeWords(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Undeliverable", "Undeliverable"},
		{"=?utf-8?q?caf=C3=A9?=", "café"},
		{"=?ISO-2022-JP?B?GyRCR1s/LklURz0bKEI=?=", "配信不能"},
		{"=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="}, // kept when it does not decode
		{"=?utf-8?q?a=FFb?=", "a\ufffdb"},
		{"a =?broken", "a =?broken"},
	} {
		if got := decodeWords(tc.in); got != tc.want {
			t.Errorf("decodeWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// charsetSeeds returns the generated messages of this file, for the fuzz
// test.
func charsetSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range charsetCases {
		seeds = append(seeds, c.bounce(t, true, "user@example.jp"), c.bounce(t, false, "user@example.jp"))
	}
	seeds = append(seeds, []byte("From: x@example.jp\nSubject: =?ISO-2022-JP?B?GyRCR1s/LklURz0bKEI=?= Undeliverable\n\n<user@example.jp>\n"),
		[]byte(htmlBounce))
	return seeds
}
