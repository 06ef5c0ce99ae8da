package reputeds

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"

	"repute/dashboards/plugin/internal/reputetest"
)

// The tests run against one real repute serve (reputetest), started and
// seeded by TestMain: 1,000 sends to gmail.com with 8 complaints, 200 to
// yahoo.com with 10 hard bounces.
var (
	server *reputetest.Server
	seed   reputetest.Seed
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "reputeds-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := reputetest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	server, err = reputetest.Start(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if seed, err = server.Seeded(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "seeding repute:", err, "\n", server.Stderr())
		return 1
	}
	return m.Run()
}

// settings are the data source's settings as Grafana passes them.
func settings(url, key string) backend.DataSourceInstanceSettings {
	j, _ := json.Marshal(Settings{URL: url})
	return backend.DataSourceInstanceSettings{UID: "repute", JSONData: j,
		DecryptedSecureJSONData: map[string]string{"apiKey": key}, Updated: time.Now()}
}

func instance(t *testing.T) *Datasource {
	t.Helper()
	inst, err := New(context.Background(), settings(server.URL, reputetest.AdminKey))
	if err != nil {
		t.Fatal(err)
	}
	return inst.(*Datasource)
}

// queryJSON is a query as module.js sends it (its refId, datasource and
// the editor's fields; Grafana adds intervalMs and maxDataPoints).
func dataQuery(refID string, q map[string]any, from, to time.Time) backend.DataQuery {
	q["refId"] = refID
	q["datasource"] = map[string]string{"type": PluginID, "uid": "repute"}
	q["intervalMs"] = 60000
	q["maxDataPoints"] = 1000
	j, _ := json.Marshal(q)
	qt, _ := q["queryType"].(string)
	return backend.DataQuery{RefID: refID, QueryType: qt, JSON: j, Interval: time.Minute, MaxDataPoints: 1000,
		TimeRange: backend.TimeRange{From: from, To: to}}
}

// queryer is what the three layers have in common.
type queryer interface {
	QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error)
}

func query(t *testing.T, ds queryer, qs ...backend.DataQuery) *backend.QueryDataResponse {
	t.Helper()
	j, _ := json.Marshal(Settings{URL: server.URL})
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{PluginID: PluginID, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
			UID: "repute", JSONData: j, DecryptedSecureJSONData: map[string]string{"apiKey": reputetest.AdminKey}}},
		Queries: qs,
	})
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	return resp
}

// sumField is the sum of a numeric field's non-null values.
func sumField(t *testing.T, f *data.Field) float64 {
	t.Helper()
	var sum float64
	for i := range f.Len() {
		v, ok := f.ConcreteAt(i)
		if !ok {
			continue
		}
		switch x := v.(type) {
		case float64:
			sum += x
		case int64:
			sum += float64(x)
		default:
			t.Fatalf("field %s holds %T", f.Name, v)
		}
	}
	return sum
}

