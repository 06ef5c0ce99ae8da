// Package api is repute's HTTP interface: POST /v1/events, GET /v1/stats,
// /healthz, /readyz and /metrics. Every /v1 call needs a bearer key (see
// Keys); an account key reads and writes only its own account.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"repute/intake"
	"repute/metrics"
	"repute/spool"
)

// Submitter takes validated events and returns once they are durable.
type Submitter interface {
	Submit(ctx context.Context, events []metrics.Event) (intake.Result, error)
}

// ReadyFunc reports why the server is not ready, or nil.
type ReadyFunc func(ctx context.Context) error

// Options configure a Handler.
type Options struct {
	Keys         *Keys
	Submitter    Submitter
	Stats        metrics.StatsReader
	Ready        ReadyFunc      // nil: always ready
	ISPs         metrics.ISPMap // recipient domain → mailbox provider
	MaxBodyBytes int64          // default 16 MiB
	// RetryAfter is sent with 503 when the spool is full. Default 5 s.
	RetryAfter time.Duration
	Logger     *slog.Logger          // nil: silent
	Gatherer   prometheus.Gatherer   // served on /metrics; nil: none
	Registerer prometheus.Registerer // receives the handler's metrics; nil: none
	Now        func() time.Time      // nil: time.Now
}

// DefaultMaxBodyBytes is the default cap of a POST body.
const DefaultMaxBodyBytes = 16 << 20

type server struct {
	opts     Options
	log      *slog.Logger
	rejected *prometheus.CounterVec
}

