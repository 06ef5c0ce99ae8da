package imap

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"repute/ingest"
	"repute/intake"
	"repute/internal/corpustest"
	"repute/internal/testenv"
	"repute/metrics/duckdb"
	"repute/spool"
)

// BenchmarkDovecot times Run draining a folder of 5,000 corpus messages
// into the destination folders. In "nop" the Submitter and EvidenceWriter
// keep nothing: IMAP, conversion and MOVE are what is measured. In
// "duckdb" the messages are 5,000 distinct reports (corpustest.Variants)
// and everything is stored: evidence and events into DuckDB through the
// spool and intake, the sends looked up in the store, until the events
// are queryable. The APPENDs (pipelined over 4 connections) are outside
// the timer.
//
//	go test -run '^$' -bench Dovecot -benchtime 1x ./ingest/imap/
func BenchmarkDovecot(b *testing.B) {
	b.Run("nop", func(b *testing.B) { benchDovecot(b, false) })
	b.Run("duckdb", func(b *testing.B) { benchDovecot(b, true) })
}

func benchDovecot(b *testing.B, toStore bool) {
	const n = 5000
	corpus := allCorpus(b)
	if toStore {
		corpus = corpustest.Variants(b, n)
	}
	for i := range corpus {
		corpus[i] = crlf(corpus[i])
	}
	server := testenv.IMAP(b)
	b.StopTimer()
	for range b.N {
		_, folder := testenv.IMAPFolder(b)
		c := server.Dial(b, nil)
		if err := c.Create(folder, nil).Wait(); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = corpus[i%len(corpus)]
		}
		server.AppendAll(b, folder, msgs)
		b.Logf("%d APPENDs in %v", n, time.Since(t0).Round(time.Millisecond))
		if got := countOr0(c, folder); got != n {
			b.Fatalf("%d messages appended, want %d", got, n)
		}
		o := dovecotOptions(b, server, folder)
		o.BatchSize = 1000
		if n, err := strconv.Atoi(os.Getenv("REPUTE_BENCH_BATCH")); err == nil {
			o.BatchSize = n
		}
		o.Logger = benchLogger()
		var proc Processor = newProcessor(b)
		var sub Submitter = nopSink{}
		var evid EvidenceWriter = nopSink{}
		var pipe *intake.Pipeline
		if toStore {
			dir := b.TempDir()
			store, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer sp.Close()
			pipe = intake.New(sp, store, intake.Options{})
			pctx, pcancel := context.WithCancel(context.Background())
			pdone := make(chan error, 1)
			go func() { pdone <- pipe.Run(pctx) }()
			defer func() { pcancel(); <-pdone }()
			conv, err := ingest.NewConverter(ingest.Options{Account: "acme", Sends: store})
			if err != nil {
				b.Fatal(err)
			}
			proc, sub, evid = ingest.NewProcessor(conv, 0, nil), pipe, store
		}
		r, err := New(o, proc, sub, evid, &MemoryLeases{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		cpu0 := sampleCPU()
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		for countOr0(c, folder) != 0 {
			time.Sleep(10 * time.Millisecond)
		}
		if pipe != nil {
			if err := pipe.WaitVisible(ctx); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		self, dovecot, others := sampleCPU().since(cpu0)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
		b.Logf("%d messages read, converted and moved in %v", n, elapsed.Round(time.Millisecond))
		b.ReportMetric(self.Seconds(), "cpu-s")
		b.ReportMetric(dovecot.Seconds(), "dovecot-cpu-s")
		b.ReportMetric(others.Seconds(), "other-cpu-s")
		b.Logf("CPU: this process %v, Dovecot's imap processes %v, the rest of the machine %v (%d cores: %v available)",
			self.Round(time.Millisecond), dovecot.Round(10*time.Millisecond), others.Round(10*time.Millisecond), runtime.NumCPU(),
			(time.Duration(runtime.NumCPU()) * elapsed).Round(time.Millisecond))
	}
}

// benchLogger logs the reader's batches under REPUTE_BENCH_LOG=1.
func benchLogger() *slog.Logger {
	if os.Getenv("REPUTE_BENCH_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}
