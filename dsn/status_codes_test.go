package dsn

import "testing"

// TestEnhancedCodesAlone classifies every code of RFC 3463 and of the IANA
// "Enumerated Status Codes" registry on its own: no words, no phase.
func TestEnhancedCodesAlone(t *testing.T) {
	tests := []struct {
		code   string
		reason Reason
	}{
		{"5.1.1", UserUnknown}, {"4.1.1", UserUnknown}, {"5.1.2", HostUnknown},
		{"5.1.3", UserUnknown}, {"5.1.4", UserUnknown}, {"5.1.6", HasMoved},
		{"5.1.7", Rejected}, {"5.1.8", Rejected}, {"5.1.10", NotAccept},
		{"5.2.1", Suspend}, {"5.2.2", MailboxFull}, {"4.2.2", MailboxFull},
		{"5.2.3", ExceedLimit}, {"5.2.4", SystemError},
		{"5.3.0", SystemError}, {"4.3.1", SystemFull}, {"5.3.2", NotAccept},
		{"5.3.3", SystemError}, {"5.3.4", MesgTooBig}, {"5.3.5", SystemError},
		{"4.4.0", NetworkError}, {"4.4.1", NetworkError}, {"4.4.2", NetworkError},
		{"4.4.3", NetworkError}, {"5.4.4", HostUnknown}, {"4.4.5", SystemFull},
		{"5.4.6", NetworkError}, {"4.4.7", Expired},
		{"5.5.1", SyntaxError}, {"5.5.2", SyntaxError}, {"5.5.3", TooManyConn},
		{"5.5.4", SyntaxError}, {"5.5.5", SyntaxError}, {"5.5.6", SecurityError},
		{"5.6.0", ContentError}, {"5.6.1", ContentError}, {"5.6.2", ContentError},
		{"5.6.3", ContentError}, {"5.6.4", ContentError}, {"5.6.5", ContentError},
		{"5.6.6", ContentError}, {"5.6.7", ContentError}, {"5.6.8", ContentError},
		{"5.6.9", ContentError}, {"5.6.10", ContentError},
		{"5.7.0", PolicyViolation}, {"5.7.1", Blocked}, {"5.7.2", Filtered},
		{"5.7.3", SecurityError}, {"5.7.4", SecurityError}, {"5.7.5", SecurityError},
		{"5.7.6", SecurityError}, {"5.7.7", SecurityError}, {"5.7.8", SecurityError},
		{"5.7.9", SecurityError}, {"5.7.10", SecurityError}, {"5.7.11", SecurityError},
		{"5.7.12", SecurityError}, {"5.7.13", Suspend}, {"5.7.14", SecurityError},
		{"5.7.15", PolicyViolation}, {"5.7.16", MesgTooBig}, {"5.7.17", HasMoved},
		{"5.7.18", HasMoved}, {"5.7.19", SecurityError}, {"5.7.20", AuthFailure},
		{"5.7.21", AuthFailure}, {"5.7.22", AuthFailure}, {"5.7.23", AuthFailure},
		{"5.7.24", AuthFailure}, {"5.7.25", RequirePTR}, {"5.7.26", AuthFailure},
		{"5.7.27", Rejected}, {"5.7.28", Speeding}, {"5.7.29", AuthFailure},
		{"5.7.30", FailedSTARTTLS},
		// Codes that name a subject only, or no failure, decide nothing.
		{"5.0.0", Undefined}, {"5.5.0", Undefined}, {"5.1.0", Undefined},
		{"5.2.0", Undefined},
	}
	for _, tt := range tests {
		code := 550
		if tt.code[0] == '4' {
			code = 450
		}
		// Without a reply text there is nothing to put on hold: an
		// unknown code is Undefined.
		got, _, ev := DefaultLexicon().ClassifyReply(0, tt.code, "", PhaseUnknown)
		if got != tt.reason {
			t.Errorf("ClassifyReply(0, %q, \"\", unknown) = %q (%s), want %q", tt.code, got, ev.Rule, tt.reason)
		}
		// With its reply code and a text that names no cause the code
		// still decides.
		got, _, _ = DefaultLexicon().ClassifyReply(code, tt.code, "Requested action not taken", PhaseUnknown)
		if tt.reason != Undefined && got != tt.reason {
			t.Errorf("ClassifyReply(%d, %q, \"Requested action not taken\", unknown) = %q, want %q", code, tt.code, got, tt.reason)
		}
	}
}

// TestReplyCodesAlone classifies the basic reply codes that RFC 5321 §4.2
// (and RFC 4954, 7504) gives one meaning, and leaves the many-purpose ones
// undecided.
func TestReplyCodesAlone(t *testing.T) {
	tests := []struct {
		code   int
		reason Reason
		hard   bool
	}{
		{500, SyntaxError, false}, {501, SyntaxError, false}, {502, SyntaxError, false},
		{503, SyntaxError, false}, {504, SyntaxError, false}, {555, SyntaxError, false},
		{451, SystemError, false}, {452, SystemFull, false}, {552, MailboxFull, false},
		{553, UserUnknown, true}, {530, SecurityError, false}, {535, SecurityError, false},
		{521, NotAccept, true}, {556, NotAccept, true},
		{550, Undefined, false}, {554, Undefined, false}, {421, Undefined, false}, {450, Undefined, false},
	}
	for _, tt := range tests {
		got, hard := ClassifyReply(tt.code, "", "", PhaseUnknown)
		if got != tt.reason || hard != tt.hard {
			t.Errorf("ClassifyReply(%d, \"\", \"\", unknown) = %q, %v; want %q, %v", tt.code, got, hard, tt.reason, tt.hard)
		}
	}
}

