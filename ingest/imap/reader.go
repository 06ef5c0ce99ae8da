package imap

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// Processor converts one raw message into its events and evidence
// (*ingest.Processor). Its errors: ingest.ErrLookup means try again later;
// any other means quarantine.
type Processor interface {
	Process(ctx context.Context, raw []byte, src ingest.Source) (ingest.Report, error)
}

// Submitter takes events and returns once they are durable (intake's
// Pipeline). On error nothing of the submission was kept, and the same
// events are submitted again later.
type Submitter interface {
	Submit(ctx context.Context, events []metrics.Event) (intake.Result, error)
}

// EvidenceWriter stores the raw reports the events point to (both stores).
// Storing evidence already stored changes nothing.
type EvidenceWriter interface {
	PutEvidence(ctx context.Context, ev []metrics.Evidence) error
}

var (
	_ Processor      = (*ingest.Processor)(nil)
	_ Submitter      = (*intake.Pipeline)(nil)
	_ EvidenceWriter = (metrics.EvidenceWriter)(nil)
)

// Reader reads one mailbox: see the package documentation.
type Reader struct {
	o      Options
	proc   Processor
	sub    Submitter
	evid   EvidenceWriter
	leases Leaser
	log    *slog.Logger
	m      readerMetrics
	lease  string // the lease's name
	holder string // this reader in the lease
	// idleMax bounds one IDLE (idleRestart; shorter in tests).
	idleMax time.Duration
}

// New checks o and returns a reader of its mailbox handing events to sub
// after storing their evidence with evid; leases makes it the mailbox's
// only reader among the processes that share the lease store.
func New(o Options, proc Processor, sub Submitter, evid EvidenceWriter, leases Leaser) (*Reader, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if proc == nil || sub == nil || evid == nil || leases == nil {
		return nil, fmt.Errorf("imap: mailbox %s: New needs a Processor, a Submitter, an EvidenceWriter and a Leaser", o.Name)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Holder == "" {
		o.Holder = newHolder()
	}
	m, err := newMetrics(o.Registerer, o.Name)
	if err != nil {
		return nil, err
	}
	return &Reader{o: o, proc: proc, sub: sub, evid: evid, leases: leases,
		log: o.Logger.With("mailbox", o.Name), m: m, lease: o.LeaseName(), holder: o.Holder, idleMax: idleRestart}, nil
}

// newHolder returns a random id naming a reader in the lease: the host
// and process for the humans, random bytes for uniqueness.
func newHolder() string {
	host, _ := os.Hostname()
	var b [8]byte
	rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// SourceRef is where a message was read: "name/folder/UIDVALIDITY/UID".
func SourceRef(name, folder string, uidValidity uint32, uid imapv2.UID) string {
	return name + "/" + folder + "/" + strconv.FormatUint(uint64(uidValidity), 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// Run reads the mailbox until ctx ends, then releases the lease and
// returns nil. While another process holds the lease it waits; when it
// loses the lease it stops at once and waits again.
func (r *Reader) Run(ctx context.Context) error {
	for {
		since, ok := r.acquire(ctx)
		if !ok {
			return nil
		}
		r.log.Info("imap: lease taken; reading the mailbox", "lease", r.lease, "holder", r.holder)
		lctx, cancel := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			r.renew(lctx, cancel, since)
		}()
		r.serve(lctx)
		cancel()
		<-renewed
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := r.leases.ReleaseLease(rctx, r.lease, r.holder); err != nil {
				r.log.Warn("imap: release lease failed; another process takes over when it expires", "lease", r.lease, "err", err)
			}
			rcancel()
			return nil
		}
		r.log.Warn("imap: lease lost; stopped reading until it is taken again", "lease", r.lease)
	}
}

// acquire waits until this reader holds the lease, trying every LeaseTTL/3;
// it returns when the lease was taken, false when ctx ended first.
func (r *Reader) acquire(ctx context.Context) (time.Time, bool) {
	waiting := false
	for {
		at := time.Now()
		ok, err := r.leases.TryLease(ctx, r.lease, r.holder, r.o.LeaseTTL)
		switch {
		case ctx.Err() != nil:
			return time.Time{}, false
		case err != nil:
			r.m.errors.WithLabelValues(ErrKindLease).Inc()
			r.log.Warn("imap: take lease failed; retrying", "lease", r.lease, "err", err)
		case ok:
			return at, true
		case !waiting:
			waiting = true
			r.log.Info("imap: another process reads the mailbox; waiting for its lease", "lease", r.lease)
		}
		if !sleep(ctx, r.o.LeaseTTL/3) {
			return time.Time{}, false
		}
	}
}

// renew renews the lease every LeaseTTL/3 until ctx ends; it calls lost
// when the lease is another's, or when it could not be renewed for so long
// that it may have expired (a third of the TTL kept as margin).
func (r *Reader) renew(ctx context.Context, lost context.CancelFunc, since time.Time) {
	t := time.NewTicker(r.o.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := time.Now()
		ok, err := r.leases.TryLease(ctx, r.lease, r.holder, r.o.LeaseTTL)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			r.m.errors.WithLabelValues(ErrKindLease).Inc()
			if time.Since(since) >= r.o.LeaseTTL*2/3 {
				r.log.Error("imap: lease not renewed in time; stopping", "lease", r.lease, "err", err)
				lost()
				return
			}
			r.log.Warn("imap: renew lease failed; retrying", "lease", r.lease, "err", err)
		case !ok:
			r.m.errors.WithLabelValues(ErrKindLease).Inc()
			r.log.Error("imap: lease taken by another process; stopping", "lease", r.lease)
			lost()
			return
		default:
			since = at
		}
	}
}

// serve connects and reads until ctx ends, reconnecting with backoff.
func (r *Reader) serve(ctx context.Context) {
	wait := r.o.RetryMin
	for ctx.Err() == nil {
		progress := false
		err := r.session(ctx, &progress)
		if ctx.Err() != nil {
			return
		}
		if progress {
			wait = r.o.RetryMin
		}
		r.m.errors.WithLabelValues(ErrKindConnect).Inc()
		r.log.Warn("imap: connection failed; reconnecting", "addr", r.o.Addr, "in", wait, "err", err)
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, r.o.RetryMax)
	}
}

