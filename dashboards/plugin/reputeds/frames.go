package reputeds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// maxPoints bounds the buckets of a time series: an hourly series over a
// year would be 8,760 points per series, more than a panel draws.
const maxPoints = 5000

// bucketFor is the bucket of a stats time series: the query's, or hours up
// to 7 days and days beyond.
func bucketFor(q Query, tr backend.TimeRange) (string, time.Duration) {
	switch {
	case q.Bucket == "hour":
		return "hour", time.Hour
	case q.Bucket == "day", tr.To.Sub(tr.From) > 7*24*time.Hour:
		return "day", 24 * time.Hour
	}
	return "hour", time.Hour
}

// filters are the query's filters that filter (an empty value, as a
// template variable set to All interpolates to, does not).
func activeFilters(q Query) map[string]string {
	out := map[string]string{}
	for k, v := range q.Filters {
		if v = strings.TrimSpace(v); v != "" && v != "$__all" {
			out[k] = v
		}
	}
	return out
}

// statsFrames answers a stats query. Filters are served by grouping by the
// filtered dimensions too and keeping the matching groups: GET /v1/stats
// has no filter but the account, and since a filter fixes one value, the
// kept groups are exactly the groups of the filtered events (unique opens
// included).
func (d *Datasource) statsFrames(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	filters := activeFilters(q)
	groupBy := slices.Clone(q.GroupBy)
	for _, k := range slices.Sorted(maps.Keys(filters)) {
		if !slices.Contains(groupBy, k) {
			groupBy = append(groupBy, k)
		}
	}
	from, to := tr.From.UTC(), tr.To.UTC()
	var bucket string
	var step time.Duration
	if q.Format == FormatTimeSeries {
		bucket, step = bucketFor(q, tr)
		// Buckets start on UTC hours or days, as GET /v1/stats's; the
		// first is whole, the last ends at the range's end.
		from = from.Truncate(step)
		if n := to.Sub(from) / step; n > maxPoints {
			return nil, fmt.Errorf("%d %s buckets are too many (at most %d): narrow the range or choose day buckets", n, bucket, maxPoints)
		}
		groupBy = append([]string{bucket}, groupBy...)
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("empty time range %s to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	ans, err := d.c.stats(ctx, from, to, groupBy, d.account)
	if err != nil {
		return nil, err
	}
	var rows []statsRow
	for _, g := range ans.Groups {
		keep := true
		for k, v := range filters {
			keep = keep && g.Key[k] == v
		}
		if keep {
			rows = append(rows, g)
		}
	}
	if len(groupBy) == 0 {
		rows = []statsRow{ans.Totals}
	}
	if q.Format == FormatTable {
		return data.Frames{statsTable(q, rows)}, nil
	}
	return statsSeries(q, rows, bucket, from, to, step)
}

// statsTable is one row per group: the grouped dimensions, then the
// metrics.
func statsTable(q Query, rows []statsRow) *data.Frame {
	f := data.NewFrame("stats")
	for _, g := range q.GroupBy {
		vals := make([]string, len(rows))
		for i, r := range rows {
			vals[i] = r.Key[g]
		}
		f.Fields = append(f.Fields, data.NewField(g, nil, vals))
	}
	for _, m := range q.Metrics {
		vals := make([]*float64, len(rows))
		for i, r := range rows {
			vals[i] = r.Values[m]
		}
		f.Fields = append(f.Fields, data.NewField(m, nil, vals))
	}
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeTable})
	return f
}

// statsSeries is one frame per metric and group (Grafana's multi-frame time
// series, which alert rules read): a time field and a numeric value field
// labelled with the group's dimensions. Every bucket of the range has a
// point: a count missing from repute's answer (no events) is 0, a rate is
// null (no denominator).
func statsSeries(q Query, rows []statsRow, bucket string, from, to time.Time, step time.Duration) (data.Frames, error) {
	var times []time.Time
	for t := from; t.Before(to); t = t.Add(step) {
		times = append(times, t)
	}
	index := make(map[time.Time]int, len(times))
	for i, t := range times {
		index[t] = i
	}
	type series struct {
		labels data.Labels
		points map[string][]*float64 // metric → value per bucket
	}
	bySeries := map[string]*series{}
	if len(q.GroupBy) == 0 {
		bySeries[""] = &series{labels: nil, points: map[string][]*float64{}}
	}
	for _, r := range rows {
		t, err := time.Parse(time.RFC3339, r.Key[bucket])
		if err != nil {
			return nil, fmt.Errorf("repute's %s key %q is not an RFC 3339 time", bucket, r.Key[bucket])
		}
		i, ok := index[t.UTC()]
		if !ok {
			continue // outside the buckets asked for: cannot happen with GET /v1/stats's buckets
		}
		labels := data.Labels{}
		var id []string
		for _, g := range q.GroupBy {
			labels[g] = r.Key[g]
			id = append(id, g+"="+r.Key[g])
		}
		key := strings.Join(id, ",")
		s := bySeries[key]
		if s == nil {
			s = &series{labels: labels, points: map[string][]*float64{}}
			bySeries[key] = s
		}
		for _, m := range q.Metrics {
			if s.points[m] == nil {
				s.points[m] = make([]*float64, len(times))
			}
			s.points[m][i] = r.Values[m]
		}
	}
	keys := slices.Sorted(maps.Keys(bySeries))
	var frames data.Frames
	for _, m := range q.Metrics {
		rate := slices.Contains(rateMetrics, m)
		for _, k := range keys {
			s := bySeries[k]
			vals := s.points[m]
			if vals == nil {
				vals = make([]*float64, len(times))
			}
			if !rate {
				for i, v := range vals {
					if v == nil {
						zero := 0.0
						vals[i] = &zero
					}
				}
			}
			value := data.NewField(m, s.labels, vals)
			f := data.NewFrame(m, data.NewField("time", nil, slices.Clone(times)), value)
			f.SetMeta(&data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}})
			frames = append(frames, f)
		}
	}
	return frames, nil
}

