// Package reputeds is the Grafana backend data source over repute's HTTP
// API (plugin id repute-deliverability-datasource): statistics with any
// grouping as time series or tables, the rule engine's flags and
// decisions, and suppression lookups, for what SQL on ClickHouse cannot
// serve (and for the embedded store, which has no SQL endpoint).
//
// Grafana sends each query's JSON as the query editor of module.js builds
// it (Query below); the settings are the data source's jsonData (Settings)
// and secureJsonData ("apiKey").
package reputeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// PluginID is the id in plugin.json, under which Grafana runs the plugin.
const PluginID = "repute-deliverability-datasource"

// The handlers the data source serves.
var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// Settings are the data source's jsonData.
type Settings struct {
	// URL is repute's base URL, e.g. http://repute:8080.
	URL string `json:"url"`
	// Account, when set, restricts the statistics to one account (admin
	// key only; an account key reads only its own account anyway).
	Account string `json:"account"`
	// TimeoutSeconds bounds each call to repute; default 30.
	TimeoutSeconds int `json:"timeoutSeconds"`
}

// Datasource is one configured data source.
type Datasource struct {
	c       *client
	account string
}

// New builds a data source from its settings (Grafana calls it again when
// the settings change). A missing URL or key is an error Grafana shows on
// every query and on the health check.
func New(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	var set Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &set); err != nil {
			return nil, fmt.Errorf("repute data source settings (jsonData): %w", err)
		}
	}
	if strings.TrimSpace(set.URL) == "" {
		return nil, errors.New("repute data source: set repute's URL (jsonData.url), e.g. http://127.0.0.1:8080")
	}
	base, err := url.Parse(strings.TrimRight(strings.TrimSpace(set.URL), "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("repute data source: URL %q is not an http(s) URL such as http://127.0.0.1:8080", set.URL)
	}
	key := strings.TrimSpace(s.DecryptedSecureJSONData["apiKey"])
	if key == "" {
		return nil, errors.New("repute data source: set the API key (secureJsonData.apiKey): the admin key, or an account's key")
	}
	timeout := 30 * time.Second
	if set.TimeoutSeconds > 0 {
		timeout = time.Duration(set.TimeoutSeconds) * time.Second
	}
	return &Datasource{
		c:       &client{base: base, key: key, http: &http.Client{Timeout: timeout}},
		account: set.Account,
	}, nil
}

// Dispose is called when the settings changed and a new instance replaces
// this one.
func (d *Datasource) Dispose() { d.c.http.CloseIdleConnections() }

// CheckHealth reads one hour of statistics: it proves repute answers at the
// URL and takes the key.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	to := time.Now().UTC().Truncate(time.Second)
	if _, err := d.c.stats(ctx, to.Add(-time.Hour), to, nil, d.account); err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: err.Error()}, nil
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: "repute answers at " + d.c.base.String() + " and accepts the key"}, nil
}

// QueryData answers each query on its own: one failing query does not fail
// the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	q, err := parseQuery(dq)
	if err != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	}
	var frames data.Frames
	switch q.QueryType {
	case QueryStats:
		frames, err = d.statsFrames(ctx, q, dq.TimeRange)
	case QueryFlags:
		frames, err = d.flagFrames(ctx, q)
	case QueryDecisions:
		frames, err = d.decisionFrames(ctx, q)
	case QuerySuppression:
		frames, err = d.suppressionFrames(ctx, q)
	}
	if err != nil {
		status := backend.StatusBadGateway
		var ae *apiError
		if errors.As(err, &ae) {
			status = backend.Status(ae.Status)
		}
		return backend.ErrDataResponse(status, err.Error())
	}
	for _, f := range frames {
		f.RefID = dq.RefID
	}
	return backend.DataResponse{Frames: frames}
}

// Query types: the queryType of a query.
const (
	QueryStats       = "stats"
	QueryFlags       = "flags"
	QueryDecisions   = "decisions"
	QuerySuppression = "suppression"
)

// QueryTypes lists them.
var QueryTypes = []string{QueryStats, QueryFlags, QueryDecisions, QuerySuppression}

