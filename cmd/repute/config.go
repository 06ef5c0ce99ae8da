package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"repute/api"
	"repute/dsn"
	"repute/ingest"
	"repute/metrics"
)

// serveConfig is the configuration of `repute serve`. Every scalar is a
// flag, an environment variable REPUTE_<FLAG> (upper case, - → _) and a YAML
// key (the flag's name with - → _); a flag overrides the environment, which
// overrides the file, which overrides the default. repute.example.yaml
// documents every key.
type serveConfig struct {
	Listen           string        `yaml:"listen"`
	Data             string        `yaml:"data"`
	MaxBodyBytes     int64         `yaml:"max_body_bytes"`
	MaxInflightBytes int64         `yaml:"max_inflight_bytes"`
	MinBodyRate      int64         `yaml:"min_body_rate"`
	ReadTimeout      time.Duration `yaml:"read_timeout"`
	WriteTimeout     time.Duration `yaml:"write_timeout"`
	IdleTimeout      time.Duration `yaml:"idle_timeout"`
	SpoolMaxBytes    int64         `yaml:"spool_max_bytes"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout"`
	LogLevel         string        `yaml:"log_level"`
	ClickHouse       string        `yaml:"clickhouse"`
	// DuckDBMemoryLimit caps the embedded store's memory (duckdb.Options);
	// empty: DuckDB's default, 80% of the machine's memory.
	DuckDBMemoryLimit  string `yaml:"duckdb_memory_limit"`
	ClickHouseDatabase string `yaml:"clickhouse_database"`
	ClickHouseUser     string `yaml:"clickhouse_user"`
	// ClickHousePassword is deprecated in the file (a warning says so):
	// clickhouse_password_env or clickhouse_password_file is the way there.
	// The flag and REPUTE_CLICKHOUSE_PASSWORD keep working.
	ClickHousePassword string `yaml:"clickhouse_password"`

	// Only in the file: secrets (see secret) and structured values.
	// ClickHousePasswordRef is clickhouse_password_env / _file; it sets
	// ClickHousePassword when neither a flag, the environment nor the file's
	// plain clickhouse_password did.
	ClickHousePasswordRef secret `yaml:"clickhouse_password"`
	// SigningKeys is signing_keys_env / signing_keys_file: comma-separated
	// keys, the first signing. Unset: <data>/signing.keys, generated.
	SigningKeys secret `yaml:"signing_keys"`

	Accounts   []accountConfig   `yaml:"accounts"`
	ISPDomains map[string]string `yaml:"isp_domains"`
	// BouncePhrases are the operator's lexicon groups, tried before the
	// built-in lexicon (dsn/lexicon.txt) when bounces are classified.
	BouncePhrases []dsn.LexiconGroup `yaml:"bounce_phrases"`
	// IMAP and Kafka are the feedback sources (feedcfg.go).
	IMAP  []imapConfig `yaml:"imap"`
	Kafka kafkaConfig  `yaml:"kafka"`
	// Sender is the built-in sender (sending.go); off without a relay.
	Sender senderConfig `yaml:"sender"`

	// EvidenceRetention is how many days stored raw reports are kept.
	EvidenceRetention int `yaml:"evidence_retention"`
	// MaxEvidenceBytes caps a stored raw report (before compression); a
	// larger one keeps its header, report parts and returned headers.
	MaxEvidenceBytes int64 `yaml:"max_evidence_bytes"`

	// TrackingListen, when set, serves the tracking endpoints (/t/o, /t/c,
	// /t/u) on a listener of their own instead of on Listen.
	TrackingListen string `yaml:"tracking_listen"`
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS on listen and
	// tracking_listen (tls.go), the pair read again on SIGHUP.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TrustedProxies (only in the file) are the CIDR prefixes of the
	// reverse proxies whose X-Forwarded-For the tracking endpoints believe
	// for the client's address; none: the TCP peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// MachineOpens configures the machine-open detector (package opens)
	// applied at intake to every open and click without a verdict.
	MachineOpens machineOpensConfig `yaml:"machine_opens"`

	// ISPMX looks up the MX hosts of the recipient domains isp_domains
	// and the built-in map do not know, so that a custom domain hosted by
	// Google Workspace, Microsoft 365, … is counted under that provider
	// (ispmx.go).
	ISPMX ispMXConfig `yaml:"isp_mx"`

	// RulesFile holds the rule engine's rules (package rules; issue 13);
	// empty: the built-in defaults from docs/THRESHOLDS.md. RulesInterval
	// is how often they are evaluated. Both only in the file.
	RulesFile     string        `yaml:"rules_file"`
	RulesInterval time.Duration `yaml:"rules_interval"`

	// QueryTimeout is the deadline of the API's store reads (503 past it);
	// MaxResultRows caps the groups of GET /v1/stats and the items of
	// GET /v1/decisions and /v1/flags ("truncated": true).
	QueryTimeout  time.Duration `yaml:"query_timeout"`
	MaxResultRows int           `yaml:"max_result_rows"`
	// RateLimits and AuthLockout (only in the file) protect the API and
	// the public endpoints (README, Running it in production).
	RateLimits  rateLimitsConfig  `yaml:"rate_limits"`
	AuthLockout authLockoutConfig `yaml:"auth_lockout"`

	// Only in the environment: REPUTE_ADMIN_KEY, a secret.
	AdminKey string `yaml:"-"`

	fileKeys map[string]bool // the top-level keys the file set
	args     []string        // the command's arguments after its flags
	warnings []string        // for the log, once there is one
}

