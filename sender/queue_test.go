package sender

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func openTestQueue(t testing.TB, dir string) (*Queue, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	q, err := OpenQueueLogger(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return q, &logs
}

func enqueueN(t testing.TB, q *Queue, from, n int) []*Item {
	t.Helper()
	var items []*Item
	for i := from; i < from+n; i++ {
		it := testItem(i)
		it.Queued = t0
		items = append(items, it)
	}
	if err := q.Enqueue(items); err != nil {
		t.Fatal(err)
	}
	return items
}

// takeAll takes every item due at now.
func takeAll(t testing.TB, q *Queue, now time.Time) ([]*entry, []*Item) {
	t.Helper()
	var es []*entry
	var its []*Item
	for {
		e, it, _, _, err := q.take(now)
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return es, its
		}
		es, its = append(es, e), append(its, it)
	}
}

func TestQueueReopenAfterCrash(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTestQueue(t, dir)
	want := enqueueN(t, q, 0, 3)
	enqueueN(t, q, 3, 2)
	es, its := takeAll(t, q, t0)
	if len(es) != 5 {
		t.Fatalf("took %d, want 5", len(es))
	}
	for i, it := range its {
		if i < 3 && !bytes.Equal(it.Data, want[i].Data) {
			t.Errorf("item %d data %q, want %q", i, it.Data, want[i].Data)
		}
	}
	next := t0.Add(15 * time.Minute)
	if err := q.retry(es[0], 1, next, "451 4.3.0 try later"); err != nil {
		t.Fatal(err)
	}
	if err := q.finish(es[1], 1); err != nil {
		t.Fatal(err)
	}
	// Both items of the second batch done: its file goes.
	q.finish(es[3], 1)
	q.finish(es[4], 1)
	// es[2] stays in flight: the crash finds it undone.

	// Crash: no Close; a second process opens the directory.
	q2, logs := openTestQueue(t, dir)
	defer q2.Close()
	if n := q2.Len(); n != 2 {
		t.Fatalf("after reopen %d items, want 2 (one retrying, one in flight)", n)
	}
	batches, _ := filepath.Glob(filepath.Join(dir, "b-*.q"))
	if len(batches) != 1 {
		t.Errorf("batch files %v, want only the first", batches)
	}
	es2, its2 := takeAll(t, q2, t0)
	if len(es2) != 1 || its2[0].Recipient != want[2].Recipient || !bytes.Equal(its2[0].Data, want[2].Data) {
		t.Fatalf("due at t0: %v, want only %s", its2, want[2].Recipient)
	}
	_, _, due, _, _ := q2.take(t0)
	if !due.Equal(next) {
		t.Errorf("next due %v, want %v", due, next)
	}
	es3, its3 := takeAll(t, q2, next)
	if len(es3) != 1 {
		t.Fatalf("due at %v: %d items, want 1", next, len(es3))
	}
	got := its3[0]
	if got.Recipient != want[0].Recipient || got.Attempts != 1 || got.LastError != "451 4.3.0 try later" || !got.Queued.Equal(t0) || got.Ref != want[0].Ref {
		t.Errorf("retried item after reopen = %+v", got)
	}
	if logs.Len() != 0 {
		t.Errorf("a clean reopen logged %q", logs)
	}
}

func TestQueueTornJournalTail(t *testing.T) {
	for _, torn := range []struct {
		name string
		tail func(rec []byte) []byte
	}{
		{"length past the end", func(rec []byte) []byte { return rec[:len(rec)-3] }},
		{"header only", func(rec []byte) []byte { return rec[:5] }},
		{"bad checksum in the last record", func(rec []byte) []byte {
			rec = bytes.Clone(rec)
			rec[len(rec)-1] ^= 0xff
			return rec
		}},
	} {
		t.Run(torn.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openTestQueue(t, dir)
			enqueueN(t, q, 0, 4)
			es, _ := takeAll(t, q, t0)
			q.finish(es[0], 1)
			q.finish(es[1], 1)
			// The torn write of the done record of es[2].
			rec := encodeJournal(nil, es[2].b.seq, es[2].idx, jstate{done: true, attempts: 1})
			f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(torn.tail(rec))
			f.Close()

			q2, logs := openTestQueue(t, dir)
			defer q2.Close()
			if n := q2.Len(); n != 2 {
				t.Fatalf("after a torn tail: %d items, want 2", n)
			}
			if _, err := os.Stat(filepath.Join(dir, corruptDir)); err == nil {
				t.Error("a torn tail moved a file to corrupt/")
			}
			if !strings.Contains(logs.String(), "torn journal tail") {
				t.Errorf("log %q does not mention the torn tail", logs)
			}
			// The journal works after it: a record appended now is read
			// back at the next open.
			es2, _ := takeAll(t, q2, t0)
			if err := q2.finish(es2[0], 1); err != nil {
				t.Fatal(err)
			}
			q3, _ := openTestQueue(t, dir)
			defer q3.Close()
			if n := q3.Len(); n != 1 {
				t.Errorf("after one more done: %d items, want 1", n)
			}
		})
	}
}

