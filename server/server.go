// Package server is the HTTP front of `gantry serve`: one listener with
// the GitHub webhook receiver, the runs API, health, readiness and
// Prometheus metrics, bounded timeouts, and a graceful shutdown that
// drains in-flight requests.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure the server.
type Options struct {
	// Webhook serves POST /webhooks/github.
	Webhook http.Handler
	// API serves /api/v1/ (it authenticates by itself).
	API http.Handler
	// Ready reports whether the server can do its job (the queue answers).
	Ready func(ctx context.Context) error
	// Gatherer is exposed on /metrics.
	Gatherer prometheus.Gatherer
	// Middleware wraps the whole mux, outermost first: the seam for TLS
	// client checks, rate limits and OIDC.
	Middleware []func(http.Handler) http.Handler

	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds draining in-flight requests.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Handler returns the routed handler (without a listener).
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	if opts.Webhook != nil {
		mux.Handle("/webhooks/github", opts.Webhook)
	}
	if opts.API != nil {
		mux.Handle("/api/", opts.API)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if opts.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			if err := opts.Ready(ctx); err != nil {
				plain(w, http.StatusServiceUnavailable, "not ready: queue unavailable")
				return
			}
		}
		plain(w, http.StatusOK, "ready")
	})
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{Timeout: 10 * time.Second}))
	}
	var h http.Handler = mux
	for i := len(opts.Middleware) - 1; i >= 0; i-- {
		h = opts.Middleware[i](h)
	}
	return h
}

// Serve serves on ln until ctx is cancelled, then stops accepting, waits
// (up to ShutdownTimeout) for in-flight requests, and returns.
func Serve(ctx context.Context, ln net.Listener, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           Handler(opts),
		ReadHeaderTimeout: orDefault(opts.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(opts.ReadTimeout, 30*time.Second),
		WriteTimeout:      orDefault(opts.WriteTimeout, 30*time.Second),
		IdleTimeout:       orDefault(opts.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), orDefault(opts.ShutdownTimeout, 30*time.Second))
	defer cancel()
	log.Info("shutting down: draining in-flight requests")
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func plain(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s + "\n"))
}