type accountConfig struct {
	Name string   `yaml:"name"`
	Keys []string `yaml:"keys"`
	// DisplayName names the account to the people on its unsubscribe page;
	// empty: Name.
	DisplayName string `yaml:"display_name"`
	// WebhookURL, when set, is told of every change of the account's
	// unsubscribe list (webhooks.go), each POST signed with
	// WebhookSecret (webhook_secret_env / webhook_secret_file).
	WebhookURL    string `yaml:"webhook_url"`
	WebhookSecret secret `yaml:"webhook_secret"`
	// SenderDomains, when set, are the only sender domains (From's
	// domain) the account may send from through POST /v1/messages: one
	// tenant must not send as another's domain.
	SenderDomains []string `yaml:"sender_domains"`
	// SkipWarmup lets a small registration or transactional sender (under
	// 10,000 a day) skip the warm-up of its sender_domains, as
	// THRESHOLDS.md allows: no schedule, but the rule engine holds it to
	// 10,000 a day and its rate rules still slow or pause it.
	SkipWarmup bool `yaml:"skip_warmup"`
	// RateLimit is the account's own bucket (all its keys share it);
	// unset (rate 0): rate_limits.key.
	RateLimit rateConfig `yaml:"rate_limit"`

	webhookSecret string // resolved
}

// machineOpensConfig is the machine_opens: section (only in the file, like
// the other sections).
type machineOpensConfig struct {
	// AppleRangesFile is Apple's egress-ip-ranges.csv, downloaded by the
	// operator; read at start. Unset: an open with Apple's proxy user agent
	// ("Mozilla/5.0") is a machine's with reason apple_mpp_ua, never
	// apple_mpp (the address cannot be confirmed).
	AppleRangesFile string `yaml:"apple_ranges_file"`
	// PrefetchWindow: an open this soon after the send is a machine's
	// (prefetch); 0 takes the default (10s), a negative value turns it off.
	// Used where the send's time is known (the tracking endpoints), not
	// for posted events.
	PrefetchWindow time.Duration `yaml:"prefetch_window"`
	// Off turns the detection at intake off: opens are stored with the
	// verdict they arrive with.
	Off bool `yaml:"off"`
}

// rateConfig is a token bucket: rate requests a second, bursts of burst
// (0: rate rounded up). rate 0 is no limit.
type rateConfig struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

