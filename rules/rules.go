package rules

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"repute/metrics"
)

// DefaultsYAML is the built-in rules file: the thresholds of
// docs/THRESHOLDS.md as data. A rules_file in the configuration replaces
// it as a whole.
//
//go:embed defaults.yaml
var DefaultsYAML []byte

// Defaults returns the built-in rule set (DefaultsYAML, parsed).
func Defaults() *RuleSet {
	rs, err := Load(bytes.NewReader(DefaultsYAML))
	if err != nil {
		panic("rules: the embedded defaults.yaml does not load: " + err.Error()) // a test guards it
	}
	return rs
}

// maxRulesFile bounds what Load reads.
const maxRulesFile = 1 << 20

// RuleSet is a loaded rules file: the rate rules and the response-pattern
// rules, in file order.
type RuleSet struct {
	Rates    []RateRule
	Patterns []PatternRule
}

// Direction says on which side of its thresholds a rate is a problem.
type Direction string

const (
	// Above: a rate at or above a threshold crosses it (bounces,
	// complaints: THRESHOLDS.md says "≥ 5%").
	Above Direction = "above"
	// Below: a rate strictly below a threshold crosses it (open rates:
	// "< 50%").
	Below Direction = "below"
)

// Level is one threshold of a rate rule and the severity it gives.
type Level struct {
	Severity Severity `yaml:"severity"`
	Value    float64  `yaml:"value"`
}

// RateRule flags scopes whose rate crosses a threshold.
type RateRule struct {
	ID          string
	Description string
	// Rate is one of RateNames (hard_bounce_rate, complaint_rate, …).
	Rate string
	// Scopes lists the dimension sets the rule is evaluated over, each
	// its own grouping: [[sender_domain] [sender_domain isp]].
	Scopes [][]metrics.GroupBy
	// Where keeps only the scopes with these values (e.g. category:
	// registration); its dimensions are added to every grouping.
	Where Scope
	// Window is how far back the rule looks; MinAge, when set, leaves out
	// deliveries younger than it (messages not yet old enough to have
	// been opened): delivered in [now-Window, now-MinAge). See
	// Source for the approximation this is.
	Window, MinAge time.Duration
	// MinSample is the least denominator (Rates.Sample) that counts.
	MinSample int64
	When      Direction
	// Levels in rising severity.
	Levels []Level
	// Line is where the rule starts in its file.
	Line int
}

// WindowName is the window as a flag shows it: "7d", or "24h-7d" with a
// minimum age.
func (r *RateRule) WindowName() string {
	if r.MinAge > 0 {
		return fmtDuration(r.MinAge) + "-" + fmtDuration(r.Window)
	}
	return fmtDuration(r.Window)
}

// PatternRule flags scopes whose SMTP replies (of deferred and bounced
// events) match a regular expression Count times within Within. A reply
// counts for the first pattern rule it matches, in file order: put the
// specific ones (a provider's codes) before the generic ones.
type PatternRule struct {
	ID          string
	Description string
	// Match is matched against the reply as "CODE STATUS DIAGNOSTIC"
	// (Response.Text).
	Match *regexp.Regexp
	// Kinds the rule reads: deferred, bounced (default both).
	Kinds []metrics.Kind
	// ISP, when set, keeps only replies from that provider.
	ISP string
	// Scope names the dimensions of the flag (of sender_domain,
	// sending_ip, isp, account); a response's empty fields drop out.
	Scope    []metrics.GroupBy
	Count    int
	Within   time.Duration
	Action   Action
	For      time.Duration
	Severity Severity
	// Limits a slow action sets (0: unchanged).
	MinuteLimit    int
	MaxConnections int
	// Repeated, when set, lengthens the action when the pattern fires
	// again: Count episodes (this one included) starting within Within
	// give For and Severity instead.
	Repeated *Repeat
	Line     int
}

// Repeat is the escalation of a pattern rule that fires again.
type Repeat struct {
	Count    int
	Within   time.Duration
	For      time.Duration
	Severity Severity
}

