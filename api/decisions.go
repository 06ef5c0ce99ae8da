package api

// The rule engine's routes (issue 13): GET /v1/decisions, GET
// /v1/decisions/stream (Server-Sent Events), GET /v1/flags, POST
// /v1/decisions/{id}/cancel and POST /v1/overrides. The api package does
// not import the rule engine (docs/ARCHITECTURE.md: api imports the narrow
// interfaces of what it serves): Decisions is that interface, with the
// JSON types below; cmd adapts the rules package to it.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DecisionScope is a decision's scope: every field present, "" for all.
type DecisionScope struct {
	SenderDomain string `json:"sender_domain"`
	SendingIP    string `json:"sending_ip"`
	ISP          string `json:"isp"`
}

// DecisionReason is one input of a decision.
type DecisionReason struct {
	Rule      string  `json:"rule"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Sample    int64   `json:"sample"`
	Window    string  `json:"window"`
}

// Decision is a throttle decision, in the JSON issue 13 pins. Seq is its
// place in the history: the SSE event id.
type Decision struct {
	ID             string           `json:"id"`
	Scope          DecisionScope    `json:"scope"`
	Action         string           `json:"action"`
	WarmupDay      int              `json:"warmup_day"`
	DailyLimit     int              `json:"daily_limit"`
	HourlyLimit    int              `json:"hourly_limit"`
	MinuteLimit    *int             `json:"minute_limit"`
	MaxConnections *int             `json:"max_connections"`
	Reasons        []DecisionReason `json:"reasons"`
	IssuedAt       time.Time        `json:"issued_at"`
	ExpiresAt      *time.Time       `json:"expires_at"`
	Source         string           `json:"source"`
	Seq            int64            `json:"-"`
}

// FlagScope is what a flag is about; empty fields are left out.
type FlagScope struct {
	Account      string `json:"account,omitempty"`
	SenderDomain string `json:"sender_domain,omitempty"`
	SendingIP    string `json:"sending_ip,omitempty"`
	ISP          string `json:"isp,omitempty"`
	Campaign     string `json:"campaign,omitempty"`
	Category     string `json:"category,omitempty"`
}

// Flag is an active rule flag, as GET /v1/flags shows it.
type Flag struct {
	Rule      string    `json:"rule"`
	Scope     FlagScope `json:"scope"`
	Severity  string    `json:"severity"`
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
	Sample    int64     `json:"sample"`
	Window    string    `json:"window"`
	Since     time.Time `json:"since"`
}

// OverrideRequest is the body of POST /v1/overrides.
type OverrideRequest struct {
	Scope     DecisionScope  `json:"scope"`
	Action    string         `json:"action"`
	Limits    OverrideLimits `json:"limits"`
	ExpiresAt time.Time      `json:"expires_at"`
	Reason    string         `json:"reason"`
}

// OverrideLimits are an override's limits (0 or absent: none of that
// kind).
type OverrideLimits struct {
	DailyLimit     int `json:"daily_limit"`
	HourlyLimit    int `json:"hourly_limit"`
	MinuteLimit    int `json:"minute_limit"`
	MaxConnections int `json:"max_connections"`
}

// Errors a Decisions implementation returns (wrapped) for the API to
// answer 404 and 400.
var (
	ErrDecisionNotFound = errors.New("no such current decision")
	ErrDecisionInvalid  = errors.New("invalid decision request")
)

// Decisions is the rule engine as the API serves it.
type Decisions interface {
	// Current returns the decisions in force that match f (empty fields
	// match all).
	Current(ctx context.Context, f DecisionScope) ([]Decision, error)
	// Since returns the decisions issued after seq, oldest first.
	Since(ctx context.Context, seq int64) (DecisionPage, error)
	// ActiveFlags returns the flags in force.
	ActiveFlags(ctx context.Context) ([]Flag, error)
	// Cancel ends the decision id (who and why are audited) and returns
	// the decision that replaces it.
	Cancel(ctx context.Context, id, who, reason string) (Decision, error)
	// Override sets an operator's decision (audited) and returns it.
	Override(ctx context.Context, req OverrideRequest, who string) (Decision, error)
}

// DecisionPage is a read of the history.
type DecisionPage struct {
	Decisions []Decision // after the seq asked for, oldest first
	Latest    int64      // the latest seq issued (0: none yet)
	// Complete is false when the history no longer held some of the
	// decisions after the seq asked for.
	Complete bool
	// Watch is closed at the next new decision; taken before the read,
	// so that nothing falls between.
	Watch <-chan struct{}
}

// SenderDomainOwner says whether an account owns a sender domain: an
// account key sees the decisions and flags of its own sender domains only.
type SenderDomainOwner interface {
	OwnsSenderDomain(account, senderDomain string) bool
}

// DefaultHeartbeat is the interval of the stream's heartbeat comments.
const DefaultHeartbeat = 15 * time.Second

// DecisionsOptions configure the decision routes.
type DecisionsOptions struct {
	Keys      *Keys     // required
	Decisions Decisions // required
	// Owner scopes account keys; nil: account keys see nothing (403).
	Owner     SenderDomainOwner
	Heartbeat time.Duration // 0: DefaultHeartbeat
	Logger    *slog.Logger  // nil: silent
	// Guard, QueryTimeout and MaxResultRows are the API's (Options).
	Guard         *Guard
	QueryTimeout  time.Duration
	MaxResultRows int
}

// DecisionRoutes are the routes WithDecisions serves.
const DecisionRoutes = "GET /v1/decisions, GET /v1/decisions/stream, POST /v1/decisions/{id}/cancel, POST /v1/overrides, GET /v1/flags"

type decisionServer struct {
	*server
	d         Decisions
	owner     SenderDomainOwner
	heartbeat time.Duration
}

// WithDecisions serves the decision routes and hands every other request
// to base (the handler of NewHandler).
func WithDecisions(base http.Handler, o DecisionsOptions) (http.Handler, error) {
	if o.Keys == nil || o.Decisions == nil {
		return nil, errors.New("api: decisions need Keys and Decisions")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	s := &decisionServer{server: &server{opts: Options{Keys: o.Keys, Guard: o.Guard, QueryTimeout: o.QueryTimeout, MaxResultRows: o.MaxResultRows}, log: o.Logger}, d: o.Decisions,
		owner: o.Owner, heartbeat: o.Heartbeat}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/decisions", s.authed(s.bounded(s.getDecisions)))
	mux.HandleFunc("GET /v1/decisions/stream", s.authed(s.streamDecisions))
	mux.HandleFunc("POST /v1/decisions/{id}/cancel", s.authed(s.cancelDecision))
	mux.HandleFunc("POST /v1/overrides", s.authed(s.postOverride))
	mux.HandleFunc("GET /v1/flags", s.authed(s.bounded(s.getFlags)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		base.ServeHTTP(w, r)
	}), nil
}

// sees reports whether p may see what concerns senderDomain.
func (s *decisionServer) sees(p Principal, senderDomain string) bool {
	return p.Admin || s.owner != nil && senderDomain != "" && s.owner.OwnsSenderDomain(p.Account, senderDomain)
}

// filter reads ?sender_domain=&sending_ip=&isp= and checks that p may
// ask for it.
func (s *decisionServer) filter(w http.ResponseWriter, r *http.Request) (DecisionScope, bool) {
	v := r.URL.Query()
	f := DecisionScope{SenderDomain: strings.ToLower(v.Get("sender_domain")), SendingIP: v.Get("sending_ip"), ISP: v.Get("isp")}
	p := principalOf(r)
	switch {
	case p.Admin:
	case s.owner == nil:
		writeError(w, http.StatusForbidden, "decisions and flags need the admin key (no sender domains are configured for accounts)")
		return f, false
	case f.SenderDomain != "" && !s.sees(p, f.SenderDomain):
		writeError(w, http.StatusForbidden, fmt.Sprintf("sender domain %q is not one of account %q's", f.SenderDomain, p.Account))
		return f, false
	}
	return f, true
}

func matches(f DecisionScope, d DecisionScope) bool {
	return (f.SenderDomain == "" || f.SenderDomain == d.SenderDomain) &&
		(f.SendingIP == "" || f.SendingIP == d.SendingIP) && (f.ISP == "" || f.ISP == d.ISP)
}

func (s *decisionServer) getDecisions(w http.ResponseWriter, r *http.Request) {
	f, ok := s.filter(w, r)
	if !ok {
		return
	}
	ds, err := s.d.Current(r.Context(), f)
	if err != nil {
		s.log.Error("decisions", "err", err)
		writeError(w, http.StatusServiceUnavailable, "reading the decisions failed: "+err.Error())
		return
	}
	p := principalOf(r)
	out := make([]Decision, 0, len(ds))
	for _, d := range ds {
		if matches(f, d.Scope) && s.sees(p, d.Scope.SenderDomain) {
			out = append(out, d)
		}
	}
	out, cut := truncate(out, s.maxRows())
	writeJSON(w, http.StatusOK, struct {
		Decisions []Decision `json:"decisions"`
		Truncated bool       `json:"truncated,omitempty"`
	}{out, cut})
}

// streamDecisions serves the decisions as Server-Sent Events: id is the
// decision's sequence number, data its JSON, one event per new decision.
// With Last-Event-ID the stream replays the history after that id (a
// comment says so when the history no longer reaches back that far);
// without it, it begins with the decisions in force. A comment every
// Heartbeat keeps proxies from closing an idle stream.
func (s *decisionServer) streamDecisions(w http.ResponseWriter, r *http.Request) {
	f, ok := s.filter(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	var last int64
	var initial []Decision
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Last-Event-ID %q is not a decision sequence number", id))
			return
		}
		last = n
	} else {
		// The decisions in force first, then everything after them.
		page, err := s.d.Since(r.Context(), math.MaxInt64)
		if err == nil {
			last = page.Latest
			initial, err = s.d.Current(r.Context(), f)
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading the decisions failed: "+err.Error())
			return
		}
		slices.SortFunc(initial, func(a, b Decision) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	sent := map[int64]bool{} // initial decisions issued after last
	for _, d := range initial {
		if d.Seq > last {
			sent[d.Seq] = true
		}
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(d Decision) error {
		if !matches(f, d.Scope) || !s.sees(p, d.Scope.SenderDomain) {
			return nil
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "id: %d\ndata: %s\n\n", d.Seq, b)
		return err
	}
	for _, d := range initial {
		if err := send(d); err != nil {
			return
		}
	}
	rc.Flush()
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	first := true
	for {
		page, err := s.d.Since(r.Context(), last)
		if err != nil {
			io.WriteString(w, ": reading the decisions failed; reconnect with Last-Event-ID\n\n")
			rc.Flush()
			return
		}
		if first && !page.Complete {
			fmt.Fprintf(w, ": the history no longer holds every decision after %d; GET /v1/decisions for those in force\n\n", last)
		}
		first = false
		for _, d := range page.Decisions {
			last = d.Seq
			if sent[d.Seq] {
				delete(sent, d.Seq)
				continue
			}
			if err := send(d); err != nil {
				return
			}
		}
		watch := page.Watch
		if err := rc.Flush(); err != nil {
			return
		}
		for waiting := true; waiting; {
			select {
			case <-r.Context().Done():
				return
			case <-watch:
				waiting = false
			case <-tick.C:
				if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	}
}

func (s *decisionServer) getFlags(w http.ResponseWriter, r *http.Request) {
	switch a := r.URL.Query().Get("active"); a {
	case "", "true":
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("active=%q: only the active flags are served (active=true)", a))
		return
	}
	f, ok := s.filter(w, r)
	if !ok {
		return
	}
	flags, err := s.d.ActiveFlags(r.Context())
	if err != nil {
		s.log.Error("flags", "err", err)
		writeError(w, http.StatusServiceUnavailable, "reading the flags failed: "+err.Error())
		return
	}
	p := principalOf(r)
	out := make([]Flag, 0, len(flags))
	for _, fl := range flags {
		if matches(f, DecisionScope{fl.Scope.SenderDomain, fl.Scope.SendingIP, fl.Scope.ISP}) && s.sees(p, fl.Scope.SenderDomain) {
			out = append(out, fl)
		}
	}
	out, cut := truncate(out, s.maxRows())
	writeJSON(w, http.StatusOK, struct {
		Flags     []Flag `json:"flags"`
		Truncated bool   `json:"truncated,omitempty"`
	}{out, cut})
}

// operator is who an operator action is audited as: the admin key,
// named by X-Repute-Operator when the caller says who they are.
func operator(r *http.Request) string {
	if name := strings.TrimSpace(r.Header.Get("X-Repute-Operator")); name != "" {
		return "admin:" + name
	}
	return "admin"
}

// operatorOnly answers 403 to account keys: the throttles protect the
// reputation every sender on the IPs shares, so lifting or setting them is
// an operator's (admin key) call.
func operatorOnly(w http.ResponseWriter, r *http.Request) bool {
	if !principalOf(r).Admin {
		writeError(w, http.StatusForbidden, "cancelling decisions and setting overrides needs the admin key (an operator's call)")
		return false
	}
	return true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *decisionServer) decisionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrDecisionNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrDecisionInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.log.Error("decision action", "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error())
	}
}

func (s *decisionServer) cancelDecision(w http.ResponseWriter, r *http.Request) {
	if !operatorOnly(w, r) {
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.Reason) == "" {
		writeError(w, http.StatusBadRequest, `a cancel needs {"reason": "…"}: it is audited`)
		return
	}
	d, err := s.d.Cancel(r.Context(), r.PathValue("id"), operator(r), body.Reason)
	if err != nil {
		s.decisionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Decision Decision `json:"decision"`
	}{d})
}

func (s *decisionServer) postOverride(w http.ResponseWriter, r *http.Request) {
	if !operatorOnly(w, r) {
		return
	}
	var req OverrideRequest
	if !decodeBody(w, r, &req) {
		return
	}
	switch {
	case req.Scope.SenderDomain == "":
		writeError(w, http.StatusBadRequest, "an override needs scope.sender_domain")
		return
	case req.ExpiresAt.IsZero():
		writeError(w, http.StatusBadRequest, "an override needs expires_at (RFC 3339)")
		return
	case strings.TrimSpace(req.Reason) == "":
		writeError(w, http.StatusBadRequest, "an override needs a reason: it is audited")
		return
	}
	req.Scope.SenderDomain = strings.ToLower(req.Scope.SenderDomain)
	d, err := s.d.Override(r.Context(), req, operator(r))
	if err != nil {
		s.decisionError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Decision Decision `json:"decision"`
	}{d})
}
