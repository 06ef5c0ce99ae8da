// Package api is repute's HTTP interface: POST /v1/events, GET /v1/stats,
// POST /v1/feedback, GET /v1/evidence/{id}, the suppression lists, POST
// /v1/messages and GET /v1/queue (the sender), /healthz, /readyz and
// /metrics.
// Every /v1 call needs a bearer key (see Keys); an account key reads and
// writes only its own account.
package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
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
	// MaxInflightBytes bounds the memory of the POST bodies in flight,
	// from the first byte read until the handler is done with their
	// events; each is charged InflightBytesPerBodyByte times its size (the
	// body and its decoded events). A body whose Content-Length (or,
	// chunked, whose next read) does not fit gets 503 with Retry-After at
	// once, before it is read. Bodies over SmallBodyBytes may fill only
	// 7/8 of it: the last eighth is kept for small bodies, so that the
	// usual batches pass while large ones wait. Default 256 MiB.
	MaxInflightBytes int64
	// MinBodyRate is the slowest a body may arrive, in bytes/s, once
	// BodyRateGrace has passed: the body must have delivered
	// MinBodyRate × (elapsed − BodyRateGrace) bytes at any time, or the
	// request ends with 408. Defaults 64 KiB/s and 5 s.
	MinBodyRate   int64
	BodyRateGrace time.Duration
	// WriteTimeout, when set, restarts the response's write deadline once
	// the body is read: the server's own WriteTimeout counts from the end
	// of the headers, body included.
	WriteTimeout time.Duration
	// VisibleTimeout bounds the wait of POST /v1/events?wait=visible
	// (504 past it). Default 30 s.
	VisibleTimeout time.Duration
	// Feedback converts a report posted to POST /v1/feedback; nil: the
	// route does not exist. Evidence then stores the reports' evidence
	// (required with Feedback).
	Feedback FeedbackFunc
	Evidence metrics.EvidenceWriter
	// EvidenceReader serves GET /v1/evidence/{id}; nil: the route does
	// not exist.
	EvidenceReader metrics.EvidenceReader
	// Suppressions are the suppression lists (POST /v1/suppressions/check,
	// GET /v1/suppressions/{address}, GET /v1/blocklist, DELETE
	// /v1/blocklist/{address}, GET, POST and DELETE /v1/unsubscribes, GET
	// /v1/audit); nil: those routes are not served.
	Suppressions Suppressions
	// Webhooks are the accounts' webhook dispatchers (GET
	// /v1/webhooks/deliveries); nil: the route is not served.
	Webhooks Webhooks
	// Sender is the built-in sender (POST /v1/messages, GET /v1/queue);
	// nil: the sender is off, and both routes answer 503 saying how to
	// turn it on. It needs Suppressions: every recipient is checked.
	Sender Sender
	// SenderDomains lists, by account, the sender domains the account may
	// send from (POST /v1/messages answers 403 for another); an account
	// without an entry may send from any.
	SenderDomains map[string][]string

	// RetryAfter is sent with 503 when the spool is full or the bodies in
	// flight are over their budget. Default 5 s.
	RetryAfter time.Duration
	Logger     *slog.Logger          // nil: silent
	Gatherer   prometheus.Gatherer   // served on /metrics; nil: none
	Registerer prometheus.Registerer // receives the handler's metrics; nil: none
	Now        func() time.Time      // nil: time.Now

	// Guard enforces the per-key rate limits, the per-address limit of
	// POST /v1/feedback and the lock-out after failed authentications;
	// nil: none.
	Guard *Guard
	// QueryTimeout is the deadline of the store reads of a GET (and of
	// POST /v1/suppressions/check): past it the answer is 503 naming it.
	// Default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxResultRows caps the groups of GET /v1/stats and the items of
	// GET /v1/decisions and GET /v1/flags ("truncated": true says so);
	// the paged lists have their own cap (limit=). Default
	// DefaultMaxResultRows.
	MaxResultRows int
}

// DefaultMaxBodyBytes is the default cap of a POST body.
const DefaultMaxBodyBytes = 16 << 20

type server struct {
	opts     Options
	log      *slog.Logger
	rejected *prometheus.CounterVec
	budget   *budget
}

// VisibleWaiter is implemented by a Submitter whose accepted events become
// queryable some time after Submit returns (intake.Pipeline). Without it,
// ?wait=visible returns at once.
type VisibleWaiter interface {
	// WaitVisible returns once every event submitted before it was called
	// is queryable, or with ctx's error.
	WaitVisible(ctx context.Context) error
}