// WindowName is the window as a flag shows it.
func (p *PatternRule) WindowName() string { return fmtDuration(p.Within) }

// Problem is one thing wrong in a rules file.
type Problem struct {
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	}
	return p.Msg
}

// LoadError lists every problem found in a rules file.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "rules: " + strings.Join(parts, "; ")
}

// LoadFile reads a rules file (Load).
func LoadFile(path string) (*RuleSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	return Load(f)
}

// Load reads a rules file. Every problem is reported, each with its line,
// in a *LoadError; the rule set is returned only when there is none.
func Load(r io.Reader) (*RuleSet, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxRulesFile+1))
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if len(data) > maxRulesFile {
		return nil, &LoadError{[]Problem{{0, fmt.Sprintf("the file is larger than %d bytes", maxRulesFile)}}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &LoadError{[]Problem{yamlProblem(err)}}
	}
	l := &loader{}
	rs := l.document(&doc)
	if len(l.problems) > 0 {
		return nil, &LoadError{l.problems}
	}
	return rs, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// yamlParserProblems are the messages of yaml.v3's parser (parserc.go),
// as opposed to its scanner's.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected '-' indicator", "did not find expected <document start>",
	"did not find expected <stream-start>", "did not find expected key", "did not find expected node content",
}

// yamlProblem turns a yaml.v3 error ("yaml: line 3: …") into a Problem.
func yamlProblem(err error) Problem {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		// QUIRK: yaml.v3 (go.yaml.in/yaml/v3 v3.0.6, decode.go parser.fail)
		// adds 1 to the 0-based line of scanner errors only: its parser's
		// errors ("did not find expected key", …) come one line short,
		// and name where the enclosing collection starts.
		if slices.Contains(yamlParserProblems, m[2]) {
			n++
		}
		return Problem{n, m[2]}
	}
	return Problem{0, msg}
}

type loader struct {
	problems []Problem
}

func (l *loader) addf(line int, format string, args ...any) {
	l.problems = append(l.problems, Problem{line, fmt.Sprintf(format, args...)})
}

// fields checks a mapping node's keys against the known ones and returns
// the value nodes by key.
func (l *loader) fields(n *yaml.Node, what string, known ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, "%s must be a mapping", what)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			l.addf(k.Line, "%s: unknown field %q (known: %s)", what, k.Value, strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.addf(k.Line, "%s: field %q given twice", what, k.Value)
		}
		out[k.Value] = v
	}
	return out
}

func (l *loader) document(doc *yaml.Node) *RuleSet {
	rs := &RuleSet{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		l.addf(0, "the file is empty")
		return rs
	}
	top := l.fields(doc.Content[0], "the file", "rates", "patterns")
	ids := map[string]int{}
	seen := func(id string, line int) {
		if id == "" {
			return
		}
		if prev, ok := ids[id]; ok {
			l.addf(line, "rule id %q is used already (line %d)", id, prev)
			return
		}
		ids[id] = line
	}
	if n := top["rates"]; n != nil {
		for _, item := range l.seq(n, "rates") {
			r, ok := l.rateRule(item)
			seen(r.ID, r.Line)
			if ok {
				rs.Rates = append(rs.Rates, r)
			}
		}
	}
	if n := top["patterns"]; n != nil {
		for _, item := range l.seq(n, "patterns") {
			p, ok := l.patternRule(item)
			seen(p.ID, p.Line)
			if ok {
				rs.Patterns = append(rs.Patterns, p)
			}
		}
	}
	if len(rs.Rates)+len(rs.Patterns) == 0 && len(l.problems) == 0 {
		l.addf(doc.Content[0].Line, "no rules (rates, patterns)")
	}
	return rs
}

func (l *loader) seq(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		l.addf(n.Line, "%s must be a list", what)
		return nil
	}
	return n.Content
}

var idRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (l *loader) str(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		l.addf(n.Line, "%s must be a string", what)
		return ""
	}
	return n.Value
}