func TestQueueCorruptJournalMovedAside(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTestQueue(t, dir)
	enqueueN(t, q, 0, 3)
	es, _ := takeAll(t, q, t0)
	q.finish(es[0], 1)
	q.finish(es[1], 1)
	// Damage the first record; a sound one follows it.
	path := filepath.Join(dir, journalName)
	data, _ := os.ReadFile(path)
	data[recHeaderLen] ^= 0xff
	os.WriteFile(path, data, 0o600)

	q2, logs := openTestQueue(t, dir)
	defer q2.Close()
	// The state after the damage is lost: those items are delivered again
	// (never lost).
	if n := q2.Len(); n != 3 {
		t.Errorf("%d items, want 3 (nothing trusted after the damage)", n)
	}
	moved, _ := filepath.Glob(filepath.Join(dir, corruptDir, journalName+".*"))
	if len(moved) != 1 {
		t.Errorf("corrupt/ holds %v, want the journal", moved)
	}
	if !strings.Contains(logs.String(), "corrupt file moved aside") {
		t.Errorf("log %q says nothing of the corruption", logs)
	}
}

func TestQueueCorruptBatchRescued(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTestQueue(t, dir)
	items := enqueueN(t, q, 0, 4)
	es, _ := takeAll(t, q, t0)
	q.retry(es[0], 2, t0.Add(time.Hour), "451 later")
	q.finish(es[3], 1)
	// Damage the payload of the second record.
	path := es[1].b.path
	data, _ := os.ReadFile(path)
	data[es[1].off+recHeaderLen+3] ^= 0xff
	os.WriteFile(path, data, 0o600)

	q2, logs := openTestQueue(t, dir)
	defer q2.Close()
	// Items 0 and 2 are readable (item 3 was done); item 1 is damaged.
	if n := q2.Len(); n != 2 {
		t.Fatalf("%d items, want 2", n)
	}
	moved, _ := filepath.Glob(filepath.Join(dir, corruptDir, "b-*"))
	if len(moved) != 1 {
		t.Errorf("corrupt/ holds %v, want the batch", moved)
	}
	if !strings.Contains(logs.String(), "record 1 at offset") {
		t.Errorf("log %q does not name the damaged record", logs)
	}
	_, its := takeAll(t, q2, t0.Add(time.Hour))
	byRcpt := map[string]*Item{}
	for _, it := range its {
		byRcpt[it.Recipient] = it
	}
	r0, r2 := byRcpt[items[0].Recipient], byRcpt[items[2].Recipient]
	if r0 == nil || r2 == nil {
		t.Fatalf("rescued %v, want items 0 and 2", byRcpt)
	}
	if r0.Attempts != 2 || r0.LastError != "451 later" || !bytes.Equal(r0.Data, items[0].Data) {
		t.Errorf("item 0 rescued as %+v, want its retry state and data", r0)
	}
	if !bytes.Equal(r2.Data, items[2].Data) {
		t.Errorf("item 2 data %q", r2.Data)
	}
}

func TestQueueCompactsJournal(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTestQueue(t, dir)
	q.compactAt = 10
	enqueueN(t, q, 0, 2)
	es, _ := takeAll(t, q, t0)
	e := es[0]
	for i := 1; i <= 100; i++ {
		if err := q.retry(e, i, t0, "451 again"); err != nil {
			t.Fatal(err)
		}
		q.take(t0)
	}
	st, _ := os.Stat(filepath.Join(dir, journalName))
	if one := len(encodeJournal(nil, 0, 0, jstate{attempts: 100, lastError: "451 again", nextAttempt: t0})); st.Size() > int64(20*one) {
		t.Errorf("journal %d bytes after 100 retries, want compacted (≤ %d)", st.Size(), 20*one)
	}
	q2, _ := openTestQueue(t, dir)
	defer q2.Close()
	_, its := takeAll(t, q2, t0)
	if len(its) != 2 || its[1].Recipient != e.item.Recipient || its[1].Attempts != 100 {
		t.Fatalf("after compaction and reopen: %+v, want 2 items, the first with 100 attempts", its)
	}
}

func TestQueueGroupCommit(t *testing.T) {
	// Concurrent outcomes all become durable; each caller returns only
	// after its own record is on disk (checked by reopening).
	dir := t.TempDir()
	q, _ := openTestQueue(t, dir)
	enqueueN(t, q, 0, 200)
	es, _ := takeAll(t, q, t0)
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Go(func() {
			if i%2 == 0 {
				q.finish(e, 1)
			} else {
				q.retry(e, 1, t0.Add(time.Hour), "x")
			}
		})
	}
	wg.Wait()
	q2, _ := openTestQueue(t, dir)
	defer q2.Close()
	if n := q2.Len(); n != 100 {
		t.Errorf("%d items, want 100", n)
	}
	if es, _ := takeAll(t, q2, t0); len(es) != 0 {
		t.Errorf("%d items due at t0, want 0 (all retrying)", len(es))
	}
}