// NewHandler returns the HTTP handler of the API.
func NewHandler(opts Options) (http.Handler, error) {
	if opts.Keys == nil || opts.Submitter == nil || opts.Stats == nil {
		return nil, errors.New("api: Keys, Submitter and Stats are required")
	}
	if opts.Feedback != nil && opts.Evidence == nil {
		return nil, errors.New("api: Feedback needs Evidence, where the reports are stored")
	}
	if opts.Sender != nil && opts.Suppressions == nil {
		return nil, errors.New("api: Sender needs Suppressions, which check every recipient")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if opts.MinBodyRate <= 0 {
		opts.MinBodyRate = DefaultMinBodyRate
	}
	if opts.BodyRateGrace <= 0 {
		opts.BodyRateGrace = DefaultBodyRateGrace
	}
	if opts.VisibleTimeout <= 0 {
		opts.VisibleTimeout = 30 * time.Second
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &server{opts: opts, log: opts.Logger, budget: newBudget(opts.MaxInflightBytes)}
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
	mux.HandleFunc("GET /v1/stats", s.authed(s.bounded(s.getStats)))
	endpoints := "POST /v1/events, GET /v1/stats"
	if opts.Feedback != nil {
		mux.HandleFunc("POST /v1/feedback", s.perAddress(LimitFeedback, s.authed(s.postFeedback)))
		endpoints += ", POST /v1/feedback"
	}
	if opts.EvidenceReader != nil {
		mux.HandleFunc("GET /v1/evidence/{id}", s.authed(s.bounded(s.getEvidence)))
		endpoints += ", GET /v1/evidence/{id}"
	}
	if opts.Suppressions != nil {
		mux.HandleFunc("POST /v1/suppressions/check", s.authed(s.bounded(s.postSuppressionCheck)))
		mux.HandleFunc("GET /v1/suppressions/{address}", s.authed(s.bounded(s.getSuppression)))
		mux.HandleFunc("GET /v1/blocklist", s.authed(s.bounded(s.getBlocklist)))
		mux.HandleFunc("DELETE /v1/blocklist/{address}", s.authed(s.deleteBlocklist))
		mux.HandleFunc("GET /v1/unsubscribes", s.authed(s.bounded(s.getUnsubscribes)))
		mux.HandleFunc("POST /v1/unsubscribes", s.authed(s.postUnsubscribe))
		mux.HandleFunc("DELETE /v1/unsubscribes", s.authed(s.deleteUnsubscribe))
		mux.HandleFunc("GET /v1/audit", s.authed(s.bounded(s.getAudit)))
		endpoints += ", POST /v1/suppressions/check, GET /v1/suppressions/{address}, GET /v1/blocklist, DELETE /v1/blocklist/{address}, GET, POST and DELETE /v1/unsubscribes, GET /v1/audit"
	}
	if opts.Webhooks != nil {
		mux.HandleFunc("GET /v1/webhooks/deliveries", s.authed(s.bounded(s.getWebhookDeliveries)))
		endpoints += ", GET /v1/webhooks/deliveries"
	}
	mux.HandleFunc("POST /v1/messages", s.authed(s.postMessages))
	mux.HandleFunc("GET /v1/queue", s.authed(s.bounded(s.getQueue)))
	endpoints += ", POST /v1/messages, GET /v1/queue"
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return jsonNotFound(mux, endpoints), nil
}

// jsonNotFound answers the mux's 404 and 405 in the API's error shape;
// endpoints lists the /v1 routes.
func jsonNotFound(mux *http.ServeMux, endpoints string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusNotFound:
			writeError(w, http.StatusNotFound, fmt.Sprintf(
				"no such endpoint: %s (the API: %s, GET /healthz, GET /readyz, GET /metrics)", r.URL.Path, endpoints))
		case http.StatusMethodNotAllowed:
			allow := probe.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		default: // a redirect to the clean path, say
			mux.ServeHTTP(w, r)
		}
	})
}

// statusProbe records only the status and the headers of a response.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }

func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

type principalKey struct{}