// errFolder is a watched folder that cannot be selected (deleted, renamed,
// no permission): the other folders are still served.
type errFolder struct {
	folder string
	err    error
}

func (e *errFolder) Error() string { return fmt.Sprintf("folder %q: %v", e.folder, e.err) }
func (e *errFolder) Unwrap() error { return e.err }

// session is one connection: log in, create the destination folders, then
// drain the watched folders and wait for more (IDLE or polling) until ctx
// ends or the connection fails. progress is set once a pass completed.
func (r *Reader) session(ctx context.Context, progress *bool) error {
	wake := make(chan struct{}, 1)
	c, err := r.dial(wake)
	if err != nil {
		return err
	}
	defer c.Close()
	// Stop at once when ctx ends (the lease lost): the command in flight
	// fails, and nothing after it is sent.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.Login(r.o.User, r.o.Password).Wait(); err != nil {
		return fmt.Errorf("login as %s: %w", r.o.User, err)
	}
	if err := r.createFolders(c); err != nil {
		return err
	}
	idle := c.Caps().Has(imapv2.CapIdle)
	r.log.Info("imap: connected", "addr", r.o.Addr, "idle", idle, "move", c.Caps().Has(imapv2.CapMove),
		"uidplus", c.Caps().Has(imapv2.CapUIDPlus))
	retryWait := r.o.RetryMin
	for {
		// Mail that arrived before the searches below is found by them.
		select {
		case <-wake:
		default:
		}
		left := 0
		firstOK := true
		for i, f := range r.o.Folders {
			n, err := r.drain(ctx, c, f)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var fe *errFolder
			if errors.As(err, &fe) {
				r.m.errors.WithLabelValues(ErrKindFolder).Inc()
				r.log.Error("imap: watched folder cannot be read; serving the others, retrying later", "folder", f, "err", fe.err)
				if i == 0 {
					firstOK = false
				}
				continue
			}
			if err != nil {
				return err
			}
			left += n
		}
		*progress = true

		timeout := r.idleMax
		if !idle || len(r.o.Folders) > 1 || !firstOK {
			timeout = r.o.PollInterval
		}
		if left > 0 {
			// Messages whose send lookup failed: try again soon, backing off.
			timeout = min(timeout, retryWait)
			retryWait = min(2*retryWait, r.o.RetryMax)
		} else {
			retryWait = r.o.RetryMin
		}
		if !idle || !firstOK {
			if !sleep(ctx, timeout) {
				return ctx.Err()
			}
			continue
		}
		if len(r.o.Folders) > 1 {
			if _, err := c.Select(r.o.Folders[0], nil).Wait(); err != nil {
				return fmt.Errorf("select %s: %w", r.o.Folders[0], err)
			}
		}
		if err := r.idle(ctx, c, wake, timeout); err != nil {
			return err
		}
	}
}

