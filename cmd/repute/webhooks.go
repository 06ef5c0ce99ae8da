package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"repute/api"
	"repute/metrics"
	"repute/suppress/webhook"
)

// The pace of the webhook dispatchers; variables for the tests.
var (
	webhookPoll       = 5 * time.Second  // how often the log is read without a local change
	webhookTimeout    = 10 * time.Second // a POST not answered by then is a failure
	webhookMinBackoff = time.Second      // the first retry's wait, doubling
	webhookMaxBackoff = 10 * time.Minute
	// webhookSettle is how long a change is left to be written before
	// the dispatcher reads past it (see suppressionSettle).
	webhookSettle = suppressionSettle
)

const (
	webhookKeepAttempts = 100  // attempts kept per account for GET /v1/webhooks/deliveries
	webhookBatch        = 1000 // changes read from the log at a time
)

// webhooks are the dispatchers of the accounts that have a webhook.
type webhooks struct {
	list []*webhookDispatcher
}

func newWebhooks(accounts []accountConfig, store metrics.SuppressionLog, dataDir string, log *slog.Logger) *webhooks {
	w := &webhooks{}
	for _, acc := range accounts {
		if acc.WebhookURL == "" {
			continue
		}
		w.list = append(w.list, &webhookDispatcher{
			account: acc.Name, url: acc.WebhookURL, secret: []byte(acc.webhookSecret), store: store,
			path:   filepath.Join(dataDir, "webhooks", url.PathEscape(acc.Name)+".cursor"),
			log:    log.With("account", acc.Name),
			notify: make(chan struct{}, 1),
			client: &http.Client{
				// A redirect is an answer that is not 2xx: a failure.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
		})
	}
	return w
}

// run runs every dispatcher until ctx ends.
func (w *webhooks) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range w.list {
		wg.Go(func() { d.run(ctx) })
	}
	wg.Wait()
}

// changed tells the dispatchers that the log has new changes.
func (w *webhooks) changed() {
	for _, d := range w.list {
		select {
		case d.notify <- struct{}{}:
		default:
		}
	}
}

var _ api.Webhooks = (*webhooks)(nil)

// Deliveries is the status of account's webhook, or of all ("").
func (w *webhooks) Deliveries(account string) []api.WebhookStatus {
	var out []api.WebhookStatus
	for _, d := range w.list {
		if account == "" || d.account == account {
			out = append(out, d.status())
		}
	}
	return out
}

// webhookDispatcher tells one account's URL of the changes of its
// unsubscribe list. It follows the store's log, not the local index: what
// another repute serve sharing the store wrote is delivered too (by each
// of them: receivers dedupe on X-Repute-Delivery). Changes go out one at a
// time in the order they were written to the log; a failed one is retried with backoff and the
// later ones wait, so a receiver never sees a re-subscription before the
// unsubscription it undoes. The cursor is kept in a file, written after
// each delivery: a restart resumes after the last delivered change, and
// repeats at most the one in flight.
type webhookDispatcher struct {
	account string
	url     string
	secret  []byte
	store   metrics.SuppressionLog
	path    string // the cursor file
	log     *slog.Logger
	notify  chan struct{}
	client  *http.Client

	mu       sync.Mutex
	cursor   api.WebhookCursor
	pending  int
	attempts []api.WebhookAttempt // the last webhookKeepAttempts
}

func (d *webhookDispatcher) status() api.WebhookStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return api.WebhookStatus{Account: d.account, URL: d.url, Cursor: d.cursor, Pending: d.pending,
		Attempts: append([]api.WebhookAttempt{}, d.attempts...)}
}

func (d *webhookDispatcher) run(ctx context.Context) {
	cur, err := readWebhookCursor(d.path)
	if err != nil {
		// Starting over would deliver everything again; better say so and
		// wait for the operator.
		d.log.Error("webhook: the cursor file cannot be read; not delivering until it is fixed or removed (removed: everything is delivered again)",
			"file", d.path, "err", err)
		return
	}
	d.mu.Lock()
	d.cursor = cur
	d.mu.Unlock()
	wait := webhookMinBackoff
	for {
		err := d.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		next := webhookPoll
		if err != nil {
			d.log.Error("webhook: reading the suppression log failed; retrying", "in", wait, "err", err)
			next, wait = wait, min(2*wait, webhookMaxBackoff)
		} else {
			wait = webhookMinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-d.notify:
		case <-time.After(next):
		}
	}
}

