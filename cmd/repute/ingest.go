package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"repute/dsn"
	"repute/ingest"
	"repute/intake"
	"repute/metrics"
	"repute/spool"
)

func init() {
	commands["ingest"] = command{"ingest bounce and complaint reports from files, mboxes, maildirs or stdin", runIngest}
}

const ingestUsage = `Usage: repute ingest [flags] FILE|DIR|-...

Reads reports (bounces, complaints, unsubscribe requests) and stores their
events and evidence. Each FILE is one message, or several in mbox form (its
first line starts with "From "); a DIR is a maildir (its cur/ and new/ are
read, and its Maildir++ subfolders) or a plain directory (every regular
file in it and below is one message or an mbox); - is stdin (one message or
an mbox). Nothing read is ever moved, changed or deleted.

Without --server the reports go into the local data directory's store,
through its spool, as repute serve would take them (the same --config and
--data); the command returns once they are in the store. A running repute
serve holds the data directory: then use --server URL --key KEY, which
POSTs each message to its /v1/feedback, 4 at a time, retrying while the
server answers 503.

A report that matches no send is stored under --account; without it such
a report is quarantined. Quarantined means not ingested and listed in the
summary with its reason; the exit status is then 1.

` + configHelp

// ingestFlags are the flags of serve that ingest takes.
var ingestFlags = []string{"config", "data", "clickhouse", "clickhouse-database", "clickhouse-user", "clickhouse-password", "log-level"}

// ingestParallel is how many messages are converted or posted at once.
const ingestParallel = 4

// ingestFlushTimeout bounds the wait for the spool to drain into the store
// at the end of a local ingest.
var ingestFlushTimeout = 2 * time.Minute

type ingestArgs struct {
	account, server, key string
}

