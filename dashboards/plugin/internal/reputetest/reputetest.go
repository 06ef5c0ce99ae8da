// Package reputetest starts a real repute serve for the plugin's tests:
// built from this repository's ./cmd/repute, on the embedded store (DuckDB)
// in a temporary data directory, with an admin key and the rule engine
// evaluating every 200 ms, and seeded with events through POST /v1/events.
package reputetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"
)

// AdminKey is the admin key of the started serve.
const AdminKey = "rk_plugin_test_admin"

// Server is a running repute serve.
type Server struct {
	URL string // http://127.0.0.1:port
	cmd *exec.Cmd
	dir string
	out *bytes.Buffer // stderr, for failures
	mu  sync.Mutex
}

// RepoRoot is the root of the repute repository (this package is
// dashboards/plugin/internal/reputetest in it).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
}

// Build builds repute into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "repute")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/repute")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/repute in %s: %v\n%s", cmd.Dir, err, out)
	}
	return bin, nil
}

var listening = regexp.MustCompile(`repute serve listening on (http://\S+)`)

// Start runs bin serve in a new temporary directory (removed by Stop) and
// waits until it listens.
func Start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "repute-plugin-test-")
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "repute.yaml")
	// rules_interval: the rule engine evaluates every 200 ms, so that the
	// seeded complaints raise their flag and decision at once.
	if err := os.WriteFile(config, []byte("rules_interval: 200ms\n"), 0o600); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, out: &bytes.Buffer{}}
	s.cmd = exec.Command(bin, "serve", "--config", config, "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "var"))
	s.cmd.Env = append(os.Environ(), "REPUTE_ADMIN_KEY="+AdminKey)
	s.cmd.Stderr = lockedWriter{&s.mu, s.out}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if ok {
			s.URL = u
			return s, nil
		}
	case <-time.After(60 * time.Second):
	}
	s.Stop()
	return nil, fmt.Errorf("repute serve did not say it listens within 60 s; stderr:\n%s", s.Stderr())
}

// Stderr is what serve wrote to stderr so far.
func (s *Server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop ends serve (SIGTERM, then SIGKILL after 30 s) and removes its
// directory.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(s.dir)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Event is an event as POST /v1/events takes it (docs/events.md).
type Event struct {
	EventID      string    `json:"event_id"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	Account      string    `json:"account"`
	SenderDomain string    `json:"sender_domain,omitempty"`
	SendingIP    string    `json:"sending_ip,omitempty"`
	Campaign     string    `json:"campaign,omitempty"`
	MessageID    string    `json:"message_id,omitempty"`
	Recipient    string    `json:"recipient"`
	FeedbackType string    `json:"feedback_type,omitempty"`
	BounceType   string    `json:"bounce_type,omitempty"`
	Machine      *bool     `json:"machine,omitempty"`
}

// Post posts events with the admin key and waits until they are visible
// to GET /v1/stats.
func (s *Server) Post(ctx context.Context, events []Event) error {
	body, err := json.Marshal(events)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/events?wait=visible", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+AdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return nil
}

// Seed is what Seeded posts, for the tests to check answers against.
type Seed struct {
	At            time.Time // the sends; deliveries a minute later, complaints an hour later
	SenderDomain  string
	Complained    string // one complained recipient (on the unsubscribe list afterwards)
	GmailSent     int    // to gmail.com
	YahooSent     int    // to yahoo.com
	Complaints    int    // of the gmail.com deliveries
	YahooBouncedH int    // hard bounces of the yahoo.com sends (not delivered)
}

// Seeded posts, for account acme from news.acme.example, GmailSent sends
// to gmail.com recipients and YahooSent to yahoo.com ones at At (3 hours
// ago, on the hour plus 10 minutes), each delivered a minute later but the
// yahoo.com hard bounces; Complaints complaints on gmail.com an hour after
// the sends. 6 complaints over 1000 deliveries (0.6%) is over the 0.5%
// pause threshold: the rule engine raises the complaint flag and pauses
// the sender domain.
func (s *Server) Seeded(ctx context.Context) (Seed, error) {
	at := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
	seed := Seed{At: at, SenderDomain: "news.acme.example", GmailSent: 1000, YahooSent: 200, Complaints: 8,
		YahooBouncedH: 10, Complained: "g0@gmail.com"}
	var events []Event
	add := func(i int, rcptDomain string, bounced bool, complained bool) {
		rcpt := fmt.Sprintf("%c%d@%s", rcptDomain[0], i, rcptDomain)
		id := fmt.Sprintf("<%c%d@news.acme.example>", rcptDomain[0], i)
		base := Event{Account: "acme", SenderDomain: seed.SenderDomain, SendingIP: "192.0.2.1", Campaign: "black-friday",
			MessageID: id, Recipient: rcpt}
		e := base
		e.EventID, e.Time, e.Kind = "s-"+rcpt, at, "sent"
		events = append(events, e)
		e = base
		if bounced {
			e.EventID, e.Time, e.Kind, e.BounceType = "b-"+rcpt, at.Add(time.Minute), "bounced", "hard"
		} else {
			e.EventID, e.Time, e.Kind = "d-"+rcpt, at.Add(time.Minute), "delivered"
		}
		events = append(events, e)
		if complained {
			e = base
			e.EventID, e.Time, e.Kind, e.FeedbackType = "c-"+rcpt, at.Add(time.Hour), "complained", "abuse"
			events = append(events, e)
		}
	}
	for i := range seed.GmailSent {
		add(i, "gmail.com", false, i < seed.Complaints)
	}
	for i := range seed.YahooSent {
		add(i, "yahoo.com", i < seed.YahooBouncedH, false)
	}
	return seed, s.Post(ctx, events)
}