func (l *loader) id(f map[string]*yaml.Node, line int) string {
	n := f["id"]
	if n == nil {
		l.addf(line, "a rule needs an id")
		return ""
	}
	id := l.str(n, "id")
	if !idRE.MatchString(id) {
		l.addf(n.Line, "id %q: use lower-case letters, digits and _, starting with a letter", id)
	}
	return id
}

func (l *loader) duration(n *yaml.Node, what string) time.Duration {
	if n == nil {
		return 0
	}
	d, err := parseDuration(l.str(n, what))
	if err != nil || d <= 0 {
		l.addf(n.Line, "%s: %q is not a positive duration (e.g. 90m, 2h, 7d)", what, n.Value)
		return 0
	}
	return d
}

func (l *loader) integer(n *yaml.Node, what string, min int64) int64 {
	if n == nil {
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if n.Kind != yaml.ScalarNode || err != nil || v < min {
		l.addf(n.Line, "%s: %q is not a whole number ≥ %d", what, n.Value, min)
		return 0
	}
	return v
}

func (l *loader) severity(n *yaml.Node) Severity {
	s := Severity(l.str(n, "severity"))
	if severityRank(s) < 0 {
		l.addf(n.Line, "severity %q: one of info, warning, critical, pause", s)
	}
	return s
}

// dims parses "sender_domain+isp".
func (l *loader) dims(n *yaml.Node, allowed []metrics.GroupBy) []metrics.GroupBy {
	s := l.str(n, "scope")
	var out []metrics.GroupBy
	for _, part := range strings.Split(s, "+") {
		g := metrics.GroupBy(strings.TrimSpace(part))
		if !slices.Contains(allowed, g) {
			names := make([]string, len(allowed))
			for i, a := range allowed {
				names[i] = string(a)
			}
			l.addf(n.Line, "scope %q: unknown dimension %q (known: %s; join them with +)", s, g, strings.Join(names, ", "))
			return nil
		}
		if slices.Contains(out, g) {
			l.addf(n.Line, "scope %q: %q named twice", s, g)
			return nil
		}
		out = append(out, g)
	}
	return out
}

func (l *loader) rateRule(n *yaml.Node) (RateRule, bool) {
	before := len(l.problems)
	f := l.fields(n, "a rate rule", "id", "description", "rate", "scopes", "where", "window",
		"min_age", "min_sample", "when", "thresholds")
	r := RateRule{Line: n.Line, ID: l.id(f, n.Line), Description: l.str(f["description"], "description")}
	if n.Kind != yaml.MappingNode {
		return r, false
	}
	if v := f["rate"]; v == nil {
		l.addf(n.Line, "rule %s: rate is required (one of %s)", r.ID, strings.Join(RateNames, ", "))
	} else if r.Rate = l.str(v, "rate"); !slices.Contains(RateNames, r.Rate) {
		l.addf(v.Line, "rate %q: one of %s", r.Rate, strings.Join(RateNames, ", "))
	}
	if v := f["scopes"]; v == nil {
		l.addf(n.Line, "rule %s: scopes is required (e.g. [sender_domain, sender_domain+isp])", r.ID)
	} else {
		for _, s := range l.seq(v, "scopes") {
			if d := l.dims(s, scopeDims); d != nil {
				r.Scopes = append(r.Scopes, d)
			}
		}
		if len(v.Content) == 0 {
			l.addf(v.Line, "rule %s: scopes is empty", r.ID)
		}
	}
	if v := f["where"]; v != nil {
		w := l.fields(v, "where", dimNames(scopeDims)...)
		for k, val := range w {
			setScope(&r.Where, metrics.GroupBy(k), l.str(val, k))
		}
	}
	r.Window = l.duration(f["window"], "window")
	if f["window"] == nil {
		l.addf(n.Line, "rule %s: window is required (e.g. 7d)", r.ID)
	}
	r.MinAge = l.duration(f["min_age"], "min_age")
	if r.Window > 0 && r.MinAge >= r.Window {
		l.addf(f["min_age"].Line, "min_age %s must be shorter than the window %s", fmtDuration(r.MinAge), fmtDuration(r.Window))
	}
	r.MinSample = l.integer(f["min_sample"], "min_sample", 0)
	switch v := f["when"]; {
	case v == nil:
		l.addf(n.Line, "rule %s: when is required (above or below)", r.ID)
	case Direction(v.Value) == Above || Direction(v.Value) == Below:
		r.When = Direction(v.Value)
	default:
		l.addf(v.Line, "when %q: above or below", v.Value)
	}
	if v := f["thresholds"]; v == nil {
		l.addf(n.Line, "rule %s: thresholds is required", r.ID)
	} else {
		for _, t := range l.seq(v, "thresholds") {
			tf := l.fields(t, "a threshold", "severity", "value")
			if tf["severity"] == nil || tf["value"] == nil {
				l.addf(t.Line, "a threshold needs severity and value")
				continue
			}
			lv := Level{Severity: l.severity(tf["severity"])}
			x, err := strconv.ParseFloat(tf["value"].Value, 64)
			if err != nil || x < 0 || x > 1 {
				l.addf(tf["value"].Line, "value %q: a rate between 0 and 1 (0.003 is 0.3%%)", tf["value"].Value)
				continue
			}
			lv.Value = x
			if k := len(r.Levels); k > 0 {
				prev := r.Levels[k-1]
				if severityRank(lv.Severity) >= 0 && severityRank(lv.Severity) <= severityRank(prev.Severity) {
					l.addf(t.Line, "thresholds must rise in severity (%s after %s)", lv.Severity, prev.Severity)
				}
				if (r.When == Above && lv.Value <= prev.Value) || (r.When == Below && lv.Value >= prev.Value) {
					l.addf(t.Line, "threshold %v does not go further %s than %v", lv.Value, r.When, prev.Value)
				}
			}
			r.Levels = append(r.Levels, lv)
		}
		if len(v.Content) == 0 {
			l.addf(v.Line, "rule %s: thresholds is empty", r.ID)
		}
	}
	return r, len(l.problems) == before
}

func (l *loader) patternRule(n *yaml.Node) (PatternRule, bool) {
	before := len(l.problems)
	f := l.fields(n, "a pattern rule", "id", "description", "match", "kinds", "isp", "scope", "count",
		"within", "action", "for", "severity", "minute_limit", "max_connections", "repeated")
	p := PatternRule{Line: n.Line, ID: l.id(f, n.Line), Description: l.str(f["description"], "description"),
		Count: 1, Within: time.Hour, Severity: SeverityWarning,
		Kinds: []metrics.Kind{metrics.KindDeferred, metrics.KindBounced},
		Scope: []metrics.GroupBy{metrics.GroupSenderDomain, metrics.GroupSendingIP, metrics.GroupISP}}
	if n.Kind != yaml.MappingNode {
		return p, false
	}
	if v := f["match"]; v == nil {
		l.addf(n.Line, "rule %s: match (a regular expression) is required", p.ID)
	} else if re, err := regexp.Compile(l.str(v, "match")); err != nil {
		l.addf(v.Line, "match: %v", err)
	} else {
		p.Match = re
	}
	if v := f["kinds"]; v != nil {
		p.Kinds = nil
		for _, k := range l.seq(v, "kinds") {
			kind := metrics.Kind(k.Value)
			if kind != metrics.KindDeferred && kind != metrics.KindBounced {
				l.addf(k.Line, "kinds: %q: deferred or bounced", k.Value)
				continue
			}
			p.Kinds = append(p.Kinds, kind)
		}
	}
	p.ISP = l.str(f["isp"], "isp")
	if v := f["scope"]; v != nil {
		p.Scope = l.dims(v, responseDims)
	}
	if v := f["count"]; v != nil {
		p.Count = int(l.integer(v, "count", 1))
	}
	if v := f["within"]; v != nil {
		p.Within = l.duration(v, "within")
	}
	switch v := f["action"]; {
	case v == nil:
		l.addf(n.Line, "rule %s: action is required (hold, slow or pause)", p.ID)
	case slices.Contains([]Action{ActionHold, ActionSlow, ActionPause}, Action(v.Value)):
		p.Action = Action(v.Value)
	default:
		l.addf(v.Line, "action %q: hold, slow or pause", v.Value)
	}
	if f["for"] == nil {
		l.addf(n.Line, "rule %s: for (how long the action lasts) is required", p.ID)
	}
	p.For = l.duration(f["for"], "for")
	if v := f["severity"]; v != nil {
		p.Severity = l.severity(v)
	}
	p.MinuteLimit = int(l.integer(f["minute_limit"], "minute_limit", 1))
	p.MaxConnections = int(l.integer(f["max_connections"], "max_connections", 1))
	if p.Action == ActionSlow && p.MinuteLimit == 0 && p.MaxConnections == 0 {
		l.addf(n.Line, "rule %s: a slow action needs minute_limit or max_connections", p.ID)
	}
	if v := f["repeated"]; v != nil {
		rf := l.fields(v, "repeated", "count", "within", "for", "severity")
		rp := &Repeat{Count: 2, Within: 24 * time.Hour, Severity: p.Severity}
		if c := rf["count"]; c != nil {
			rp.Count = int(l.integer(c, "repeated count", 2))
		}
		if w := rf["within"]; w != nil {
			rp.Within = l.duration(w, "repeated within")
		}
		if rf["for"] == nil {
			l.addf(v.Line, "repeated: for is required")
		}
		rp.For = l.duration(rf["for"], "repeated for")
		if s := rf["severity"]; s != nil {
			rp.Severity = l.severity(s)
		}
		p.Repeated = rp
	}
	return p, len(l.problems) == before
}

var scopeDims = []metrics.GroupBy{metrics.GroupAccount, metrics.GroupSenderDomain, metrics.GroupSendingIP,
	metrics.GroupISP, metrics.GroupCampaign, metrics.GroupCategory}

var responseDims = []metrics.GroupBy{metrics.GroupAccount, metrics.GroupSenderDomain, metrics.GroupSendingIP,
	metrics.GroupISP}

func dimNames(ds []metrics.GroupBy) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d)
	}
	return out
}