// idle waits in IDLE on the selected folder for new mail or the timeout.
func (r *Reader) idle(ctx context.Context, c *imapclient.Client, wake <-chan struct{}, timeout time.Duration) error {
	cmd, err := c.Idle()
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
	case <-c.Closed():
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return ctx.Err()
}

// dial connects as Options.TLS says; an EXISTS from the server signals
// wake.
func (r *Reader) dial(wake chan<- struct{}) (*imapclient.Client, error) {
	opts := &imapclient.Options{
		Dialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	if r.o.TLS != TLSNone {
		cfg := &tls.Config{}
		if r.o.TLSConfig != nil {
			cfg = r.o.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(r.o.Addr)
		}
		opts.TLSConfig = cfg
	}
	var c *imapclient.Client
	var err error
	switch r.o.TLS {
	case TLSImplicit:
		c, err = imapclient.DialTLS(r.o.Addr, opts)
	case TLSStartTLS:
		c, err = imapclient.DialStartTLS(r.o.Addr, opts)
	default:
		c, err = imapclient.DialInsecure(r.o.Addr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s (tls %s): %w", r.o.Addr, r.o.TLS, err)
	}
	return c, nil
}

// createFolders creates the destination folders that are missing.
func (r *Reader) createFolders(c *imapclient.Client) error {
	for _, f := range []string{r.o.Processed, r.o.Ignored, r.o.Quarantine} {
		err := c.Create(f, nil).Wait()
		if err == nil {
			r.log.Info("imap: created folder", "folder", f)
			continue
		}
		if imapCode(err) == imapv2.ResponseCodeAlreadyExists {
			continue
		}
		// Not every server gives the response code: see whether it is there.
		if list, lerr := c.List("", f, nil).Collect(); lerr == nil && len(list) > 0 {
			continue
		}
		return fmt.Errorf("create folder %s: %w", f, err)
	}
	return nil
}

// imapCode returns the response code of an IMAP NO or BAD, "" for other errors.
func imapCode(err error) imapv2.ResponseCode {
	var ie *imapv2.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// drain reads every message in folder (but those flagged \Deleted) in
// batches; it returns how many were left in place to be tried again (their
// send lookup failed). An *errFolder means the folder cannot be selected.
//
// No state survives the call: what is still in a watched folder is unread
// by construction, as every message read is moved out. UIDVALIDITY only
// enters source_ref; a change of it (the folder re-created) changes the
// ref of the messages still there, which are the unread ones all the same.
//
// The server is kept busy while this process converts: with MOVE, the
// commands go out as FETCH bodies k, MOVE k-1, FETCH sizes k+1, then, once
// the bodies of k are read (their conversion still running), FETCH bodies
// k+1, read ahead while batch k is converted and submitted, and only then
// MOVE k. Without MOVE, whose COPY, STORE and EXPUNGE wait for their
// answers, a batch's bodies are fetched once the batch before is filed.
func (r *Reader) drain(ctx context.Context, c *imapclient.Client, folder string) (left int, err error) {
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		var ie *imapv2.Error
		if errors.As(err, &ie) {
			return 0, &errFolder{folder, err}
		}
		return 0, fmt.Errorf("select %s: %w", folder, err)
	}
	if sel.NumMessages == 0 {
		return 0, nil
	}
	// QUIRK: a message flagged \Deleted is one the user (or this reader,
	// copying where the server has neither MOVE nor UIDPLUS) is done with.
	found, err := c.UIDSearch(&imapv2.SearchCriteria{NotFlag: []imapv2.Flag{imapv2.FlagDeleted}}, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("uid search %s: %w", folder, err)
	}
	uids := found.AllUIDs()
	slices.Sort(uids)
	r.log.Debug("imap: folder searched", "folder", folder, "uidvalidity", sel.UIDValidity, "messages", len(uids))
	if len(uids) == 0 {
		return 0, nil
	}
	var batches [][]imapv2.UID
	for len(uids) > 0 {
		n := min(len(uids), r.o.BatchSize)
		batches = append(batches, uids[:n])
		uids = uids[n:]
	}

	// The conversions of every batch, Options.Concurrency at a time; the
	// bodies are read up to the budget's bytes ahead of them.
	p := &pipe{
		folder: folder, uidValidity: sel.UIDValidity,
		budget: newByteBudget(max(readAhead, (int64(r.o.Concurrency)+1)*r.o.MaxMessageBytes)),
		jobs:   make(chan *message, 2*r.o.BatchSize),
	}
	var workers sync.WaitGroup
	for range r.o.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range p.jobs {
				size := int64(len(m.raw))
				r.process(ctx, folder, sel.UIDValidity, m)
				p.budget.release(size)
				m.batch.converted.Done()
			}
		}()
	}
	var readers sync.WaitGroup
	defer func() {
		if err != nil {
			// A FETCH may still be read: the connection is given up (the
			// session makes a new one) so that its reader returns.
			c.Close()
		}
		readers.Wait()
		close(p.jobs)
		workers.Wait()
	}()

	moveCap := c.Caps().Has(imapv2.CapMove)
	meta := r.fetchMeta(c, batches[0])
	cur, err := r.startBatch(ctx, c, p, &readers, meta)
	if err != nil {
		return 0, err
	}
	var moves sendMoves
	for k := range batches {
		var prevWait func() error
		if moves != nil {
			prevWait = moves()
		}
		var nextMeta *metaFetch
		if k+1 < len(batches) {
			nextMeta = r.fetchMeta(c, batches[k+1])
		}
		var next *batch
		if moveCap && nextMeta != nil {
			// Read ahead: the next batch's bodies come while this one is
			// converted, submitted and moved.
			<-cur.read
			if next, err = r.startBatch(ctx, c, p, &readers, nextMeta); err != nil {
				if prevWait != nil {
					prevWait()
				}
				return left, err
			}
		}
		l, batchMoves, ferr := r.finish(ctx, c, cur, prevWait)
		left += l
		if ferr != nil {
			return left, ferr
		}
		moves = batchMoves
		if !moveCap {
			if err := moves()(); err != nil {
				return left, err
			}
			moves = nil
			if nextMeta != nil {
				if next, err = r.startBatch(ctx, c, p, &readers, nextMeta); err != nil {
					return left, err
				}
			}
		}
		cur = next
	}
	if moves != nil {
		if err := moves()(); err != nil {
			return left, err
		}
	}
	return left, nil
}