// flagFrames is the active flags, one row each, most recent first.
func (d *Datasource) flagFrames(ctx context.Context, q Query) (data.Frames, error) {
	flags, err := d.c.flags(ctx, scopeFilter(q.SenderDomain, q.SendingIP, q.ISP))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(flags, func(i, j int) bool { return flags[i].Since.After(flags[j].Since) })
	f := data.NewFrame("flags",
		data.NewField("since", nil, []time.Time{}),
		data.NewField("rule", nil, []string{}),
		data.NewField("severity", nil, []string{}),
		data.NewField("value", nil, []float64{}),
		data.NewField("threshold", nil, []float64{}),
		data.NewField("sample", nil, []int64{}),
		data.NewField("window", nil, []string{}),
		data.NewField("account", nil, []string{}),
		data.NewField("sender_domain", nil, []string{}),
		data.NewField("sending_ip", nil, []string{}),
		data.NewField("isp", nil, []string{}),
		data.NewField("campaign", nil, []string{}),
		data.NewField("category", nil, []string{}),
	)
	for _, fl := range flags {
		s := fl.Scope
		f.AppendRow(fl.Since.UTC(), fl.Rule, fl.Severity, fl.Value, fl.Threshold, fl.Sample, fl.Window,
			s["account"], s["sender_domain"], s["sending_ip"], s["isp"], s["campaign"], s["category"])
	}
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeTable})
	return data.Frames{f}, nil
}

// decisionFrames is the decisions in force, one row each, most recent
// first. Its time, timeEnd and text fields make it usable as an annotation
// query too (a decision drawn as a region from issue to expiry).
func (d *Datasource) decisionFrames(ctx context.Context, q Query) (data.Frames, error) {
	ds, err := d.c.decisions(ctx, scopeFilter(q.SenderDomain, q.SendingIP, q.ISP))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].IssuedAt.After(ds[j].IssuedAt) })
	f := data.NewFrame("decisions",
		data.NewField("time", nil, []time.Time{}),
		data.NewField("timeEnd", nil, []*time.Time{}),
		data.NewField("action", nil, []string{}),
		data.NewField("sender_domain", nil, []string{}),
		data.NewField("sending_ip", nil, []string{}),
		data.NewField("isp", nil, []string{}),
		data.NewField("warmup_day", nil, []int64{}),
		data.NewField("daily_limit", nil, []int64{}),
		data.NewField("hourly_limit", nil, []int64{}),
		data.NewField("minute_limit", nil, []*int64{}),
		data.NewField("max_connections", nil, []*int64{}),
		data.NewField("source", nil, []string{}),
		data.NewField("text", nil, []string{}),
		data.NewField("id", nil, []string{}),
	)
	for _, x := range ds {
		var end *time.Time
		if x.ExpiresAt != nil {
			e := x.ExpiresAt.UTC()
			end = &e
		}
		s := x.Scope
		f.AppendRow(x.IssuedAt.UTC(), end, x.Action, s["sender_domain"], s["sending_ip"], s["isp"],
			x.WarmupDay, x.DailyLimit, x.HourlyLimit, x.MinuteLimit, x.MaxConnections, x.Source, decisionText(x), x.ID)
	}
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeTable})
	return data.Frames{f}, nil
}

// decisionText says what a decision does and why, in one line: "pause
// news.acme.example (rule): complaint_rate 0.006 ≥ 0.005 over 1000 (7d)".
func decisionText(x decision) string {
	var scope []string
	for _, k := range []string{"sender_domain", "sending_ip", "isp"} {
		if v := x.Scope[k]; v != "" {
			scope = append(scope, v)
		}
	}
	if len(scope) == 0 {
		scope = []string{"all"}
	}
	s := fmt.Sprintf("%s %s (%s)", x.Action, strings.Join(scope, " "), x.Source)
	var why []string
	for _, r := range x.Reasons {
		why = append(why, fmt.Sprintf("%s %g ≥ %g over %d (%s)", r.Rule, r.Value, r.Threshold, r.Sample, r.Window))
	}
	if len(why) > 0 {
		s += ": " + strings.Join(why, "; ")
	}
	return s
}

// suppressionFrames is every entry for an address the key may see.
func (d *Datasource) suppressionFrames(ctx context.Context, q Query) (data.Frames, error) {
	entries, err := d.c.suppressions(ctx, q.Address)
	if err != nil {
		return nil, err
	}
	f := data.NewFrame("suppression",
		data.NewField("list", nil, []string{}),
		data.NewField("address", nil, []string{}),
		data.NewField("account", nil, []string{}),
		data.NewField("shared", nil, []bool{}),
		data.NewField("sender_domain", nil, []string{}),
		data.NewField("reason", nil, []string{}),
		data.NewField("since", nil, []*time.Time{}),
		data.NewField("until", nil, []*time.Time{}),
		data.NewField("event_id", nil, []string{}),
	)
	for _, e := range entries {
		since, err := optionalTime(e.Since)
		if err != nil {
			return nil, fmt.Errorf("entry since: %w", err)
		}
		until, err := optionalTime(e.Until)
		if err != nil {
			return nil, fmt.Errorf("entry until: %w", err)
		}
		f.AppendRow(e.List, e.Address, e.Account, e.Shared, e.SenderDomain, e.Reason, since, until, e.EventID)
	}
	f.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeTable})
	return data.Frames{f}, nil
}

func optionalTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return &t, nil
}