func (r rateConfig) api() api.Rate { return api.Rate{PerSecond: r.Rate, Burst: r.Burst} }

// rateLimitsConfig is the rate_limits: section. key is per account (and
// the admin key); the others are per client address (an IPv6 client by
// its /64). How the defaults were chosen: README, Running it in
// production.
type rateLimitsConfig struct {
	Key         rateConfig `yaml:"key"`
	Pixel       rateConfig `yaml:"pixel"`
	Click       rateConfig `yaml:"click"`
	Unsubscribe rateConfig `yaml:"unsubscribe"`
	Feedback    rateConfig `yaml:"feedback"`
	// MaxAddresses bounds the addresses each per-address limit (and the
	// failed-authentication table) remembers: the least recently seen is
	// forgotten first.
	MaxAddresses int `yaml:"max_addresses"`
}

// authLockoutConfig is the auth_lockout: section: after failures failed
// authentications from one address within window, unknown keys from it
// are refused (429) for duration; valid keys still pass. failures 0: off.
type authLockoutConfig struct {
	Failures int           `yaml:"failures"`
	Window   time.Duration `yaml:"window"`
	Duration time.Duration `yaml:"duration"`
}

// ispMXConfig is the isp_mx: section (only in the file).
type ispMXConfig struct {
	// Enabled turns the lookups on (off by default: repute then makes no
	// DNS query of its own).
	Enabled bool `yaml:"enabled"`
	// Server is the DNS server ("host:port") asked; empty: the system's
	// (resolv.conf).
	Server string `yaml:"server"`
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Listen:             "127.0.0.1:8080",
		Data:               "./var",
		MaxBodyBytes:       16 << 20,
		MaxInflightBytes:   api.DefaultMaxInflightBytes,
		MinBodyRate:        api.DefaultMinBodyRate,
		ReadTimeout:        2 * time.Minute,
		WriteTimeout:       time.Minute,
		IdleTimeout:        2 * time.Minute,
		SpoolMaxBytes:      1 << 30,
		ShutdownTimeout:    30 * time.Second,
		LogLevel:           "info",
		ClickHouseDatabase: "repute",
		EvidenceRetention:  metrics.DefaultEvidenceRetentionDays,
		MaxEvidenceBytes:   ingest.DefaultMaxEvidence,
		RulesInterval:      time.Minute,
		QueryTimeout:       api.DefaultQueryTimeout,
		MaxResultRows:      api.DefaultMaxResultRows,
		RateLimits: rateLimitsConfig{
			Key:          rateConfig{Rate: 500, Burst: 1000},
			Pixel:        rateConfig{Rate: 2000, Burst: 20000},
			Click:        rateConfig{Rate: 500, Burst: 5000},
			Unsubscribe:  rateConfig{Rate: 50, Burst: 500},
			Feedback:     rateConfig{Rate: 50, Burst: 500},
			MaxAddresses: api.DefaultMaxAddresses,
		},
		AuthLockout: authLockoutConfig{Failures: 20, Window: time.Minute, Duration: 15 * time.Minute},
	}
}