func runIngest(args []string, stdout, stderr io.Writer) int {
	var ia ingestArgs
	spec := configSpec{command: "ingest", help: ingestUsage, flags: ingestFlags, positional: math.MaxInt,
		extra: func(fs *flag.FlagSet) {
			fs.StringVar(&ia.account, "account", "", "the account of reports that match no send (with --server and the admin key: ?account=)")
			fs.StringVar(&ia.server, "server", "", "a running repute serve's base `URL`: POST each message to its /v1/feedback")
			fs.StringVar(&ia.key, "key", "", "the API key for --server (an account's or the admin's)")
		}}
	cfg, code, ok := loadCommandConfig(spec, args, stdout, stderr)
	if !ok {
		return code
	}
	inputs := cfg.args
	if len(inputs) == 0 {
		fmt.Fprintln(stderr, "repute ingest: no input: name files, directories or - (stdin)")
		return 2
	}
	if (ia.server == "") != (ia.key == "") {
		fmt.Fprintln(stderr, "repute ingest: --server and --key go together")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	sum := newIngestSummary()
	var sink func(ctx context.Context, msgs <-chan ingestMsg) error
	if ia.server != "" {
		if _, err := url.ParseRequestURI(ia.server); err != nil {
			fmt.Fprintf(stderr, "repute ingest: --server %q: want a URL such as http://127.0.0.1:8080\n", ia.server)
			return 2
		}
		c := &feedbackClient{base: strings.TrimRight(ia.server, "/"), key: ia.key, account: ia.account, http: http.DefaultClient}
		sink = func(ctx context.Context, msgs <-chan ingestMsg) error { return c.run(ctx, msgs, sum) }
	} else {
		l, err := openLocalIngest(ctx, cfg, ia.account, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "repute ingest:", err)
			return 1
		}
		defer l.close()
		sink = func(ctx context.Context, msgs <-chan ingestMsg) error { return l.run(ctx, msgs, sum) }
	}

	var stdin io.Reader = os.Stdin
	src := newIngestSource(inputs, stdin, sum)
	var prog *progress
	if isTerminal(stderr) {
		if total := src.count(); total > 300 {
			prog = startProgress(stderr, total, &sum.done)
		}
	}
	msgs := make(chan ingestMsg, ingestParallel)
	go func() {
		defer close(msgs)
		src.each(func(m ingestMsg) bool {
			select {
			case msgs <- m:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	err := sink(ctx, msgs)
	for range msgs { // the reader stops at ctx's end
	}
	prog.stop()
	sum.print(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "repute ingest:", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "repute ingest: interrupted")
		return 1
	}
	if sum.quarantinedCount() > 0 {
		return 1
	}
	return 0
}

// ingestMsg is one message read: its bytes, where it was read (the events'
// source and source_ref) and its name in the summary.
type ingestMsg struct {
	raw  []byte
	src  ingest.Source
	name string
	// err says why the message could not be read; raw is then nil.
	err error
}

// ingestSource enumerates the messages of the inputs.
type ingestSource struct {
	inputs []string
	stdin  io.Reader
	// stdinData is stdin once read (count reads it first).
	stdinData []byte
	stdinRead bool
	sum       *ingestSummary
}

func newIngestSource(inputs []string, stdin io.Reader, sum *ingestSummary) *ingestSource {
	return &ingestSource{inputs: inputs, stdin: stdin, sum: sum}
}

// files lists the message files of one input: itself, or the files of a
// maildir or a directory tree, sorted.
func inputFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	err = walkMessages(path, &out)
	return out, err
}

// walkMessages adds the message files under dir: a maildir's cur/ and new/
// and its Maildir++ folders (.Name), never its tmp/ (messages being
// delivered) nor its index files; in any other directory every regular
// file, recursively.
func walkMessages(dir string, out *[]string) error {
	if isMaildir(dir) {
		for _, sub := range []string{"new", "cur"} {
			entries, err := os.ReadDir(filepath.Join(dir, sub))
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Type().IsRegular() {
					*out = append(*out, filepath.Join(dir, sub, e.Name()))
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if p := filepath.Join(dir, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), ".") && isMaildir(p) {
				if err := walkMessages(p, out); err != nil {
					return err
				}
			}
		}
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if err := walkMessages(p, out); err != nil {
				return err
			}
		case e.Type().IsRegular():
			*out = append(*out, p)
		}
	}
	return nil
}

// isMaildir reports whether dir has the cur/ and new/ of a maildir.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// readStdin reads stdin once.
func (s *ingestSource) readStdin() ([]byte, error) {
	if !s.stdinRead {
		s.stdinRead = true
		var err error
		s.stdinData, err = io.ReadAll(s.stdin)
		if err != nil {
			return nil, err
		}
	}
	return s.stdinData, nil
}

// count returns the number of messages of the inputs, reading each file
// (mboxes are split to be counted).
func (s *ingestSource) count() int {
	n := 0
	for _, in := range s.inputs {
		if in == "-" {
			b, _ := s.readStdin()
			n += len(splitMessages(b))
			continue
		}
		files, _ := inputFiles(in)
		for _, f := range files {
			if isMboxFile(f) {
				b, _ := os.ReadFile(f)
				n += len(splitMessages(b))
			} else {
				n++
			}
		}
	}
	return max(n, 1)
}

// isMboxFile reports whether a file's first line is an mbox separator.
func isMboxFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 5)
	n, _ := io.ReadFull(f, b)
	return string(b[:n]) == "From "
}

// splitMessages splits mbox input; a single message is itself.
func splitMessages(b []byte) [][]byte {
	if !bytes.HasPrefix(b, []byte("From ")) {
		return [][]byte{b}
	}
	return ingest.SplitMbox(b)
}

