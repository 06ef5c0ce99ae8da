package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"repute/ingest"
	"repute/ingest/kafka"
	"repute/internal/corpustest"
	"repute/internal/testenv"
	"repute/metrics"
)

// TestFeedbackCrashExactlyOnce is the crash test of the feedback sources:
// 5,000 reports drawn from the corpus (each with an identity and
// recipients of its own), half in a Dovecot folder and half on a Kafka raw
// topic, read by a real repute serve that is killed with SIGKILL twice —
// once while it moves mail, once while it consumes the topic — and
// restarted. At the end every report's events are in the store exactly
// once (the store's totals equal the expected ones, kind by kind, and
// every expected event is there), every IMAP message sits in exactly one
// folder — the one its content calls for — and every record that cannot
// be read is on the dead-letter topic.
func TestFeedbackCrashExactlyOnce(t *testing.T) {
	if os.Getenv("REPUTE_HEAVY_TESTS") == "" {
		t.Skip("the feedback crash test takes minutes (two lease and group takeovers): it runs under make test (REPUTE_HEAVY_TESTS=1)")
	}
	imapServer, folder := testenv.IMAPFolder(t)
	const total = 5000
	msgs := corpustest.Variants(t, total)
	imapMsgs, kafkaMsgs := msgs[:total/2], msgs[total/2:]

	// The mailbox: what Dovecot stores is what repute will read, so the
	// expected results are computed from the messages fetched back.
	c := imapServer.Dial(t, nil)
	dest := map[string]string{"processed": folder + "_processed", "ignored": folder + "_ignored", "quarantine": folder + "_quarantine"}
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	crlf := make([][]byte, len(imapMsgs))
	for i, m := range imapMsgs {
		crlf[i] = bytes.ReplaceAll(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	}
	imapServer.AppendAll(t, folder, crlf)
	stored := fetchBodies(t, c, folder)
	if len(stored) != len(imapMsgs) {
		t.Fatalf("%d messages in the folder after appending %d", len(stored), len(imapMsgs))
	}

	// The topic.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "raw", "dead"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	recordTime := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	records := make([]kafkago.Message, len(kafkaMsgs))
	for i, m := range kafkaMsgs {
		records[i] = kafkago.Message{Topic: "raw", Value: m, Time: recordTime}
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Balancer: &kafkago.RoundRobin{}, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafkago.RequireAll}
	if err := w.WriteMessages(t.Context(), records...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// What repute must end with, from the same Processor serve builds
	// (no send is stored, so every report is unmatched: account acme).
	conv, err := ingest.NewConverter(ingest.Options{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	proc := ingest.NewProcessor(conv, 0, nil)
	var want []metrics.Event
	wantFolder := map[string]string{} // copy id → destination
	for id, raw := range stored {
		rep, err := proc.Process(t.Context(), raw, ingest.Source{Name: ingest.SourceIMAP, Time: time.Now()})
		switch {
		case err != nil:
			wantFolder[id] = dest["quarantine"]
		case rep.Ignored || len(rep.Events) == 0:
			wantFolder[id] = dest["ignored"]
		default:
			wantFolder[id] = dest["processed"]
			want = append(want, rep.Events...)
		}
	}
	wantDead := 0
	for _, raw := range kafkaMsgs {
		rep, err := proc.Process(t.Context(), raw, ingest.Source{Name: ingest.SourceKafka, Time: recordTime})
		if err != nil {
			wantDead++
			continue
		}
		want = append(want, rep.Events...)
	}
	wantCounts := countKinds(want)
	t.Logf("expected: %d events (%+v); IMAP folders %v; %d dead-lettered records", len(want), wantCounts, folderTally(wantFolder), wantDead)

	data := t.TempDir()
	config := filepath.Join(data, "repute.yaml")
	t.Setenv("REPUTE_TEST_CRASH_IMAP_PASSWORD", imapServer.Password)
	writeConfig(t, config, fmt.Sprintf(`imap:
  - name: crash
    addr: %s
    tls: none
    user: %s
    password_env: REPUTE_TEST_CRASH_IMAP_PASSWORD
    folders: [%s]
    processed: %s
    ignored: %s
    quarantine: %s
    account: acme
kafka:
  brokers: [%s]
  group: crash
  raw_topics: [raw]
  dead_letter_topic: dead
  account: acme
`, imapServer.Addr, imapServer.User, folder, dest["processed"], dest["ignored"], dest["quarantine"], strings.Join(brokers, ", ")))
	args := []string{"--config", config, "--data", filepath.Join(data, "var"), "--listen", "127.0.0.1:0"}
	watched := func() int { return countOr0(c, folder) }
	done := func() int64 { return committedRecords(cluster, "crash", "raw") }

	// Kill 1: while mail is being moved.
	srv := startServe(t, args)
	waitUntil(t, "the first messages moved", 3*time.Minute, func() bool { return countOr0(c, dest["processed"]) > 0 })
	srv.kill()
	t.Logf("killed while moving mail: %d of %d left in the watched folder, %d records committed", watched(), len(imapMsgs), done())

	// Kill 2: while the topic is being consumed (the group waits for the
	// killed member's session to end before it hands the partitions over).
	before := done()
	srv = startServe(t, args)
	waitUntil(t, "records committed by the second process", 3*time.Minute, func() bool { return done() > before })
	srv.kill()
	t.Logf("killed while consuming: %d records of %d committed, %d messages left in the watched folder", done(), len(kafkaMsgs), watched())

	// The last start finishes the work.
	srv = startServe(t, args)
	cl := client{t, srv.base, "admin"}
	query := "from=2000-01-01&to=" + time.Now().Add(48*time.Hour).Format(time.DateOnly)
	waitUntil(t, "every message read and every event stored", 4*time.Minute, func() bool {
		_, body := cl.stats(query)
		return watched() == 0 && done() == int64(len(kafkaMsgs)) && body.Totals.Counts == wantCounts
	})
	_, body := cl.stats(query)
	srv.stop()

	if body.Totals.Counts != wantCounts {
		t.Errorf("store totals %+v, want %+v", body.Totals.Counts, wantCounts)
	}
	st, err := openStore(context.Background(), serveConfig{Data: filepath.Join(data, "var")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	known, err := st.Known(context.Background(), want)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, e := range want {
		if !known[e.Key()] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d expected events are not in the store", missing, len(want))
	}

	// Every IMAP message in exactly one folder, the right one.
	if n := watched(); n != 0 {
		t.Errorf("%d messages left in the watched folder", n)
	}
	seen := map[string]string{}
	for _, f := range dest {
		for id := range fetchBodies(t, c, f) {
			if prev, dup := seen[id]; dup {
				t.Errorf("message %s is in %s and in %s", id, prev, f)
			}
			seen[id] = f
		}
	}
	wrong := 0
	for id, f := range wantFolder {
		if seen[id] != f {
			if wrong++; wrong <= 5 {
				t.Errorf("message %s is in %q, want %q", id, seen[id], f)
			}
		}
	}
	if len(seen) != len(imapMsgs) {
		t.Errorf("%d messages in the destination folders, want %d", len(seen), len(imapMsgs))
	}

	// Every unreadable record dead-lettered (a record may be dead-lettered
	// twice when a kill came between the write and the commit).
	dead := deadOrigins(t, brokers)
	if len(dead) != wantDead {
		t.Errorf("%d distinct records on the dead-letter topic, want %d", len(dead), wantDead)
	}
}

func countKinds(events []metrics.Event) metrics.Counts {
	var c metrics.Counts
	for _, e := range events {
		switch e.Kind {
		case metrics.KindDelivered:
			c.Delivered++
		case metrics.KindDeferred:
			c.Deferred++
		case metrics.KindBounced:
			if e.BounceType == metrics.BounceHard {
				c.BouncedHard++
			} else {
				c.BouncedSoft++
			}
		case metrics.KindComplained:
			c.Complained++
		case metrics.KindUnsubscribed:
			c.Unsubscribed++
		}
	}
	return c
}

func folderTally(m map[string]string) map[string]int {
	out := map[string]int{}
	for _, f := range m {
		out[f[strings.LastIndexByte(f, '_')+1:]]++
	}
	return out
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// served is a repute serve run by this test binary (TestMain), its log in
// a file shown when the test fails.
type served struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	log  string
}

func startServe(t *testing.T, args []string) *served {
	t.Helper()
	cmd := childCommand(append([]string{"serve"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{t: t, cmd: cmd, log: logFile.Name()}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("serve log %s:\n%s", s.log, tail(string(b), 4000))
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b, _ := os.ReadFile(s.log)
		t.Fatalf("serve banner: %v\n%s", err, b)
	}
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("serve banner %q", line)
	}
	s.base = strings.Fields(rest)[0]
	go io.Copy(io.Discard, stdout)
	return s
}

func (s *served) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
}

func (s *served) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(time.Minute):
		s.t.Error("serve did not stop within a minute of SIGTERM")
		s.kill()
	}
}

// copyID finds the corpustest copy id in a message.
var copyID = regexp.MustCompile(`<corpus-copy-\d+@repute\.test>`)

// fetchBodies returns the messages of folder (EXAMINE: nothing changes),
// by their corpustest copy id.
func fetchBodies(t *testing.T, c *imapclient.Client, folder string) map[string][]byte {
	t.Helper()
	sel, err := c.Select(folder, &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", folder, err)
	}
	defer func() { c.Unselect().Wait() }()
	out := map[string][]byte{}
	if sel.NumMessages == 0 {
		return out
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imapv2.FetchOptions{BodySection: []*imapv2.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("FETCH %s: %v", folder, err)
	}
	for _, m := range msgs {
		for _, body := range m.BodySection {
			id := string(copyID.Find(body.Bytes))
			if id == "" {
				t.Fatalf("a message of %s has no copy id", folder)
			}
			if _, dup := out[id]; dup {
				t.Errorf("message %s is twice in %s", id, folder)
			}
			out[id] = body.Bytes
		}
	}
	return out
}

// countOr0 is the number of messages in folder, 0 when it does not exist.
func countOr0(c *imapclient.Client, folder string) int {
	st, err := c.Status(folder, &imapv2.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil {
		return 0
	}
	return int(*st.NumMessages)
}

// committedRecords is how many records of topic the group has committed.
func committedRecords(c *kfake.Cluster, group, topic string) int64 {
	gi := c.GroupInfo(group)
	if gi == nil {
		return 0
	}
	var sum int64
	for _, gc := range gi.Commits[topic] {
		sum += gc.Offset
	}
	return sum
}

// deadOrigins reads the dead-letter topic and returns the distinct
// origins (topic/partition/offset) of its records.
func deadOrigins(t *testing.T, brokers []string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for p := range 4 {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: "dead", Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				break
			}
			h := map[string]string{}
			for _, x := range m.Headers {
				h[x.Key] = string(x.Value)
			}
			out[kafka.SourceRef(h[kafka.HeaderTopic], atoi(h[kafka.HeaderPartition]), int64(atoi(h[kafka.HeaderOffset])))] = true
		}
		r.Close()
	}
	return out
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}
