package imap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The values of Options.TLS.
const (
	TLSImplicit = "implicit" // TLS from the first byte (port 993)
	TLSStartTLS = "starttls" // clear text upgraded by STARTTLS (port 143)
	TLSNone     = "none"     // clear text; only to a loopback address
)

// Defaults of Options.
const (
	DefaultFolder          = "INBOX"
	DefaultProcessed       = "Processed"
	DefaultIgnored         = "Ignored"
	DefaultQuarantine      = "Quarantine"
	DefaultMaxMessageBytes = 25 << 20
	DefaultBatchSize       = 200
	DefaultPollInterval    = 30 * time.Second
	DefaultLeaseTTL        = 30 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
)

// idleRestart bounds one IDLE: RFC 2177 §3 asks a client to re-issue it at
// least every 29 minutes; each restart also rescans the folders.
const idleRestart = 25 * time.Minute

// Options configure a Reader. Name, Addr, User and Password are required;
// the rest have defaults.
type Options struct {
	// Name names the mailbox in logs, metrics (label mailbox) and
	// source_ref (Name/folder/UIDVALIDITY/UID).
	Name string
	// Addr is the server's host:port.
	Addr string
	// TLS is TLSImplicit (the default), TLSStartTLS or TLSNone; TLSNone
	// only to a loopback address (Validate).
	TLS string
	// TLSConfig, when set, configures TLS (a private CA in tests); the
	// server name defaults to Addr's host.
	TLSConfig *tls.Config
	// User and Password log in (LOGIN); the caller resolves the password
	// from wherever the configuration keeps it.
	User, Password string
	// Folders are the watched folders; [INBOX] when empty.
	Folders []string
	// Processed, Ignored and Quarantine are where a message goes once read:
	// a report whose events are durable, a message that is neither a
	// bounce, a complaint nor an unsubscribe request, and one that cannot
	// be read (or is over MaxMessageBytes). Created when missing.
	Processed, Ignored, Quarantine string
	// MaxMessageBytes is the size cap: a larger message (by its
	// RFC822.SIZE, before its body is downloaded) is quarantined.
	// Default 25 MiB.
	MaxMessageBytes int64
	// BatchSize is how many messages one UID FETCH reads and one MOVE per
	// destination moves. Default 200.
	BatchSize int
	// PollInterval is how often the folders are searched when the server
	// has no IDLE, and how often the watched folders other than the first
	// are searched when it has. Default 30 s.
	PollInterval time.Duration
	// LeaseTTL is how long the mailbox's lease lasts unless renewed; it is
	// renewed every LeaseTTL/3, and a reader that stops renewing is taken
	// over by another within LeaseTTL. Default 30 s.
	LeaseTTL time.Duration
	// RetryMin and RetryMax bound the backoff between attempts at a failed
	// connection, evidence write or Submit. Defaults 100 ms, 30 s.
	RetryMin, RetryMax time.Duration
	// Concurrency is how many messages are converted at once; the number
	// of CPUs when ≤ 0.
	Concurrency int
	// Holder names this reader in the lease; a random id when empty.
	Holder string
	// Logger logs; nil: silent.
	Logger *slog.Logger
	// Registerer registers the metrics (repute_imap_*); nil: none. Several
	// readers may share one: they differ by the mailbox label.
	Registerer prometheus.Registerer
}

// withDefaults returns o with the defaults filled in.
func (o Options) withDefaults() Options {
	if o.TLS == "" {
		o.TLS = TLSImplicit
	}
	if len(o.Folders) == 0 {
		o.Folders = []string{DefaultFolder}
	}
	if o.Processed == "" {
		o.Processed = DefaultProcessed
	}
	if o.Ignored == "" {
		o.Ignored = DefaultIgnored
	}
	if o.Quarantine == "" {
		o.Quarantine = DefaultQuarantine
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks o (after defaults): the required fields, the TLS mode —
// clear text only to a loopback address, where the password cannot be
// overheard — and folder names that do not collide.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Name == "" {
		return errors.New("imap: mailbox without a name")
	}
	if strings.Contains(o.Name, "/") {
		return fmt.Errorf("imap: mailbox %q: the name may not contain / (it begins source_ref)", o.Name)
	}
	if o.User == "" {
		return fmt.Errorf("imap: mailbox %s: no user", o.Name)
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("imap: mailbox %s: address %q: want host:port", o.Name, o.Addr)
	}
	switch o.TLS {
	case TLSImplicit, TLSStartTLS:
	case TLSNone:
		if !isLoopback(host) {
			return fmt.Errorf("imap: mailbox %s: tls none to %s: clear text (the password included) is allowed only to a loopback address (127.0.0.1, ::1, localhost); use tls implicit or starttls", o.Name, o.Addr)
		}
	default:
		return fmt.Errorf("imap: mailbox %s: tls %q: want implicit, starttls or none", o.Name, o.TLS)
	}
	dest := map[string]string{}
	for what, f := range map[string]string{"processed": o.Processed, "ignored": o.Ignored, "quarantine": o.Quarantine} {
		if other, dup := dest[f]; dup {
			return fmt.Errorf("imap: mailbox %s: folder %q is both %s and %s", o.Name, f, other, what)
		}
		dest[f] = what
	}
	seen := map[string]bool{}
	for _, f := range o.Folders {
		if f == "" {
			return fmt.Errorf("imap: mailbox %s: empty folder name", o.Name)
		}
		if what, dup := dest[f]; dup {
			return fmt.Errorf("imap: mailbox %s: watched folder %q is also the %s folder", o.Name, f, what)
		}
		if seen[f] {
			return fmt.Errorf("imap: mailbox %s: folder %q is watched twice", o.Name, f)
		}
		seen[f] = true
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a literal loopback IP.
// Names other than localhost are not resolved: what a name resolves to may
// change after the check.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// LeaseName is the name of the lease on a mailbox: every reader of the
// same user at the same server shares it, whatever its configured Name.
func (o Options) LeaseName() string {
	return "imap:" + o.User + "@" + o.Addr
}
