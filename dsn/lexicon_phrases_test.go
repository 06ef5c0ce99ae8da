package dsn_test

import (
	"testing"

	"repute/dsn"
)

// TestLexiconPhrases checks the built-in lexicon against replies written
// the way each server family words them (not copied from the corpus),
// with the codes they send and the phase they answer.
func TestLexiconPhrases(t *testing.T) {
	const (
		rcpt    = dsn.PhaseRcpt
		mail    = dsn.PhaseMail
		conn    = dsn.PhaseConnect
		helo    = dsn.PhaseHelo
		eod     = dsn.PhaseEndOfData
		unknown = dsn.PhaseUnknown
	)
	tests := []struct {
		code     int
		enhanced string
		text     string
		phase    dsn.Phase
		want     dsn.Reason
		hard     bool
	}{
		// userunknown
		{550, "", "<bob@example.org>: Recipient address rejected: User unknown in local recipient table", rcpt, dsn.UserUnknown, true},
		{550, "", "Sorry, no mailbox here by that name. (#5.1.1)", rcpt, dsn.UserUnknown, true},
		{550, "5.5.0", "Requested action not taken: mailbox unavailable", rcpt, dsn.UserUnknown, true},
		{550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281)", rcpt, dsn.UserUnknown, true},
		{550, "", "Invalid recipient", rcpt, dsn.UserUnknown, true},
		{550, "", "Mailbox nicht gefunden", rcpt, dsn.UserUnknown, true},
		{550, "", "adresse inconnue / utilisateur inconnu", rcpt, dsn.UserUnknown, true},
		{550, "", "Message was not accepted -- нет такого пользователя", rcpt, dsn.UserUnknown, true},
		{550, "", "Mailbox not found or access denied", rcpt, dsn.UserUnknown, true},
		{550, "", "用户不存在", rcpt, dsn.UserUnknown, true},
		// hostunknown
		{550, "", "<bob@nx.example>: Recipient address rejected: Domain not found", rcpt, dsn.HostUnknown, true},
		{0, "", "Host or domain name not found. Name service error for name=nx.example type=A: Host not found", unknown, dsn.HostUnknown, true},
		{550, "", "Unrouteable mail domain", rcpt, dsn.HostUnknown, true},
		{550, "", "Host unknown (Name server: mx.nx.example: host not found)", unknown, dsn.HostUnknown, true},
		// Gmail's own DNS failure is no verdict on the domain.
		{0, "", "DNS Error: Domain name not found", unknown, dsn.NetworkError, false},
		{517, "", "Domain does not exist: nx.example", rcpt, dsn.HostUnknown, true},
		// hasmoved
		{551, "", "User has moved; please try <bob@new.example>", rcpt, dsn.HasMoved, true},
		{550, "", "This address has changed, please use bob@new.example", rcpt, dsn.HasMoved, true},
		{550, "", "Bob is no longer with the company", rcpt, dsn.HasMoved, true},
		{551, "", "Destination mailbox has moved, no forwarding address", rcpt, dsn.HasMoved, true},
		{550, "", "<bob@example.org>: Recipient has moved", unknown, dsn.HasMoved, true},
		// notaccept
		{556, "5.1.10", "Domain example.org does not accept mail (nullMX)", rcpt, dsn.NotAccept, true},
		{0, "", "Host unknown (Name server: .: host not found)", unknown, dsn.NotAccept, false},
		{554, "", "No MX found for domain", unknown, dsn.NotAccept, true},
		{550, "", "all relevant MX records point to non-existent hosts", unknown, dsn.NotAccept, true},
		{550, "", "this domain accepts no mail", rcpt, dsn.NotAccept, true},
		// mailboxfull
		{452, "4.2.2", "The email account that you tried to reach is over quota.", rcpt, dsn.MailboxFull, false},
		{552, "", "Mailbox is full / Blocks limit exceeded / Inode limit exceeded", rcpt, dsn.MailboxFull, false},
		{0, "", "Command died with status 75: \"/usr/lib/dovecot/deliver\". Command output: Quota exceeded (mailbox for user is full)", unknown, dsn.MailboxFull, false},
		{550, "", "Postfach voll", rcpt, dsn.MailboxFull, false},
		{552, "", "boîte pleine", rcpt, dsn.MailboxFull, false},
		{550, "", "Сообщение не доставлено: ящик переполнен", rcpt, dsn.MailboxFull, false},
		{552, "", "邮箱空间不足", rcpt, dsn.MailboxFull, false},
		// exceedlimit
		{550, "5.2.3", "RESOLVER.RST.RecipSizeLimit; message too large for this recipient", unknown, dsn.ExceedLimit, false},
		{552, "", "Message exceeds the size limit for this recipient", rcpt, dsn.ExceedLimit, false},
		{552, "", "message too large for this recipient's mailbox", eod, dsn.ExceedLimit, false},
		{552, "", "RecipSizeLimit exceeded", unknown, dsn.ExceedLimit, false},
		{552, "", "The message exceeds the recipient's size limit", eod, dsn.ExceedLimit, false},
		// mesgtoobig
		{552, "", "Message size exceeds fixed limit", eod, dsn.MesgTooBig, false},
		{552, "", "Message is too large; 10485760 bytes max", eod, dsn.MesgTooBig, false},
		{552, "", "Message size exceeds maximum permitted", eod, dsn.MesgTooBig, false},
		{554, "", "Transaction failed, message too big", eod, dsn.MesgTooBig, false},
		{552, "", "Your message exceeded Google's message size limits", eod, dsn.MesgTooBig, false},
		// suspend
		{550, "5.2.1", "The email account that you tried to reach is disabled.", rcpt, dsn.Suspend, false},
		{550, "", "Mailbox disabled for this recipient", rcpt, dsn.Suspend, false},
		{550, "", "This mailbox has been suspended", rcpt, dsn.Suspend, false},
		{550, "", "Recipient mailbox is inactive", rcpt, dsn.Suspend, false},
		{550, "", "Account has been locked", rcpt, dsn.Suspend, false},
		{550, "", "ящик заблокирован", rcpt, dsn.Suspend, false},
		// filtered
		{550, "", "Message refused by the recipient's filter", rcpt, dsn.Filtered, false},
		{554, "", "Message filtered", eod, dsn.Filtered, false},
		{550, "", "受信拒否", rcpt, dsn.Filtered, false},
		{550, "5.1.1", "refused due to recipient preferences", rcpt, dsn.Filtered, false},
		{550, "", "User unknown", eod, dsn.Filtered, false},
		// rejected
		{550, "", "<x@nx.example>: Sender address rejected: Domain not found", mail, dsn.Rejected, false},
		{550, "", "Sender verify failed", rcpt, dsn.Rejected, false},
		{553, "", "Sender address rejected: not owned by user bob", mail, dsn.Rejected, false},
		{517, "", "Sender rejected: no such domain", mail, dsn.Rejected, false},
		{550, "5.7.1", "Messages missing a valid address in From: header, or having no From: header, are not accepted.", eod, dsn.Rejected, false},
		// blocked
		{554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", rcpt, dsn.Blocked, false},
		{550, "5.7.1", "<bob@example.org>: Recipient address rejected: IP 192.0.2.1 listed at zen.spamhaus.org", rcpt, dsn.Blocked, false},
		{550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]", conn, dsn.Blocked, false},
		{550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. (S3140)", rcpt, dsn.Blocked, false},
		{550, "5.7.1", "The IP you're using to send mail is not authorized to send email directly to our servers.", rcpt, dsn.Blocked, false},
		{553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list", conn, dsn.Blocked, false},
		{504, "5.5.2", "<localhost>: Helo command rejected: need fully-qualified hostname", helo, dsn.Blocked, false},
		{554, "", "resimta-ch2-01v.sys.comcast.net resimta comcast block for spam", conn, dsn.Blocked, false},
		{550, "5.7.708", "Access denied, traffic not accepted from this IP", conn, dsn.Blocked, false},
		// badreputation
		{550, "5.7.1", "Our system has detected that this message is likely suspicious due to the very low reputation of the sending IP address.", eod, dsn.BadReputation, false},
		{421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail originating from your IP address.", eod, dsn.BadReputation, false},
		{421, "4.7.0", "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints", conn, dsn.BadReputation, false},
		{451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", rcpt, dsn.BadReputation, false},
		{554, "", "Rejected due to poor reputation of the sending domain", eod, dsn.BadReputation, false},
		// requireptr
		{450, "4.7.1", "Client host rejected: cannot find your hostname, [192.0.2.1]", rcpt, dsn.RequirePTR, false},
		{450, "4.7.1", "Client host rejected: cannot find your reverse hostname, [192.0.2.1]", conn, dsn.RequirePTR, false},
		{550, "", "The sending IP does not have a PTR record", conn, dsn.RequirePTR, false},
		{550, "5.7.1", "The IP address sending this message does not have a PTR record setup", eod, dsn.RequirePTR, false},
		{550, "", "no host name found for IP address 192.0.2.1", conn, dsn.RequirePTR, false},
		// authfailure
		{550, "5.7.1", "Unauthenticated email from example.com is not accepted due to domain's DMARC policy.", eod, dsn.AuthFailure, false},
		{550, "5.7.515", "Access denied, sending domain example.com does not meet the required authentication level.", eod, dsn.AuthFailure, false},
		{550, "5.7.1", "SPF check failed: example.com does not designate 192.0.2.1 as permitted sender", mail, dsn.AuthFailure, false},
		{550, "", "This message does not have authentication information or fails to pass authentication checks.", eod, dsn.AuthFailure, false},
		{554, "", "DKIM signature verification failed", eod, dsn.AuthFailure, false},
		// spamdetected
		{550, "5.7.1", "Our system has detected that this message is likely unsolicited mail.", eod, dsn.SpamDetected, false},
		{554, "", "Message rejected as spam by Content Filtering", eod, dsn.SpamDetected, false},
		{550, "", "Mail content denied. http://service.mail.qq.com", eod, dsn.SpamDetected, false},
		{554, "", "DT:SPM 163 mx14, content rejected", eod, dsn.SpamDetected, false},
		{554, "", "Message contains a blacklisted URL", eod, dsn.SpamDetected, false},
		// virusdetected
		{554, "", "This message contains a virus (Eicar-Test-Signature)", eod, dsn.VirusDetected, false},
		{550, "", "Message rejected: malware detected", eod, dsn.VirusDetected, false},
		{554, "", "Infected: Win.Trojan.Agent", eod, dsn.VirusDetected, false},
		{550, "", "Message contains a dangerous attachment", eod, dsn.VirusDetected, false},
		{552, "", "Executable attachment not allowed", eod, dsn.VirusDetected, false},
		// policyviolation
		{554, "5.7.9", "Message not accepted for policy reasons.", eod, dsn.PolicyViolation, false},
		{550, "", "Rejected due to local policy", eod, dsn.PolicyViolation, false},
		{554, "", "This message violates our policy", eod, dsn.PolicyViolation, false},
		{550, "", "Message rejected: Acceptable Use Policy violation", eod, dsn.PolicyViolation, false},
		{554, "", "Attachments of this type are prohibited", eod, dsn.PolicyViolation, false},
		// contenterror
		{552, "", "Headers too large (32768 max)", eod, dsn.ContentError, false},
		{550, "", "Message MIME complexity exceeds the policy maximum", eod, dsn.ContentError, false},
		{554, "", "Illegal character in header", eod, dsn.ContentError, false},
		{550, "", "maximum allowed line length is 998 octets, got 1200 (lines too long)", eod, dsn.ContentError, false},
		{554, "", "Cannot send 8-bit data to 7-bit destination", eod, dsn.ContentError, false},
		// notcompliantrfc
		{550, "5.7.1", "This message is not RFC 5322 compliant. There are multiple Subject headers.", eod, dsn.NotCompliantRFC, false},
		{550, "", "Message is not RFC 2822 compliant", eod, dsn.NotCompliantRFC, false},
		{554, "", "Duplicate header: From", eod, dsn.NotCompliantRFC, false},
		{550, "", "multiple addresses in From: header are not accepted", eod, dsn.NotCompliantRFC, false},
		{550, "", "Message does not comply with RFC 822", eod, dsn.NotCompliantRFC, false},
		// securityerror
		{530, "5.7.0", "Authentication required", mail, dsn.SecurityError, false},
		{535, "5.7.8", "Authentication credentials invalid", unknown, dsn.SecurityError, false},
		{550, "5.7.57", "Client not authenticated to send mail", mail, dsn.SecurityError, false},
		{550, "", "RESOLVER.RST.AuthRequired; authentication required", unknown, dsn.SecurityError, false},
		{554, "", "Please turn on SMTP Authentication in your mail client", rcpt, dsn.SecurityError, false},
		// failedstarttls
		{530, "5.7.0", "Must issue a STARTTLS command first", mail, dsn.FailedSTARTTLS, false},
		{0, "", "TLS is required, but was not offered by host mx.example.org", unknown, dsn.FailedSTARTTLS, false},
		{440, "", "TLS not available, but it's required for this connection.", conn, dsn.FailedSTARTTLS, false},
		{554, "", "Encryption required for requested authentication mechanism", mail, dsn.FailedSTARTTLS, false},
		{0, "", "remote delivery deferred: STARTTLS not available", unknown, dsn.FailedSTARTTLS, false},
		// norelaying
		{554, "5.7.1", "<bob@example.org>: Relay access denied", rcpt, dsn.NoRelaying, false},
		{550, "", "relay not permitted", rcpt, dsn.NoRelaying, false},
		{553, "", "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", rcpt, dsn.NoRelaying, false},
		{550, "5.7.1", "Unable to relay for bob@example.org", rcpt, dsn.NoRelaying, false},
		{550, "5.7.1", "<bob@example.org>... Relaying denied", rcpt, dsn.NoRelaying, false},
		// toomanyconn
		{421, "4.7.0", "mx.example.org Error: too many connections from 192.0.2.1", conn, dsn.TooManyConn, false},
		{421, "", "Too many concurrent SMTP connections from this IP address; please try again later.", conn, dsn.TooManyConn, false},
		{450, "4.7.1", "Connection concurrency limit exceeded: 51 from 192.0.2.1 for service smtp", conn, dsn.TooManyConn, false},
		{421, "", "Connection frequency limited. http://service.mail.qq.com", mail, dsn.TooManyConn, false},
		{421, "", "too many messages in this connection", mail, dsn.TooManyConn, false},
		// speeding
		{421, "4.7.28", "Our system has detected an unusual rate of mail from your IP; mail sent from your IP address has been temporarily rate limited.", mail, dsn.Speeding, false},
		{450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.", rcpt, dsn.Speeding, false},
		{550, "5.4.5", "Daily user sending quota exceeded.", mail, dsn.Speeding, false},
		{450, "4.7.1", "Message delivery request rate limit exceeded: 101 from 192.0.2.1", mail, dsn.Speeding, false},
		{452, "", "Too many messages per hour from this sender, slow down", mail, dsn.Speeding, false},
		{450, "4.2.121", "Recipient's hourly message receive limit from specific sender exceeded.", rcpt, dsn.Speeding, false},
		// expired
		{0, "", "retry timeout exceeded", unknown, dsn.Expired, false},
		{0, "", "Envelope expired", unknown, dsn.Expired, false},
		{550, "4.4.7", "QUEUE.Expired; message expired", unknown, dsn.Expired, false},
		{0, "", "Deferred: Connection timed out with mx.example.org. Message could not be delivered for 5 days", unknown, dsn.Expired, false},
		{0, "", "I'm not going to try again; this message has been in the queue too long.", unknown, dsn.Expired, false},
		// networkerror
		{0, "", "connect to mx.example.org[192.0.2.1]:25: Connection refused", unknown, dsn.NetworkError, false},
		{0, "", "lost connection with mx.example.org[192.0.2.1] while receiving the initial server greeting", unknown, dsn.NetworkError, false},
		{0, "", "mail for example.org loops back to myself", unknown, dsn.NetworkError, false},
		{0, "", "Host not found, try again", unknown, dsn.NetworkError, false},
		{0, "", "Network error on destination MXs", unknown, dsn.NetworkError, false},
		// systemerror
		{451, "4.3.5", "Server configuration problem", rcpt, dsn.SystemError, false},
		{554, "5.3.5", "Local configuration error", unknown, dsn.SystemError, false},
		{421, "", "Temporary failure", conn, dsn.SystemError, false},
		{451, "", "Internal server error, please try again later", rcpt, dsn.SystemError, false},
		{450, "", "Unable to contact LDAP server", rcpt, dsn.SystemError, false},
		// systemfull
		{452, "4.3.1", "Insufficient system storage", rcpt, dsn.SystemFull, false},
		{452, "4.4.5", "Insufficient disk space; try again later", mail, dsn.SystemFull, false},
		{431, "", "Mail system full.", rcpt, dsn.SystemFull, false},
		{452, "", "Error: queue full", rcpt, dsn.SystemFull, false},
		{452, "", "not enough free space in mail queue", mail, dsn.SystemFull, false},
		// mailererror
		{0, "", "Command died with status 1: \"/usr/bin/procmail\"", unknown, dsn.MailerError, false},
		{0, "", "Child process of local_delivery transport returned 127 (could mean unable to exec or command does not exist)", unknown, dsn.MailerError, false},
		{554, "5.3.0", "unknown mailer error 1", unknown, dsn.MailerError, false},
		{0, "", "Unable to run qmail-local", unknown, dsn.MailerError, false},
		{0, "", "mailer error: exit code 75", unknown, dsn.MailerError, false},
		// syntaxerror
		{500, "5.5.1", "Command unrecognized: \"XFOO\"", unknown, dsn.SyntaxError, false},
		{502, "5.5.2", "Error: command not recognized", unknown, dsn.SyntaxError, false},
		{501, "", "Syntax error in parameters or arguments", mail, dsn.SyntaxError, false},
		{503, "5.5.1", "Bad sequence of commands", unknown, dsn.SyntaxError, false},
		{502, "", "ESMTP command error", unknown, dsn.SyntaxError, false},
		// suppressed
		{0, "", "Amazon SES did not send the message to this address because it is on the suppression list for your account.", unknown, dsn.Suppressed, false},
		{0, "", "Not delivering to previously bounced address", unknown, dsn.Suppressed, false},
		{0, "", "You tried to send to a recipient that has been marked as inactive.", unknown, dsn.Suppressed, false},
		{0, "", "Recipient address was suppressed due to customer policy", unknown, dsn.Suppressed, false},
		{0, "", "Address is on the account-level suppression list", unknown, dsn.Suppressed, false},
		// onhold: a reply nothing recognises
		{0, "", "host mx.example.org said: 550 Please contact your administrator", unknown, dsn.OnHold, false},
		{0, "", "host mx.example.org said: 554 5.0.0 Transaction rejected, see https://example.org/help", unknown, dsn.OnHold, false},
		{0, "", "host mx.example.org said: 550 Requested action not taken: command rejected", unknown, dsn.OnHold, false},
		{0, "", "host mx.example.org said: 550 #5.0.0 x-filter verdict 3", unknown, dsn.OnHold, false},
		{0, "", "host mx.example.org said: 554 Requested action aborted", unknown, dsn.OnHold, false},
		// The standard texts of 421 and 451 (RFC 5321 §4.2.3): the
		// remote system, whatever the words.
		{0, "", "host mx.example.org said: 421 Service not available, closing transmission channel", unknown, dsn.SystemError, false},
		{0, "", "host mx.example.org said: 451 Requested action aborted: local error in processing", unknown, dsn.SystemError, false},
		{451, "", "Requested action aborted", unknown, dsn.SystemError, false},
		// Words that name no cause: on hold.
		{0, "", "Delivery failed", unknown, dsn.OnHold, false},
		{0, "", "The message could not be delivered", unknown, dsn.OnHold, false},
		{0, "", "See the attached message", unknown, dsn.OnHold, false},
		{0, "", "Unexpected condition", unknown, dsn.OnHold, false},
		// undefined: nothing to go on but codes and addresses
		{0, "", "", unknown, dsn.Undefined, false},
		{0, "", "<a@example.com>", unknown, dsn.Undefined, false},
		{0, "", "550 <a@example.com>", unknown, dsn.Undefined, false},
		{0, "5.0.0", "", unknown, dsn.Undefined, false},
		// Traps: word boundaries and sender-side refusals that must not
		// blocklist a good recipient.
		{554, "", "Message links to youtube.com were removed by the gateway; see the relationship is terminated", eod, dsn.OnHold, false},
		{550, "5.7.1", "<bob@example.org>: Recipient address rejected: Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org", rcpt, dsn.Blocked, false},
		{550, "5.7.1", "user unknown: IP 192.0.2.1 is listed on b.barracudacentral.org", rcpt, dsn.Blocked, false},
		{550, "", "Message from youtube.com refused by the gateway", eod, dsn.Filtered, false},
	}
	for _, tt := range tests {
		got, hard := dsn.ClassifyReply(tt.code, tt.enhanced, tt.text, tt.phase)
		if got != tt.want {
			t.Errorf("ClassifyReply(%d, %q, %q, %q) = %q, want %q", tt.code, tt.enhanced, tt.text, tt.phase, got, tt.want)
			continue
		}
		if hard != tt.hard {
			t.Errorf("ClassifyReply(%d, %q, %q, %q) hard = %v, want %v", tt.code, tt.enhanced, tt.text, tt.phase, hard, tt.hard)
		}
	}
}
