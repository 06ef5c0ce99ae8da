package rules

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
	"repute/metrics/clickhouse"
	"repute/metrics/duckdb"
)

// The script tests (testdata/*.txt), in the style of Prometheus's rule
// tests. Each file runs against a fresh DuckDB store in a temporary
// directory (the real Stats query) and a ResponseLog fed with the same
// events, with the built-in rules; and again against ClickHouse (a database
// of its own on REPUTE_TEST_CLICKHOUSE; skipped without it):
//
//	# comment
//	rules ID ...        evaluate only these rules of the defaults
//	load AT KIND [n=N] [from=K] [spread=DUR] [domain=D] [ip=IP] [to=RCPTDOMAIN]
//	     [account=A] [category=C] [campaign=C] [machine=true|false]
//	     [bounce=hard|soft] [code=421] [status=4.7.0] [diag="text"]
//	eval at AT
//	expect rule=R scope=S severity=SEV [value=V] [threshold=V] [sample=N]
//	       [window=W] [action=A] [for=DUR] [since=AT] [minute_limit=N] [max_connections=N]
//
// AT is an offset from 2026-11-01T00:00:00Z: 0, 90m, 2d, 2d1h. load makes N
// events (default 1) to recipients r<K>@RCPTDOMAIN … r<K+N-1>@RCPTDOMAIN
// (default gmail.com, from 0), message ids following the recipient, so an
// opened line names the messages a delivered line made; spread spaces the
// N events evenly over DUR. The expects after an eval are every flag it
// must give, no more; scopes are written as Scope.String ("sender_domain=a.example,isp=gmail").
// Values compare within 0.1%.

var scriptBase = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func parseAt(s string) (time.Time, error) {
	if s == "0" {
		return scriptBase, nil
	}
	var d time.Duration
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return time.Time{}, fmt.Errorf("offset %q", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		s = rest
	}
	if s != "" {
		x, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("offset %q", s)
		}
		d += x
	}
	return scriptBase.Add(d), nil
}

// splitFields splits on spaces, keeping "double quoted" values whole.
func splitFields(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			in = !in
			cur.WriteByte(c)
		case c == '\\' && in && i+1 < len(line):
			cur.WriteByte(c)
			i++
			cur.WriteByte(line[i])
		case c == ' ' && !in:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if in {
		return nil, fmt.Errorf("unterminated quote")
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

func keyValues(fields []string) (map[string]string, error) {
	kv := map[string]string{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", f)
		}
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
			}
			v = u
		}
		kv[k] = v
	}
	return kv, nil
}