// Formats of a stats query.
const (
	FormatTimeSeries = "time_series"
	FormatTable      = "table"
)

// Query is a query's JSON as module.js sends it.
type Query struct {
	QueryType string `json:"queryType"`
	// Stats: the metrics (counts and rates of GET /v1/stats; default
	// sent), the dimensions to group by (sender_domain, isp, campaign,
	// sending_ip, category, account), the format (time_series: one series
	// per metric and group, bucketed by hour or day; table: one row per
	// group over the whole range), Bucket ("hour", "day", or "" to choose
	// by the range) and Filters (dimension → value: only that value).
	Metrics []string          `json:"metrics"`
	GroupBy []string          `json:"groupBy"`
	Format  string            `json:"format"`
	Bucket  string            `json:"bucket"`
	Filters map[string]string `json:"filters"`
	// Flags and decisions: the scope filter (empty: all).
	SenderDomain string `json:"senderDomain"`
	SendingIP    string `json:"sendingIp"`
	ISP          string `json:"isp"`
	// Suppression: the address looked up.
	Address string `json:"address"`
}

// Metrics lists what a stats query may ask for: the counts and the rates
// of GET /v1/stats, under their JSON names (metrics.Counts and
// metrics.Rates in repute; the rates' denominators are there).
var Metrics = []string{
	"sent", "delivered", "deferred", "bounced_hard", "bounced_soft", "complained",
	"opened_human", "opened_machine", "opened_unverified", "clicked", "unsubscribed", "dropped",
	"bounce_rate", "complaint_rate", "open_rate", "machine_open_share",
}

// rateMetrics are the Metrics that are rates (null without a denominator,
// never filled with 0).
var rateMetrics = []string{"bounce_rate", "complaint_rate", "open_rate", "machine_open_share"}

// Dimensions lists what a stats query may group or filter by (GET
// /v1/stats's group_by, without its time buckets, which the format
// chooses).
var Dimensions = []string{"sender_domain", "isp", "campaign", "sending_ip", "category", "account"}

func parseQuery(dq backend.DataQuery) (Query, error) {
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return q, fmt.Errorf("query %s: %w", dq.RefID, err)
		}
	}
	if q.QueryType == "" {
		q.QueryType = dq.QueryType
	}
	if q.QueryType == "" {
		q.QueryType = QueryStats
	}
	if !slices.Contains(QueryTypes, q.QueryType) {
		return q, fmt.Errorf("query %s: unknown queryType %q (known: %s)", dq.RefID, q.QueryType, strings.Join(QueryTypes, ", "))
	}
	if q.QueryType != QueryStats {
		return q, nil
	}
	if len(q.Metrics) == 0 {
		q.Metrics = []string{"sent"}
	}
	for _, m := range q.Metrics {
		if !slices.Contains(Metrics, m) {
			return q, fmt.Errorf("query %s: unknown metric %q (known: %s)", dq.RefID, m, strings.Join(Metrics, ", "))
		}
	}
	for _, g := range q.GroupBy {
		if !slices.Contains(Dimensions, g) {
			return q, fmt.Errorf("query %s: unknown groupBy %q (known: %s)", dq.RefID, g, strings.Join(Dimensions, ", "))
		}
	}
	for g := range q.Filters {
		if !slices.Contains(Dimensions, g) {
			return q, fmt.Errorf("query %s: unknown filter %q (known: %s)", dq.RefID, g, strings.Join(Dimensions, ", "))
		}
	}
	switch q.Format {
	case "":
		q.Format = FormatTimeSeries
	case FormatTimeSeries, FormatTable:
	default:
		return q, fmt.Errorf("query %s: format %q: want %s or %s", dq.RefID, q.Format, FormatTimeSeries, FormatTable)
	}
	switch q.Bucket {
	case "", "hour", "day":
	default:
		return q, fmt.Errorf("query %s: bucket %q: want hour, day or empty (chosen by the range)", dq.RefID, q.Bucket)
	}
	return q, nil
}
