package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"repute/metrics"
)

// SendLookup is what a store offers the ingest's correlation (the methods
// of ingest.SendLookup, which package metrics may not import).
type SendLookup interface {
	SendByRef(ctx context.Context, ref string) (metrics.Send, bool, error)
	SendByMessageID(ctx context.Context, messageID, recipient string) (metrics.Send, bool, error)
	SendByEnvID(ctx context.Context, envid, recipient string) (metrics.Send, bool, error)
}

// Leaser is what a store offers processes that share a resource (an IMAP
// mailbox) and take turns by a lease.
type Leaser interface {
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// evidenceStore is a store that keeps evidence.
type evidenceStore interface {
	metrics.EvidenceWriter
	metrics.EvidenceReader
}

func asEvidence(t *testing.T, st metrics.Store) evidenceStore {
	t.Helper()
	e, ok := st.(evidenceStore)
	if !ok {
		t.Skipf("%T keeps no evidence", st)
	}
	return e
}

func asSends(t *testing.T, st metrics.Store) SendLookup {
	t.Helper()
	l, ok := st.(SendLookup)
	if !ok {
		t.Skipf("%T has no send lookup", st)
	}
	return l
}

func asLeaser(t *testing.T, st metrics.Store) Leaser {
	t.Helper()
	l, ok := st.(Leaser)
	if !ok {
		t.Skipf("%T has no leases", st)
	}
	return l
}

func evidence(account, id string, stored time.Time, msg string) metrics.Evidence {
	return metrics.Evidence{ID: metrics.EvidenceID(id), Account: account, Stored: stored,
		Source: "imap", SourceRef: "INBOX/1/" + id, Size: len(msg), Truncated: len(msg) > 10,
		Data: metrics.EncodeEvidence([]byte(msg))}
}

func getEvidence(t *testing.T, st evidenceStore, account, id string) (metrics.Evidence, bool) {
	t.Helper()
	e, ok, err := st.Evidence(ctx(t), account, id)
	if err != nil {
		t.Fatalf("Evidence(%q, %s): %v", account, id, err)
	}
	return e, ok
}

func checkEvidence(t *testing.T, st evidenceStore, account string, want metrics.Evidence) {
	t.Helper()
	got, ok := getEvidence(t, st, account, want.ID)
	if !ok {
		t.Errorf("Evidence(%q, %s): not found", account, want.ID)
		return
	}
	if !got.Stored.Equal(want.Stored) {
		t.Errorf("Evidence(%q, %s).Stored = %v, want %v", account, want.ID, got.Stored, want.Stored)
	}
	if got.ID != want.ID || got.Account != want.Account || got.Source != want.Source ||
		got.SourceRef != want.SourceRef || got.Size != want.Size || got.Truncated != want.Truncated {
		t.Errorf("Evidence(%q, %s) =\n %+v\nwant %+v", account, want.ID, got, want)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("Evidence(%q, %s).Data: %d bytes differ from the %d stored", account, want.ID, len(got.Data), len(want.Data))
	}
}

func testEvidence(t *testing.T, s *suite) {
	st := asEvidence(t, s.open(t))
	a := evidence("acme", "r1", base, "Subject: bounce\r\n\r\nbody")
	b := evidence("other", "r1", base.Add(time.Hour), "Subject: another's\r\n\r\n\x00\xff binary")
	c := evidence("acme", "r2", base.Add(2*time.Hour), "x")
	if err := st.PutEvidence(ctx(t), []metrics.Evidence{a, b, c, a}); err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	checkEvidence(t, st, "acme", a)
	checkEvidence(t, st, "other", b)
	checkEvidence(t, st, "acme", c)
	if _, ok := getEvidence(t, st, "other", c.ID); ok {
		t.Errorf("Evidence(other, %s) found acme's evidence", c.ID)
	}
	if _, ok := getEvidence(t, st, "acme", metrics.EvidenceID("none")); ok {
		t.Errorf("Evidence of an id never stored found")
	}
	// The admin finds it under any account.
	if e, ok := getEvidence(t, st, "", c.ID); !ok || e.Account != "acme" {
		t.Errorf("Evidence(\"\", %s) = %+v, %v; want acme's", c.ID, e, ok)
	}
	// Storing again changes nothing, and is no error.
	again := a
	again.Stored, again.Data, again.Size = base.Add(5*time.Hour), metrics.EncodeEvidence([]byte("changed")), 7
	if err := st.PutEvidence(ctx(t), []metrics.Evidence{again}); err != nil {
		t.Fatalf("PutEvidence again: %v", err)
	}
	if err := st.PutEvidence(ctx(t), nil); err != nil {
		t.Fatalf("PutEvidence(nil): %v", err)
	}
	checkEvidence(t, st, "acme", a)
	st = asEvidence(t, s.reopen(t))
	checkEvidence(t, st, "other", b)
	if msg, err := a.Message(); err != nil || string(msg) != "Subject: bounce\r\n\r\nbody" {
		t.Errorf("Message() = %q, %v", msg, err)
	}
}

func testEvidencePurge(t *testing.T, s *suite) {
	st := asEvidence(t, s.open(t))
	old := evidence("acme", "old", base.Add(-40*24*time.Hour), "old")
	edge := evidence("acme", "edge", base.Add(-24*time.Hour), "edge")
	fresh := evidence("other", "new", base, "new")
	if err := st.PutEvidence(ctx(t), []metrics.Evidence{old, edge, fresh}); err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	n, err := st.PurgeEvidence(ctx(t), base.Add(-24*time.Hour))
	if err != nil {
		t.Fatalf("PurgeEvidence: %v", err)
	}
	if n != 1 && n != -1 {
		t.Errorf("PurgeEvidence = %d, want 1 (or -1: unknown)", n)
	}
	if _, ok := getEvidence(t, st, "acme", old.ID); ok {
		t.Errorf("evidence stored before the purge instant still found")
	}
	if _, ok := getEvidence(t, st, "", old.ID); ok {
		t.Errorf("evidence stored before the purge instant still found by the admin")
	}
	checkEvidence(t, st, "acme", edge)
	checkEvidence(t, st, "other", fresh)
	if n, err := st.PurgeEvidence(ctx(t), base.Add(-24*time.Hour)); err != nil || n > 0 {
		t.Errorf("PurgeEvidence again = %d, %v; want nothing to purge", n, err)
	}
}

// sendEvents are the sent events (and others) the lookups search.
func sendEvents(t *testing.T) []metrics.Event {
	return mkAll(t,
		ev{id: "s1", kind: metrics.KindSent, sourceRef: "abcdefghijklmnop", msg: "<m1@acme.test>",
			rcpt: "a@gmail.com", campaign: "c1", ip: "192.0.2.1"},
		// One message to two recipients, one reference each.
		ev{id: "s2", kind: metrics.KindSent, sourceRef: "qrstuvwxyz234567", msg: "m2@acme.test",
			rcpt: "b@gmail.com", campaign: "c2", ip: "192.0.2.2"},
		ev{id: "s3", kind: metrics.KindSent, at: time.Minute, sourceRef: "ENV-42", msg: "m2@acme.test",
			rcpt: "c@yahoo.com", campaign: "c2", ip: "192.0.2.2", account: "other", domain: "mail.other.test"},
		// The same envid to two recipients; and again later to one of them.
		ev{id: "s4", kind: metrics.KindSent, sourceRef: "env-7", msg: "<m4@acme.test>", rcpt: "d@gmail.com", campaign: "c4"},
		ev{id: "s5", kind: metrics.KindSent, sourceRef: "env-7", msg: "<m5@acme.test>", rcpt: "e@gmail.com", campaign: "c4"},
		ev{id: "s6", kind: metrics.KindSent, at: time.Hour, sourceRef: "env-7", msg: "<m6@acme.test>", rcpt: "d@gmail.com", campaign: "c6"},
		// Not sends: their source_ref and message_id are no send's.
		ev{id: "b1", kind: metrics.KindBounced, sourceRef: "zzzzzzzzzzzzzzzz", msg: "<m9@acme.test>", bounce: metrics.BounceHard},
		ev{id: "d1", kind: metrics.KindDelivered, sourceRef: "yyyy", msg: "<m8@acme.test>"},
	)
}

type lookup struct {
	what  string
	find  func(SendLookup) (metrics.Send, bool, error)
	found bool
	want  metrics.Send // when found
}

func send(account, domain, campaign, ip, msg, rcpt string) metrics.Send {
	return metrics.Send{Account: account, SenderDomain: domain, Campaign: campaign, SendingIP: ip,
		MessageID: msg, Recipient: rcpt}
}

func checkLookups(t *testing.T, l SendLookup, lookups []lookup) {
	t.Helper()
	for _, x := range lookups {
		got, ok, err := x.find(l)
		switch {
		case err != nil:
			t.Errorf("%s: %v", x.what, err)
		case ok != x.found:
			t.Errorf("%s: found %v (%+v), want %v", x.what, ok, got, x.found)
		case ok && got != x.want:
			t.Errorf("%s =\n %+v\nwant %+v", x.what, got, x.want)
		}
	}
}

func testSendLookup(t *testing.T, s *suite) {
	st := s.open(t)
	l := asSends(t, st)
	events := sendEvents(t)
	appendOK(t, st, events)
	appendOK(t, st, events[:2]) // repeats add nothing
	s1 := send("acme", "news.acme.test", "c1", "192.0.2.1", "<m1@acme.test>", "a@gmail.com")
	s2 := send("acme", "news.acme.test", "c2", "192.0.2.2", "m2@acme.test", "b@gmail.com")
	s3 := send("other", "mail.other.test", "c2", "192.0.2.2", "m2@acme.test", "c@yahoo.com")
	s5 := send("acme", "news.acme.test", "c4", "", "<m5@acme.test>", "e@gmail.com")
	s6 := send("acme", "news.acme.test", "c6", "", "<m6@acme.test>", "d@gmail.com")
	// A send's time is the sent event's.
	s1.Time, s2.Time, s3.Time, s5.Time, s6.Time = events[0].Time, events[1].Time, events[2].Time, events[4].Time, events[5].Time
	byRef := func(ref string) func(SendLookup) (metrics.Send, bool, error) {
		return func(l SendLookup) (metrics.Send, bool, error) { return l.SendByRef(ctx(t), ref) }
	}
	byMsg := func(id, rcpt string) func(SendLookup) (metrics.Send, bool, error) {
		return func(l SendLookup) (metrics.Send, bool, error) { return l.SendByMessageID(ctx(t), id, rcpt) }
	}
	byEnv := func(id, rcpt string) func(SendLookup) (metrics.Send, bool, error) {
		return func(l SendLookup) (metrics.Send, bool, error) { return l.SendByEnvID(ctx(t), id, rcpt) }
	}
	lookups := []lookup{
		{"SendByRef(abcdefghijklmnop)", byRef("abcdefghijklmnop"), true, s1},
		{"SendByRef(ABCDEFGHIJKLMNOP)", byRef("ABCDEFGHIJKLMNOP"), true, s1},
		{"SendByRef(qrstuvwxyz234567)", byRef("qrstuvwxyz234567"), true, s2},
		{"SendByRef(env-42): case-insensitive", byRef("env-42"), true, s3},
		{"SendByRef of a bounce's source_ref", byRef("zzzzzzzzzzzzzzzz"), false, metrics.Send{}},
		{"SendByRef(\"\")", byRef(""), false, metrics.Send{}},
		{"SendByRef(unknown)", byRef("aaaaaaaaaaaaaaaa"), false, metrics.Send{}},

		{"SendByMessageID(m1@acme.test, a@gmail.com)", byMsg("m1@acme.test", "a@gmail.com"), true, s1},
		{"SendByMessageID(<m1@acme.test>, any)", byMsg("<m1@acme.test>", ""), true, s1},
		{"SendByMessageID( <m1@acme.test> , any)", byMsg(" <m1@acme.test> ", ""), true, s1},
		{"SendByMessageID(m1@acme.test, another recipient)", byMsg("m1@acme.test", "b@gmail.com"), false, metrics.Send{}},
		{"SendByMessageID(<m2@acme.test>, b@gmail.com)", byMsg("<m2@acme.test>", "b@gmail.com"), true, s2},
		{"SendByMessageID(m2@acme.test, c@yahoo.com)", byMsg("m2@acme.test", "c@yahoo.com"), true, s3},
		{"SendByMessageID(m2@acme.test, any): the latest", byMsg("m2@acme.test", ""), true, s3},
		{"SendByMessageID of a bounce's message", byMsg("m9@acme.test", ""), false, metrics.Send{}},
		{"SendByMessageID(\"\")", byMsg("", ""), false, metrics.Send{}},
		{"SendByMessageID(<>)", byMsg("<>", ""), false, metrics.Send{}},

		{"SendByEnvID(ENV-42, c@yahoo.com)", byEnv("ENV-42", "c@yahoo.com"), true, s3},
		{"SendByEnvID(ENV-42, any)", byEnv("ENV-42", ""), true, s3},
		{"SendByEnvID(env-42): exact", byEnv("env-42", ""), false, metrics.Send{}},
		{"SendByEnvID(ENV-42, another recipient)", byEnv("ENV-42", "b@gmail.com"), false, metrics.Send{}},
		{"SendByEnvID(env-7, e@gmail.com)", byEnv("env-7", "e@gmail.com"), true, s5},
		{"SendByEnvID(env-7, d@gmail.com): the latest", byEnv("env-7", "d@gmail.com"), true, s6},
		{"SendByEnvID(env-7, any): the latest", byEnv("env-7", ""), true, s6},
		{"SendByEnvID(abcdefghijklmnop)", byEnv("abcdefghijklmnop", "a@gmail.com"), true, s1},
		{"SendByEnvID(\"\")", byEnv("", ""), false, metrics.Send{}},
	}
	checkLookups(t, l, lookups)
	l = asSends(t, s.reopen(t))
	checkLookups(t, l, lookups[:1])
}

func tryLease(t *testing.T, l Leaser, name, holder string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := l.TryLease(ctx(t), name, holder, ttl)
	if err != nil {
		t.Fatalf("TryLease(%s, %s): %v", name, holder, err)
	}
	if got != want {
		t.Errorf("TryLease(%s, %s) = %v, want %v", name, holder, got, want)
	}
}

func testLeases(t *testing.T, s *suite) {
	l := asLeaser(t, s.open(t))
	const long = time.Hour
	tryLease(t, l, "imap:inbox", "node-a", long, true)  // free
	tryLease(t, l, "imap:inbox", "node-b", long, false) // a's, valid
	tryLease(t, l, "imap:inbox", "node-a", long, true)  // renewed
	tryLease(t, l, "imap:other", "node-b", long, true)  // another lease
	tryLease(t, l, "imap:inbox", "node-b", long, false)
	if err := l.ReleaseLease(ctx(t), "imap:inbox", "node-b"); err != nil { // not b's: nothing
		t.Fatalf("ReleaseLease: %v", err)
	}
	tryLease(t, l, "imap:inbox", "node-b", long, false)
	if err := l.ReleaseLease(ctx(t), "imap:inbox", "node-a"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	tryLease(t, l, "imap:inbox", "node-b", long, true) // released: b takes it
	tryLease(t, l, "imap:inbox", "node-a", long, false)
	l = asLeaser(t, s.reopen(t))
	tryLease(t, l, "imap:inbox", "node-a", long, false) // held across a restart
	tryLease(t, l, "imap:other", "node-b", long, true)
}

func testLeaseExpiry(t *testing.T, s *suite) {
	l := asLeaser(t, s.open(t))
	tryLease(t, l, "rules", "node-a", time.Second, true)
	tryLease(t, l, "rules", "node-b", time.Second, false)
	// Renewing extends the lease from now.
	time.Sleep(600 * time.Millisecond)
	tryLease(t, l, "rules", "node-a", time.Second, true)
	time.Sleep(600 * time.Millisecond)
	tryLease(t, l, "rules", "node-b", time.Second, false)
	time.Sleep(1200 * time.Millisecond)
	tryLease(t, l, "rules", "node-b", time.Second, true) // expired: taken over
	tryLease(t, l, "rules", "node-a", time.Second, false)
}
