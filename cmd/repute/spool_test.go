package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/metrics"
	"repute/spool"
)

// deadLetterOne spools two events under data and drains them with a sink
// that refuses the second for good.
func deadLetterOne(t *testing.T, data string) metrics.Event {
	t.Helper()
	sp, err := spool.Open(filepath.Join(data, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	evs := benchEvents(2, testDay)
	if err := sp.Append(metrics.AppendEvents(nil, evs)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- sp.Run(ctx, func(ctx context.Context, payloads [][]byte) error {
			return &spool.RefusedError{Refused: []spool.Refusal{{
				Index: 0, Part: 1, Payload: metrics.AppendEvents(nil, evs[1:]), Attempts: 8,
				Err: errors.New("code: 53, message: type mismatch"),
			}}}
		})
	}()
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := sp.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-ran
	return evs[1]
}

func TestSpoolDead(t *testing.T) {
	data := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"spool", "dead", "--data", data}, &stdout, &stderr); code != 0 || stdout.Len() != 0 ||
		!strings.Contains(stderr.String(), "no dead-lettered events") {
		t.Errorf("no dead letters: %d, stdout %q, stderr %q; want 0, nothing, a note", code, stdout.String(), stderr.String())
	}

	e := deadLetterOne(t, data)
	stdout.Reset()
	stderr.Reset()
	if code := runMain([]string{"spool", "dead", "--data", data}, &stdout, &stderr); code != 0 {
		t.Fatalf("spool dead = %d, stderr %q", code, stderr.String())
	}
	line := stdout.String()
	for _, want := range []string{"account=" + e.Account, "kind=" + string(e.Kind), "event_id=" + e.EventID,
		"recipient=" + e.Recipient, `error="code: 53, message: type mismatch"`, "segment=1 offset=0 part=1 attempts=8"} {
		if !strings.Contains(line, want) {
			t.Errorf("spool dead printed %q, want %s", line, want)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("spool dead printed %q, want one line", line)
	}

	stdout.Reset()
	t.Setenv("REPUTE_DATA", data) // the environment works as well as the flag
	if code := runMain([]string{"spool", "dead", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("spool dead --json = %d, stderr %q", code, stderr.String())
	}
	var got deadJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("--json printed %q: %v", stdout.String(), err)
	}
	if len(got.Events) != 1 || got.Events[0].EventID != e.EventID || got.Error == "" || got.Time.IsZero() || got.Part != 1 {
		t.Errorf("--json = %+v, want the refused event with its error, time and position", got)
	}
}

func TestSpoolDeadHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"spool", "dead", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help = %d", code)
	}
	help := stdout.String()
	for _, want := range []string{"-data", "-json", "-config"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %s: %q", want, help)
		}
	}
	for _, not := range []string{"-listen", "-clickhouse", "-spool-max-bytes"} {
		if strings.Contains(help, not) {
			t.Errorf("help lists serve's %s: %q", not, help)
		}
	}
	if code := runMain([]string{"spool", "nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("spool nope = %d, want 2", code)
	}
}

func TestMetricsNameDeadRecords(t *testing.T) {
	cfg := defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	deadLetterOne(t, cfg.Data)
	base := startApp(t, cfg)
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "\nrepute_spool_dead_records 1\n") {
		t.Errorf("/metrics lacks repute_spool_dead_records 1:\n%s", body)
	}
}