// checkStats asserts what a stats time series by isp of sent and
// complaint_rate over the last 6 hours must be: a multi-frame numeric
// time series (what alert rules read), one frame per metric and isp,
// every hour present, the counts summing to the seed's.
func checkStats(t *testing.T, resp *backend.QueryDataResponse) {
	t.Helper()
	r := resp.Responses["A"]
	if r.Error != nil {
		t.Fatalf("A: %v", r.Error)
	}
	got := map[string]*data.Frame{}
	for _, f := range r.Frames {
		if f.Meta == nil || f.Meta.Type != data.FrameTypeTimeSeriesMulti {
			t.Errorf("frame %s: meta %+v, want type %s", f.Name, f.Meta, data.FrameTypeTimeSeriesMulti)
		}
		if len(f.Fields) != 2 || f.Fields[0].Name != "time" || f.Fields[0].Type() != data.FieldTypeTime || !f.Fields[1].Type().Numeric() {
			t.Fatalf("frame %s: fields %v, want time then one numeric", f.Name, f.Fields)
		}
		if f.RefID != "A" {
			t.Errorf("frame %s: refId %q", f.Name, f.RefID)
		}
		if ts := f.TimeSeriesSchema(); ts.Type != data.TimeSeriesTypeLong && ts.Type != data.TimeSeriesTypeWide {
			t.Errorf("frame %s is not a time series (%v)", f.Name, ts.Type)
		}
		got[f.Fields[1].Name+"/"+f.Fields[1].Labels["isp"]] = f
	}
	if len(got) != 4 {
		t.Fatalf("frames %v, want sent and complaint_rate for gmail and yahoo", keys(got))
	}
	for k, f := range got {
		if n := f.Rows(); n < 6 || n > 7 {
			t.Errorf("%s: %d points, want one per hour of the 6 h range", k, n)
		}
	}
	if s := sumField(t, got["sent/gmail"].Fields[1]); s != float64(seed.GmailSent) {
		t.Errorf("sent to gmail: %v, want %d", s, seed.GmailSent)
	}
	if s := sumField(t, got["sent/yahoo"].Fields[1]); s != float64(seed.YahooSent) {
		t.Errorf("sent to yahoo: %v, want %d", s, seed.YahooSent)
	}
	// The complaints are an hour after the deliveries, so their hour has
	// complaints but no deliveries: its rate has no denominator (null) —
	// and the hour of the deliveries has a rate of 0.
	rate := got["complaint_rate/gmail"].Fields[1]
	nonNull := 0
	for i := range rate.Len() {
		if v, ok := rate.ConcreteAt(i); ok {
			nonNull++
			if v.(float64) != 0 {
				t.Errorf("complaint_rate at %v = %v, want 0 (the deliveries' hour has no complaint)", got["complaint_rate/gmail"].Fields[0].At(i), v)
			}
		}
	}
	if nonNull != 1 {
		t.Errorf("complaint_rate has %d non-null points, want 1 (the hour with deliveries)", nonNull)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func statsQuery() backend.DataQuery {
	to := time.Now().UTC()
	return dataQuery("A", map[string]any{"queryType": "stats", "metrics": []string{"sent", "complaint_rate"},
		"groupBy": []string{"isp"}, "format": "time_series", "bucket": "hour"}, to.Add(-6*time.Hour), to)
}

// Layer 1: calls on an instance built from settings.
func TestStatsTimeSeries(t *testing.T) {
	checkStats(t, query(t, instance(t), statsQuery()))
}

func TestStatsTableAndFilters(t *testing.T) {
	to := time.Now().UTC()
	from := to.Add(-24 * time.Hour)
	resp := query(t, instance(t),
		dataQuery("T", map[string]any{"queryType": "stats", "metrics": []string{"sent", "delivered", "bounced_hard", "complaint_rate"},
			"groupBy": []string{"isp"}, "format": "table"}, from, to),
		dataQuery("F", map[string]any{"queryType": "stats", "metrics": []string{"sent", "bounce_rate"},
			"format": "table", "filters": map[string]string{"isp": "yahoo", "campaign": ""}}, from, to),
		dataQuery("X", map[string]any{"queryType": "stats", "metrics": []string{"nonsense"}}, from, to),
	)
	tab := resp.Responses["T"]
	if tab.Error != nil || len(tab.Frames) != 1 {
		t.Fatalf("T: %v, %d frames", tab.Error, len(tab.Frames))
	}
	f := tab.Frames[0]
	if names := fieldNames(f); names != "isp,sent,delivered,bounced_hard,complaint_rate" {
		t.Errorf("T fields %s", names)
	}
	rows := map[string][]any{}
	for i := range f.Rows() {
		row := make([]any, len(f.Fields))
		for j, fl := range f.Fields {
			row[j], _ = fl.ConcreteAt(i)
		}
		rows[row[0].(string)] = row
	}
	wantGmail := []any{"gmail", float64(seed.GmailSent), float64(seed.GmailSent), float64(0), float64(seed.Complaints) / float64(seed.GmailSent)}
	wantYahoo := []any{"yahoo", float64(seed.YahooSent), float64(seed.YahooSent - seed.YahooBouncedH), float64(seed.YahooBouncedH), float64(0)}
	if fmt.Sprint(rows["gmail"]) != fmt.Sprint(wantGmail) || fmt.Sprint(rows["yahoo"]) != fmt.Sprint(wantYahoo) {
		t.Errorf("T rows %v, want %v and %v", rows, wantGmail, wantYahoo)
	}

	// A filter (the empty campaign filter, as a variable set to All gives,
	// filters nothing) keeps yahoo.com's counts only.
	fr := resp.Responses["F"]
	if fr.Error != nil || len(fr.Frames) != 1 || fr.Frames[0].Rows() != 1 {
		t.Fatalf("F: %v, %v", fr.Error, fr.Frames)
	}
	sent, _ := fr.Frames[0].Fields[0].ConcreteAt(0)
	rate, _ := fr.Frames[0].Fields[1].ConcreteAt(0)
	if sent != float64(seed.YahooSent) || rate != float64(seed.YahooBouncedH)/float64(seed.YahooSent) {
		t.Errorf("F: sent %v, bounce_rate %v; want %d, %v", sent, rate, seed.YahooSent, float64(seed.YahooBouncedH)/float64(seed.YahooSent))
	}

	// An unknown metric fails its query alone, naming it.
	x := resp.Responses["X"]
	if x.Error == nil || x.Status != backend.StatusBadRequest || !strings.Contains(x.Error.Error(), `unknown metric "nonsense"`) {
		t.Errorf("X: %v (status %d), want 400 naming the metric", x.Error, x.Status)
	}
}

func fieldNames(f *data.Frame) string {
	var names []string
	for _, fl := range f.Fields {
		names = append(names, fl.Name)
	}
	return strings.Join(names, ",")
}

// waitFor polls cond every 100 ms for up to 90 s (the rule engine
// evaluates every 200 ms, but the first evaluation waits for its lease).
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The seeded complaints (8 over 1,190 deliveries, 0.67%) raise the pause flag
// and a pause decision; the data source serves both as tables, the
// decisions with time/timeEnd/text for annotations.
func TestFlagsAndDecisions(t *testing.T) {
	ds := instance(t)
	to := time.Now().UTC()
	// The rate is over every delivery of the sender domain.
	rate := float64(seed.Complaints) / float64(seed.GmailSent+seed.YahooSent-seed.YahooBouncedH)
	waitFor(t, "the complaint flag", func() (bool, string) {
		r := query(t, ds, dataQuery("A", map[string]any{"queryType": "flags", "senderDomain": seed.SenderDomain}, to.Add(-time.Hour), to)).Responses["A"]
		if r.Error != nil {
			t.Fatalf("flags: %v", r.Error)
		}
		f := r.Frames[0]
		if names := fieldNames(f); names != "since,rule,severity,value,threshold,sample,window,account,sender_domain,sending_ip,isp,campaign,category" {
			t.Fatalf("flag fields %s", names)
		}
		for i := range f.Rows() {
			if f.Fields[1].At(i) == "complaint_rate" && f.Fields[10].At(i) == "" {
				if f.Fields[2].At(i) != "pause" || f.Fields[3].At(i) != rate || f.Fields[8].At(i) != seed.SenderDomain {
					t.Errorf("complaint flag row %d: %v %v %v", i, f.Fields[2].At(i), f.Fields[3].At(i), f.Fields[8].At(i))
				}
				return true, ""
			}
		}
		s, _ := f.StringTable(-1, -1)
		return false, s
	})
	waitFor(t, "the pause decision", func() (bool, string) {
		r := query(t, ds, dataQuery("B", map[string]any{"queryType": "decisions", "senderDomain": seed.SenderDomain}, to.Add(-time.Hour), to)).Responses["B"]
		if r.Error != nil {
			t.Fatalf("decisions: %v", r.Error)
		}
		f := r.Frames[0]
		if fieldNames(f) != "time,timeEnd,action,sender_domain,sending_ip,isp,warmup_day,daily_limit,hourly_limit,minute_limit,max_connections,source,text,id" {
			t.Fatalf("decision fields %s", fieldNames(f))
		}
		for i := range f.Rows() {
			if f.Fields[2].At(i) == "pause" && f.Fields[11].At(i) == "rule" {
				if text := f.Fields[12].At(i).(string); !strings.HasPrefix(text, "pause news.acme.example (rule): ") || !strings.Contains(text, fmt.Sprintf("complaint_rate %g ≥ 0.005 over %d (", rate, seed.GmailSent+seed.YahooSent-seed.YahooBouncedH)) {
					t.Errorf("decision text %q", text)
				}
				return true, ""
			}
		}
		s, _ := f.StringTable(-1, -1)
		return false, s
	})
}

// A complaint puts its recipient on the sender domain's unsubscribe list.
func TestSuppressionLookup(t *testing.T) {
	to := time.Now().UTC()
	resp := query(t, instance(t),
		dataQuery("A", map[string]any{"queryType": "suppression", "address": seed.Complained}, to.Add(-time.Hour), to),
		dataQuery("B", map[string]any{"queryType": "suppression", "address": "nobody@gmail.com"}, to.Add(-time.Hour), to),
		dataQuery("C", map[string]any{"queryType": "suppression"}, to.Add(-time.Hour), to))
	a := resp.Responses["A"]
	if a.Error != nil || a.Frames[0].Rows() == 0 {
		t.Fatalf("A: %v, %v", a.Error, a.Frames)
	}
	f := a.Frames[0]
	if f.Fields[0].At(0) != "unsubscribe" || f.Fields[1].At(0) != seed.Complained || f.Fields[4].At(0) != seed.SenderDomain {
		s, _ := f.StringTable(-1, -1)
		t.Errorf("entries:\n%s\nwant an unsubscribe of %s from %s", s, seed.Complained, seed.SenderDomain)
	}
	if b := resp.Responses["B"]; b.Error != nil || b.Frames[0].Rows() != 0 {
		t.Errorf("B: %v, %v; want no entry", b.Error, b.Frames)
	}
	if c := resp.Responses["C"]; c.Error == nil || !strings.Contains(c.Error.Error(), "needs an address") {
		t.Errorf("C: %v, want an error asking for an address", c.Error)
	}
}

func TestCheckHealth(t *testing.T) {
	res, err := instance(t).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || res.Status != backend.HealthStatusOk {
		t.Errorf("good settings: %v, %+v", err, res)
	}
	inst, err := New(context.Background(), settings(server.URL, "wrong-key"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ = inst.(*Datasource).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "401") || !strings.Contains(res.Message, "API key") {
		t.Errorf("wrong key: %+v, want an error naming 401 and the key", res)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	inst, _ = New(context.Background(), settings(closed, reputetest.AdminKey))
	res, _ = inst.(*Datasource).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError || !strings.Contains(res.Message, "cannot reach repute at "+closed) {
		t.Errorf("nothing listening: %+v", res)
	}
	for _, s := range []backend.DataSourceInstanceSettings{settings("", "k"), settings("ftp://x", "k"), settings(server.URL, "")} {
		if _, err := New(context.Background(), s); err == nil {
			t.Errorf("settings %s / %v accepted", s.JSONData, s.DecryptedSecureJSONData)
		}
	}
}

// resourceBody calls a resource and returns its status and body.
type collect struct{ resp *backend.CallResourceResponse }

func (c *collect) Send(r *backend.CallResourceResponse) error { c.resp = r; return nil }

func TestResources(t *testing.T) {
	ds := instance(t)
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"options/isp", 200, `[{"label":"gmail","value":"gmail"},{"label":"yahoo","value":"yahoo"}]`},
		{"options/sender_domain", 200, `[{"label":"news.acme.example","value":"news.acme.example"}]`},
		{"dimensions", 200, `[{"label":"sender_domain","value":"sender_domain"},{"label":"isp","value":"isp"},{"label":"campaign","value":"campaign"},{"label":"sending_ip","value":"sending_ip"},{"label":"category","value":"category"},{"label":"account","value":"account"}]`},
		{"options/nonsense", 404, `{"error":"no dimension \"nonsense\" (known: sender_domain, isp, campaign, sending_ip, category, account)"}`},
	} {
		var c collect
		if err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: "GET", Path: tt.path, URL: tt.path}, &c); err != nil {
			t.Fatal(err)
		}
		if c.resp.Status != tt.status || string(c.resp.Body) != tt.body {
			t.Errorf("%s: %d %s, want %d %s", tt.path, c.resp.Status, c.resp.Body, tt.status, tt.body)
		}
	}
}

