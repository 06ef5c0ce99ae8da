package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/api"
	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// memEvidence keeps evidence in memory, for a store that does not yet.
type memEvidence struct {
	mu  sync.Mutex
	all map[[2]string]metrics.Evidence
}

func (m *memEvidence) PutEvidence(_ context.Context, ev []metrics.Evidence) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.all == nil {
		m.all = map[[2]string]metrics.Evidence{}
	}
	for _, e := range ev {
		if _, ok := m.all[[2]string{e.Account, e.ID}]; !ok {
			m.all[[2]string{e.Account, e.ID}] = e
		}
	}
	return nil
}

func (m *memEvidence) PurgeEvidence(context.Context, time.Time) (int64, error) { return -1, nil }

func (m *memEvidence) Evidence(_ context.Context, account, id string) (metrics.Evidence, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.all {
		if k[1] == id && (account == "" || k[0] == account) {
			return e, true, nil
		}
	}
	return metrics.Evidence{}, false, nil
}

// storedEvidence returns the evidence the store at data holds for each
// report among raws, by the id the Processor gives it.
func storedEvidence(t *testing.T, data string, raws ...[]byte) []metrics.Evidence {
	t.Helper()
	conv, err := ingest.NewConverter(ingest.Options{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p := ingest.NewProcessor(conv, 0, nil)
	st, err := openStore(context.Background(), serveConfig{Data: data}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []metrics.Evidence
	for i, raw := range raws {
		rep, err := p.Process(context.Background(), raw, ingest.Source{Name: ingest.SourceFile, Time: time.Now()})
		if err != nil || len(rep.Evidence) == 0 {
			t.Fatalf("report %d: no evidence to look for (%v)", i, err)
		}
		ev, ok, err := st.Evidence(context.Background(), "acme", rep.Evidence[0].ID)
		if err != nil || !ok {
			t.Errorf("report %d: evidence %s not stored (%v)", i, rep.Evidence[0].ID, err)
			continue
		}
		out = append(out, ev)
	}
	return out
}

// reportsOfTree reads the six reports ingestTree wrote, as repute ingest
// reads them.
func reportsOfTree(t *testing.T, tree string) [][]byte {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(tree, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raws := [][]byte{read("in/bounce.eml"), read("in/complaint.eml"), read("md/new/1.host"), read("md/cur/2.host:2,S")}
	return append(raws, ingest.SplitMbox(read("in/two.mbox"))...)
}

func corpus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "bounces", "maildir", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ingestTree writes the test inputs: two files, an mbox of two, a maildir
// of two (with a tmp/ file and an index file that are not read) and,
// with garbage, a file that is no message.
func ingestTree(t *testing.T, garbage bool) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("in/bounce.eml", corpus(t, "bsd/lhost-amavis-01.eml"))
	write("in/complaint.eml", corpus(t, "bsd/arf-14.eml"))
	write("in/not-a-bounce.eml", corpus(t, "not/is-not-bounce-01.eml"))
	var mbox bytes.Buffer
	for _, f := range []string{"bsd/lhost-courier-02.eml", "bsd/lhost-activehunter-01.eml"} {
		mbox.WriteString("From MAILER-DAEMON Thu Jan  1 00:00:00 2015\n")
		mbox.Write(corpus(t, f))
		mbox.WriteString("\n")
	}
	write("in/two.mbox", mbox.Bytes())
	write("md/new/1.host", corpus(t, "bsd/lhost-amazonses-01.eml"))
	write("md/cur/2.host:2,S", corpus(t, "bsd/lhost-barracuda-02.eml"))
	write("md/tmp/3.host", []byte("\x00half delivered"))
	write("md/dovecot-uidlist", []byte("3 V1 N4\n"))
	if garbage {
		write("in/garbage.bin", []byte("\x00\x01\x02 not mail\n"))
	}
	return dir
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runMain(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const wantEvents = "events: 6 (bounced 5, deferred 0, delivered 0, complained 1, unsubscribed 0; 0 already stored)\n"

func TestIngestLocal(t *testing.T) {
	tree := ingestTree(t, true)
	data := filepath.Join(tree, "data")
	code, out, errOut := runCmd(t, "ingest", "--data", data, "--account", "acme",
		filepath.Join(tree, "in"), filepath.Join(tree, "md"))
	if code != 1 {
		t.Errorf("exit %d, want 1 (the garbage is quarantined); stderr: %s", code, errOut)
	}
	for _, want := range []string{"read: 8 messages\n", wantEvents, "ignored: 1 ",
		"quarantined: 1\n  1: not an email message (no header fields)\n    " + filepath.Join(tree, "in", "garbage.bin") + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	evidence := storedEvidence(t, data, reportsOfTree(t, tree)...)
	// The events are in the store when the command returns.
	st, err := openStore(context.Background(), serveConfig{Data: data}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Stats(context.Background(), metrics.StatsQuery{Account: "acme",
		From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Now().Add(time.Hour)})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Totals.BouncedHard + res.Totals.BouncedSoft + res.Totals.Complained; got != 6 {
		t.Errorf("store totals %+v: want 6 events", res.Totals)
	}
	// The mbox's messages are told apart in source_ref; files are untouched.
	var refs []string
	for _, e := range evidence {
		refs = append(refs, e.SourceRef)
	}
	if !slicesContainsSuffix(refs, "two.mbox#2") || !slicesContainsSuffix(refs, filepath.Join("md", "cur", "2.host:2,S")) {
		t.Errorf("source refs %v", refs)
	}
	if _, err := os.Stat(filepath.Join(tree, "md", "new", "1.host")); err != nil {
		t.Errorf("maildir file: %v", err)
	}

	// Again, without the garbage: everything is a duplicate, exit 0.
	os.Remove(filepath.Join(tree, "in", "garbage.bin"))
	code, out, errOut = runCmd(t, "ingest", "--data", data, "--account", "acme", filepath.Join(tree, "in"), filepath.Join(tree, "md"))
	if code != 0 || !strings.Contains(out, "; 6 already stored)") || !strings.Contains(out, "quarantined: 0\n") {
		t.Errorf("second run: exit %d:\n%s%s", code, out, errOut)
	}

	// repute evidence prints a stored report.
	id := evidence[0].ID // in/bounce.eml
	code, out, errOut = runCmd(t, "evidence", "--data", data, id)
	if code != 0 || out != string(corpus(t, "bsd/lhost-amavis-01.eml")) {
		t.Errorf("evidence: exit %d, %d bytes: %s", code, len(out), errOut)
	}
	code, out, _ = runCmd(t, "evidence", "--data", data, "--json", id)
	if code != 0 || !strings.Contains(out, `"id":"`+id+`"`) || !strings.Contains(out, `"account":"acme"`) {
		t.Errorf("evidence --json: exit %d: %s", code, out)
	}
	code, _, errOut = runCmd(t, "evidence", "--data", data, strings.Repeat("0", 32))
	if code != 1 || !strings.Contains(errOut, "no evidence") {
		t.Errorf("unknown evidence: exit %d: %s", code, errOut)
	}
	code, _, _ = runCmd(t, "evidence", "--data", data, "nope")
	if code != 2 {
		t.Errorf("bad id: exit %d", code)
	}
}

func slicesContainsSuffix(ss []string, suffix string) bool {
	for _, s := range ss {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

func TestIngestUnattributedWithoutAccount(t *testing.T) {
	tree := ingestTree(t, false)
	code, out, errOut := runCmd(t, "ingest", "--data", filepath.Join(tree, "data"), filepath.Join(tree, "in", "bounce.eml"))
	if code != 1 || !strings.Contains(out, "quarantined: 1\n  1: matches no send, and no --account is given") {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
}

func TestIngestUsage(t *testing.T) {
	for _, args := range [][]string{{"ingest"}, {"ingest", "--server", "http://x"}, {"ingest", "--bogus", "x"}} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	code, out, _ := runCmd(t, "ingest", "--help")
	if code != 0 || !strings.Contains(out, "Usage: repute ingest") || !strings.Contains(out, "-account") {
		t.Errorf("help: exit %d: %s", code, out)
	}
}

// recordingSubmitter keeps what is submitted.
type recordingSubmitter struct {
	mu     sync.Mutex
	events []metrics.Event
}

func (r *recordingSubmitter) Submit(_ context.Context, events []metrics.Event) (intake.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
	return intake.Result{}, nil
}

func TestIngestServer(t *testing.T) {
	sends, ev := &ingest.MemorySends{}, &memEvidence{}
	f, err := newProcessorFactory(defaultServeConfig(), sends, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := api.NewKeys("admin-key", []api.AccountKeys{{Name: "acme", Keys: []string{api.HashKey("acme-key")}}})
	if err != nil {
		t.Fatal(err)
	}
	sub := &recordingSubmitter{}
	h, err := api.NewHandler(api.Options{Keys: keys, Submitter: sub, Stats: noStats{}, Feedback: f.feedbackFunc(),
		Evidence: ev, EvidenceReader: ev})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	tree := ingestTree(t, true)
	code, out, errOut := runCmd(t, "ingest", "--server", srv.URL, "--key", "acme-key", filepath.Join(tree, "in"), filepath.Join(tree, "md"))
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr: %s", code, errOut)
	}
	for _, want := range []string{"read: 8 messages\n", wantEvents, "ignored: 1 ", "quarantined: 1\n  1: not an email message"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if len(sub.events) != 6 || len(ev.all) != 6 {
		t.Errorf("%d events, %d evidence", len(sub.events), len(ev.all))
	}
	// The admin key without --account: unmatched reports are refused.
	code, out, _ = runCmd(t, "ingest", "--server", srv.URL, "--key", "admin-key", filepath.Join(tree, "in", "bounce.eml"))
	if code != 1 || !regexp.MustCompile(`1: 400 Bad Request: the report matches no send`).MatchString(out) {
		t.Errorf("admin without account: exit %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "ingest", "--server", srv.URL, "--key", "admin-key", "--account", "acme", filepath.Join(tree, "in", "bounce.eml"))
	if code != 0 || !strings.Contains(out, "bounced 1") {
		t.Errorf("admin with account: exit %d:\n%s", code, out)
	}
	// A wrong key stops the run.
	code, _, errOut = runCmd(t, "ingest", "--server", srv.URL, "--key", "wrong", filepath.Join(tree, "in", "bounce.eml"))
	if code != 1 || !strings.Contains(errOut, "bearer key") {
		t.Errorf("wrong key: exit %d: %s", code, errOut)
	}

	// repute evidence --server.
	var id string
	for k := range ev.all {
		id = k[1]
	}
	code, out, errOut = runCmd(t, "evidence", "--server", srv.URL, "--key", "acme-key", id)
	if code != 0 || !strings.Contains(out, "Subject:") {
		t.Errorf("evidence --server: exit %d: %s %s", code, out, errOut)
	}
	code, _, errOut = runCmd(t, "evidence", "--server", srv.URL, "--key", "acme-key", strings.Repeat("0", 32))
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("evidence --server, unknown: exit %d: %s", code, errOut)
	}
}

type noStats struct{}

func (noStats) Stats(context.Context, metrics.StatsQuery) (*metrics.StatsResult, error) {
	return &metrics.StatsResult{}, nil
}