// pass delivers the changes after the cursor, batch by batch, until the
// log has none left or ctx ends.
func (d *webhookDispatcher) pass(ctx context.Context) error {
	for {
		d.mu.Lock()
		cur := d.cursor
		d.mu.Unlock()
		var batch []metrics.SuppressionChange
		// In the order written, so a change about an old event, written
		// late, is not passed over; up to a settling delay ago, so one
		// another process is still writing is not either.
		err := d.store.FindSuppressionChanges(ctx, metrics.SuppressionQuery{
			Account: d.account, ByLogged: true, AfterTime: cur.Logged, AfterID: cur.ID,
			LoggedBefore: time.Now().Add(-webhookSettle), Limit: webhookBatch,
		}, func(c metrics.SuppressionChange) error {
			batch = append(batch, c)
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		n := 0
		for _, c := range batch {
			if c.List == "unsubscribe" {
				n++
			}
		}
		d.mu.Lock()
		d.pending = n
		d.mu.Unlock()
		for _, c := range batch {
			if c.List == "unsubscribe" {
				if err := d.deliver(ctx, c); err != nil {
					return nil // ctx ended
				}
			}
			if err := d.advance(api.WebhookCursor{Time: c.Time, Logged: c.Logged, ID: c.ID}, c.List == "unsubscribe"); err != nil {
				return err
			}
		}
		if len(batch) < webhookBatch {
			return nil
		}
	}
}

// advance moves the cursor past a change and writes it to the file: after
// each delivered change, and after the last of a batch of skipped ones.
func (d *webhookDispatcher) advance(cur api.WebhookCursor, delivered bool) error {
	d.mu.Lock()
	d.cursor = cur
	if delivered {
		d.pending--
	}
	d.mu.Unlock()
	if err := writeWebhookCursor(d.path, cur); err != nil {
		// Not fatal: the next write may succeed; a restart meanwhile
		// repeats deliveries, which receivers dedupe.
		d.log.Error("webhook: writing the cursor file failed", "file", d.path, "err", err)
	}
	return nil
}

// deliver POSTs c until a 2xx answers, with backoff; it returns an error
// only when ctx ends first.
func (d *webhookDispatcher) deliver(ctx context.Context, c metrics.SuppressionChange) error {
	body, err := json.Marshal(webhook.Payload{ID: c.ID, Time: c.Time.UTC(), Action: c.Action, Address: c.Address,
		SenderDomain: c.SenderDomain, Reason: c.Reason, EventID: c.EventID, By: c.By})
	if err != nil {
		return err
	}
	wait := webhookMinBackoff
	for attempt := 1; ; attempt++ {
		status, err := d.post(ctx, c.ID, body)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a := api.WebhookAttempt{ChangeID: c.ID, Time: time.Now().UTC(), URL: d.url, Attempt: attempt, Status: status}
		ok := err == nil && status/100 == 2
		if !ok {
			if err == nil {
				err = fmt.Errorf("answered %d", status)
			}
			a.Error = err.Error()
			next := a.Time.Add(wait)
			a.NextRetry = &next
			d.log.Warn("webhook: delivery failed; retrying", "change", c.ID, "attempt", attempt, "in", wait, "err", err)
		}
		d.record(a)
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, webhookMaxBackoff)
	}
}

func (d *webhookDispatcher) record(a api.WebhookAttempt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.attempts) == webhookKeepAttempts {
		d.attempts = append(d.attempts[:0], d.attempts[1:]...)
	}
	d.attempts = append(d.attempts, a)
}

// post sends one signed delivery and returns the status answered.
func (d *webhookDispatcher) post(ctx context.Context, id string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "repute-webhook")
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(ts))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(d.secret, ts, body))
	res, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	return res.StatusCode, nil
}

// webhookCursorFile is the cursor file's content.
type webhookCursorFile struct {
	TimeNS int64 `json:"time_ns"`
	// LoggedNS is when the store took the change (the cursor's order);
	// a file written before it existed has none, and its time stands in
	// (the stores take old changes as logged at their time).
	LoggedNS int64  `json:"logged_ns,omitempty"`
	ID       string `json:"id"`
}

// readWebhookCursor reads a cursor file; a missing file is the log's
// beginning.
func readWebhookCursor(path string) (api.WebhookCursor, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return api.WebhookCursor{}, nil
	}
	if err != nil {
		return api.WebhookCursor{}, err
	}
	var f webhookCursorFile
	if err := json.Unmarshal(b, &f); err != nil {
		return api.WebhookCursor{}, fmt.Errorf("malformed: %w", err)
	}
	if f.LoggedNS == 0 {
		f.LoggedNS = f.TimeNS
	}
	return api.WebhookCursor{Time: time.Unix(0, f.TimeNS).UTC(), Logged: time.Unix(0, f.LoggedNS).UTC(), ID: f.ID}, nil
}

// writeWebhookCursor replaces a cursor file atomically: a temporary file,
// synced, renamed over it, and the directory synced.
func writeWebhookCursor(path string, cur api.WebhookCursor) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	b, _ := json.Marshal(webhookCursorFile{TimeNS: cur.Time.UnixNano(), LoggedNS: cur.Logged.UnixNano(), ID: cur.ID})
	f, err := os.CreateTemp(dir, ".cursor-")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if df, err := os.Open(dir); err == nil {
		err = df.Sync()
		df.Close()
		return err
	}
	return nil
}
