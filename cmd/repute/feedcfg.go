package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// imapConfig is one mailbox of the imap: section: where feedback arrives.
type imapConfig struct {
	Name       string   `yaml:"name"` // in logs, metrics and source_ref
	Addr       string   `yaml:"addr"` // host:port
	TLS        string   `yaml:"tls"`  // implicit (default), starttls, none (loopback only)
	CAFile     string   `yaml:"ca_file"`
	User       string   `yaml:"user"`
	Password   secret   `yaml:"password"` // password_env / password_file
	Folders    []string `yaml:"folders"`  // watched; default [INBOX]
	Processed  string   `yaml:"processed"`
	Ignored    string   `yaml:"ignored"`
	Quarantine string   `yaml:"quarantine"`
	// Account is the account of reports that match no send.
	Account string `yaml:"account"`
	// MaxMessageBytes caps a message read; a larger one is quarantined
	// unread. Default 25 MiB.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`

	password string // resolved
}

// kafkaConfig is the kafka: section. Its presence (brokers) turns the
// consumer on.
type kafkaConfig struct {
	Brokers         []string `yaml:"brokers"`
	Group           string   `yaml:"group"`
	RawTopics       []string `yaml:"raw_topics"`
	EventTopics     []string `yaml:"event_topics"`
	KumoMTATopics   []string `yaml:"kumomta_topics"`
	DeadLetterTopic string   `yaml:"dead_letter_topic"`
	// DecisionsTopic, when set, receives every new throttle decision,
	// keyed by its scope (decisionstopic.go). It needs no consumer topic.
	DecisionsTopic string `yaml:"decisions_topic"`
	// Account is the account of raw reports that match no send, and of
	// event and KumoMTA records that name none.
	Account string `yaml:"account"`
}

// consumes reports whether the kafka: section names topics to read: the
// consumer runs only then (decisions_topic alone only publishes).
func (k kafkaConfig) consumes() bool {
	return len(k.Brokers) > 0 && len(k.RawTopics)+len(k.EventTopics)+len(k.KumoMTATopics) > 0
}

// The defaults of an imap: mailbox.
const (
	defaultIMAPProcessed  = "Processed"
	defaultIMAPIgnored    = "Ignored"
	defaultIMAPQuarantine = "Quarantine"
	defaultIMAPMaxMessage = 25 << 20
)

// checkFeedback fills the defaults of the imap: and kafka: sections and
// checks them; errors name the entry and key. With resolve (repute serve,
// which reads the mailboxes) it also reads their passwords: other commands
// that share the file do not need them.
func (c *serveConfig) checkFeedback(getenv func(string) string, resolve bool) error {
	known := map[string]bool{}
	for _, a := range c.Accounts {
		known[a.Name] = true
	}
	checkAccount := func(where, account string) error {
		switch {
		case account == "":
			return fmt.Errorf("%s.account: required: the account of reports that match no send (they are stored, never dropped)", where)
		case len(c.Accounts) > 0 && !known[account]:
			return fmt.Errorf("%s.account: %q is not one of the accounts: section", where, account)
		}
		return nil
	}
	names := map[string]bool{}
	for i := range c.IMAP {
		m := &c.IMAP[i]
		where := fmt.Sprintf("imap[%d]", i)
		if m.Name != "" {
			where = fmt.Sprintf("imap %q", m.Name)
		}
		switch {
		case m.Name == "":
			return fmt.Errorf("%s.name: required (it names the mailbox in logs, metrics and source_ref)", where)
		case strings.ContainsAny(m.Name, "/ \t"):
			return fmt.Errorf("%s.name: no slash or space: it is the first part of source_ref (name/folder/UIDVALIDITY/UID)", where)
		case names[m.Name]:
			return fmt.Errorf("%s: the name is used twice", where)
		case m.Addr == "":
			return fmt.Errorf("%s.addr: required (host:port)", where)
		case m.User == "":
			return fmt.Errorf("%s.user: required", where)
		}
		names[m.Name] = true
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			return fmt.Errorf("%s.addr %q: want host:port", where, m.Addr)
		}
		switch m.TLS {
		case "":
			m.TLS = "implicit"
		case "implicit", "starttls":
		case "none":
			if !isLoopbackHost(host) {
				return fmt.Errorf("%s.tls: none sends the password in clear text: allowed only to a loopback address, not %q", where, host)
			}
		default:
			return fmt.Errorf("%s.tls %q: want implicit, starttls or none", where, m.TLS)
		}
		if m.Password.IsZero() {
			return fmt.Errorf("%s: password_env: NAME or password_file: PATH is required", where)
		}
		if resolve {
			if m.password, err = m.Password.Resolve(getenv); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		if len(m.Folders) == 0 {
			m.Folders = []string{"INBOX"}
		}
		m.Processed = cmpOr(m.Processed, defaultIMAPProcessed)
		m.Ignored = cmpOr(m.Ignored, defaultIMAPIgnored)
		m.Quarantine = cmpOr(m.Quarantine, defaultIMAPQuarantine)
		dest := map[string]bool{m.Processed: true, m.Ignored: true, m.Quarantine: true}
		if len(dest) != 3 {
			return fmt.Errorf("%s: processed, ignored and quarantine must be three different folders", where)
		}
		for _, f := range m.Folders {
			if dest[f] {
				return fmt.Errorf("%s.folders: %q is also where messages are moved to: a watched folder must not be a destination", where, f)
			}
		}
		if m.MaxMessageBytes == 0 {
			m.MaxMessageBytes = defaultIMAPMaxMessage
		} else if m.MaxMessageBytes < 0 {
			return fmt.Errorf("%s.max_message_bytes %d must be positive", where, m.MaxMessageBytes)
		}
		if err := checkAccount(where, m.Account); err != nil {
			return err
		}
	}
	k := &c.Kafka
	if len(k.Brokers) == 0 {
		if len(k.RawTopics)+len(k.EventTopics)+len(k.KumoMTATopics) > 0 || k.Group != "" || k.DecisionsTopic != "" {
			return errors.New("kafka.brokers: required when the kafka: section names topics")
		}
		return nil
	}
	k.Group = cmpOr(k.Group, "repute")
	k.DeadLetterTopic = cmpOr(k.DeadLetterTopic, "repute-dead-letter")
	if k.DecisionsTopic != "" {
		// Reading what it publishes would feed repute its own decisions.
		for _, t := range append(append(append([]string{k.DeadLetterTopic}, k.RawTopics...), k.EventTopics...), k.KumoMTATopics...) {
			if t == k.DecisionsTopic {
				return fmt.Errorf("kafka.decisions_topic %q: also a topic repute reads or dead-letters to", t)
			}
		}
	}
	if !k.consumes() && k.DecisionsTopic == "" {
		return errors.New("kafka: no topics: name raw_topics, event_topics, kumomta_topics or decisions_topic")
	}
	if len(k.RawTopics)+len(k.KumoMTATopics) > 0 || k.Account != "" {
		if err := checkAccount("kafka", k.Account); err != nil {
			return err
		}
	}
	return nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// isLoopbackHost reports whether host (of an address) is a loopback IP or
// localhost: the only place a clear-text password may go.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
