package main

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
	"repute/rules"
)

// validHostPort says whether s is host:port with both set.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != ""
}

// ispMX builds the MX resolver of isp_mx (issue 13: "add an MX lookup with
// a cache for custom domains hosted by the big providers"), its lookups
// counted on reg; nil when it is off.
func ispMX(cfg serveConfig, reg prometheus.Registerer, log *slog.Logger) (*rules.MXResolver, error) {
	if !cfg.ISPMX.Enabled {
		return nil, nil
	}
	mx, err := rules.NewMXResolver(rules.MXOptions{Server: cfg.ISPMX.Server, ISPs: metrics.NewISPMap(cfg.ISPDomains)})
	if err != nil {
		return nil, fmt.Errorf("config isp_mx: %w", err)
	}
	for _, c := range []struct {
		result string
		n      func(rules.MXStats) int64
	}{
		{"started", func(s rules.MXStats) int64 { return s.Started }},
		{"failed", func(s rules.MXStats) int64 { return s.Failed }},
		{"busy", func(s rules.MXStats) int64 { return s.Busy }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "repute_isp_mx_lookups_total", ConstLabels: prometheus.Labels{"result": c.result},
			Help: "MX lookups of recipient domains the ISP map does not know, by result: started; " +
				"of those, failed; busy: a miss that started none (the domain's next event tries again).",
		}, func() float64 { return float64(c.n(mx.Stats())) }))
	}
	server := cfg.ISPMX.Server
	if server == "" {
		server = "the system's"
	}
	log.Info("isp_mx: recipient domains the ISP map does not know take the provider of their MX hosts", "dns_server", server)
	return mx, nil
}

// ispClassify returns intake's enrichment of an event's provider, or nil
// without a resolver: an event whose recipient domain the ISP map does not
// know takes the provider of the domain's MX hosts when the resolver has
// them cached. No lookup is waited for on the request path: a miss starts
// one in the background (bounded), and the domain's later events get its
// answer — the first events of a new custom domain keep isp "other". The
// isp is not part of the event id, so a re-post is still a duplicate.
func ispClassify(mx *rules.MXResolver) func(*metrics.Event) {
	if mx == nil {
		return nil
	}
	return func(e *metrics.Event) {
		if e.ISP != metrics.ISPOther || e.RecipientDomain == "" {
			return
		}
		if p, ok := mx.Cached(e.RecipientDomain); ok && p != "" {
			e.ISP = p
		}
	}
}

// chainClassify applies each of fs that is set, in order; nil when none
// is.
func chainClassify(fs ...func(*metrics.Event)) func(*metrics.Event) {
	var set []func(*metrics.Event)
	for _, f := range fs {
		if f != nil {
			set = append(set, f)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	return func(e *metrics.Event) {
		for _, f := range set {
			f(e)
		}
	}
}
