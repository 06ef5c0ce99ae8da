package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// heavyVar enables TestAttacks; scripts/test.sh
// (make test) sets it.
const heavyVar = "REPUTE_HEAVY_TESTS"

// startBinary runs bin serve with an embedded store in data, and args,
// and returns its base URL and process id; the process is killed when the
// test ends.
func startBinary(t *testing.T, bin, data string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--data", data}, args...)...)
	// GOMEMLIMIT as README "Sizing" advises: the Go heap's soft cap, so
	// that garbage of the bodies of a flood is collected before the heap
	// doubles (GOGC alone lets it grow to twice what is live).
	cmd.Env = append(os.Environ(), "REPUTE_ADMIN_KEY=admin", "GOMEMLIMIT="+attackGoMemLimit)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child stderr (end):\n%s", tail(stderr.String(), 4000))
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child banner: %v", err)
	}
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("child banner %q", line)
	}
	go io.Copy(io.Discard, stdout)
	return strings.Fields(rest)[0], cmd.Process.Pid
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// errText is the last part of a client error, without addresses.
func errText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// heavyBody returns a JSON array of distinct events of account "heavy" of
// at most size bytes.
func heavyBody(size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteByte('[')
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"account":"heavy","kind":"sent","time":%q,"recipient":"user%d@gmail.com",`+
			`"sender_domain":"news.example.com","campaign":"storm","message_id":"<%d.storm@example.com>"}`,
			testDay.Add(time.Duration(i%86400)*time.Second).Format(time.RFC3339), i, i)
		if b.Len()+len(item)+2 > size {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// goodBatch returns the well-behaved client's batch n: 1,000 distinct
// "sent" events of account "good".
func goodBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"account":"good","kind":"sent","time":%q,"recipient":"r%d.%d@outlook.com",`+
			`"sender_domain":"mail.good.example","campaign":"steady","message_id":"<%d.%d@good.example>"}`,
			testDay.Add(time.Duration(i)*time.Second).Format(time.RFC3339), n, i, n, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}
