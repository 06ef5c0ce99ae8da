package imap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// recorder is an in-memory Submitter and EvidenceWriter: it records what
// it is given, checks that every submitted event's evidence was stored
// first, and can fail its first Submits.
type recorder struct {
	mu         sync.Mutex
	evidence   map[string]bool // account + "/" + id
	events     []metrics.Event
	submits    int
	failSubmit int // the first failSubmit Submits fail
	violations []string
	onSubmit   func([]metrics.Event)
}

func newRecorder() *recorder { return &recorder{evidence: map[string]bool{}} }

func (r *recorder) PutEvidence(_ context.Context, ev []metrics.Evidence) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range ev {
		r.evidence[e.Account+"/"+e.ID] = true
	}
	return nil
}

var errStoreDown = errors.New("test: store down")

func (r *recorder) Submit(_ context.Context, events []metrics.Event) (intake.Result, error) {
	r.mu.Lock()
	r.submits++
	if r.submits <= r.failSubmit {
		r.mu.Unlock()
		return intake.Result{}, errStoreDown
	}
	for _, e := range events {
		if !r.evidence[e.Account+"/"+e.EvidenceID] {
			r.violations = append(r.violations, "event "+e.EventID+" submitted before its evidence "+e.EvidenceID)
		}
	}
	r.events = append(r.events, events...)
	f := r.onSubmit
	r.mu.Unlock()
	if f != nil {
		f(events)
	}
	return intake.Result{}, nil
}

func (r *recorder) snapshot() []metrics.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]metrics.Event(nil), r.events...)
}

// nopSink is the fastest Submitter and EvidenceWriter: it keeps nothing.
type nopSink struct{}

func (nopSink) PutEvidence(context.Context, []metrics.Evidence) error { return nil }
func (nopSink) Submit(context.Context, []metrics.Event) (intake.Result, error) {
	return intake.Result{}, nil
}

func newProcessor(t testing.TB) *ingest.Processor {
	t.Helper()
	conv, err := ingest.NewConverter(ingest.Options{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return ingest.NewProcessor(conv, 0, nil)
}

// corpus returns messages of testdata/bounces: a bounce, a complaint, a
// message that is neither, and a bounce cut short (unreadable).
type corpusMsgs struct {
	bounce, complaint, notBounce, truncated []byte
}

func loadCorpusMsgs(t testing.TB) corpusMsgs {
	t.Helper()
	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "bounces", f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bounce := read("maildir/bsd/lhost-postfix-01.eml")
	return corpusMsgs{
		bounce:    bounce,
		complaint: read("maildir/bsd/arf-02.eml"),
		notBounce: read("maildir/not/is-not-bounce-01.eml"),
		truncated: bounce[:len(bounce)/3],
	}
}

// allCorpus returns every labelled message of the corpus.
func allCorpus(t testing.TB) [][]byte {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "bounces")
	data, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels []struct{ File string }
	if err := json.Unmarshal(data, &labels); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range labels {
		b, err := os.ReadFile(filepath.Join(dir, l.File))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// crlf makes a message's line ends CRLF, as IMAP servers store them.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func appendMsg(t testing.TB, c *imapclient.Client, folder string, msg []byte) *imapv2.AppendData {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		t.Fatalf("APPEND to %s: %v", folder, err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("APPEND to %s: %v", folder, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND to %s: %v", folder, err)
	}
	return data
}

func numMessages(t testing.TB, c *imapclient.Client, folder string) int {
	t.Helper()
	st, err := c.Status(folder, &imapv2.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("STATUS %s: %v", folder, err)
	}
	return int(*st.NumMessages)
}

// countOr0 is numMessages, 0 when the folder does not exist (yet).
func countOr0(c *imapclient.Client, folder string) int {
	st, err := c.Status(folder, &imapv2.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0
	}
	return int(*st.NumMessages)
}

// folderMsgs returns the messages of folder (EXAMINE: nothing changes),
// with their flags and bodies.
func folderMsgs(t testing.TB, c *imapclient.Client, folder string) []*imapclient.FetchMessageBuffer {
	t.Helper()
	sel, err := c.Select(folder, &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", folder, err)
	}
	defer func() { c.Unselect().Wait() }()
	if sel.NumMessages == 0 {
		return nil
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imapv2.FetchOptions{UID: true, Flags: true,
		BodySection: []*imapv2.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("FETCH %s: %v", folder, err)
	}
	return msgs
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run starts r; stop cancels it and waits for Run to return.
func run(t testing.TB, r *Reader) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30 s of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// memServer starts go-imap's in-memory server on loopback with the given
// capabilities (IMAP4rev1 always) and one user u/p with an INBOX.
func memServer(t testing.TB, caps ...imapv2.Cap) (addr string, user *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user = imapmemserver.NewUser("u", "p")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	set := imapv2.CapSet{imapv2.CapIMAP4rev1: {}}
	for _, c := range caps {
		set[c] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         set,
		InsecureAuth: true,
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), user
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

func memDial(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("u", "p").Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refUID returns the UIDVALIDITY and UID of a source_ref.
func refUID(t testing.TB, ref string) (uint32, imapv2.UID) {
	t.Helper()
	parts := strings.Split(ref, "/")
	if len(parts) < 4 {
		t.Fatalf("source_ref %q: want name/folder/uidvalidity/uid", ref)
	}
	uv, err1 := strconv.ParseUint(parts[len(parts)-2], 10, 32)
	uid, err2 := strconv.ParseUint(parts[len(parts)-1], 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("source_ref %q: want name/folder/uidvalidity/uid", ref)
	}
	return uint32(uv), imapv2.UID(uid)
}

func eventIDs(events []metrics.Event) []string {
	var ids []string
	for _, e := range events {
		ids = append(ids, e.EventID)
	}
	sort.Strings(ids)
	return ids
}

func testSource() ingest.Source {
	return ingest.Source{Name: ingest.SourceIMAP, Ref: "test", Time: time.Now()}
}