// pipe is what the batches of one drain share.
type pipe struct {
	folder      string
	uidValidity uint32
	budget      *byteBudget
	jobs        chan *message // to the converting workers
}

// metaFetch is a UID FETCH of RFC822.SIZE and INTERNALDATE in flight, its
// answers collected by a goroutine of its own (so that the commands sent
// after it can be waited for before it is).
type metaFetch struct {
	done chan struct{}
	msgs []*imapclient.FetchMessageBuffer
	err  error
}

// fetchMeta sends the UID FETCH of the sizes and dates of uids.
func (r *Reader) fetchMeta(c *imapclient.Client, uids []imapv2.UID) *metaFetch {
	cmd := c.Fetch(imapv2.UIDSetNum(uids...), &imapv2.FetchOptions{UID: true, RFC822Size: true, InternalDate: true})
	f := &metaFetch{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.msgs, f.err = cmd.Collect()
	}()
	return f
}

// sendMoves sends a batch's MOVE commands and returns what waits for them
// (and then counts and logs the batch's outcomes).
type sendMoves func() (wait func() error)

// message is one message of a batch and what became of it.
type message struct {
	batch   *batch
	uid     imapv2.UID
	size    int64
	date    time.Time
	raw     []byte
	fetched bool   // its body was handed to a worker
	outcome string // OutcomeProcessed, OutcomeIgnored, OutcomeQuarantined; "" to try again later
	reason  error  // why quarantined or left
	report  ingest.Report
}

