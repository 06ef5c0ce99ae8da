package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const feedbackYAML = `accounts:
  - name: acme
    keys: ["sha256:` + "abababababababababababababababababababababababababababababababab" + `"]
imap:
  - name: bounces
    addr: 127.0.0.1:10143
    tls: none
    user: bounces@acme.example
    password_env: IMAP_PW
    account: acme
kafka:
  brokers: [127.0.0.1:9092]
  raw_topics: [bounces]
  event_topics: [events]
  account: acme
`

func loadYAML(t *testing.T, yaml string, env map[string]string) (serveConfig, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "repute.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return loadServeConfig([]string{"--config", file}, func(k string) string { return env[k] }, io.Discard)
}

func TestFeedbackConfig(t *testing.T) {
	cfg, err := loadYAML(t, feedbackYAML, map[string]string{"IMAP_PW": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.IMAP[0]
	if m.password != "pw" || m.Processed != "Processed" || m.Ignored != "Ignored" || m.Quarantine != "Quarantine" ||
		len(m.Folders) != 1 || m.Folders[0] != "INBOX" || m.MaxMessageBytes != defaultIMAPMaxMessage {
		t.Errorf("imap defaults: %+v", m)
	}
	k := cfg.Kafka
	if k.Group != "repute" || k.DeadLetterTopic != "repute-dead-letter" {
		t.Errorf("kafka defaults: %+v", k)
	}
	if cfg.EvidenceRetention != 400 {
		t.Errorf("evidence_retention %d, want 400 by default", cfg.EvidenceRetention)
	}
}

func TestFeedbackConfigErrors(t *testing.T) {
	env := map[string]string{"IMAP_PW": "pw"}
	for _, tt := range []struct{ name, from, to, want string }{
		{"clear text to a remote host", "addr: 127.0.0.1:10143", "addr: imap.example.net:143", "allowed only to a loopback address"},
		{"unknown tls", "tls: none", "tls: ssl", "want implicit, starttls or none"},
		{"plain password", "password_env: IMAP_PW", "password: hunter2", "a secret is never a plain value"},
		{"no password", "    password_env: IMAP_PW\n", "", "password_env: NAME or password_file: PATH is required"},
		{"unset password variable", "password_env: IMAP_PW", "password_env: NOPE", "NOPE"},
		{"no account", "    account: acme\nkafka", "kafka", `imap "bounces".account: required`},
		{"unknown account", "    account: acme\nkafka", "    account: globex\nkafka", "not one of the accounts"},
		{"watched is a destination", "    account: acme\nkafka", "    account: acme\n    folders: [Processed]\nkafka", "must not be a destination"},
		{"misspelt key", "    user:", "    usr:", `unknown key "usr" (did you mean user?)`},
		{"kafka without topics", "  raw_topics: [bounces]\n  event_topics: [events]\n", "", "kafka: no topics"},
		{"topics without brokers", "  brokers: [127.0.0.1:9092]\n", "", "kafka.brokers: required"},
		{"decisions topic without brokers", "  brokers: [127.0.0.1:9092]\n  raw_topics: [bounces]\n  event_topics: [events]\n", "  decisions_topic: decisions\n", "kafka.brokers: required"},
		{"decisions topic read back", "event_topics: [events]\n", "event_topics: [events]\n  decisions_topic: events\n", `kafka.decisions_topic "events": also a topic repute reads`},
		{"decisions topic is the dead-letter topic", "event_topics: [events]\n", "event_topics: [events]\n  decisions_topic: repute-dead-letter\n", "also a topic repute reads or dead-letters to"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(feedbackYAML, tt.from, tt.to, 1)
			if yaml == feedbackYAML {
				t.Fatalf("the replacement of %q changed nothing", tt.from)
			}
			_, err := loadYAML(t, yaml, env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestDecisionsTopicConfig: decisions_topic alone publishes, with no
// consumer.
func TestDecisionsTopicConfig(t *testing.T) {
	yaml := strings.Replace(feedbackYAML, "  raw_topics: [bounces]\n  event_topics: [events]\n", "  decisions_topic: repute-decisions\n", 1)
	cfg, err := loadYAML(t, yaml, map[string]string{"IMAP_PW": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Kafka; k.DecisionsTopic != "repute-decisions" || k.consumes() {
		t.Errorf("kafka: %+v (consumes %v), want decisions_topic set and no consumer", k, k.consumes())
	}
	cfg, err = loadYAML(t, feedbackYAML, map[string]string{"IMAP_PW": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Kafka; k.DecisionsTopic != "" || !k.consumes() {
		t.Errorf("kafka: %+v (consumes %v), want a consumer and no decisions_topic", k, k.consumes())
	}
}

// TestFeedbackConfigOtherCommands: a command other than serve reads the
// same file without needing the mailboxes' passwords.
func TestFeedbackConfigOtherCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "repute.yaml")
	if err := os.WriteFile(file, []byte(feedbackYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	noenv := func(string) string { return "" }
	if _, err := loadServeConfig([]string{"--config", file}, noenv, io.Discard); err == nil || !strings.Contains(err.Error(), "IMAP_PW") {
		t.Errorf("serve without the password: %v, want an error naming IMAP_PW", err)
	}
	spec := configSpec{command: "ingest", help: "", flags: []string{"config", "data"}}
	if _, err := loadConfig(spec, []string{"--config", file}, noenv, io.Discard); err != nil {
		t.Errorf("ingest without the IMAP password: %v", err)
	}
}