// each calls fn with every message of the inputs, in order, until fn
// returns false.
func (s *ingestSource) each(fn func(ingestMsg) bool) {
	for _, in := range s.inputs {
		if in == "-" {
			b, err := s.readStdin()
			if err != nil {
				if !fn(ingestMsg{name: "stdin", err: err}) {
					return
				}
				continue
			}
			if !s.emit(b, "stdin", "stdin", time.Time{}, fn) {
				return
			}
			continue
		}
		files, err := inputFiles(in)
		if err != nil {
			if !fn(ingestMsg{name: in, err: plainErr(err)}) {
				return
			}
			continue
		}
		for _, f := range files {
			if !s.file(f, fn) {
				return
			}
		}
	}
}

// file emits the messages of one file.
func (s *ingestSource) file(path string, fn func(ingestMsg) bool) bool {
	st, err := os.Stat(path)
	if err != nil {
		return fn(ingestMsg{name: path, err: plainErr(err)})
	}
	mbox := isMboxFile(path)
	if !mbox && st.Size() > ingest.MaxMessageSize {
		return fn(ingestMsg{name: path, err: fmt.Errorf("larger than %d bytes: not one message", int64(ingest.MaxMessageSize))})
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fn(ingestMsg{name: path, err: plainErr(err)})
	}
	// The file's time is the time of last resort of its reports: a
	// maildir's file was written at delivery.
	return s.emit(b, path, path, st.ModTime(), fn)
}

// emit emits the messages of input b: one, or those of an mbox, whose
// source_ref is path#N (1-based).
func (s *ingestSource) emit(b []byte, name, ref string, at time.Time, fn func(ingestMsg) bool) bool {
	if !bytes.HasPrefix(b, []byte("From ")) {
		return fn(ingestMsg{raw: b, name: name, src: ingest.Source{Name: ingest.SourceFile, Ref: ref, Time: at}})
	}
	for i, m := range ingest.SplitMbox(b) {
		n := "#" + strconv.Itoa(i+1)
		var err error
		if len(m) > ingest.MaxMessageSize {
			m, err = nil, fmt.Errorf("larger than %d bytes", int64(ingest.MaxMessageSize))
		}
		if !fn(ingestMsg{raw: m, err: err, name: name + n, src: ingest.Source{Name: ingest.SourceFile, Ref: ref + n, Time: at}}) {
			return false
		}
	}
	return true
}

// ingestSummary counts what became of the messages.
type ingestSummary struct {
	done       atomic.Int64 // messages with an outcome, for the progress line
	mu         sync.Mutex
	read       int
	kinds      map[metrics.Kind]int
	duplicates int
	ignored    int
	// quarantined lists the messages not ingested, by reason.
	quarantined map[string][]string
}

func newIngestSummary() *ingestSummary {
	return &ingestSummary{kinds: map[metrics.Kind]int{}, quarantined: map[string][]string{}}
}

func (s *ingestSummary) stored(events []metrics.Event, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read++
	for _, e := range events {
		s.kinds[e.Kind]++
	}
	s.duplicates += duplicates
	s.done.Add(1)
}

func (s *ingestSummary) ignore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read++
	s.ignored++
	s.done.Add(1)
}

func (s *ingestSummary) quarantine(name, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read++
	s.quarantined[reason] = append(s.quarantined[reason], name)
	s.done.Add(1)
}

func (s *ingestSummary) quarantinedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, files := range s.quarantined {
		n += len(files)
	}
	return n
}

// maxListed is how many files the summary lists per quarantine reason.
const maxListed = 10