// serveFlags binds the flags of `repute serve` to cfg.
func serveFlags(fs *flag.FlagSet, cfg *serveConfig, configFile *string) {
	fs.StringVar(configFile, "config", "", "YAML configuration `file` (see repute.example.yaml)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen `address`")
	fs.StringVar(&cfg.TrackingListen, "tracking-listen", cfg.TrackingListen, "listen `address` of the public tracking endpoints (/t/o, /t/c, /t/u); empty: on --listen")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", cfg.TLSCertFile, "PEM certificate chain `file`: serve HTTPS on --listen and --tracking-listen (reloaded on SIGHUP)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", cfg.TLSKeyFile, "PEM private key `file` of --tls-cert-file")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data `directory`: spool, DuckDB file, generated admin key")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest POST body; larger gets 413")
	fs.Int64Var(&cfg.MaxInflightBytes, "max-inflight-bytes", cfg.MaxInflightBytes, "memory for POST bodies in flight, each counted 6× its size; over it 503")
	fs.Int64Var(&cfg.MinBodyRate, "min-body-rate", cfg.MinBodyRate, "slowest request body, bytes/s after 5s of grace; slower gets 408")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", cfg.ReadTimeout, "longest time to read a request, headers and body")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "longest time to answer once the request is read (streams are exempt)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "how long a keep-alive connection may wait for its next request")
	fs.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", cfg.SpoolMaxBytes, "undrained spool bytes at which intake answers 503")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "on SIGTERM, how long to flush the spool before exiting")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.ClickHouse, "clickhouse", cfg.ClickHouse, "ClickHouse native `address` (host:port); empty: embedded DuckDB")
	fs.StringVar(&cfg.DuckDBMemoryLimit, "duckdb-memory-limit", cfg.DuckDBMemoryLimit, "memory cap of the embedded DuckDB store (e.g. 512MB); empty: 80% of the machine's")
	fs.StringVar(&cfg.ClickHouseDatabase, "clickhouse-database", cfg.ClickHouseDatabase, "ClickHouse database, created if missing")
	fs.StringVar(&cfg.ClickHouseUser, "clickhouse-user", cfg.ClickHouseUser, "ClickHouse user")
	fs.IntVar(&cfg.EvidenceRetention, "evidence-retention", cfg.EvidenceRetention, "days a stored raw report (bounce, complaint) is kept: it holds personal data")
	fs.Int64Var(&cfg.MaxEvidenceBytes, "max-evidence-bytes", cfg.MaxEvidenceBytes, "largest raw report stored whole; a larger one keeps its header, report parts and returned headers")
	fs.DurationVar(&cfg.QueryTimeout, "query-timeout", cfg.QueryTimeout, "deadline of the API's store reads (GET /v1/stats and the lists); past it 503")
	fs.IntVar(&cfg.MaxResultRows, "max-result-rows", cfg.MaxResultRows, "most groups of GET /v1/stats (and items of /v1/decisions, /v1/flags); more: \"truncated\": true")
	fs.StringVar(&cfg.ClickHousePassword, "clickhouse-password", cfg.ClickHousePassword, "ClickHouse password (better: REPUTE_CLICKHOUSE_PASSWORD, or clickhouse_password_env / _file in the file)")
}

const configHelp = `Each flag is also REPUTE_<FLAG> in the environment (upper case, - → _) and
a key of the YAML file (- → _); a flag overrides the environment, which
overrides the file, which overrides the default. Secrets are never plain
values in the file: X_env: NAME or X_file: PATH (see README, Configuration
conventions).

Flags:
`

const serveUsage = `Usage: repute serve [flags]

Serves the HTTP API (POST /v1/events, GET /v1/stats, POST /v1/feedback,
GET /v1/evidence/ID, the suppression lists under /v1/suppressions,
/v1/blocklist, /v1/unsubscribes and /v1/audit, GET /v1/webhooks/deliveries,
POST /v1/messages and GET /v1/queue, the rule engine's /v1/decisions,
/v1/flags and /v1/overrides, /healthz, /readyz, /metrics), keeps
accepted events in the on-disk spool and drains them into the store: DuckDB
in the data directory, or ClickHouse with --clickhouse. It reads the
feedback mailboxes (imap:) and Kafka topics (kafka:) of the configuration
file, and sends mail through the relay of its sender: section (POST
/v1/messages, repute send; off without sender.relay). The public tracking
endpoints (/t/o, /t/c, /t/u; no key) are served on --listen, or on
--tracking-listen when set. REPUTE_ADMIN_KEY holds the admin key; see
repute.example.yaml for accounts and their keys (repute keys new --account
NAME makes one).

` + configHelp

// loadServeConfig applies the default, the file, the environment and the
// flags, in rising precedence. getenv is os.Getenv outside tests; usage
// receives the flags' help and errors.
func loadServeConfig(args []string, getenv func(string) string, usage io.Writer) (serveConfig, error) {
	return loadConfig(configSpec{command: "serve", help: serveUsage}, args, getenv, usage)
}