func (s *server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.opts.Keys.authenticate(r)
		if !ok {
			s.opts.Guard.authFailed(w, r)
			return
		}
		if !s.opts.Guard.allowKey(w, p) {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// perAddress limits h by the client's address, before its key is even
// looked at: a public endpoint flooded with or without a key.
func (s *server) perAddress(limit string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Guard.limitAddress(w, r, limit) {
			h(w, r)
		}
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
//
// Memory: the body is read into one buffer of its exact size (when its
// length is declared), decoded into one slice of events, and validated and
// compacted in place, so that a request's peak is the body, its events and
// their spool encoding; and it is charged to the in-flight budget until
// the handler returns.
func (s *server) postEvents(w http.ResponseWriter, r *http.Request) {
	wait := false
	switch v := r.URL.Query().Get("wait"); v {
	case "":
	case "visible":
		wait = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%q: the only value is wait=visible", v))
		return
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.bodyTooLarge(w)
		return
	}
	lb, ok := s.limitBody(w, r)
	if !ok {
		s.retryLater(w, "request bodies in flight are over their budget (--max-inflight-bytes); nothing of this batch was read or stored, retry later")
		return
	}
	defer lb.done()
	body, err := s.readBody(w, r)
	if err != nil {
		s.bodyError(w, err)
		return
	}
	if s.opts.WriteTimeout > 0 {
		extendWriteDeadline(w, s.opts.WriteTimeout)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.rejected.WithLabelValues("no_events").Inc()
		writeError(w, http.StatusBadRequest, "no events: the body is empty (send a JSON array of events, or NDJSON with Content-Type: application/x-ndjson)")
		return
	}

	var d decoded
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "application/x-ndjson" {
		d = decodeNDJSON(body)
	} else {
		d, err = decodeArray(body)
		if err != nil {
			s.rejected.WithLabelValues("malformed_json").Inc()
			writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error()+"; nothing was stored")
			return
		}
	}
	if len(d.events)+len(d.bad) == 0 {
		s.rejected.WithLabelValues("no_events").Inc()
		writeError(w, http.StatusBadRequest, "no events: the body holds no item")
		return
	}

	p := principalOf(r)
	now := s.opts.Now()
	resp := postResponse{Rejected: []rejection{}}
	for _, b := range d.bad {
		s.rejected.WithLabelValues("malformed_item").Inc()
		resp.Rejected = append(resp.Rejected, b)
	}
	// Validated in place, the valid events moved to the front.
	events := d.events[:0]
	for i := range d.events {
		if problem, err := s.validate(&d.events[i], p, now); err != nil {
			s.rejected.WithLabelValues(problem).Inc()
			resp.Rejected = append(resp.Rejected, rejection{Index: d.indexOf(i), Error: err.Error()})
			continue
		}
		events = append(events, d.events[i])
	}
	clear(d.events[len(events):])
	if len(d.bad) > 0 {
		slices.SortStableFunc(resp.Rejected, func(a, b rejection) int { return cmp.Compare(a.Index, b.Index) })
	}
	if len(events) == 0 {
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}
	res, err := s.opts.Submitter.Submit(r.Context(), events)
	if err != nil {
		if errors.Is(err, spool.ErrFull) {
			s.retryLater(w, "spool full: the store is not keeping up or is down; nothing of this batch was stored, retry later")
			return
		}
		if de := (*spool.DiskError)(nil); errors.As(err, &de) {
			s.retryLater(w, de.Error()+"; nothing of this batch was stored, retry later")
			return
		}
		s.log.Error("submit failed", "err", err)
		writeError(w, http.StatusInternalServerError, "storing events failed; nothing of this batch was stored: "+err.Error())
		return
	}
	resp.Accepted = len(events)
	resp.Duplicates = res.Duplicates
	if wait {
		if err := s.waitVisible(w, r); err != nil {
			writeJSON(w, http.StatusGatewayTimeout, struct {
				Error string `json:"error"`
				postResponse
			}{fmt.Sprintf("the events were accepted (they are in the spool and will be stored) but were not queryable within %s: %v",
				s.opts.VisibleTimeout, err), resp})
			return
		}
	}
	writeJSON(w, http.StatusAccepted, resp)
}

// waitVisible waits until the accepted events are queryable, for at most
// VisibleTimeout (or the request's end).
func (s *server) waitVisible(w http.ResponseWriter, r *http.Request) error {
	vw, ok := s.opts.Submitter.(VisibleWaiter)
	if !ok {
		return nil
	}
	// The wait may be longer than the server's write timeout allows.
	extendWriteDeadline(w, s.opts.VisibleTimeout+10*time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.VisibleTimeout)
	defer cancel()
	return vw.WaitVisible(ctx)
}

// readBody reads the body, into a buffer of its exact size when its length
// is declared (io.ReadAll would grow its buffer to up to twice the body).
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	if n := r.ContentLength; n >= 0 {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}

func (s *server) bodyTooLarge(w http.ResponseWriter) {
	s.rejected.WithLabelValues("body_too_large").Inc()
	writeError(w, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("body over %d bytes (--max-body-bytes); split the batch", s.opts.MaxBodyBytes))
}

// bodyError answers a failed read of the body.
func (s *server) bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.bodyTooLarge(w)
	case errors.Is(err, errBudget):
		s.retryLater(w, "request bodies in flight are over their budget (--max-inflight-bytes); nothing of this batch was stored, retry later")
	case errors.Is(err, errTooSlow):
		s.rejected.WithLabelValues("body_too_slow").Inc()
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf(
			"the body arrived slower than %d bytes/s (--min-body-rate) after %s; nothing was stored",
			s.opts.MinBodyRate, s.opts.BodyRateGrace))
	case errors.Is(err, errReadTimeout):
		s.rejected.WithLabelValues("body_too_slow").Inc()
		writeError(w, http.StatusRequestTimeout, "the body did not arrive within the read timeout (--read-timeout); nothing was stored")
	default:
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
	}
}