// NewHandler returns the HTTP handler of the API.
func NewHandler(opts Options) (http.Handler, error) {
	if opts.Keys == nil || opts.Submitter == nil || opts.Stats == nil {
		return nil, errors.New("api: Keys, Submitter and Stats are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &server{opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repute_items_rejected_total",
		Help: "Posted items rejected, by the kind of problem.",
	}, []string{"problem"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.rejected); err != nil {
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", s.authed(s.postEvents))
	mux.HandleFunc("GET /v1/stats", s.authed(s.getStats))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux, nil
}

type principalKey struct{}

func (s *server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.opts.Keys.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="repute"`)
			writeError(w, http.StatusUnauthorized, "missing or unknown bearer key (Authorization: Bearer <key>)")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

func principalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// rejection is one refused item of a POST.
type rejection struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

type postResponse struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []rejection `json:"rejected"`
}

// postEvents takes a JSON array or NDJSON (one event per line). Items are
// judged one by one: valid items are kept whatever their neighbours are.
func (s *server) postEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.rejected.WithLabelValues("body_too_large").Inc()
			writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("body over %d bytes (--max-body-bytes); split the batch", s.opts.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}

	var items []item
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "application/x-ndjson" {
		items = decodeNDJSON(body)
	} else {
		items, err = decodeArray(body)
		if err != nil {
			s.rejected.WithLabelValues("malformed_json").Inc()
			writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error()+"; nothing was stored")
			return
		}
	}

	p := principalOf(r)
	now := s.opts.Now()
	resp := postResponse{Rejected: []rejection{}}
	events := make([]metrics.Event, 0, len(items))
	for i := range items {
		it := &items[i]
		problem, err := "malformed_item", it.err
		if err == nil {
			problem, err = s.validate(&it.event, p, now)
		}
		if err != nil {
			s.rejected.WithLabelValues(problem).Inc()
			resp.Rejected = append(resp.Rejected, rejection{Index: it.index, Error: err.Error()})
			continue
		}
		events = append(events, it.event)
	}
	if len(events) == 0 {
		if len(items) == 0 {
			resp.Rejected = append(resp.Rejected, rejection{Index: 0, Error: "no events in the body"})
		}
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}
	res, err := s.opts.Submitter.Submit(r.Context(), events)
	if err != nil {
		if errors.Is(err, spool.ErrFull) {
			secs := int(s.opts.RetryAfter.Round(time.Second) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeError(w, http.StatusServiceUnavailable,
				"spool full: the store is not keeping up or is down; nothing of this batch was stored, retry later")
			return
		}
		s.log.Error("submit failed", "err", err)
		writeError(w, http.StatusInternalServerError, "storing events failed; nothing of this batch was stored: "+err.Error())
		return
	}
	resp.Accepted = len(events)
	resp.Duplicates = res.Duplicates
	writeJSON(w, http.StatusAccepted, resp)
}

// item is one posted event with its position: the index in the array or
// the 0-based line number in NDJSON. err says why it could not be decoded.
type item struct {
	index int
	event metrics.Event
	err   error
}

// decodeArray decodes a JSON array of events. A syntax error anywhere fails
// the whole body, so a truncated array is not half-stored; an element that
// is well-formed JSON but not a valid event (unknown field, wrong type,
// invalid UTF-8) is one bad item.
func decodeArray(body []byte) ([]item, error) {
	if events, ok := metrics.DecodeEventsJSON(body); ok {
		items := make([]item, len(events))
		for i := range events {
			items[i] = item{index: i, event: events[i]}
		}
		return items, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errors.New("the body must be a JSON array of events (or NDJSON with Content-Type: application/x-ndjson)")
	}
	var items []item
	for i := 0; dec.More(); i++ {
		it := item{index: i}
		start := dec.InputOffset()
		if err := dec.Decode(&it.event); err != nil {
			if isSyntaxError(err) {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			// The decoder read the whole value before it failed to
			// store it, so the next element is still in reach.
			it.err = malformed(err)
		}
		if !utf8.Valid(body[start:dec.InputOffset()]) {
			it.err = errInvalidUTF8
		}
		items = append(items, it)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the closing ]")
	}
	return items, nil
}

// malformed words an item's decoding error: a field the event model judged
// (a bad time) in its own words, anything else as a malformed event.
func malformed(err error) error {
	var ve *metrics.ValidationError
	if errors.As(err, &ve) {
		return errors.New(strings.TrimPrefix(ve.Error(), "metrics: "))
	}
	return fmt.Errorf("malformed event: %v", err)
}

func isSyntaxError(err error) bool {
	var syntax *json.SyntaxError
	return errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF)
}

// encoding/json would silently turn invalid UTF-8 into U+FFFD; what is
// stored must be what was sent, so such an item is refused instead.
var errInvalidUTF8 = errors.New("invalid UTF-8 in the item")

// decodeNDJSON decodes one event a line; blank lines are skipped but
// counted, so an index is always the 0-based line number, and a malformed
// line is one bad item.
func decodeNDJSON(body []byte) []item {
	var items []item
	for i, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		it := item{index: i}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		switch err := dec.Decode(&it.event); {
		case !utf8.Valid(line):
			it.err = errInvalidUTF8
		case err != nil:
			it.err = malformed(err)
		case dec.More():
			it.err = errors.New("malformed event: more than one JSON value on the line")
		}
		items = append(items, it)
	}
	return items
}

// validate checks and normalizes a decoded event for principal p. problem
// is a short label for the rejection metric.
func (s *server) validate(e *metrics.Event, p Principal, now time.Time) (problem string, err error) {
	if !p.Admin {
		switch e.Account {
		case "":
			e.Account = p.Account
		case p.Account:
		default:
			return "wrong_account", fmt.Errorf("account %q is not the key's account %q", e.Account, p.Account)
		}
	}
	if e.Source == "" {
		e.Source = "http"
	}
	if err := e.Normalize(s.opts.ISPs, now); err != nil {
		label := "invalid_event"
		var ve *metrics.ValidationError
		if errors.As(err, &ve) {
			label = "invalid_" + ve.Field
		}
		return label, errors.New(strings.TrimPrefix(err.Error(), "metrics: "))
	}
	return "", nil
}

// statsRow is one group (or the totals) of GET /v1/stats.
type statsRow struct {
	Key map[metrics.GroupBy]string `json:"key,omitempty"`
	metrics.Counts
	metrics.Rates
}

type statsResponse struct {
	From    string            `json:"from"`
	To      string            `json:"to"`
	GroupBy []metrics.GroupBy `json:"group_by"`
	Groups  []statsRow        `json:"groups"`
	Totals  statsRow          `json:"totals"`
}

func (s *server) getStats(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	q, err := s.parseStatsQuery(r, p)
	if err != nil {
		var fe forbiddenError
		if errors.As(err, &fe) {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.opts.Stats.Stats(r.Context(), q)
	if err != nil {
		s.log.Error("stats query failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "stats query failed: "+err.Error())
		return
	}
	out := statsResponse{
		From:    q.From.Format(time.RFC3339),
		To:      q.To.Format(time.RFC3339),
		GroupBy: q.GroupBy,
		Groups:  make([]statsRow, 0, len(res.Groups)),
		Totals:  statsRow{Counts: res.Totals, Rates: res.Totals.Rates()},
	}
	for _, g := range res.Groups {
		out.Groups = append(out.Groups, statsRow{Key: g.Key, Counts: g.Counts, Rates: g.Counts.Rates()})
	}
	writeJSON(w, http.StatusOK, out)
}

type forbiddenError struct{ msg string }

func (e forbiddenError) Error() string { return e.msg }

func (s *server) parseStatsQuery(r *http.Request, p Principal) (metrics.StatsQuery, error) {
	v := r.URL.Query()
	var q metrics.StatsQuery
	var err error
	q.To = s.opts.Now().UTC().Truncate(time.Second)
	if t := v.Get("to"); t != "" {
		if q.To, err = parseTime(t); err != nil {
			return q, fmt.Errorf("to: %w", err)
		}
	}
	q.From = q.To.Add(-168 * time.Hour)
	if f := v.Get("from"); f != "" {
		if q.From, err = parseTime(f); err != nil {
			return q, fmt.Errorf("from: %w", err)
		}
	}
	if !q.From.Before(q.To) {
		return q, fmt.Errorf("from (%s) must be before to (%s)", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	if q.GroupBy, err = metrics.ParseGroupBy(v.Get("group_by")); err != nil {
		return q, errors.New(strings.TrimPrefix(err.Error(), "metrics: "))
	}
	q.Account = v.Get("account")
	if !p.Admin {
		for _, g := range q.GroupBy {
			if g == metrics.GroupAccount {
				return q, forbiddenError{"group_by=account needs the admin key"}
			}
		}
		if q.Account != "" && q.Account != p.Account {
			return q, forbiddenError{fmt.Sprintf("this key reads only account %q", p.Account)}
		}
		q.Account = p.Account
	}
	return q, nil
}

// parseTime accepts RFC 3339 or YYYY-MM-DD (midnight UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
