package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Defaults of the request body limits (Options).
const (
	DefaultMaxInflightBytes = 256 << 20
	DefaultMinBodyRate      = 64 << 10
	DefaultBodyRateGrace    = 5 * time.Second
	// SmallBodyBytes is the size up to which a body may use the part of
	// the in-flight budget reserved for small bodies (see Options).
	SmallBodyBytes = 1 << 20
	// InflightBytesPerBodyByte is what a body is charged per byte: the
	// body itself, the events decoded from it (about 2.7 times their JSON:
	// a 16 MiB array of 92,000 small events peaks at 3.7 times its size
	// in the handler), and intake's duplicate check over them (a key map
	// and the store's answer).
	InflightBytesPerBodyByte = 6
)

var (
	// errBudget: taking the body would pass Options.MaxInflightBytes.
	errBudget = errors.New("api: request bodies in flight over the budget")
	// errTooSlow: the body arrived under Options.MinBodyRate.
	errTooSlow = errors.New("api: request body under the minimum transfer rate")
	// errReadTimeout: the body was not in by the server's ReadTimeout.
	errReadTimeout = errors.New("api: request body not in within the read timeout")
)

// budget counts the request body bytes in flight, in body bytes (the
// memory budget divided by InflightBytesPerBodyByte). Bodies over
// SmallBodyBytes may take only limit-reserve, so that a flood of large
// bodies leaves room for small ones (the sending pipeline's usual batches).
type budget struct {
	mu      sync.Mutex
	limit   int64
	reserve int64
	used    int64
}

// MinInflightBytes is the smallest Options.MaxInflightBytes that takes a
// body of maxBody bytes: its charge within the 7/8 open to large bodies.
func MinInflightBytes(maxBody int64) int64 {
	return (maxBody*InflightBytesPerBodyByte*8 + 6) / 7
}

// newBudget returns the budget for maxInflight bytes of memory.
func newBudget(maxInflight int64) *budget {
	limit := max(maxInflight/InflightBytesPerBodyByte, 1)
	return &budget{limit: limit, reserve: limit / 8}
}

// acquire takes n more bytes for a body that will then hold total bytes;
// false when they do not fit.
func (b *budget) acquire(n, total int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.limit
	if total > SmallBodyBytes {
		limit -= b.reserve
	}
	if b.used+n > limit {
		return false
	}
	b.used += n
	return true
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// inUse returns the bytes in flight.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// limitedBody reads a request body under the in-flight budget and the
// minimum transfer rate. A body of known length was charged in full before
// the first read; a chunked one is charged as it arrives, and its first
// read beyond what it holds fails with errBudget when the rest does not
// fit. The rate is enforced with read deadlines on the connection: after
// the grace period the body must have delivered rate × (elapsed − grace)
// bytes, or the read fails with errTooSlow. held is released by done.
type limitedBody struct {
	body     io.ReadCloser
	rc       *http.ResponseController
	budget   *budget
	held     int64 // bytes charged to the budget
	maxHeld  int64 // a chunked body is never charged more
	read     int64
	chunked  bool
	start    time.Time
	grace    time.Duration
	rate     int64
	hardStop time.Time // the server's ReadTimeout, if any
	noRate   bool      // the connection takes no deadlines (tests)
	eof      bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.chunked {
		if b.read >= b.held {
			// Charge in steps that double, so that a large body takes
			// few trips to the budget.
			step := max(min(max(b.held, 64<<10), b.maxHeld-b.held), 1)
			if !b.budget.acquire(step, b.held+step) {
				return 0, errBudget
			}
			b.held += step
		}
		p = p[:min(int64(len(p)), b.held-b.read)]
	}
	hard := false
	if !b.noRate {
		deadline := b.start.Add(b.grace + time.Duration(float64(b.read)/float64(b.rate)*float64(time.Second)))
		if !b.hardStop.IsZero() && !deadline.Before(b.hardStop) {
			deadline, hard = b.hardStop, true
		}
		if err := b.rc.SetReadDeadline(deadline); err != nil {
			b.noRate = true
		}
	}
	n, err := b.body.Read(p)
	b.read += int64(n)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errTooSlow
		if hard {
			err = errReadTimeout
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }

// done releases the budget held for the body.
func (b *limitedBody) done() {
	b.budget.release(b.held)
	b.held = 0
}

// limitBody charges r's body to the budget and wraps it; ok is false (and
// nothing held) when its Content-Length does not fit.
func (s *server) limitBody(w http.ResponseWriter, r *http.Request) (*limitedBody, bool) {
	b := &limitedBody{
		body:   r.Body,
		rc:     http.NewResponseController(w),
		budget: s.budget,
		start:  time.Now(),
		grace:  s.opts.BodyRateGrace,
		rate:   s.opts.MinBodyRate,
		// MaxBytesReader reads one byte past the cap to see it passed.
		maxHeld: s.opts.MaxBodyBytes + 1,
	}
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.ReadTimeout > 0 {
		b.hardStop = b.start.Add(srv.ReadTimeout)
	}
	switch {
	case r.ContentLength > 0:
		if !s.budget.acquire(r.ContentLength, r.ContentLength) {
			return nil, false
		}
		b.held = r.ContentLength
	case r.ContentLength < 0:
		b.chunked = true
	}
	r.Body = b
	return b, true
}

// StreamWithoutWriteTimeout lifts the server's write timeout for the
// response w, for a handler that streams for as long as the client listens
// (Server-Sent Events, long polls). Such a handler must end when the
// request's context does. It reports whether the connection allowed it.
func StreamWithoutWriteTimeout(w http.ResponseWriter) bool {
	return http.NewResponseController(w).SetWriteDeadline(time.Time{}) == nil
}

// extendWriteDeadline gives the response d more time to be written from
// now, for a handler that waits (?wait=visible).
func extendWriteDeadline(w http.ResponseWriter, d time.Duration) {
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