// setScope sets the field of s that g names.
func setScope(s *Scope, g metrics.GroupBy, v string) {
	switch g {
	case metrics.GroupAccount:
		s.Account = v
	case metrics.GroupSenderDomain:
		s.SenderDomain = v
	case metrics.GroupSendingIP:
		s.SendingIP = v
	case metrics.GroupISP:
		s.ISP = v
	case metrics.GroupCampaign:
		s.Campaign = v
	case metrics.GroupCategory:
		s.Category = v
	}
}

// scopeField is the field of s that g names.
func scopeField(s Scope, g metrics.GroupBy) string {
	switch g {
	case metrics.GroupAccount:
		return s.Account
	case metrics.GroupSenderDomain:
		return s.SenderDomain
	case metrics.GroupSendingIP:
		return s.SendingIP
	case metrics.GroupISP:
		return s.ISP
	case metrics.GroupCampaign:
		return s.Campaign
	case metrics.GroupCategory:
		return s.Category
	}
	return ""
}

// project keeps the fields of s that dims name.
func project(s Scope, dims []metrics.GroupBy) Scope {
	var out Scope
	for _, d := range dims {
		setScope(&out, d, scopeField(s, d))
	}
	return out
}

// String is the scope as "sender_domain=a.example,isp=gmail" (the
// non-empty fields, in Scope's order).
func (s Scope) String() string {
	var parts []string
	for _, d := range scopeDims {
		if v := scopeField(s, d); v != "" {
			parts = append(parts, string(d)+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

func severityRank(s Severity) int {
	switch s {
	case SeverityInfo:
		return 0
	case SeverityWarning:
		return 1
	case SeverityCritical:
		return 2
	case SeverityPause:
		return 3
	}
	return -1
}

// parseDuration is time.ParseDuration with a whole number of days ("7d")
// besides.
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// fmtDuration writes 7d, 24h, 90m, 1h30m (days from two on).
func fmtDuration(d time.Duration) string {
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