// batch is one batch of messages being read and converted.
type batch struct {
	folder      string
	uidValidity uint32
	msgs        map[imapv2.UID]*message
	order       []*message // by UID
	start       time.Time
	read        chan struct{} // closed once every body is read (or err set)
	readAt      time.Time
	err         error // reading the bodies failed
	converted   sync.WaitGroup
}

// startBatch waits for the sizes and dates of a batch, sets aside the
// messages over MaxMessageBytes, sends the UID FETCH of the others' bodies
// (BODY.PEEK[]: \Seen is not set) and reads them in the background,
// handing each to the workers as it arrives.
func (r *Reader) startBatch(ctx context.Context, c *imapclient.Client, p *pipe, readers *sync.WaitGroup, meta *metaFetch) (*batch, error) {
	b := &batch{folder: p.folder, uidValidity: p.uidValidity, start: time.Now(), read: make(chan struct{})}
	<-meta.done
	if meta.err != nil {
		return nil, fmt.Errorf("uid fetch %s: %w", p.folder, meta.err)
	}
	// A message expunged since the search is simply not there.
	b.msgs = make(map[imapv2.UID]*message, len(meta.msgs))
	b.order = make([]*message, 0, len(meta.msgs))
	var small imapv2.UIDSet
	for _, m := range meta.msgs {
		if m.UID == 0 {
			continue
		}
		msg := &message{batch: b, uid: m.UID, size: m.RFC822Size, date: m.InternalDate}
		b.msgs[m.UID] = msg
		b.order = append(b.order, msg)
		if m.RFC822Size > r.o.MaxMessageBytes {
			msg.outcome = OutcomeQuarantined
			msg.reason = fmt.Errorf("message of %d bytes is over the size cap of %d", m.RFC822Size, r.o.MaxMessageBytes)
			continue
		}
		small.AddNum(m.UID)
	}
	slices.SortFunc(b.order, func(x, y *message) int { return cmp.Compare(x.uid, y.uid) })
	if len(small) == 0 {
		b.readAt = time.Now()
		close(b.read)
		return b, nil
	}
	section := &imapv2.FetchItemBodySection{Peek: true}
	cmd := c.Fetch(small, &imapv2.FetchOptions{UID: true, BodySection: []*imapv2.FetchItemBodySection{section}})
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer close(b.read)
		err := r.readBodies(cmd, p, b)
		var le *literalError
		if errors.As(err, &le) {
			// The stream is lost mid-literal: cmd.Close would read on
			// beside go-imap's decoder. The connection is given up.
			c.Close()
		} else if cerr := cmd.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.err = fmt.Errorf("uid fetch %s: %w", p.folder, err)
		}
		b.readAt = time.Now()
	}()
	return b, nil
}

// readBodies reads the answers of a FETCH of bodies as fast as the server
// sends them, up to the budget's bytes ahead of the conversions, so that
// the server is done with the FETCH, and goes on with the commands behind
// it, while they run.
func (r *Reader) readBodies(cmd *imapclient.FetchCommand, p *pipe, b *batch) error {
	for {
		data := cmd.Next()
		if data == nil {
			return nil
		}
		var uid imapv2.UID
		var raw []byte
		var body, over bool
		var size int64
		for {
			item := data.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataBodySection:
				if item.Literal == nil || body {
					continue // NIL: no body; a second one: the first counts
				}
				body = true
				// Read into one buffer of the literal's size: no growing.
				size = item.Literal.Size()
				if size > r.o.MaxMessageBytes {
					over = true
					if _, err := io.Copy(io.Discard, item.Literal); err != nil {
						return &literalError{err}
					}
					continue
				}
				p.budget.acquire(size)
				raw = make([]byte, size)
				if _, err := io.ReadFull(item.Literal, raw); err != nil {
					p.budget.release(size)
					return &literalError{err}
				}
			}
		}
		m := b.msgs[uid]
		if m == nil || m.fetched || m.outcome != "" {
			p.budget.release(int64(len(raw)))
			continue
		}
		m.fetched = true
		switch {
		case over:
			m.outcome = OutcomeQuarantined
			m.reason = fmt.Errorf("message of %d bytes is over the size cap of %d", size, r.o.MaxMessageBytes)
		case !body:
			m.outcome, m.reason = OutcomeQuarantined, errors.New("the server returned no body")
		default:
			m.raw = raw
			b.converted.Add(1)
			p.jobs <- m
		}
	}
}

