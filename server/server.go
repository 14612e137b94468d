// Package server is the HTTP front of `gantry serve`: the listener with
// the GitHub webhook receiver, the runs API, the dashboard, health and
// readiness, and (on a listener of its own, never the public one)
// Prometheus metrics; bounded timeouts, and a graceful shutdown that
// drains in-flight requests.
package server

import (
	"context"
	"crypto/tls"
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
	// UI serves the dashboard under /ui/ (it authenticates by itself).
	UI http.Handler
	// Ready reports whether the server can do its job (the queue answers).
	Ready func(ctx context.Context) error
	// Gatherer is exposed on /metrics. gantry serve sets it only on its
	// metrics listener (server.metricsListen): the listener that receives
	// webhooks faces the internet.
	Gatherer prometheus.Gatherer
	// Name tells this listener's log lines apart ("serving metrics");
	// empty for the main listener ("serving").
	Name string
	// Middleware wraps the whole mux, outermost first: the seam for TLS
	// client checks, rate limits and OIDC.
	Middleware []func(http.Handler) http.Handler

	// TLS serves HTTPS with this configuration (certificate reloaded by
	// internal/tlsreload). Without it Serve refuses to start unless
	// InsecureHTTP is set.
	TLS *tls.Config
	// InsecureHTTP serves plain HTTP: only behind an ingress or proxy that
	// terminates TLS. Serve logs a warning when it does.
	InsecureHTTP bool

	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; larger requests
	// get 431 Request Header Fields Too Large.
	MaxHeaderBytes int
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
	if opts.UI != nil {
		mux.Handle("/ui/", opts.UI)
		mux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusSeeOther))
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

// DefaultMaxHeaderBytes bounds request headers when Options leave it 0:
// GitHub's deliveries and API calls carry a few KiB.
const DefaultMaxHeaderBytes = 64 << 10

// ErrPlainHTTP is returned by Serve when neither TLS nor InsecureHTTP is set.
var ErrPlainHTTP = errors.New("server: no TLS certificate configured: set server.tls.certFile and server.tls.keyFile " +
	"(--tls-cert/--tls-key), or server.insecureHTTP: true (--insecure-http) only behind a proxy that terminates TLS")

// NewHTTPServer returns the http.Server Serve uses: every timeout and the
// header bound set, so a slow or oversized client cannot hold a goroutine.
// The admission webhook server is built the same way.
func NewHTTPServer(h http.Handler, opts Options, log *slog.Logger) *http.Server {
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           h,
		TLSConfig:         opts.TLS,
		ReadHeaderTimeout: orDefault(opts.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(opts.ReadTimeout, 30*time.Second),
		WriteTimeout:      orDefault(opts.WriteTimeout, 30*time.Second),
		IdleTimeout:       orDefault(opts.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Serve serves on ln until ctx is cancelled, then stops accepting, waits
// (up to ShutdownTimeout) for in-flight requests, and returns. It serves
// TLS when opts.TLS is set, plain HTTP only with opts.InsecureHTTP, and
// refuses to start otherwise (secure by default).
func Serve(ctx context.Context, ln net.Listener, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.TLS == nil && !opts.InsecureHTTP {
		return ErrPlainHTTP
	}
	srv := NewHTTPServer(Handler(opts), opts, log)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	msg := "serving"
	if opts.Name != "" {
		msg += " " + opts.Name
	}
	if opts.TLS != nil {
		// The certificate comes from TLS (GetCertificate), not from files.
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
		log.Info(msg, "addr", ln.Addr().String(), "tls", true)
	} else {
		go func() { errc <- srv.Serve(ln) }()
		if opts.Name == "" {
			log.Warn("serving PLAIN HTTP without TLS (server.insecureHTTP): webhook signatures and API tokens cross the network "+
				"in clear unless a proxy in front terminates TLS", "addr", ln.Addr().String(), "tls", false)
		}
		log.Info(msg, "addr", ln.Addr().String(), "tls", false)
	}
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
