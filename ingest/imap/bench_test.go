package imap

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"repute/internal/testenv"
)

// BenchmarkDovecot times Run draining a folder of 5,000 corpus messages
// into the destination folders, with a Submitter and EvidenceWriter that
// keep nothing: IMAP, conversion and MOVE are what is measured. The APPENDs
// (pipelined over 4 connections) are outside the timer.
//
//	make test-services; go test -run '^$' -bench Dovecot -benchtime 1x ./ingest/imap/
func BenchmarkDovecot(b *testing.B) {
	const n = 5000
	corpus := allCorpus(b)
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
		fill(b, server, folder, corpus, n)
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
		r, err := New(o, newProcessor(b), nopSink{}, nopSink{}, &MemoryLeases{})
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

// fill appends n messages, cycling through corpus, over 4 connections with
// up to 64 APPENDs in flight on each.
func fill(b *testing.B, server testenv.IMAPServer, folder string, corpus [][]byte, n int) {
	const conns, inFlight = 4, 64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		c := server.Dial(b, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []*imapclient.AppendCommand
			flush := func() error {
				for _, cmd := range pending {
					if _, err := cmd.Wait(); err != nil {
						return err
					}
				}
				pending = pending[:0]
				return nil
			}
			for i := w; i < n; i += conns {
				m := corpus[i%len(corpus)]
				cmd := c.Append(folder, int64(len(m)), nil)
				if _, err := cmd.Write(m); err != nil {
					errs <- err
					return
				}
				if err := cmd.Close(); err != nil {
					errs <- err
					return
				}
				pending = append(pending, cmd)
				if len(pending) == inFlight {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("APPEND: %v", err)
	}
}

// benchLogger logs the reader's batches under REPUTE_BENCH_LOG=1.
func benchLogger() *slog.Logger {
	if os.Getenv("REPUTE_BENCH_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}