// literalError is a body that could not be read to its end.
type literalError struct{ err error }

func (e *literalError) Error() string { return "reading a body: " + e.err.Error() }
func (e *literalError) Unwrap() error { return e.err }

// finish waits for a batch's bodies and conversions and for prevWait (the
// previous batch's moves), then stores its evidence and submits its
// events; it returns how many were left in place (send lookup failed) and
// what sends the batch's moves, which are not sent yet.
func (r *Reader) finish(ctx context.Context, c *imapclient.Client, b *batch, prevWait func() error) (int, sendMoves, error) {
	<-b.read
	b.converted.Wait()
	if prevWait != nil {
		if err := prevWait(); err != nil {
			return 0, nil, err
		}
	}
	if b.err != nil {
		return 0, nil, b.err
	}
	converted := time.Now()
	folder, uidValidity, order := b.folder, b.uidValidity, b.order
	var evidence []metrics.Evidence
	var events []metrics.Event
	var sets [3]imapv2.UIDSet
	left := 0
	for _, m := range order {
		switch m.outcome {
		case OutcomeProcessed:
			evidence = append(evidence, m.report.Evidence...)
			events = append(events, m.report.Events...)
			sets[0].AddNum(m.uid)
		case OutcomeIgnored:
			sets[1].AddNum(m.uid)
		case OutcomeQuarantined:
			sets[2].AddNum(m.uid)
		default:
			left++
			if m.reason == nil {
				m.reason = errors.New("the server returned no body (expunged meanwhile?)")
			}
			if errors.Is(m.reason, ingest.ErrLookup) {
				r.m.errors.WithLabelValues(ErrKindLookup).Inc()
			}
			r.log.Warn("imap: message left in place to be read again", "folder", folder, "uid", m.uid, "err", m.reason)
		}
	}
	// Durable first: the evidence the events point to, then the events.
	if len(evidence) > 0 {
		err := r.retry(ctx, "evidence write", ErrKindEvidence, func() error { return r.evid.PutEvidence(ctx, evidence) })
		if err != nil {
			return left, nil, err
		}
	}
	if len(events) > 0 {
		err := r.retry(ctx, "submit", ErrKindSubmit, func() error {
			_, err := r.sub.Submit(ctx, events)
			return err
		})
		if err != nil {
			return left, nil, err
		}
	}
	stored := time.Now()
	return left, func() func() error {
		var cmds []*imapclient.MoveCommand
		var sendErr error
		for i, dest := range []string{r.o.Processed, r.o.Ignored, r.o.Quarantine} {
			if len(sets[i]) == 0 || sendErr != nil {
				continue
			}
			if ctx.Err() != nil {
				sendErr = ctx.Err()
				continue
			}
			if !c.Caps().Has(imapv2.CapMove) {
				sendErr = r.move(c, sets[i], folder, dest)
				continue
			}
			cmds = append(cmds, c.Move(sets[i], dest))
		}
		return func() error {
			err := sendErr
			for _, cmd := range cmds {
				if _, werr := cmd.Wait(); werr != nil && err == nil {
					err = fmt.Errorf("uid move %s: %w", folder, werr)
				}
			}
			if err != nil {
				return err
			}
			r.log.Debug("imap: batch done", "folder", folder, "messages", len(order), "left", left,
				"read", b.readAt.Sub(b.start), "read_convert", converted.Sub(b.start),
				"store", stored.Sub(converted), "move", time.Since(stored))
			for _, m := range order {
				if m.outcome == "" {
					continue
				}
				r.m.messages.WithLabelValues(m.outcome).Inc()
				if m.outcome == OutcomeQuarantined {
					r.m.errors.WithLabelValues(ErrKindQuarantine).Inc()
					r.log.Warn("imap: message quarantined", "folder", folder, "uid", m.uid, "uidvalidity", uidValidity,
						"to", r.o.Quarantine, "reason", m.reason)
				}
			}
			return nil
		}
	}, nil
}