func TestQueueSummary(t *testing.T) {
	q, _ := openTestQueue(t, t.TempDir())
	defer q.Close()
	items := []*Item{testItem(1), testItem(2), testItem(3), testItem(4)}
	items[1].Recipient = "a@gmail.com"
	items[2].Recipient = "b@googlemail.com"
	items[3].SenderDomain = "shop.acme.example"
	items[3].Account = "globex"
	for _, it := range items {
		it.Queued = t0
	}
	q.Enqueue(items)
	es, _ := takeAll(t, q, t0)
	q.retry(es[0], 1, t0.Add(time.Hour), "451")
	q.release(es[1], t0.Add(time.Minute), WhyPaced)
	q.release(es[2], t0.Add(2*time.Minute), WhyPaced)
	// es[3] stays in flight.
	isp := func(d string) string {
		if d == "gmail.com" || d == "googlemail.com" {
			return "gmail"
		}
		return ""
	}
	s := q.Summary(isp, t0)
	if s.Total != 4 || s.Retrying != 1 || s.Paced != 2 || s.InFlight != 1 || s.Ready != 0 {
		t.Errorf("summary counts %+v", s)
	}
	want := []QueueGroup{
		{SenderDomain: "news.acme.example", Provider: "gmail", Why: WhyPaced, Count: 2, Oldest: t0, NextAttempt: t0.Add(time.Minute)},
		{SenderDomain: "news.acme.example", Provider: "x.example", Why: WhyRetrying, Count: 1, Oldest: t0, NextAttempt: t0.Add(time.Hour)},
		{SenderDomain: "shop.acme.example", Provider: "x.example", Why: WhyInFlight, Count: 1, Oldest: t0},
	}
	if len(s.Groups) != len(want) {
		t.Fatalf("groups %+v, want %+v", s.Groups, want)
	}
	for i := range want {
		if s.Groups[i] != want[i] {
			t.Errorf("group %d = %+v, want %+v", i, s.Groups[i], want[i])
		}
	}
	// One account's: only its items.
	if g := q.AccountSummary("globex", isp, t0); g.Total != 1 || g.InFlight != 1 || len(g.Groups) != 1 || g.Groups[0] != want[2] {
		t.Errorf("globex's summary %+v", g)
	}
	if a := q.AccountSummary("acme", isp, t0); a.Total != 3 || a.InFlight != 0 || len(a.Groups) != 2 {
		t.Errorf("acme's summary %+v", a)
	}
	js, _ := json.Marshal(s)
	for _, k := range []string{`"total":4`, `"retrying":1`, `"paced":2`, `"in_flight":1`, `"sender_domain":"news.acme.example"`, `"provider":"gmail"`, `"why":"paced"`, `"next_attempt":`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("JSON %s lacks %s", js, k)
		}
	}
	// An hour later the retrying and paced ones are due: ready.
	if s := q.Summary(isp, t0.Add(time.Hour)); s.Ready != 3 {
		t.Errorf("an hour later: %+v, want 3 ready", s)
	}
}

// BenchmarkQueueEnqueue10k measures one durable batch of 10,000 items of
// 2 KB (two fsyncs whatever the size).
func BenchmarkQueueEnqueue10k(b *testing.B) {
	items := make([]*Item, 10_000)
	for i := range items {
		items[i] = testItem(i)
		items[i].Data = bytes.Repeat([]byte("x"), 2048)
	}
	// Each iteration enqueues into a queue of its own, removed after it:
	// the disk holds one iteration's 20 MB, however long the benchmark
	// runs (one queue for every iteration once grew to 66 GB).
	base := b.TempDir()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(base, strconv.Itoa(i))
		q, _ := openTestQueue(b, dir)
		b.StartTimer()
		if err := q.Enqueue(items); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		q.Close()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkQueueOutcome measures durable outcomes recorded from 8
// goroutines at once (group commit shares the fsyncs).
func BenchmarkQueueOutcome(b *testing.B) {
	q, _ := openTestQueue(b, b.TempDir())
	defer q.Close()
	enqueueN(b, q, 0, b.N)
	es, _ := takeAll(b, q, t0)
	b.ResetTimer()
	var wg sync.WaitGroup
	ch := make(chan *entry)
	for range 8 {
		wg.Go(func() {
			for e := range ch {
				q.finish(e, 1)
			}
		})
	}
	for _, e := range es {
		ch <- e
	}
	close(ch)
	wg.Wait()
	b.ReportMetric(float64(len(es))/b.Elapsed().Seconds(), "outcomes/s")
}
