package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Defaults of Options.QueryTimeout and Options.MaxResultRows.
const (
	DefaultQueryTimeout  = 30 * time.Second
	DefaultMaxResultRows = 10000
)

// queryDeadlineError is the cause of the context of a read past
// Options.QueryTimeout.
type queryDeadlineError struct{ d time.Duration }

func (e queryDeadlineError) Error() string {
	return fmt.Sprintf("the store query took longer than its deadline of %s (query_timeout); narrow the range or the grouping, or raise query_timeout", e.d)
}

// bounded gives h's store reads the query deadline. A handler answers a
// failed read in its own words (500, 503); when the read failed because
// the deadline passed, that answer is replaced by one 503 that names the
// deadline, so that every read endpoint says it the same way.
func (s *server) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := s.opts.QueryTimeout
		if d <= 0 {
			d = DefaultQueryTimeout
		}
		ctx, cancel := context.WithTimeoutCause(r.Context(), d, queryDeadlineError{d})
		defer cancel()
		h(&deadlineWriter{ResponseWriter: w, ctx: ctx}, r.WithContext(ctx))
	}
}

// deadlineWriter turns a server error written after the query deadline
// passed into the 503 naming it, and drops the handler's own body.
type deadlineWriter struct {
	http.ResponseWriter
	ctx      context.Context
	replaced bool
	wrote    bool
}

func (w *deadlineWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	var qd queryDeadlineError
	if status >= 500 && errors.As(context.Cause(w.ctx), &qd) {
		w.replaced = true
		h := w.ResponseWriter.Header()
		h.Del("Retry-After")
		writeError(w.ResponseWriter, http.StatusServiceUnavailable, qd.Error())
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxRows is the cap of the groups or items of one answer.
func (s *server) maxRows() int {
	if s.opts.MaxResultRows <= 0 {
		return DefaultMaxResultRows
	}
	return s.opts.MaxResultRows
}

// truncate cuts items to n; cut says whether it did.
func truncate[T any](items []T, n int) (_ []T, cut bool) {
	if len(items) > n {
		return items[:n], true
	}
	return items, false
}