// configSpec says which of serve's settings a command takes.
type configSpec struct {
	command, help string
	// flags lists the serve flags the command has ("config" included);
	// nil: all of them. A command reads the environment only for its
	// flags, and the whole file (it is serve's).
	flags []string
	// extra binds the command's own flags, if any.
	extra func(fs *flag.FlagSet)
	// positional is the number of arguments allowed after the flags.
	positional int
}

// errUsage marks an error of the command line (exit status 2).
var errUsage = errors.New("usage")

// loadConfig is loadServeConfig for any command that reads serve's
// configuration (migrate does: the same file tells where ClickHouse is).
// An error of the command line wraps errUsage, or is flag.ErrHelp.
func loadConfig(spec configSpec, args []string, getenv func(string) string, usage io.Writer) (serveConfig, error) {
	cfg := defaultServeConfig()
	var configFile string
	fs := flag.NewFlagSet(spec.command, flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, spec.help)
		fs.PrintDefaults()
	}
	all := flag.NewFlagSet(spec.command, flag.ContinueOnError)
	serveFlags(all, &cfg, &configFile)
	keep := map[string]bool{}
	for _, name := range spec.flags {
		keep[name] = true
	}
	all.VisitAll(func(f *flag.Flag) {
		if spec.flags == nil || keep[f.Name] {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	if spec.extra != nil {
		spec.extra(fs)
	}
	ours := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { ours[f.Name] = true })
	// First pass: only to learn --config. The second pass, last, makes the
	// flags win over the file and the environment.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > spec.positional {
		return cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(spec.positional))
	}
	if configFile == "" {
		configFile = getenv("REPUTE_CONFIG")
	}
	if configFile != "" {
		if err := readConfigFile(configFile, &cfg); err != nil {
			return cfg, err
		}
	}
	if cfg.fileKeys["clickhouse_password"] && cfg.ClickHousePassword != "" {
		if !cfg.ClickHousePasswordRef.IsZero() {
			return cfg, fmt.Errorf("config %s: clickhouse_password and clickhouse_password_env/_file are both set: keep clickhouse_password_env or clickhouse_password_file", configFile)
		}
		cfg.warnings = append(cfg.warnings, fmt.Sprintf("config %s: clickhouse_password is deprecated: a secret is never a plain value in the file; use clickhouse_password_env: NAME or clickhouse_password_file: PATH", configFile))
	}
	var envErr error
	all.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || !ours[f.Name] {
			return
		}
		name := "REPUTE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: expected %s", name, v, describeType(scalarType(f.Name)))
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	cfg.AdminKey = getenv("REPUTE_ADMIN_KEY")
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.args = fs.Args()
	if cfg.ClickHousePassword == "" {
		pw, err := cfg.ClickHousePasswordRef.Resolve(getenv)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", configFile, err)
		}
		cfg.ClickHousePassword = pw
	}
	if err := cfg.checkFeedback(getenv, spec.command == "serve"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", configFile, err)
	}
	if err := cfg.checkWebhooks(getenv, spec.command == "serve"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", configFile, err)
	}
	if err := cfg.checkSender(getenv, spec.command == "serve"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", configFile, err)
	}
	return cfg, cfg.validate()
}

// loadCommandConfig is loadConfig for a subcommand: --help prints the
// command's help on stdout (status 0); an error is printed as
// "repute COMMAND: …" with its exit status. ok is false when the command
// is to return code at once. The arguments after the flags are cfg.args.
func loadCommandConfig(spec configSpec, args []string, stdout, stderr io.Writer) (cfg serveConfig, code int, ok bool) {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			loadConfig(spec, args, os.Getenv, stdout)
			return cfg, 0, false
		}
	}
	cfg, err := loadConfig(spec, args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cfg, 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "repute %s: %v\n", spec.command, err)
		return cfg, exitStatus(err), false
	}
	return cfg, 0, true
}

