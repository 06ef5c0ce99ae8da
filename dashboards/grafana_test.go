package dashboards

// make grafana-check: the lint of every dashboard (TestLint) and every SQL
// panel's query, expanded by Expand and run on the test ClickHouse with
// seeded events, checked for the shape its panel draws (TestPanelsSQL).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// provisioned reads the data sources of provisioning/datasources/*.yaml:
// uid → type.
func provisioned(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("provisioning/datasources/*.yaml")
	if len(files) == 0 {
		t.Fatal("no provisioning/datasources/*.yaml")
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			APIVersion  int `yaml:"apiVersion"`
			Datasources []struct {
				Name, UID, Type string
			} `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range p.Datasources {
			if d.UID == "" || d.Type == "" || d.Name == "" {
				t.Errorf("%s: data source %+v lacks a name, uid or type", f, d)
			}
			out[d.UID] = d.Type
		}
	}
	return out
}

func loadAll(t *testing.T) (map[string]*Dashboard, []string) {
	t.Helper()
	ds, files, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("dashboards: %v, want the three of issue 15", files)
	}
	return ds, files
}

var (
	// eventsRead is a read of the events table: it must say FINAL (the
	// table is a ReplacingMergeTree; FINAL counts a duplicate once).
	eventsRead = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+events\b(\s+FINAL\b)?`)
	// qualifiedTable is a table named with its database, which would tie
	// the dashboard to one database name.
	qualifiedTable = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+(\w+\.\w+)`)
	// denominator is how a rate's description names it: "x / y".
	denominator = regexp.MustCompile(`\w / \w`)
)

// panelKinds are the panel types the dashboards use, and the query type
// their ClickHouse targets must have.
var panelKinds = map[string]string{"timeseries": "timeseries", "table": "table", "stat": "table"}

// lint returns every problem of d.
func lint(d *Dashboard, sources map[string]string) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.UID == "" || d.Title == "" {
		bad("uid %q, title %q: both are required", d.UID, d.Title)
	}
	if d.SchemaVersion != 41 && d.SchemaVersion != 42 {
		bad("schemaVersion %d, want 41 or 42", d.SchemaVersion)
	}
	if d.Time.From == "" || d.Time.To == "" {
		bad("time range %+v is incomplete", d.Time)
	}
	checkDS := func(where string, ds *Datasource) {
		switch {
		case ds == nil:
			bad("%s: no datasource", where)
		case ds.UID == "-- Grafana --" && ds.Type == "grafana":
		case sources[ds.UID] == "":
			bad("%s: datasource uid %q is not provisioned", where, ds.UID)
		case sources[ds.UID] != ds.Type:
			bad("%s: datasource %q is provisioned as %s, not %s", where, ds.UID, sources[ds.UID], ds.Type)
		}
	}
	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup || v.Name == "" {
			bad("variable %q defined twice or unnamed", v.Name)
		}
		vars[v.Name] = Variable{Values: []string{"x"}}
		if v.Type == "query" {
			checkDS("variable "+v.Name, v.Datasource)
			if _, err := Expand(v.Query, nil, Range{From: time.Unix(0, 0), To: time.Unix(3600, 0)}); err != nil {
				bad("variable %s: %v", v.Name, err)
			}
		}
	}
	checkTarget := func(where, kind string, panelDS *Datasource, tg Target) {
		checkDS(where, tg.Datasource)
		if panelDS != nil && tg.Datasource != nil && *panelDS != *tg.Datasource {
			bad("%s: datasource %+v differs from its panel's %+v", where, *tg.Datasource, *panelDS)
		}
		if tg.Datasource == nil {
			return
		}
		switch tg.Datasource.Type {
		case ClickHouseType:
			wantFormat := map[string]int{"timeseries": 0, "table": 1}
			if tg.EditorType != "sql" || tg.Format == nil || tg.QueryType != kind || *tg.Format != wantFormat[kind] {
				bad("%s: editorType %q, queryType %q, format %v; want sql, %s, %d", where, tg.EditorType, tg.QueryType, tg.Format, kind, wantFormat[kind])
			}
			for _, m := range eventsRead.FindAllStringSubmatch(tg.RawSQL, -1) {
				if m[1] == "" {
					bad("%s: reads events without FINAL (duplicates would count twice)", where)
				}
			}
			if m := qualifiedTable.FindStringSubmatch(tg.RawSQL); m != nil {
				bad("%s: names table %s with its database (the data source's default database decides)", where, m[1])
			}
			if _, err := Expand(tg.RawSQL, vars, Range{From: time.Unix(0, 0), To: time.Unix(3600, 0)}); err != nil {
				bad("%s: %v", where, err)
			}
		case ReputeType:
			if !slices.Contains([]string{"stats", "flags", "decisions", "suppression"}, tg.QueryType) {
				bad("%s: queryType %q is not one of the repute data source's", where, tg.QueryType)
			}
		}
	}
	// Every $variable anywhere in the panels and annotations is defined.
	checkRefs := func(where string, v any) {
		b, _ := json.Marshal(v)
		for _, m := range variableRef.FindAllStringSubmatch(string(b), -1) {
			if name := m[1] + m[3] + m[5]; !strings.HasPrefix(name, "__") {
				if _, ok := vars[name]; !ok {
					bad("%s: $%s is not a variable of the dashboard", where, name)
				}
			}
		}
	}
	for _, a := range d.Annotations.List {
		where := "annotation " + a.Name
		if a.BuiltIn == 1 {
			continue
		}
		checkDS(where, a.Datasource)
		if a.Target != nil {
			checkTarget(where, "table", a.Datasource, *a.Target)
		}
		checkRefs(where, a)
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 || ids[p.ID] {
			bad("%s: id not positive or not unique", where)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.X < 0 || g.Y < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			bad("%s: gridPos %+v is off the 24-column grid", where, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					bad("%s overlaps %s at (%d, %d)", where, other, x, y)
					x, y = g.X+g.W, g.Y+g.H
				}
				taken[cell{x, y}] = where
			}
		}
		kind, ok := panelKinds[p.Type]
		if !ok {
			bad("%s: panel type %q is not one of %v", where, p.Type, panelKinds)
		}
		if p.Description == "" {
			bad("%s: no description", where)
		}
		var fc struct {
			Defaults struct{ Unit string } `json:"defaults"`
		}
		json.Unmarshal(p.FieldConfig, &fc)
		if (fc.Defaults.Unit == "percentunit" || strings.Contains(strings.ToLower(p.Title), "rate")) && !denominator.MatchString(p.Description) {
			bad("%s: a rate whose description does not name its denominator (\"x / y\")", where)
		}
		checkDS(where, p.Datasource)
		if len(p.Targets) == 0 {
			bad("%s: no query", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				bad("%s: refId %q empty or not unique", where, tg.RefID)
			}
			refs[tg.RefID] = true
			checkTarget(where+" "+tg.RefID, kind, p.Datasource, tg)
		}
		checkRefs(where, p)
	}
	return problems
}

func TestLint(t *testing.T) {
	sources := provisioned(t)
	all, files := loadAll(t)
	uids := map[string]string{}
	for _, f := range files {
		d := all[f]
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q is %s's too", f, d.UID, other)
		}
		uids[d.UID] = f
		for _, p := range lint(d, sources) {
			t.Errorf("%s: %s", f, p)
		}
	}
	// The dashboards provider points at a folder of dashboards.
	b, err := os.ReadFile("provisioning/dashboards/repute.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	if err := yaml.Unmarshal(b, &prov); err != nil || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Errorf("provisioning/dashboards/repute.yaml: %v, %+v", err, prov)
	}
}

// TestLintFindsProblems: the lint reports each kind of mistake it is for.
func TestLintFindsProblems(t *testing.T) {
	sources := provisioned(t)
	all, files := loadAll(t)
	good, _ := json.Marshal(all[files[0]])
	breakWith := func(change func(d *Dashboard)) []string {
		var d Dashboard
		json.Unmarshal(good, &d)
		change(&d)
		return lint(&d, sources)
	}
	sqlPanel := func(d *Dashboard) *Panel {
		for i := range d.Panels {
			if d.Panels[i].Datasource.Type == ClickHouseType {
				return &d.Panels[i]
			}
		}
		t.Fatal("no SQL panel")
		return nil
	}
	for _, tt := range []struct {
		name   string
		change func(d *Dashboard)
		want   string
	}{
		{"off the grid", func(d *Dashboard) { d.Panels[0].GridPos.X = 20 }, "off the 24-column grid"},
		{"overlap", func(d *Dashboard) { d.Panels[1].GridPos = d.Panels[0].GridPos }, "overlaps"},
		{"duplicate id", func(d *Dashboard) { d.Panels[1].ID = d.Panels[0].ID }, "not unique"},
		{"duplicate refId", func(d *Dashboard) { p := sqlPanel(d); p.Targets = append(p.Targets, p.Targets[0]) }, `refId "A" empty or not unique`},
		{"undefined variable", func(d *Dashboard) { sqlPanel(d).Targets[0].RawSQL += " AND x = '$nope'" }, "$nope is not a variable"},
		{"no FINAL", func(d *Dashboard) {
			p := sqlPanel(d)
			p.Targets[0].RawSQL = strings.Replace(p.Targets[0].RawSQL, "FROM events FINAL", "FROM events", 1)
		}, "without FINAL"},
		{"database named", func(d *Dashboard) {
			p := sqlPanel(d)
			p.Targets[0].RawSQL = strings.Replace(p.Targets[0].RawSQL, "FROM events FINAL", "FROM repute.events FINAL", 1)
		}, "with its database"},
		{"18.16 lacks it", func(d *Dashboard) { sqlPanel(d).Targets[0].RawSQL += " AND $__timeGroup(time, 1h) > 0" }, "$__timeGroup expands to functions ClickHouse 18.16 lacks"},
		{"unprovisioned", func(d *Dashboard) { d.Panels[0].Datasource = &Datasource{Type: ClickHouseType, UID: "elsewhere"} }, `uid "elsewhere" is not provisioned`},
		{"schema", func(d *Dashboard) { d.SchemaVersion = 16 }, "schemaVersion 16"},
		{"rate without denominator", func(d *Dashboard) {
			for i := range d.Panels {
				if strings.Contains(d.Panels[i].Title, "rate") {
					d.Panels[i].Description = "how bad it is"
				}
			}
		}, "does not name its denominator"},
		{"format", func(d *Dashboard) {
			one := 1
			sqlPanel(d).Targets[0].Format = &one
			sqlPanel(d).Targets[0].QueryType = "timeseries"
		}, "want sql"},
	} {
		problems := breakWith(tt.change)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
			t.Errorf("%s: problems %q, want one saying %q", tt.name, problems, tt.want)
		}
	}
	if p := breakWith(func(*Dashboard) {}); len(p) != 0 {
		t.Errorf("unchanged: %q", p)
	}
	// A field Grafana does not have is refused when loading (encoding/json
	// matches names regardless of case, so "gridpos" would pass).
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "grafana"), 0o755)
	os.WriteFile(filepath.Join(dir, "grafana", "x.json"), []byte(`{"uid": "x", "panels": [{"id": 1, "gridPosition": {}}]}`), 0o644)
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `unknown field "gridPosition"`) {
		t.Errorf("unknown field: %v", err)
	}
}

// TestExpand pins the expansions: what Grafana and the ClickHouse data
// source send for each syntax the dashboards use.
func TestExpand(t *testing.T) {
	r := Range{From: time.Unix(1700000000, 0), To: time.Unix(1700086400, 0), Interval: 90 * time.Second}
	vars := map[string]Variable{
		"isp":    {All: true, Values: []string{"gmail", "yahoo"}},
		"domain": {Values: []string{"o'neil.example", "b.example"}},
		"ip":     {Values: []string{"192.0.2.1"}},
	}
	for _, tt := range []struct{ in, want, err string }{
		{"$__timeFilter(events.time)", "events.time >= toDateTime(1700000000) AND events.time <= toDateTime(1700086400)", ""},
		{"$__dateFilter(day)", "day >= toDate('2023-11-14') AND day <= toDate('2023-11-15')", ""},
		{"$__fromTime - $__toTime", "toDateTime(1700000000) - toDateTime(1700086400)", ""},
		{"intDiv(x, $__interval_s)", "intDiv(x, 90)", ""},
		{"$__conditionalAll(isp IN (${isp:singlequote}), $isp)", "1=1", ""},
		{"$__conditionalAll(d IN (${domain:singlequote}), ${domain})", `d IN ('o\'neil.example','b.example')`, ""},
		{"ip = '$ip' AND [[ip]] AND ${ip:raw}", "ip = '192.0.2.1' AND 192.0.2.1 AND 192.0.2.1", ""},
		{"x IN (${isp:sqlstring})", "x IN ('gmail','yahoo')", ""},
		{"d = '$domain'", "", "2 values need a format"},
		{"$nope", "", `variable "nope" is not defined`},
		{"$__timeGroup(time, 1h)", "", "18.16 lacks"},
		{"$__interval_ms", "", "18.16 lacks"},
		{"$__interval", "", "unknown macro $__interval"},
		{"$__timeFilter(time", "", "unclosed parenthesis"},
	} {
		got, err := Expand(tt.in, vars, r)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %q, %v; want an error saying %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