// TestClassifyReplyPhase checks that the phase the sender knows decides
// what "user unknown" means, and that an unknown phase changes nothing.
func TestClassifyReplyPhase(t *testing.T) {
	tests := []struct {
		code   int
		text   string
		phase  Phase
		reason Reason
		hard   bool
	}{
		{550, "User unknown", PhaseRcpt, UserUnknown, true},
		{550, "User unknown", PhaseUnknown, UserUnknown, true},
		{550, "<a@example.com>: Recipient address rejected: User unknown in local recipient table", PhaseRcpt, UserUnknown, true},
		{550, "<a@example.com>: Recipient address rejected: User unknown in local recipient table", PhaseUnknown, UserUnknown, true},
		{550, "User unknown", PhaseEndOfData, Filtered, false},
		{554, "No such user here", PhaseData, Filtered, false},
		{553, "Domain of sender address does not exist", PhaseMail, Rejected, false},
		{550, "No such user", PhaseMail, Rejected, false},
		{554, "No such user", PhaseConnect, Blocked, false},
		{550, "Unknown user", PhaseHelo, Blocked, false},
		// Final words hold whatever the phase.
		{554, "delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]", PhaseEndOfData, UserUnknown, true},
		// The phase alone, with words that name no cause.
		{550, "Requested action not taken", PhaseMail, Rejected, false},
		{554, "Go away", PhaseConnect, Blocked, false},
		{550, "Requested action not taken", PhaseRcpt, OnHold, false},
	}
	for _, tt := range tests {
		got, hard := ClassifyReply(tt.code, "", tt.text, tt.phase)
		if got != tt.reason || hard != tt.hard {
			t.Errorf("ClassifyReply(%d, \"\", %q, %q) = %q, %v; want %q, %v", tt.code, tt.text, tt.phase, got, hard, tt.reason, tt.hard)
		}
	}
}

// TestPhaseOf checks the phase markers of each MTA family.
func TestPhaseOf(t *testing.T) {
	tests := []struct {
		text  string
		phase Phase
	}{
		{"host mx.example.com[192.0.2.1] said: 550 5.1.1 <a@example.com>: user unknown (in reply to rcpt to command)", PhaseRcpt},
		{"host mx.example.com[192.0.2.1] said: 554 5.7.1 spam (in reply to end of data command)", PhaseEndOfData},
		{"smtp error from remote mail server after rcpt to:<a@example.com>: 550 no such user", PhaseRcpt},
		{"smtp error from remote mail server after end of data: 550 rejected", PhaseEndOfData},
		{"smtp error from remote mail server after mail from:<b@example.org> size=1234: 553 sender rejected", PhaseMail},
		{"smtp error from remote mail server after initial connection: 554 go away", PhaseConnect},
		{"smtp error from remote server for rcpt to command, host: mx.example.com reason: 550 unknown", PhaseRcpt},
		{">>> mail from:<b@example.org> <<< 250 ok >>> rcpt to:<a@example.com> <<< 550 5.1.1 user unknown", PhaseRcpt},
		{">>> rcpt to:<a@example.com> <<< 250 ok >>> data <<< 554 rejected", PhaseData},
		{"192.0.2.1 does not like recipient. remote host said: 550 no mailbox here", PhaseRcpt},
		{"connected to 192.0.2.1 but sender was rejected. remote host said: 553 sorry", PhaseMail},
		{"192.0.2.1 failed after i sent the message. remote host said: 554 spam", PhaseEndOfData},
		{"giving up on 192.0.2.1. most progress was rcpt to response; 550 no such user", PhaseRcpt},
		{"mx.example.com [192.0.2.1] did not like our rcpt to: 550 5.0.0 unknown", PhaseRcpt},
		{"550 5.1.1 user unknown", PhaseUnknown},
		{"data was sent after the connection", PhaseUnknown},
	}
	for _, tt := range tests {
		if got, _ := phaseOf(tt.text); got != tt.phase {
			t.Errorf("phaseOf(%q) = %q, want %q", tt.text, got, tt.phase)
		}
	}
}

// TestLocalisedNDRSubjects checks that Exchange's non-delivery reports in
// other languages are recognised by their subject alone.
func TestLocalisedNDRSubjects(t *testing.T) {
	for _, subj := range []string{"Unzustellbar: Hallo", "Non remis : Bonjour", "No se puede entregar: Hola",
		"Non recapitabile: Ciao", "Não é possível entregar: Olá", "Onbestelbaar: Hoi", "配信不能: こんにちは"} {
		msg := "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.example>\nTo: sender@example.org\nSubject: " + subj +
			"\nContent-Type: text/plain; charset=utf-8\n\nkeinpostfach@example.com\n550 5.1.1 RESOLVER.ADR.RecipNotFound; not found\n"
		rep, err := ParseBytes([]byte(msg))
		if err != nil || len(rep.Recipients) != 1 || rep.Recipients[0].Reason != UserUnknown {
			t.Errorf("subject %q: %+v, %v", subj, rep, err)
		}
	}
}