// scalarType returns the type of the serveConfig field a flag sets: its
// YAML key is the flag's name with - → _.
func scalarType(flagName string) reflect.Type {
	key := strings.ReplaceAll(flagName, "-", "_")
	t := reflect.TypeFor[serveConfig]()
	for _, sf := range reflect.VisibleFields(t) {
		if name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ","); name == key && sf.Type != secretType {
			return sf.Type
		}
	}
	return reflect.TypeFor[string]()
}

// lexicon returns the bounce lexicon: the operator's bounce_phrases in
// front of the built-in one.
func (c serveConfig) lexicon() (*dsn.Lexicon, error) {
	if len(c.BouncePhrases) == 0 {
		return dsn.DefaultLexicon(), nil
	}
	front, err := dsn.NewLexicon("config bounce_phrases", c.BouncePhrases)
	if err != nil {
		return nil, err
	}
	return dsn.DefaultLexicon().Extend(front), nil
}

func (c serveConfig) validate() error {
	if _, err := c.lexicon(); err != nil {
		return err
	}
	if _, err := parseTrustedProxies(c.TrustedProxies); err != nil {
		return err
	}
	if err := c.checkRateLimits(); err != nil {
		return err
	}
	switch {
	case c.Listen == "":
		return errors.New("--listen is empty")
	case c.Data == "":
		return errors.New("--data is empty")
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("--max-body-bytes %d must be positive", c.MaxBodyBytes)
	case c.MaxInflightBytes < api.MinInflightBytes(c.MaxBodyBytes):
		return fmt.Errorf("--max-inflight-bytes %d must be at least %d for --max-body-bytes %d, or a body of the largest size is never taken",
			c.MaxInflightBytes, api.MinInflightBytes(c.MaxBodyBytes), c.MaxBodyBytes)
	case c.MinBodyRate <= 0:
		return fmt.Errorf("--min-body-rate %d must be positive", c.MinBodyRate)
	case c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("--read-timeout %s, --write-timeout %s and --idle-timeout %s must be positive", c.ReadTimeout, c.WriteTimeout, c.IdleTimeout)
	case c.SpoolMaxBytes <= 0:
		return fmt.Errorf("--spool-max-bytes %d must be positive", c.SpoolMaxBytes)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s must be positive", c.ShutdownTimeout)
	case c.EvidenceRetention <= 0:
		return fmt.Errorf("--evidence-retention %d must be a positive number of days", c.EvidenceRetention)
	case c.RulesInterval <= 0:
		return fmt.Errorf("rules_interval %s must be positive", c.RulesInterval)
	case c.MachineOpens.Off && (c.MachineOpens.AppleRangesFile != "" || c.MachineOpens.PrefetchWindow != 0):
		return errors.New("machine_opens: off is set beside apple_ranges_file or prefetch_window: keep one")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together: set both to serve HTTPS, or neither")
	case c.ISPMX.Server != "" && !validHostPort(c.ISPMX.Server):
		return fmt.Errorf("isp_mx.server %q: want host:port, such as 127.0.0.53:53", c.ISPMX.Server)
	case c.TrackingListen != "" && c.TrackingListen == c.Listen:
		return fmt.Errorf("--tracking-listen %s is --listen: leave it empty to serve the tracking endpoints on --listen", c.TrackingListen)
	case c.QueryTimeout <= 0:
		return fmt.Errorf("--query-timeout %s must be positive", c.QueryTimeout)
	case c.MaxResultRows <= 0:
		return fmt.Errorf("--max-result-rows %d must be positive", c.MaxResultRows)
	case c.RateLimits.MaxAddresses <= 0:
		return fmt.Errorf("rate_limits.max_addresses %d must be positive", c.RateLimits.MaxAddresses)
	case c.AuthLockout.Failures < 0 || c.AuthLockout.Failures > 0 && (c.AuthLockout.Window <= 0 || c.AuthLockout.Duration <= 0):
		return fmt.Errorf("auth_lockout: failures %d, window %s, duration %s: want failures 0 (off), or failures with a positive window and duration",
			c.AuthLockout.Failures, c.AuthLockout.Window, c.AuthLockout.Duration)
	case c.MaxEvidenceBytes < 4096:
		return fmt.Errorf("--max-evidence-bytes %d must be at least 4096: a report's header and parts must fit", c.MaxEvidenceBytes)
	}
	return nil
}

