package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/correlate"
	"repute/metrics"
	"repute/sender"
	"repute/track"
)

// The public tracking endpoints (package track): /t/o, /t/c and /t/u, with
// no API key, served on listen beside the API or, when tracking_listen is
// set, on a listener of their own.

// newTracking builds the tracking endpoints and, without tracking_listen,
// puts them in front of the API handler.
func (a *app) newTracking(reg prometheus.Registerer) error {
	signer, err := sender.NewTrackingSigner(correlate.Keys(a.signing))
	if err != nil {
		return fmt.Errorf("tracking endpoints: %w", err)
	}
	proxies, err := parseTrustedProxies(a.cfg.TrustedProxies)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, acc := range a.cfg.Accounts {
		names[acc.Name] = acc.DisplayName
	}
	o := track.Options{
		Signer: signer,
		Sends:  a.store,
		Submit: func(ctx context.Context, events []metrics.Event) (int, error) {
			res, err := a.pipeline.Submit(ctx, events)
			return res.Duplicates, err
		},
		DisplayName:    func(account string) string { return names[account] },
		ISPs:           metrics.NewISPMap(a.cfg.ISPDomains),
		TrustedProxies: proxies,
		Limit:          a.guard.AllowAddress,
		Registerer:     reg,
		Logger:         a.log.With("component", "track"),
	}
	if a.machine != nil {
		o.Classify = a.machine.Classify
	}
	if a.tracking, err = track.New(o); err != nil {
		return err
	}
	if a.cfg.TrackingListen == "" {
		api, tr := a.handler, a.tracking
		a.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/t/") {
				tr.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	return nil
}

// parseTrustedProxies parses trusted_proxies: CIDR prefixes, or single
// addresses.
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("config trusted_proxies: %q: want a CIDR prefix such as 10.0.0.0/8 or an address", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// startTracking starts the tracking worker and, with tracking_listen, the
// tracking listener's server. The returned stop shuts the server down,
// then lets the worker hand every queued hit to intake within ctx: call
// it after the API server stopped and before the spool flushes.
func (a *app) startTracking() (stop func(ctx context.Context)) {
	workerCtx, cancel := context.WithCancel(context.Background())
	worked := make(chan error, 1)
	go func() { worked <- a.tracking.Run(workerCtx) }()
	var srv *http.Server
	if a.trackLn != nil {
		srv = &http.Server{
			Handler:           a.tracking,
			ReadHeaderTimeout: min(10*time.Second, a.cfg.ReadTimeout),
			ReadTimeout:       a.cfg.ReadTimeout,
			WriteTimeout:      a.cfg.ReadTimeout + a.cfg.WriteTimeout,
			IdleTimeout:       a.cfg.IdleTimeout,
		}
		go func() {
			if err := a.serveHTTP(srv, a.trackLn); err != nil && err != http.ErrServerClosed {
				a.log.Error("tracking listener", "err", err)
			}
		}()
	}
	return func(ctx context.Context) {
		if srv != nil {
			if err := srv.Shutdown(ctx); err != nil {
				a.log.Error("tracking http shutdown", "err", err)
			}
		}
		if err := a.tracking.Shutdown(ctx); err != nil {
			a.log.Warn("tracking hits not all handed to intake before the shutdown deadline (counted as dropped)", "err", err)
		}
		cancel()
		<-worked
	}
}

// listenTracking binds tracking_listen when it is set.
func listenTracking(cfg serveConfig) (net.Listener, error) {
	if cfg.TrackingListen == "" {
		return nil, nil
	}
	return listen(cfg.TrackingListen)
}