// Layer 2: the same over real gRPC, with the SDK's test harness serving
// the data source on a loopback port as the plugin process does.
func TestOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tp, err := datasourcetest.Manage(New, datasourcetest.ManageOpts{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown()

	checkStats(t, query(t, tp.Client, statsQuery()))

	j, _ := json.Marshal(Settings{URL: server.URL})
	pc := backend.PluginContext{PluginID: PluginID, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
		UID: "repute", JSONData: j, DecryptedSecureJSONData: map[string]string{"apiKey": reputetest.AdminKey}}}
	res, err := tp.Client.CheckHealth(context.Background(), &backend.CheckHealthRequest{PluginContext: pc})
	if err != nil || res.Status != backend.HealthStatusOk {
		t.Errorf("CheckHealth: %v, %+v", err, res)
	}
	var c collect
	if err := tp.Client.CallResource(context.Background(), &backend.CallResourceRequest{PluginContext: pc, Method: "GET",
		Path: "options/isp", URL: "options/isp"}, &c); err != nil {
		t.Fatal(err)
	}
	if c.resp == nil || c.resp.Status != 200 || string(c.resp.Body) != `[{"label":"gmail","value":"gmail"},{"label":"yahoo","value":"yahoo"}]` {
		t.Errorf("CallResource options/isp: %+v", c.resp)
	}
}
