package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"repute/dashboards/plugin/internal/reputetest"
	"repute/dashboards/plugin/reputeds"
)

// Layer 3: the built executable launched as Grafana launches it — the
// go-plugin handshake with Grafana's protocol version and magic cookie,
// gRPC only — its "data", "diagnostics" and "resource" plugins dispensed,
// and queries sent as protobuf, against a real repute serve.
func TestBinaryOverGoPlugin(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "gpx_repute_linux_amd64")
	build := exec.Command("go", "build", "-tags", "arrow_json_stdlib", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin, err := reputetest.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	server, err := reputetest.Start(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seed, err := server.Seeded(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Run without Grafana's cookie, the executable refuses to start.
	if out, err := exec.Command(exe).CombinedOutput(); err == nil {
		t.Errorf("run by hand: exit 0, want a failure\n%s", out)
	}

	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,
			MagicCookieKey:   grpcplugin.MagicCookieKey,
			MagicCookieValue: grpcplugin.MagicCookieValue,
		},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"data":        &grpcplugin.DataGRPCPlugin{},
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource":    &grpcplugin.ResourceGRPCPlugin{},
		}},
		Cmd:              exec.Command(exe),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		SyncStderr:       io.Discard,
		Stderr:           io.Discard,
		Logger:           hclog.NewNullLogger(),
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake: %v", err)
	}
	dispense := func(name string) any {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("Dispense(%q): %v", name, err)
		}
		return raw
	}
	dataClient := dispense("data").(grpcplugin.DataClient)
	diagnostics := dispense("diagnostics").(grpcplugin.DiagnosticsClient)
	resources := dispense("resource").(grpcplugin.ResourceClient)

	settings, _ := json.Marshal(reputeds.Settings{URL: server.URL})
	pc := backend.PluginContext{PluginID: reputeds.PluginID, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
		UID: "repute", JSONData: settings, DecryptedSecureJSONData: map[string]string{"apiKey": reputetest.AdminKey}, Updated: time.Now()}}

	health, err := diagnostics.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pc)})
	if err != nil || backend.FromProto().CheckHealthResponse(health).Status != backend.HealthStatusOk {
		t.Errorf("CheckHealth: %v, %+v", err, health)
	}

	to := time.Now().UTC()
	qj, _ := json.Marshal(map[string]any{"refId": "A", "queryType": "stats", "metrics": []string{"sent"},
		"groupBy": []string{"isp"}, "format": "time_series", "bucket": "hour"})
	req := &backend.QueryDataRequest{PluginContext: pc, Queries: []backend.DataQuery{{RefID: "A", QueryType: "stats", JSON: qj,
		TimeRange: backend.TimeRange{From: to.Add(-6 * time.Hour), To: to}, Interval: time.Minute, MaxDataPoints: 1000}}}
	pr, err := dataClient.QueryData(ctx, backend.ToProto().QueryDataRequest(req))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	resp, err := backend.FromProto().QueryDataResponse(pr)
	if err != nil {
		t.Fatal(err)
	}
	a := resp.Responses["A"]
	if a.Error != nil {
		t.Fatalf("A: %v", a.Error)
	}
	sent := map[string]float64{}
	for _, f := range a.Frames {
		if f.Meta == nil || f.Meta.Type != data.FrameTypeTimeSeriesMulti || f.Fields[0].Type() != data.FieldTypeTime {
			t.Errorf("frame %s is not a numeric multi-frame time series: %+v", f.Name, f.Meta)
		}
		for i := range f.Rows() {
			v, _ := f.Fields[1].ConcreteAt(i)
			sent[f.Fields[1].Labels["isp"]] += v.(float64)
		}
	}
	if sent["gmail"] != float64(seed.GmailSent) || sent["yahoo"] != float64(seed.YahooSent) || len(sent) != 2 {
		t.Errorf("sent by isp %v, want gmail %d, yahoo %d", sent, seed.GmailSent, seed.YahooSent)
	}

	stream, err := resources.CallResource(ctx, &pluginv2.CallResourceRequest{PluginContext: backend.ToProto().PluginContext(pc),
		Path: "options/isp", Method: "GET", Url: "options/isp"})
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if chunk.Code != 200 || string(chunk.Body) != `[{"label":"gmail","value":"gmail"},{"label":"yahoo","value":"yahoo"}]` {
		t.Errorf("options/isp: %d %s", chunk.Code, chunk.Body)
	}
}

// TestPackage checks the folder make plugin builds (PLUGIN_DIST, set by
// make plugin-test; skipped when unset): what Grafana loads from it.
func TestPackage(t *testing.T) {
	dist := os.Getenv("PLUGIN_DIST")
	if dist == "" {
		t.Skip("PLUGIN_DIST unset: make plugin-test builds the folder and checks it")
	}
	b, err := os.ReadFile(filepath.Join(dist, "plugin.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Name       string `json:"name"`
		Backend    bool   `json:"backend"`
		Executable string `json:"executable"`
		Metrics    bool   `json:"metrics"`
		Alerting   bool   `json:"alerting"`
		Info       struct {
			Version  string   `json:"version"`
			Updated  string   `json:"updated"`
			Keywords []string `json:"keywords"`
			Logos    struct {
				Small string `json:"small"`
				Large string `json:"large"`
			} `json:"logos"`
		} `json:"info"`
		Dependencies struct {
			GrafanaDependency string `json:"grafanaDependency"`
		} `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("plugin.json: %v", err)
	}
	if p.Type != "datasource" || p.ID != reputeds.PluginID || p.Name == "" || !p.Backend || !p.Metrics || !p.Alerting {
		t.Errorf("plugin.json: %+v", p)
	}
	if _, err := time.Parse(time.DateOnly, p.Info.Updated); err != nil || len(strings.Split(p.Info.Version, ".")) != 3 ||
		len(p.Info.Keywords) == 0 || !strings.HasPrefix(p.Dependencies.GrafanaDependency, ">=") {
		t.Errorf("plugin.json info/dependencies: %+v %+v", p.Info, p.Dependencies)
	}
	for _, f := range []string{"module.js", p.Info.Logos.Small, p.Info.Logos.Large} {
		if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	exe := filepath.Join(dist, p.Executable+"_linux_amd64")
	if st, err := os.Stat(exe); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("executable %s: %v", exe, err)
	}
	js, _ := os.ReadFile(filepath.Join(dist, "module.js"))
	if strings.Contains(string(js), "System.register(") {
		t.Errorf("module.js contains System.register(: Grafana would take it for an Angular plugin and refuse it")
	}
}