func (s *ingestSummary) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "read: %d messages\n", s.read)
	total := 0
	var parts []string
	for _, k := range []metrics.Kind{metrics.KindBounced, metrics.KindDeferred, metrics.KindDelivered,
		metrics.KindComplained, metrics.KindUnsubscribed} {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.kinds[k]))
		total += s.kinds[k]
	}
	fmt.Fprintf(w, "events: %d (%s; %d already stored)\n", total, strings.Join(parts, ", "), s.duplicates)
	fmt.Fprintf(w, "ignored: %d (neither a bounce, a complaint nor an unsubscribe request)\n", s.ignored)
	n := 0
	reasons := make([]string, 0, len(s.quarantined))
	for r, files := range s.quarantined {
		reasons = append(reasons, r)
		n += len(files)
	}
	fmt.Fprintf(w, "quarantined: %d\n", n)
	sort.Slice(reasons, func(i, j int) bool {
		a, b := len(s.quarantined[reasons[i]]), len(s.quarantined[reasons[j]])
		return a > b || a == b && reasons[i] < reasons[j]
	})
	for _, r := range reasons {
		files := slices.Clone(s.quarantined[r])
		sort.Strings(files)
		fmt.Fprintf(w, "  %d: %s\n", len(files), r)
		for _, f := range files[:min(len(files), maxListed)] {
			fmt.Fprintf(w, "    %s\n", f)
		}
		if len(files) > maxListed {
			fmt.Fprintf(w, "    … and %d more\n", len(files)-maxListed)
		}
	}
}

// quarantineReason words why a report cannot be ingested, the same for
// every message with the same problem (the summary groups by it).
func quarantineReason(err error, account string) string {
	switch {
	case errors.Is(err, ingest.ErrUnattributed):
		if account != "" {
			return err.Error()
		}
		return "matches no send, and no --account is given for unmatched reports"
	case errors.Is(err, ingest.ErrNoTime):
		return "no usable date in the report or its file"
	case errors.Is(err, ingest.ErrNoEventRecipient):
		return "names no recipient an event can be about"
	case errors.Is(err, dsn.ErrNoRecipient):
		return "a bounce that names no recipient"
	case errors.Is(err, ingest.ErrLookup):
		return "looking up the original send failed"
	}
	return err.Error()
}

// errNotMessage is the reason of input that is no message at all.
const errNotMessage = "not an email message (no header fields)"

// localIngest ingests into the data directory's store.
type localIngest struct {
	cfg      serveConfig
	account  string
	proc     *ingest.Processor
	spool    *spool.Spool
	store    store
	pipeline *intake.Pipeline
	stopRun  context.CancelFunc
	ran      chan error
	log      *slog.Logger
}

func openLocalIngest(ctx context.Context, cfg serveConfig, account string, stderr io.Writer) (*localIngest, error) {
	level := cfg.LogLevel
	if level == "info" {
		level = "warn" // the default: only what goes wrong
	}
	log, err := newLogger(stderr, level)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	if err := checkDataDir(cfg.Data); err != nil {
		return nil, err
	}
	l := &localIngest{cfg: cfg, account: account, log: log}
	l.spool, err = spool.Open(filepath.Join(cfg.Data, "spool"), spool.Options{
		MaxBytes: cfg.SpoolMaxBytes, Logger: log.With("component", "spool"),
	})
	if err != nil {
		if inUse(err) {
			return nil, errDataInUse(cfg.Data)
		}
		return nil, err
	}
	l.store, err = openStore(ctx, cfg, log)
	if err != nil {
		l.spool.Close()
		if inUse(err) {
			return nil, errDataInUse(cfg.Data)
		}
		return nil, err
	}
	signing, err := readSigningKeys(cfg, os.Getenv)
	if err != nil {
		l.closeStores()
		return nil, err
	}
	f, err := newProcessorFactory(cfg, l.store, signing)
	if err == nil {
		l.proc, err = f(account)
	}
	if err != nil {
		l.closeStores()
		return nil, err
	}
	// The suppression lists see what this run stores, as serve's do: their
	// log is loaded first, then fed by every stored batch.
	sup := newSuppression(l.store, log.With("component", "suppress"))
	if err := sup.loadOnce(ctx); err != nil {
		l.closeStores()
		return nil, fmt.Errorf("loading the suppression lists: %w", err)
	}
	l.pipeline = intake.New(l.spool, l.store, intake.Options{Logger: log.With("component", "intake"), AfterStore: sup.afterStore})
	runCtx, stop := context.WithCancel(context.Background())
	l.stopRun, l.ran = stop, make(chan error, 1)
	go func() { l.ran <- l.pipeline.Run(runCtx) }()
	return l, nil
}