// checkWebhooks checks the webhooks of the accounts: http(s) URLs, https
// unless the host is a loopback one, and a secret with each URL. With
// resolve (repute serve) it also reads the secrets.
func (c *serveConfig) checkWebhooks(getenv func(string) string, resolve bool) error {
	for i := range c.Accounts {
		acc := &c.Accounts[i]
		if acc.WebhookURL == "" {
			if !acc.WebhookSecret.IsZero() {
				return fmt.Errorf("accounts: account %q: webhook_secret is set without webhook_url", acc.Name)
			}
			continue
		}
		if err := checkWebhookURL(acc.WebhookURL); err != nil {
			return fmt.Errorf("accounts: account %q: webhook_url %q: %w", acc.Name, acc.WebhookURL, err)
		}
		if acc.WebhookSecret.IsZero() {
			return fmt.Errorf("accounts: account %q: webhook_url needs a secret to sign with: webhook_secret_env: NAME or webhook_secret_file: PATH", acc.Name)
		}
		if !resolve {
			continue
		}
		v, err := acc.WebhookSecret.Resolve(getenv)
		if err != nil {
			return fmt.Errorf("accounts: account %q: %w", acc.Name, err)
		}
		acc.webhookSecret = v
	}
	return nil
}

// checkWebhookURL accepts an absolute http or https URL; plain http only
// to a loopback host (the body says who unsubscribed).
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("want an absolute http:// or https:// URL")
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return errors.New("https is required (plain http only to a loopback host: localhost, 127.0.0.1, ::1)")
	}
	return nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkRateLimits refuses a negative rate or burst, naming its key.
func (c serveConfig) checkRateLimits() error {
	rl := c.RateLimits
	named := []struct {
		key string
		r   rateConfig
	}{{"rate_limits.key", rl.Key}, {"rate_limits.pixel", rl.Pixel}, {"rate_limits.click", rl.Click},
		{"rate_limits.unsubscribe", rl.Unsubscribe}, {"rate_limits.feedback", rl.Feedback}}
	for _, acc := range c.Accounts {
		named = append(named, struct {
			key string
			r   rateConfig
		}{fmt.Sprintf("accounts: account %q: rate_limit", acc.Name), acc.RateLimit})
	}
	for _, n := range named {
		if n.r.Rate < 0 || n.r.Burst < 0 {
			return fmt.Errorf("config %s: rate %g and burst %d must not be negative (rate 0: no limit)", n.key, n.r.Rate, n.r.Burst)
		}
	}
	return nil
}

// guardOptions are the API's rate limits and lock-out as configured.
func (c serveConfig) guardOptions() api.GuardOptions {
	rl := c.RateLimits
	o := api.GuardOptions{
		KeyRate:      rl.Key.api(),
		AccountRates: map[string]api.Rate{},
		AddressRates: map[string]api.Rate{
			api.LimitPixel: rl.Pixel.api(), api.LimitClick: rl.Click.api(),
			api.LimitUnsubscribe: rl.Unsubscribe.api(), api.LimitFeedback: rl.Feedback.api(),
		},
		MaxAddresses: rl.MaxAddresses,
		Lockout:      api.Lockout{Failures: c.AuthLockout.Failures, Window: c.AuthLockout.Window, Duration: c.AuthLockout.Duration},
	}
	for _, acc := range c.Accounts {
		if !acc.RateLimit.api().Off() {
			o.AccountRates[acc.Name] = acc.RateLimit.api()
		}
	}
	return o
}
