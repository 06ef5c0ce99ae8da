package metrics

import "strings"

// ISPOther is the group of every recipient domain not in the map.
const ISPOther = "other"

// builtinISPs maps the recipient domains of the big mailbox providers to
// their group. Subdomains match their parent (mail.example.com → example.com).
var builtinISPs = map[string]string{
	"gmail.com": "gmail", "googlemail.com": "gmail",

	"outlook.com": "microsoft", "hotmail.com": "microsoft", "live.com": "microsoft",
	"msn.com": "microsoft", "hotmail.co.uk": "microsoft", "hotmail.fr": "microsoft",
	"outlook.jp": "microsoft", "live.jp": "microsoft", "windowslive.com": "microsoft",

	"yahoo.com": "yahoo", "yahoo.co.jp": "yahoo", "yahoo.co.uk": "yahoo", "yahoo.fr": "yahoo",
	"ymail.com": "yahoo", "rocketmail.com": "yahoo", "aol.com": "yahoo", "aim.com": "yahoo",

	"icloud.com": "apple", "me.com": "apple", "mac.com": "apple",

	"qq.com": "tencent", "foxmail.com": "tencent", "vip.qq.com": "tencent",

	"163.com": "netease", "126.com": "netease", "yeah.net": "netease", "vip.163.com": "netease",
	"188.com": "netease",

	"sina.com": "sina", "sina.cn": "sina", "sohu.com": "sohu", "aliyun.com": "aliyun",

	"gmx.com": "gmx", "gmx.de": "gmx", "gmx.net": "gmx", "web.de": "gmx",
	"mail.ru": "mailru", "bk.ru": "mailru", "list.ru": "mailru", "inbox.ru": "mailru",
	"yandex.ru": "yandex", "yandex.com": "yandex", "ya.ru": "yandex",
	"zoho.com": "zoho", "protonmail.com": "proton", "proton.me": "proton",
	"comcast.net": "comcast", "orange.fr": "orange", "wanadoo.fr": "orange",
	"naver.com": "naver", "daum.net": "daum",
}

// ISPMap maps recipient domains to mailbox provider groups: the built-in
// table, extended (and overridden) by configuration. The zero value is the
// built-in table. It is read-only once built and safe for concurrent use.
type ISPMap struct {
	extra map[string]string
}

// NewISPMap returns the built-in map extended by extra (domain → group).
func NewISPMap(extra map[string]string) ISPMap {
	m := make(map[string]string, len(extra))
	for d, g := range extra {
		m[strings.ToLower(strings.TrimSuffix(d, "."))] = g
	}
	return ISPMap{extra: m}
}

// Lookup returns the group of a (lower-case) recipient domain: the longest
// matching suffix at a label boundary, or ISPOther.
func (m ISPMap) Lookup(domain string) string {
	domain = strings.TrimSuffix(domain, ".")
	for d := domain; d != ""; {
		if g, ok := m.extra[d]; ok {
			return g
		}
		if g, ok := builtinISPs[d]; ok {
			return g
		}
		dot := strings.IndexByte(d, '.')
		if dot < 0 {
			break
		}
		d = d[dot+1:]
	}
	return ISPOther
}
