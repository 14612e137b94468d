//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/server"
)

// serveMetrics opens the metrics listener of gantry serve
// (server.metricsListen): /metrics, /healthz and /readyz, with the main
// listener's TLS and timeouts, and nothing else. The main listener receives
// GitHub's webhooks, so it faces the internet and never serves /metrics.
// With no address it opens nothing. The listen error, if any, comes back
// at once (before the main listener starts); stop shuts the listener down
// and returns how it ended.
func serveMetrics(ctx context.Context, a *app, tlsConf *tls.Config, reg prometheus.Gatherer, ready func(context.Context) error) (stop func() error, err error) {
	addr := a.cfg.Server.MetricsListen
	if addr == "" {
		a.log.Info("metrics are not served (server.metricsListen is empty)")
		return func() error { return nil }, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (server.metricsListen / --metrics-listen)", addr, err)
	}
	opts := listenerOptions(a, tlsConf)
	opts.Name, opts.Gatherer, opts.Ready = "metrics", reg, ready
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- server.Serve(sctx, ln, opts) }()
	return func() error {
		cancel()
		return <-done
	}, nil
}
