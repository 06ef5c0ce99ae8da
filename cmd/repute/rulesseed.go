package main

import (
	"context"
	"log/slog"
	"time"

	"repute/metrics"
	"repute/rules"
)

// seedTimeout bounds the read of the recent replies at start-up: it
// delays the start by as much when the store does not answer.
const seedTimeout = 10 * time.Second

// seedResponses reads the replies of the last pattern window (an hour with
// the built-in rules) back from the store into the rule engine's memory of
// replies, so that a restart does not forget an episode in progress (a
// TSS04 deferral ten minutes before it still pauses Yahoo). It runs before
// intake drains the spool, whose events reach the log through AfterStore.
// A failed read is logged, not fatal: the pattern rules then start from
// the replies stored after the start. What a restart does forget are the
// starts of past episodes, which a repeated rule (Microsoft's 24 h stop)
// counts.
func seedResponses(log *rules.ResponseLog, store metrics.Store, set *rules.RuleSet, now time.Time, logger *slog.Logger) {
	rr, ok := store.(metrics.ReplyReader)
	window := set.PatternWindow()
	if !ok || window == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), seedTimeout)
	defer cancel()
	// To a minute ahead: event times may run a little ahead of the clock.
	n, err := log.Load(ctx, rr, now.Add(-window), now.Add(time.Minute))
	if err != nil {
		logger.Warn("the pattern rules start without the replies stored before the start", "err", err, "kept", n)
		return
	}
	logger.Info("pattern rules: replies of the last window read back from the store", "window", window, "kept", n)
}
