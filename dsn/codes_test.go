package dsn

import "testing"

// TestStatusNotations checks the enhanced status code (RFC 3463) in the
// notations MTAs write it in.
func TestStatusNotations(t *testing.T) {
	tests := []struct {
		in, find, reply string // findStatus and replyStatus of in
	}{
		{"5.1.1", "5.1.1", "5.1.1"},
		{"Remote host said: 550 5.1.1 unknown #5.1.1", "5.1.1", "5.1.1"},    // qmail
		{"Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1", "5.1.1"}, // qmail
		{"#5.1.1", "5.1.1", "5.1.1"},
		{"(5.1.1)", "5.1.1", "5.1.1"},
		{"[5.1.1]", "5.1.1", "5.1.1"},
		{"smtp; 550 5.1.1 <a@example.com>: User unknown", "5.1.1", "5.1.1"},                      // Diagnostic-Code
		{"550-5.1.1 The email account that you tried to reach does not exist", "5.1.1", "5.1.1"}, // Gmail
		{"550-'5.7.1 refused'", "5.7.1", "5.7.1"},
		{"smtp;550 5.2.2 mailbox full", "5.2.2", "5.2.2"},
		{"Status: 4.4.7 (delivery time expired)", "4.4.7", "4.4.7"},
		{"250 2.1.5 Ok; then 550 5.7.1 denied", "2.1.5", "5.7.1"}, // a transcript
		{"5.7.26:", "5.7.26", "5.7.26"},
		{"4.2.2.", "4.2.2", "4.2.2"},
		// Not codes: RFC 3463's "X.1.1" stands for any class, version
		// numbers, addresses and dates.
		{"X.1.1 bad destination mailbox address", "", ""},
		{"Exim 4.94.2", "", ""},
		{"host 192.5.1.1 said", "", ""},
		{"user5.1.1@example.com", "", ""},
		{"10.5.1.1", "", ""},
		{"5.1.1.2", "", ""},
	}
	for _, tt := range tests {
		if got := findStatus(tt.in); got != tt.find {
			t.Errorf("findStatus(%q) = %q, want %q", tt.in, got, tt.find)
		}
		if got := replyStatus(tt.in); got != tt.reply {
			t.Errorf("replyStatus(%q) = %q, want %q", tt.in, got, tt.reply)
		}
	}
}

// TestReplyCodeNotations checks the SMTP reply code (RFC 5321 §4.2) in the
// forms bounces quote it.
func TestReplyCodeNotations(t *testing.T) {
	tests := []struct{ in, want string }{
		{"550 5.1.1 User unknown", "550"},
		{"550-5.1.1 The email account", "550"},
		{"smtp; 550 5.1.1", "550"},
		{"Remote host said: 554 delivery error", "554"},
		{"(in reply to RCPT TO command): 452 4.2.2", "452"},
		{"<<< 550 5.1.1 <a@example.com>... User unknown", "550"},
		{"said: 550", "550"},
		{"5.1.1 user unknown", ""},
		{"port 5501 closed", ""},
		{"12550 bytes", ""},
	}
	for _, tt := range tests {
		if got := findReplyCode(tt.in); got != tt.want {
			t.Errorf("findReplyCode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