// readAhead is how many bytes of bodies are read ahead of the conversions
// at most (or enough for Concurrency+1 messages of MaxMessageBytes).
const readAhead = 64 << 20

// byteBudget bounds the bytes held at once.
type byteBudget struct {
	mu   sync.Mutex
	cond sync.Cond
	left int64
}

func newByteBudget(n int64) *byteBudget {
	b := &byteBudget{left: n}
	b.cond.L = &b.mu
	return b
}

// acquire waits until n bytes are available (n is at most the budget).
func (b *byteBudget) acquire(n int64) {
	b.mu.Lock()
	for b.left < n {
		b.cond.Wait()
	}
	b.left -= n
	b.mu.Unlock()
}

func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// process converts one message and decides where it goes.
func (r *Reader) process(ctx context.Context, folder string, uidValidity uint32, m *message) {
	raw := m.raw
	m.raw = nil
	if raw == nil {
		m.outcome, m.reason = OutcomeQuarantined, errors.New("the server returned no body")
		return
	}
	if int64(len(raw)) > r.o.MaxMessageBytes {
		m.outcome = OutcomeQuarantined
		m.reason = fmt.Errorf("message of %d bytes is over the size cap of %d", len(raw), r.o.MaxMessageBytes)
		return
	}
	src := ingest.Source{Name: ingest.SourceIMAP, Ref: SourceRef(r.o.Name, folder, uidValidity, m.uid), Time: m.date}
	rep, err := r.proc.Process(ctx, raw, src)
	switch {
	case errors.Is(err, ingest.ErrLookup) || (err != nil && ctx.Err() != nil):
		m.reason = err // stays: read again later
	case err != nil:
		m.outcome, m.reason = OutcomeQuarantined, err
	case len(rep.Events) > 0:
		m.outcome, m.report = OutcomeProcessed, rep
	default:
		m.outcome = OutcomeIgnored
	}
}

// move moves set from the selected folder to dest: UID MOVE (RFC 6851);
// without MOVE, UID COPY, \Deleted and UID EXPUNGE of exactly set
// (UIDPLUS, RFC 4315); without either, UID COPY and \Deleted only — a
// plain EXPUNGE would remove whatever else is flagged \Deleted — leaving
// the message flagged for the user to expunge.
func (r *Reader) move(c *imapclient.Client, set imapv2.UIDSet, from, dest string) error {
	caps := c.Caps()
	if caps.Has(imapv2.CapMove) {
		if _, err := c.Move(set, dest).Wait(); err != nil {
			return fmt.Errorf("uid move %s to %s: %w", from, dest, err)
		}
		return nil
	}
	if _, err := c.Copy(set, dest).Wait(); err != nil {
		return fmt.Errorf("uid copy %s to %s: %w", from, dest, err)
	}
	store := &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true, Flags: []imapv2.Flag{imapv2.FlagDeleted}}
	if err := c.Store(set, store, nil).Close(); err != nil {
		return fmt.Errorf("uid store \\Deleted in %s: %w", from, err)
	}
	if caps.Has(imapv2.CapUIDPlus) {
		if err := c.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("uid expunge %s: %w", from, err)
		}
		return nil
	}
	r.m.errors.WithLabelValues(ErrKindNoExpunge).Inc()
	r.log.Warn("imap: the server has neither MOVE nor UIDPLUS: messages copied and flagged \\Deleted, not expunged "+
		"(an EXPUNGE would remove other messages flagged \\Deleted)", "folder", from, "to", dest, "uids", set.String())
	return nil
}

// retry calls f until it succeeds or ctx ends, with exponential backoff,
// counting each failure under kind.
func (r *Reader) retry(ctx context.Context, what, kind string, f func() error) error {
	wait := r.o.RetryMin
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.m.errors.WithLabelValues(kind).Inc()
		r.log.Warn("imap: "+what+" failed; retrying, the messages stay where they are", "attempt", attempt, "in", wait, "err", err)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, r.o.RetryMax)
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
