package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const killChildEnv = "SPOOL_TEST_KILL_CHILD"

// killPayload is record n of the kill test; its length varies so that
// records straddle segment boundaries at many offsets.
func killPayload(n int) []byte {
	return fmt.Appendf(nil, "%d:%s", n, bytes.Repeat([]byte{'a' + byte(n%26)}, (n*7919)%3000))
}

func parseKillPayload(p []byte) (int, bool) {
	num, _, ok := bytes.Cut(p, []byte(":"))
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(string(num))
	return n, err == nil && bytes.Equal(p, killPayload(n))
}

// TestKillChild is the process TestKill9 kills: it appends records
// numbered from $SPOOL_TEST_KILL_CHILD's start on with four goroutines,
// printing "a N" once Append(N) returned, and drains them with a sink that
// prints "d N" for each record before it returns, slowly. It ends only
// when killed, or after a minute.
func TestKillChild(t *testing.T) {
	env := os.Getenv(killChildEnv)
	if env == "" {
		t.Skip("run by TestKill9")
	}
	// Never outlive a parent that died before killing us (writing to its
	// closed pipe also ends us, with SIGPIPE).
	time.AfterFunc(time.Minute, func() { os.Exit(3) })
	dir, startStr, _ := strings.Cut(env, ",")
	start, _ := strconv.Atoi(startStr)
	s, err := Open(dir, Options{SegmentBytes: 64 << 10, BatchRecords: 20})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format, args...) // unbuffered: one write(2) per line
	}
	go s.Run(context.Background(), func(ctx context.Context, payloads [][]byte) error {
		for _, p := range payloads {
			n, _ := parseKillPayload(p)
			say("d %d\n", n)
		}
		time.Sleep(2 * time.Millisecond) // a slow store, so that a backlog builds
		return nil
	})
	var next sync.Mutex
	n := start
	for range 4 {
		go func() {
			for {
				next.Lock()
				i := n
				n++
				next.Unlock()
				if err := s.Append(killPayload(i)); err != nil {
					say("error %v\n", err)
					return
				}
				say("a %d\n", i)
			}
		}()
	}
	select {}
}

// TestKill9 kills a process that appends and drains with SIGKILL at a
// random moment, several times over the same spool, then reopens it and
// checks that every record whose Append returned was either drained before
// a kill or is drained now, intact.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	dir := t.TempDir()
	acked := map[int]bool{}
	delivered := map[int]bool{} // by a child, before it was killed
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", killChildEnv, dir, round*1_000_000))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 100 + rand.IntN(400)
		sc := bufio.NewScanner(out)
		acks, killed := 0, false
		for sc.Scan() {
			var n int
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "a "):
				n, _ = strconv.Atoi(line[2:])
				acked[n] = true
				acks++
			case strings.HasPrefix(line, "d "):
				n, _ = strconv.Atoi(line[2:])
				delivered[n] = true
			default:
				t.Errorf("child: %s", line)
			}
			if acks >= killAt && !killed {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child exited after %d acknowledgements", round, acks)
		}
	}

	s := openT(t, dir, Options{SegmentBytes: 64 << 10})
	defer s.Close()
	var c collector
	drain(t, s, &c)
	seen := map[int]bool{}
	for _, p := range c.got() {
		n, ok := parseKillPayload(p)
		if !ok {
			t.Fatalf("damaged record %.40q", p)
		}
		if seen[n] {
			t.Errorf("record %d drained twice after the reopen", n)
		}
		seen[n] = true
	}
	missing := 0
	for n := range acked {
		if !seen[n] && !delivered[n] {
			missing++
			if missing < 10 {
				t.Errorf("acknowledged record %d lost", n)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged records lost", missing, len(acked))
	}
	if st := s.Stats(); st.Quarantined != 0 {
		t.Errorf("Stats.Quarantined = %d, want 0 after kills", st.Quarantined)
	}
	t.Logf("%d records acknowledged over 4 kills, %d drained before a kill, %d after", len(acked), len(delivered), len(seen))
}