func (l *localIngest) closeStores() {
	if err := l.store.Close(); err != nil {
		l.log.Error("closing store", "err", err)
	}
	if err := l.spool.Close(); err != nil {
		l.log.Error("closing spool", "err", err)
	}
}

func (l *localIngest) close() {
	l.stopRun()
	<-l.ran
	l.closeStores()
}

// processed is a converted message on its way to the store.
type processed struct {
	name string
	rep  ingest.Report
}

// run converts the messages in parallel and stores them in batches: the
// evidence of a batch, then its events. It returns once the events are in
// the store (the spool flushed), or with the reason they may not be.
func (l *localIngest) run(ctx context.Context, msgs <-chan ingestMsg, sum *ingestSummary) error {
	out := make(chan processed, 64)
	var wg sync.WaitGroup
	for range ingestParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				if m.err != nil {
					sum.quarantine(m.name, "unreadable: "+m.err.Error())
					continue
				}
				if !ingest.LooksLikeMessage(m.raw) {
					sum.quarantine(m.name, errNotMessage)
					continue
				}
				rep, err := l.process(ctx, m)
				switch {
				case err != nil:
					sum.quarantine(m.name, quarantineReason(err, l.account))
				case len(rep.Events) == 0:
					sum.ignore()
				default:
					out <- processed{name: m.name, rep: rep}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()

	var batch []processed
	flush := func() {
		if len(batch) > 0 {
			l.store1(ctx, batch, sum)
			batch = batch[:0]
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case p, ok := <-out:
			if !ok {
				done = true
				break
			}
			batch = append(batch, p)
			if len(batch) >= 500 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
	flush()
	wait, cancel := context.WithTimeout(ctx, ingestFlushTimeout)
	defer cancel()
	if err := l.pipeline.WaitVisible(wait); err != nil {
		st := l.spool.Stats()
		return fmt.Errorf("the events are safe in the spool (%d records in %s) but not yet in the store (%v); the next repute serve or repute ingest stores them",
			st.Records, filepath.Join(l.cfg.Data, "spool"), err)
	}
	return nil
}

// process converts one message, trying again a few times while the send
// lookup fails.
func (l *localIngest) process(ctx context.Context, m ingestMsg) (ingest.Report, error) {
	for attempt := 0; ; attempt++ {
		rep, err := l.proc.Process(ctx, m.raw, m.src)
		if !errors.Is(err, ingest.ErrLookup) || attempt == 3 || ctx.Err() != nil {
			return rep, err
		}
		time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
	}
}

// store1 stores one batch: its evidence, then its events (durable in the
// spool). A batch the store does not take is quarantined whole.
func (l *localIngest) store1(ctx context.Context, batch []processed, sum *ingestSummary) {
	var evidence []metrics.Evidence
	var events []metrics.Event
	for _, p := range batch {
		evidence = append(evidence, p.rep.Evidence...)
		events = append(events, p.rep.Events...)
	}
	err := retry(ctx, func() error { return l.store.PutEvidence(ctx, evidence) })
	if err != nil {
		for _, p := range batch {
			sum.quarantine(p.name, "storing the evidence failed: "+err.Error())
		}
		return
	}
	var res intake.Result
	err = retry(ctx, func() error {
		var err error
		res, err = l.pipeline.Submit(ctx, events)
		return err
	})
	if err != nil {
		for _, p := range batch {
			sum.quarantine(p.name, "spooling the events failed: "+err.Error())
		}
		return
	}
	// Duplicates are counted per batch; attribute them to its first.
	for i, p := range batch {
		d := 0
		if i == 0 {
			d = res.Duplicates
		}
		sum.stored(p.rep.Events, d)
	}
}

// retry calls fn until it succeeds, for up to about a minute (a full spool
// drains, a store comes back), or until ctx ends.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < 60; attempt++ {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	return err
}

// feedbackClient POSTs messages to a running server's /v1/feedback.
type feedbackClient struct {
	base, key, account string
	http               *http.Client
	// retryAfterCap bounds a wait asked by Retry-After (tests shorten it).
	retryAfterCap time.Duration
}

// errFatal marks an answer that no other message would fare better with
// (a wrong key): the run stops.
type errFatal struct{ msg string }

func (e errFatal) Error() string { return e.msg }

func (c *feedbackClient) run(ctx context.Context, msgs <-chan ingestMsg, sum *ingestSummary) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range ingestParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				if ctx.Err() != nil {
					continue
				}
				if m.err != nil {
					sum.quarantine(m.name, "unreadable: "+m.err.Error())
					continue
				}
				if !ingest.LooksLikeMessage(m.raw) {
					sum.quarantine(m.name, errNotMessage)
					continue
				}
				if err := c.post(ctx, m, sum); err != nil {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// post POSTs one message and records its outcome; it returns an error
// only for an answer that stops the run.
func (c *feedbackClient) post(ctx context.Context, m ingestMsg, sum *ingestSummary) error {
	u := c.base + "/v1/feedback"
	if c.account != "" {
		u += "?account=" + url.QueryEscape(c.account)
	}
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(m.raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "message/rfc822")
		req.Header.Set("Authorization", "Bearer "+c.key)
		res, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			lastErr = err
			wait(ctx, time.Second)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 16<<20))
		res.Body.Close()
		var out struct {
			Events     []metrics.Event `json:"events"`
			Ignored    bool            `json:"ignored"`
			Duplicates int             `json:"duplicates"`
			Error      string          `json:"error"`
		}
		json.Unmarshal(body, &out)
		switch {
		case res.StatusCode == http.StatusAccepted:
			if len(out.Events) == 0 {
				sum.ignore()
			} else {
				sum.stored(out.Events, out.Duplicates)
			}
			return nil
		case res.StatusCode == http.StatusServiceUnavailable:
			lastErr = fmt.Errorf("%s: %s", res.Status, out.Error)
			d := time.Second
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
				d = time.Duration(s) * time.Second
			}
			if c.retryAfterCap > 0 {
				d = min(d, c.retryAfterCap)
			}
			wait(ctx, d)
			continue
		case res.StatusCode == http.StatusUnauthorized:
			return errFatal{fmt.Sprintf("%s: %s", u, out.Error)}
		case res.StatusCode == http.StatusNotFound && strings.Contains(out.Error, "no such endpoint"):
			return errFatal{fmt.Sprintf("%s: this server does not take reports (POST /v1/feedback): %s", c.base, out.Error)}
		}
		reason := out.Error
		if reason == "" {
			reason = strings.TrimSpace(string(body))
		}
		sum.quarantine(m.name, fmt.Sprintf("%s: %s", res.Status, trimNothingStored(reason)))
		return nil
	}
	if ctx.Err() == nil {
		sum.quarantine(m.name, fmt.Sprintf("the server did not take it: %v", lastErr))
	}
	return nil
}

// trimNothingStored drops the server's "; nothing was stored" (every
// quarantined message is not stored), so equal reasons group.
func trimNothingStored(s string) string {
	return strings.TrimSuffix(s, "; nothing was stored")
}

func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress draws "N/TOTAL messages, R/s" on a terminal, at most ten times
// a second.
type progress struct {
	stopc chan struct{}
	done  chan struct{}
}

func startProgress(w io.Writer, total int, done *atomic.Int64) *progress {
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	draw := func() {
		n := done.Load()
		rate := float64(n) / max(time.Since(start).Seconds(), 0.001)
		fmt.Fprintf(w, "\r%d/%d messages, %.0f/s ", n, total, rate)
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-p.stopc:
				draw()
				fmt.Fprintln(w)
				return
			}
		}
	}()
	return p
}

func (p *progress) stop() {
	if p == nil {
		return
	}
	close(p.stopc)
	<-p.done
}
