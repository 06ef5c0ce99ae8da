package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentAppend runs appenders and the drain at once: every record
// is delivered exactly once, and each appender's records in its order.
func TestConcurrentAppend(t *testing.T) {
	const writers, each = 8, 150
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 4000, BatchRecords: 16})
	defer s.Close()
	var c collector
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx, c.sink) }()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Append(fmt.Appendf(nil, "w%d-%d-%s", w, i, bytes.Repeat([]byte("x"), i))); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%50 == 0 {
					_ = s.Stats()
				}
			}
		})
	}
	wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	next := make([]int, writers)
	for _, p := range c.got() {
		var w, i int
		if _, err := fmt.Sscanf(string(p), "w%d-%d-", &w, &i); err != nil {
			t.Fatalf("payload %q: %v", p, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: got record %d, want %d", w, i, next[w])
		}
		if want := fmt.Sprintf("w%d-%d-%s", w, i, bytes.Repeat([]byte("x"), i)); string(p) != want {
			t.Fatalf("payload %q, want %q", p, want)
		}
		next[w]++
	}
	for w, n := range next {
		if n != each {
			t.Errorf("writer %d: %d records delivered, want %d", w, n, each)
		}
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Errorf("Stats after drain = %+v, want zero", st)
	}
}

// TestRunWakesOnAppend checks that Run picks up an append without Flush or
// polling: the record must arrive while Run waits (a generous deadline
// only guards against a hang).
func TestRunWakesOnAppend(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	got := make(chan []byte, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, func(ctx context.Context, payloads [][]byte) error {
		for _, p := range payloads {
			got <- p
		}
		return nil
	})
	for i := range 3 {
		time.Sleep(20 * time.Millisecond) // let Run go idle
		if err := s.Append(payloadFor(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if !bytes.Equal(p, payloadFor(i)) {
				t.Fatalf("got %q, want %q", p, payloadFor(i))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("record %d never reached the sink", i)
		}
	}
}

func TestFlush(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush of an empty spool: %v", err)
	}
	appendN(t, s, 0, 5)

	// Without Run nothing drains: Flush waits for its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush without Run = %v, want DeadlineExceeded", err)
	}

	// With a failing store Flush waits for the retries to succeed.
	c := collector{failN: 3}
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(rctx, c.sink) }()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	wantRecords(t, c.got(), 0, 5)

	// Close ends a waiting Flush.
	rcancel()
	<-runErr
	appendN(t, s, 5, 6)
	flushErr := make(chan error)
	go func() { flushErr <- s.Flush(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-flushErr; !errors.Is(err, ErrClosed) {
		t.Errorf("Flush ended by Close = %v, want ErrClosed", err)
	}
}

// TestCloseStopsRun checks that Close ends a running Run and waits for it.
func TestCloseStopsRun(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(context.Background(), (&collector{}).sink) }()
	for {
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if running {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Run(context.Background(), (&collector{}).sink); err == nil {
		t.Error("a second concurrent Run succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		t.Error("Close returned before Run did")
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run ended by Close = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

// TestStoreDownUntilFull is the outage of issue 2: while the store fails,
// appends succeed until the bound, then ErrFull; once the store recovers,
// every record accepted lands, in order, and appends succeed again.
func TestStoreDownUntilFull(t *testing.T) {
	rec := int64(headerSize + len(payloadFor(0)) + 50)
	s := openT(t, t.TempDir(), Options{MaxBytes: 40 * rec, SegmentBytes: 8 * rec})
	defer s.Close()
	var (
		mu   sync.Mutex
		down = true
		got  [][]byte
	)
	sink := func(ctx context.Context, payloads [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("store down")
		}
		got = append(got, payloads...)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx, sink) }()

	n := 0
	for ; ; n++ {
		err := s.Append(payloadFor(n))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("Append(%d): %v", n, err)
		}
		if n > 1000 {
			t.Fatal("no ErrFull while the store is down")
		}
	}
	if n < 30 {
		t.Fatalf("ErrFull after %d records, want about 40 (the bound)", n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	fctx, fcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush after recovery: %v", err)
	}
	mu.Lock()
	wantRecords(t, got, 0, n)
	mu.Unlock()
	if err := s.Append(payloadFor(n)); err != nil {
		t.Fatalf("Append after recovery: %v", err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
