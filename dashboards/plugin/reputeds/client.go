package reputeds

// The HTTP client of repute's API (README.md, "Using it"): the JSON types
// below are the parts of its answers the data source reads, decoded
// without importing the repute module, whose dependency graph this module
// keeps apart.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client calls one repute server with one key.
type client struct {
	base *url.URL
	key  string
	http *http.Client
}

// apiError is a non-2xx answer of repute: its status and the message of
// its {"error": "..."} body.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("repute answered %d: %s", e.Status, e.Message)
}

// get calls GET path?query and decodes the JSON answer into out.
func (c *client) get(ctx context.Context, path string, query url.Values, out any) error {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach repute at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return fmt.Errorf("reading repute's answer to GET %s: %w", path, err)
	}
	if len(body) > maxAnswerBytes {
		return fmt.Errorf("repute's answer to GET %s is over %d bytes: narrow the time range or the grouping", path, maxAnswerBytes)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (check the API key in the data source's settings)"
		}
		return &apiError{Status: resp.StatusCode, Message: msg}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("repute's answer to GET %s is not the JSON expected: %w", path, err)
	}
	return nil
}

// maxAnswerBytes bounds an answer read into memory: a group_by over a long
// range can be large, and the plugin runs inside the Grafana host.
const maxAnswerBytes = 64 << 20

// statsRow is a group (or the totals) of GET /v1/stats: the dimension
// values in Key, then the counts and the rates as plain JSON numbers (a
// rate is null when its denominator is zero).
type statsRow struct {
	Key    map[string]string
	Values map[string]*float64
}

func (r *statsRow) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	r.Values = map[string]*float64{}
	for name, v := range raw {
		if name == "key" {
			if err := json.Unmarshal(v, &r.Key); err != nil {
				return fmt.Errorf("key: %w", err)
			}
			continue
		}
		var f *float64
		if err := json.Unmarshal(v, &f); err != nil {
			continue // not a number: not a metric
		}
		r.Values[name] = f
	}
	return nil
}

type statsAnswer struct {
	From    string     `json:"from"`
	To      string     `json:"to"`
	GroupBy []string   `json:"group_by"`
	Groups  []statsRow `json:"groups"`
	Totals  statsRow   `json:"totals"`
}

// stats calls GET /v1/stats.
func (c *client) stats(ctx context.Context, from, to time.Time, groupBy []string, account string) (*statsAnswer, error) {
	q := url.Values{}
	q.Set("from", from.UTC().Format(time.RFC3339))
	q.Set("to", to.UTC().Format(time.RFC3339))
	if len(groupBy) > 0 {
		q.Set("group_by", strings.Join(groupBy, ","))
	}
	if account != "" {
		q.Set("account", account)
	}
	var a statsAnswer
	if err := c.get(ctx, "/v1/stats", q, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// flag is an active flag of GET /v1/flags.
type flag struct {
	Rule      string            `json:"rule"`
	Scope     map[string]string `json:"scope"`
	Severity  string            `json:"severity"`
	Value     float64           `json:"value"`
	Threshold float64           `json:"threshold"`
	Sample    int64             `json:"sample"`
	Window    string            `json:"window"`
	Since     time.Time         `json:"since"`
}

// decision is a throttle decision of GET /v1/decisions (issue 13's JSON).
type decision struct {
	ID             string            `json:"id"`
	Scope          map[string]string `json:"scope"`
	Action         string            `json:"action"`
	WarmupDay      int64             `json:"warmup_day"`
	DailyLimit     int64             `json:"daily_limit"`
	HourlyLimit    int64             `json:"hourly_limit"`
	MinuteLimit    *int64            `json:"minute_limit"`
	MaxConnections *int64            `json:"max_connections"`
	Reasons        []struct {
		Rule      string  `json:"rule"`
		Value     float64 `json:"value"`
		Threshold float64 `json:"threshold"`
		Sample    int64   `json:"sample"`
		Window    string  `json:"window"`
	} `json:"reasons"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Source    string     `json:"source"`
}

// scopeFilter is the ?sender_domain=&sending_ip=&isp= of /v1/flags and
// /v1/decisions.
func scopeFilter(senderDomain, sendingIP, isp string) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"sender_domain": senderDomain, "sending_ip": sendingIP, "isp": isp} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (c *client) flags(ctx context.Context, f url.Values) ([]flag, error) {
	f.Set("active", "true")
	var a struct {
		Flags []flag `json:"flags"`
	}
	err := c.get(ctx, "/v1/flags", f, &a)
	return a.Flags, err
}

func (c *client) decisions(ctx context.Context, f url.Values) ([]decision, error) {
	var a struct {
		Decisions []decision `json:"decisions"`
	}
	err := c.get(ctx, "/v1/decisions", f, &a)
	return a.Decisions, err
}

// suppressionEntry is an entry of GET /v1/suppressions/{address}.
type suppressionEntry struct {
	List         string `json:"list"`
	Address      string `json:"address"`
	Account      string `json:"account"`
	Shared       bool   `json:"shared"`
	SenderDomain string `json:"sender_domain"`
	Reason       string `json:"reason"`
	Since        string `json:"since"`
	Until        string `json:"until"`
	EventID      string `json:"event_id"`
}

func (c *client) suppressions(ctx context.Context, address string) ([]suppressionEntry, error) {
	if strings.TrimSpace(address) == "" {
		return nil, errors.New("a suppression lookup needs an address")
	}
	var a struct {
		Entries []suppressionEntry `json:"entries"`
	}
	err := c.get(ctx, "/v1/suppressions/"+url.PathEscape(address), nil, &a)
	return a.Entries, err
}
