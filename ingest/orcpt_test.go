package ingest

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOriginalRecipient checks that a DSN's Original-Recipient (RFC 3464
// §2.3.1) comes out as original_recipient, without its address type, and
// that a report without one leaves the field out of the JSON.
func TestOriginalRecipient(t *testing.T) {
	withORCPT := strings.Replace(testBounce, "Final-Recipient: rfc822; gone@example.com\n",
		"Original-Recipient: rfc822;Gone.Alias@example.org\nFinal-Recipient: rfc822; gone@example.com\n", 1)
	tests := []struct {
		name, msg, want string
	}{
		{"with ORCPT", withORCPT, "Gone.Alias@example.org"},
		{"without ORCPT", testBounce, ""},
	}
	for _, tt := range tests {
		res, err := ParseBytes([]byte(tt.msg))
		if err != nil || len(res) != 1 {
			t.Fatalf("%s: ParseBytes = %+v, %v; want one result", tt.name, res, err)
		}
		r := res[0]
		if r.Recipient != "gone@example.com" || r.OriginalRecipient != tt.want {
			t.Errorf("%s: recipient %q original_recipient %q, want gone@example.com and %q",
				tt.name, r.Recipient, r.OriginalRecipient, tt.want)
		}
		b, _ := json.Marshal(r)
		if has := strings.Contains(string(b), `"original_recipient"`); has != (tt.want != "") {
			t.Errorf("%s: JSON %s: original_recipient present = %v", tt.name, b, has)
		}
	}
}
