// Command layout draws each dashboard's layout — its panels on Grafana's
// 24-column grid, with their titles, types and data sources — as an HTML
// page, for make dashboard-images to turn into docs/grafana-<uid>.png with
// headless Chromium. It stands in for screenshots, which need a Grafana
// server (none installs here, docs/GRAFANA.md).
//
//	go run ./dashboards/cmd/layout -dashboards dashboards -out DIR
package main

import (
	"flag"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"

	"repute/dashboards"
)

// Pixels of a grid column and a grid row (Grafana's row is 30 px high).
const (
	colPx = 56
	rowPx = 30
	gap   = 6
)

func main() {
	dir := flag.String("dashboards", "dashboards", "the dashboards directory (its grafana/*.json)")
	out := flag.String("out", ".", "where to write <uid>.html")
	flag.Parse()
	all, files, err := dashboards.Load(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "layout:", err)
		os.Exit(1)
	}
	for _, f := range files {
		d := all[f]
		path := filepath.Join(*out, d.UID+".html")
		if err := os.WriteFile(path, []byte(page(d)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "layout:", err)
			os.Exit(1)
		}
		fmt.Printf("%s %d %d\n", path, 24*colPx+2*gap, height(d))
	}
}

const header = 96 // title, description and variables

func height(d *dashboards.Dashboard) int {
	rows := 0
	for _, p := range d.Panels {
		rows = max(rows, p.GridPos.Y+p.GridPos.H)
	}
	return header + rows*rowPx + 2*gap
}

var typeColor = map[string]string{"stat": "#3d71d9", "timeseries": "#56a64b", "table": "#e0752d"}

func page(d *dashboards.Dashboard) string {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#111217;color:#ccccdc;font:13px/1.3 sans-serif;width:%dpx;height:%dpx;position:relative;overflow:hidden}
h1{font-size:20px;margin:8px %dpx 2px;color:#fff}
.d{margin:0 %dpx;color:#9fa7b3;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.v{margin:6px %dpx;font-size:12px}.v span{background:#22252b;border:1px solid #34373d;padding:2px 6px;margin-right:6px;border-radius:2px}
.p{position:absolute;box-sizing:border-box;background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:6px 8px;overflow:hidden}
.t{font-weight:bold;color:#fff;font-size:13px}
.k{display:inline-block;font-size:11px;color:#fff;padding:0 5px;border-radius:2px;margin-top:4px}
.s{font-size:11px;color:#8e8e8e;margin-top:4px}
</style></head><body>`, 24*colPx+2*gap, height(d), gap+2, gap+2, gap+2)
	fmt.Fprintf(&b, "<h1>%s</h1><div class=d>%s</div><div class=v>", esc(d.Title), esc(d.Description))
	for _, v := range d.Templating.List {
		if v.Hide == 2 {
			continue
		}
		label := v.Label
		if label == "" {
			label = v.Name
		}
		fmt.Fprintf(&b, "<span>%s: All</span>", esc(label))
	}
	b.WriteString("</div>")
	for _, p := range d.Panels {
		g := p.GridPos
		ds := "ClickHouse SQL"
		if p.Datasource != nil && p.Datasource.Type == dashboards.ReputeType {
			ds = "repute API (plugin)"
		}
		fmt.Fprintf(&b, `<div class=p style="left:%dpx;top:%dpx;width:%dpx;height:%dpx"><div class=t>%s</div>`+
			`<span class=k style="background:%s">%s</span><div class=s>%s</div><div class=s>%s</div></div>`,
			gap+g.X*colPx, header+g.Y*rowPx, g.W*colPx-gap, g.H*rowPx-gap, esc(p.Title),
			typeColor[p.Type], esc(p.Type), esc(ds), esc(p.Description))
	}
	b.WriteString("</body></html>")
	return b.String()
}