// retryLater answers 503 with Retry-After.
func (s *server) retryLater(w http.ResponseWriter, msg string) {
	secs := int(s.opts.RetryAfter.Round(time.Second) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeError(w, http.StatusServiceUnavailable, msg)
}

// decoded are the items of a posted body: the events that decoded, and
// the items that did not.
type decoded struct {
	events []metrics.Event
	// index[i] is the position of events[i] in the body: its index in the
	// array or its 0-based line number in NDJSON. nil: i.
	index []int
	bad   []rejection // items that could not be decoded, in order
}

func (d *decoded) indexOf(i int) int {
	if d.index == nil {
		return i
	}
	return d.index[i]
}

func (d *decoded) add(index int, e *metrics.Event, err error) {
	if err != nil {
		d.bad = append(d.bad, rejection{Index: index, Error: err.Error()})
		return
	}
	d.events = append(d.events, *e)
	d.index = append(d.index, index)
}

// decodeArray decodes a JSON array of events. A syntax error anywhere fails
// the whole body, so a truncated array is not half-stored; an element that
// is well-formed JSON but not a valid event (unknown field, wrong type,
// invalid UTF-8) is one bad item.
func decodeArray(body []byte) (decoded, error) {
	if events, ok := metrics.DecodeEventsJSON(body); ok {
		return decoded{events: events}, nil
	}
	var d decoded
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return d, err
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return d, errors.New("the body must be a JSON array of events (or NDJSON with Content-Type: application/x-ndjson)")
	}
	d.index = []int{}
	for i := 0; dec.More(); i++ {
		var e metrics.Event
		start := dec.InputOffset()
		err := dec.Decode(&e)
		if err != nil {
			if isSyntaxError(err) {
				return d, fmt.Errorf("item %d: %w", i, err)
			}
			// The decoder read the whole value before it failed to
			// store it, so the next element is still in reach.
			err = malformed(err)
		}
		if !utf8.Valid(body[start:dec.InputOffset()]) {
			err = errInvalidUTF8
		}
		d.add(i, &e, err)
	}
	if _, err := dec.Token(); err != nil {
		return d, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return d, errors.New("data after the closing ]")
	}
	return d, nil
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
func decodeNDJSON(body []byte) decoded {
	d := decoded{index: []int{}}
	for i, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e metrics.Event
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var err error
		switch derr := dec.Decode(&e); {
		case !utf8.Valid(line):
			err = errInvalidUTF8
		case derr != nil:
			err = malformed(derr)
		case dec.More():
			err = errors.New("malformed event: more than one JSON value on the line")
		}
		d.add(i, &e, err)
	}
	return d
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
	// Who posted it is the server's to say, never the poster's: it decides
	// whether a bounce blocklists the address for every account (issue 10).
	e.PostedBy = postedBy(p)
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

// postedBy is the event's posted_by for a principal: the account of an
// account key, "" for the admin key (trusted like repute's own sources).
func postedBy(p Principal) string {
	if p.Admin {
		return ""
	}
	return p.Account
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
	// Truncated: there were more groups than max_result_rows; groups has
	// the first ones in key order, totals count them all.
	Truncated bool `json:"truncated,omitempty"`
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
	q.MaxGroups = s.maxRows()
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

		Truncated: res.Truncated,
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
