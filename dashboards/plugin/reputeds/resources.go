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
)

// option is an entry of an option list of the query editor.
type option struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// CallResource serves the query editor's option lists (GET, JSON arrays of
// {label, value}):
//
//	metrics             the metrics of a stats query
//	dimensions          what it may group or filter by
//	query-types         the query types
//	options/{dimension} the values of a dimension seen in the last 30 days
//	                    (or ?from=&to=, RFC 3339), for filters and variables
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	status, body := d.resource(ctx, req)
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return sender.Send(&backend.CallResourceResponse{Status: status,
		Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b})
}

func (d *Datasource) resource(ctx context.Context, req *backend.CallResourceRequest) (int, any) {
	if req.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, map[string]string{"error": req.Method + " " + req.Path + ": only GET is served"}
	}
	path := strings.Trim(req.Path, "/")
	switch {
	case path == "metrics":
		return http.StatusOK, options(Metrics)
	case path == "dimensions":
		return http.StatusOK, options(Dimensions)
	case path == "query-types":
		return http.StatusOK, options(QueryTypes)
	case strings.HasPrefix(path, "options/"):
		dim := strings.TrimPrefix(path, "options/")
		if !slices.Contains(Dimensions, dim) {
			return http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no dimension %q (known: %s)", dim, strings.Join(Dimensions, ", "))}
		}
		vals, err := d.dimensionValues(ctx, dim, req.URL)
		if err != nil {
			status := http.StatusBadGateway
			var ae *apiError
			if errors.As(err, &ae) {
				status = ae.Status
			}
			return status, map[string]string{"error": err.Error()}
		}
		return http.StatusOK, options(vals)
	}
	return http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no resource %q (served: metrics, dimensions, query-types, options/{dimension})", req.Path)}
}

func options(vals []string) []option {
	out := make([]option, len(vals))
	for i, v := range vals {
		out[i] = option{Label: v, Value: v}
	}
	return out
}

// dimensionValues are the values of dim among the events of the range
// that rawURL's from and to give (default: the last 30 days), sorted,
// without the empty value.
func (d *Datasource) dimensionValues(ctx context.Context, dim, rawURL string) ([]string, error) {
	to := time.Now().UTC().Truncate(time.Second)
	from := to.Add(-30 * 24 * time.Hour)
	if u, err := url.Parse(rawURL); err == nil {
		for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
			if v := u.Query().Get(name); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return nil, fmt.Errorf("%s=%q: want an RFC 3339 time", name, v)
				}
				*dst = t
			}
		}
	}
	ans, err := d.c.stats(ctx, from, to, []string{dim}, d.account)
	if err != nil {
		return nil, err
	}
	var vals []string
	for _, g := range ans.Groups {
		if v := g.Key[dim]; v != "" {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	return slices.Compact(vals), nil
}