func loadEvents(at time.Time, kind string, kv map[string]string) ([]metrics.Event, error) {
	n, from := 1, 0
	var err error
	if s, ok := kv["n"]; ok {
		if n, err = strconv.Atoi(s); err != nil {
			return nil, err
		}
	}
	if s, ok := kv["from"]; ok {
		if from, err = strconv.Atoi(s); err != nil {
			return nil, err
		}
	}
	var spread time.Duration
	if s, ok := kv["spread"]; ok {
		if spread, err = time.ParseDuration(s); err != nil {
			return nil, err
		}
	}
	get := func(k, def string) string {
		if v, ok := kv[k]; ok {
			return v
		}
		return def
	}
	for k := range kv {
		if !slices.Contains([]string{"n", "from", "spread", "domain", "ip", "to", "account", "category",
			"campaign", "machine", "bounce", "code", "status", "diag"}, k) {
			return nil, fmt.Errorf("unknown load field %q", k)
		}
	}
	var code uint16
	if s := get("code", ""); s != "" {
		c, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, err
		}
		code = uint16(c)
	}
	domain, to := get("domain", "a.example"), get("to", "gmail.com")
	var out []metrics.Event
	for i := range n {
		t := at
		if spread > 0 && n > 1 {
			t = at.Add(spread * time.Duration(i) / time.Duration(n))
		}
		e := metrics.Event{Time: t, Kind: metrics.Kind(kind), Source: "script", Account: get("account", "acme"),
			SenderDomain: domain, SendingIP: get("ip", ""), Campaign: get("campaign", ""),
			Category: get("category", ""), Recipient: fmt.Sprintf("r%d@%s", from+i, to),
			MessageID: fmt.Sprintf("<%d.%s@%s>", from+i, to, domain), BounceType: get("bounce", ""),
			Status: get("status", ""), ReplyCode: code, Diagnostic: get("diag", "")}
		switch get("machine", "") {
		case "true":
			yes := true
			e.Machine, e.MachineReason, e.UserAgent = &yes, "apple_mpp", "Mozilla/5.0"
		case "false":
			no := false
			e.Machine, e.UserAgent = &no, "Thunderbird/128.0"
		case "":
		default:
			return nil, fmt.Errorf("machine=%q: true or false", get("machine", ""))
		}
		if err := e.Normalize(metrics.ISPMap{}, scriptBase.AddDate(1, 0, 0)); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func checkFlag(f Flag, kv map[string]string) []string {
	var bad []string
	closeTo := func(got float64, want string) bool {
		w, err := strconv.ParseFloat(want, 64)
		return err == nil && math.Abs(got-w) <= 1e-3*math.Abs(w)+1e-12
	}
	for k, v := range kv {
		ok := true
		var got any
		switch k {
		case "rule", "scope":
			continue
		case "severity":
			got, ok = f.Severity, string(f.Severity) == v
		case "value":
			got, ok = f.Value, closeTo(f.Value, v)
		case "threshold":
			got, ok = f.Threshold, closeTo(f.Threshold, v)
		case "sample":
			got, ok = f.Sample, strconv.FormatInt(f.Sample, 10) == v
		case "window":
			got, ok = f.Window, f.Window == v
		case "action":
			got, ok = f.Action, string(f.Action) == v
		case "for":
			d, err := time.ParseDuration(v)
			got, ok = f.For, err == nil && d == f.For
		case "since":
			at, err := parseAt(v)
			got, ok = f.Since.Sub(scriptBase), err == nil && at.Equal(f.Since)
		case "minute_limit":
			got, ok = f.MinuteLimit, strconv.Itoa(f.MinuteLimit) == v
		case "max_connections":
			got, ok = f.MaxConnections, strconv.Itoa(f.MaxConnections) == v
		default:
			bad = append(bad, fmt.Sprintf("unknown expect field %q", k))
			continue
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s = %v, want %s", k, got, v))
		}
	}
	return bad
}

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	backends := []struct {
		name string
		open func(t *testing.T) scriptStore
	}{
		{"duckdb", func(t *testing.T) scriptStore {
			s, err := duckdb.Open(filepath.Join(t.TempDir(), "repute.duckdb"), duckdb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"clickhouse", func(t *testing.T) scriptStore {
			addr, db := testenv.ClickHouseDatabase(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := clickhouse.Open(ctx, clickhouse.Options{Addr: addr, Database: db, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, file := range files {
				t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
					runScript(t, b.open(t), file)
				})
			}
		})
	}
}

// scriptStore is what a script needs of a store.
type scriptStore interface {
	metrics.Appender
	metrics.StatsReader
	Close() error
}

func runScript(t *testing.T, store scriptStore, file string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer store.Close()
	rs := Defaults()
	log, err := NewResponseLog(rs, ResponseLogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng := &Engine{Rules: rs, Source: StatsSource{store}, Responses: log}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type pending struct {
		line int
		at   time.Time
		want []map[string]string
	}
	var cur *pending
	finish := func() {
		if cur == nil {
			return
		}
		got, err := eng.Evaluate(ctx, cur.at)
		if err != nil {
			t.Fatalf("%s:%d: eval: %v", file, cur.line, err)
		}
		used := make([]bool, len(got))
		for _, w := range cur.want {
			found := false
			for i, g := range got {
				if used[i] || g.Rule != w["rule"] || g.Scope.String() != w["scope"] {
					continue
				}
				found, used[i] = true, true
				for _, b := range checkFlag(g, w) {
					t.Errorf("%s:%d: eval at %s: %s %s: %s", file, cur.line, cur.at.Sub(scriptBase), g.Rule, w["scope"], b)
				}
				break
			}
			if !found {
				t.Errorf("%s:%d: eval at %s: no flag %s for %s", file, cur.line, cur.at.Sub(scriptBase), w["rule"], w["scope"])
			}
		}
		for i, g := range got {
			if !used[i] {
				t.Errorf("%s:%d: eval at %s: unexpected flag %s for %s: %s value %v (sample %d)", file, cur.line,
					cur.at.Sub(scriptBase), g.Rule, g.Scope, g.Severity, g.Value, g.Sample)
			}
		}
		cur = nil
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields, err := splitFields(line)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n, err)
		}
		switch fields[0] {
		case "rules":
			keep := &RuleSet{}
			for _, r := range rs.Rates {
				if slices.Contains(fields[1:], r.ID) {
					keep.Rates = append(keep.Rates, r)
				}
			}
			for _, p := range rs.Patterns {
				if slices.Contains(fields[1:], p.ID) {
					keep.Patterns = append(keep.Patterns, p)
				}
			}
			if len(keep.Rates)+len(keep.Patterns) != len(fields)-1 {
				t.Fatalf("%s:%d: unknown rule among %v", file, n, fields[1:])
			}
			eng.Rules = keep
		case "load":
			finish()
			if len(fields) < 3 {
				t.Fatalf("%s:%d: load AT KIND [fields]", file, n)
			}
			at, err := parseAt(fields[1])
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			kv, err := keyValues(fields[3:])
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			events, err := loadEvents(at, fields[2], kv)
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			if err := store.Append(ctx, events); err != nil {
				t.Fatalf("%s:%d: append: %v", file, n, err)
			}
			log.Observe(events)
		case "eval":
			finish()
			if len(fields) != 3 || fields[1] != "at" {
				t.Fatalf("%s:%d: eval at AT", file, n)
			}
			at, err := parseAt(fields[2])
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			cur = &pending{line: n, at: at}
		case "expect":
			if cur == nil {
				t.Fatalf("%s:%d: expect without eval", file, n)
			}
			kv, err := keyValues(fields[1:])
			if err != nil {
				t.Fatalf("%s:%d: %v", file, n, err)
			}
			if kv["rule"] == "" || kv["scope"] == "" || kv["severity"] == "" {
				t.Fatalf("%s:%d: expect needs rule, scope and severity", file, n)
			}
			cur.want = append(cur.want, kv)
		default:
			t.Fatalf("%s:%d: unknown command %q", file, n, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	finish()
}
