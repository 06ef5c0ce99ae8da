package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/ingest/imap"
	"repute/ingest/kafka"
	"repute/metrics"
)

// source is a feedback reader serve runs beside the API until its context
// ends: an IMAP mailbox or the Kafka consumer.
type source struct {
	name string
	run  func(ctx context.Context) error
}

// feedbackSources builds the readers of the imap: and kafka: sections.
// Each hands its events to the pipeline, stores evidence in the store,
// and finds sends through it.
func (a *app) feedbackSources(procs processorFactory, reg prometheus.Registerer) ([]source, error) {
	var out []source
	for _, m := range a.cfg.IMAP {
		proc, err := procs(m.Account)
		if err != nil {
			return nil, err
		}
		var tlsConfig *tls.Config
		if m.CAFile != "" {
			pem, err := os.ReadFile(m.CAFile)
			if err != nil {
				return nil, fmt.Errorf("imap %q: ca_file: %w", m.Name, plainErr(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("imap %q: ca_file %s: no PEM certificate in it", m.Name, m.CAFile)
			}
			tlsConfig = &tls.Config{RootCAs: pool}
		}
		r, err := imap.New(imap.Options{
			Name: m.Name, Addr: m.Addr, TLS: m.TLS, TLSConfig: tlsConfig,
			User: m.User, Password: m.password, Folders: m.Folders,
			Processed: m.Processed, Ignored: m.Ignored, Quarantine: m.Quarantine,
			MaxMessageBytes: m.MaxMessageBytes,
			Logger:          a.log.With("component", "imap", "mailbox", m.Name),
			Registerer:      reg,
		}, proc, a.pipeline, a.store, a.store)
		if err != nil {
			return nil, fmt.Errorf("imap %q: %w", m.Name, err)
		}
		out = append(out, source{name: "imap " + m.Name, run: r.Run})
	}
	if k := a.cfg.Kafka; k.consumes() {
		opts := kafka.Options{
			Brokers: k.Brokers, Group: k.Group,
			EventTopics: k.EventTopics, KumoMTATopics: k.KumoMTATopics, RawTopics: k.RawTopics,
			DeadLetterTopic: k.DeadLetterTopic, Account: k.Account,
			ISPs:       metrics.NewISPMap(a.cfg.ISPDomains),
			Logger:     a.log.With("component", "kafka"),
			Registerer: reg,
		}
		if len(k.RawTopics) > 0 {
			proc, err := procs(k.Account)
			if err != nil {
				return nil, err
			}
			opts.Raw, opts.Evidence = proc, a.store
		}
		c, err := kafka.New(a.pipeline, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, source{name: "kafka", run: c.Run})
	}
	return out, nil
}

// runSources runs each source until ctx ends; one that fails (a Kafka
// reader that cannot reach its brokers) is logged and started again after
// a pause that doubles up to five minutes. It returns once all have
// returned.
func runSources(ctx context.Context, sources []source, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, s := range sources {
		wg.Go(func() {
			wait := time.Second
			for {
				start := time.Now()
				err := s.run(ctx)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = errors.New("stopped")
				}
				if time.Since(start) > 10*time.Minute {
					wait = time.Second
				}
				log.Error("feedback source failed; starting it again", "source", s.name, "in", wait, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, 5*time.Minute)
			}
		})
	}
	wg.Wait()
}

// purgeEvidence removes the evidence older than the retention now and
// then every six hours, until ctx ends.
func purgeEvidence(ctx context.Context, ev metrics.EvidenceWriter, days int, log *slog.Logger) {
	for {
		before := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		n, err := ev.PurgeEvidence(pctx, before)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("evidence purge failed; trying again later", "retention_days", days, "err", err)
		case n != 0:
			log.Info("evidence past its retention purged", "retention_days", days, "removed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(6 * time.Hour):
		}
	}
}
