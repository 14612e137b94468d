package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/server"
)

func TestRoutesAndReadiness(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	var ready error
	var order []string
	mw := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := server.Handler(server.Options{
		Webhook:    http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(202) }),
		API:        http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(401) }),
		Ready:      func(context.Context) error { return ready },
		Gatherer:   reg,
		Middleware: []func(http.Handler) http.Handler{mw("outer"), mw("inner")},
	})
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"POST", "/webhooks/github", 202, ""},
		{"GET", "/api/v1/runs", 401, ""},
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/readyz", 200, "ready"},
		{"GET", "/metrics", 200, "test_total 1"},
		{"POST", "/metrics", 405, ""},
		{"GET", "/nope", 404, ""},
	} {
		if code, body := get(tc.method, tc.path); code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, code, body)
		}
	}
	if strings.Join(order[:2], ",") != "outer,inner" {
		t.Fatalf("middleware order %v", order)
	}
	ready = errors.New("nats: no responders")
	if code, body := get("GET", "/readyz"); code != 503 || strings.Contains(body, "responders") {
		t.Fatalf("not ready: %d %q (must not leak the error)", code, body)
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if r.Context().Err() != nil {
			t.Error("in-flight request's context was cancelled by the shutdown")
		}
		w.WriteHeader(202)
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- server.Serve(ctx, ln, server.Options{Webhook: slow, ShutdownTimeout: 10 * time.Second, InsecureHTTP: true})
	}()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/webhooks/github", "application/json", strings.NewReader("{}"))
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-entered
	cancel() // SIGTERM
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// New connections are refused while draining.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts during shutdown")
	}
	close(release)
	if code := <-got; code != 202 {
		t.Fatalf("in-flight request: %d", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// Without a Gatherer there is no /metrics: gantry serve gives its public
// listener none and serves metrics on a listener named "metrics", whose
// log line tells it apart from the main one.
func TestMetricsOnlyWhereAGathererIs(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "x"}))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	start := func(opts server.Options) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		opts.InsecureHTTP, opts.Logger = true, logger
		go func() { done <- server.Serve(ctx, ln, opts) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			})
		}
		t.Cleanup(stop)
		return "http://" + ln.Addr().String(), stop
	}
	public, stopPublic := start(server.Options{Webhook: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(202) })})
	metrics, stopMetrics := start(server.Options{Name: "metrics", Gatherer: reg})
	for _, tc := range []struct {
		url  string
		code int
	}{
		{public + "/metrics", 404}, {public + "/healthz", 200},
		{metrics + "/metrics", 200}, {metrics + "/healthz", 200}, {metrics + "/webhooks/github", 404},
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.url, resp.StatusCode, tc.code)
		}
	}
	stopPublic()
	stopMetrics()
	out := logs.String()
	if !strings.Contains(out, `msg="serving metrics" addr=`+strings.TrimPrefix(metrics, "http://")) ||
		!strings.Contains(out, "msg=serving addr="+strings.TrimPrefix(public, "http://")) ||
		strings.Count(out, "PLAIN HTTP") != 1 {
		t.Fatalf("log lines do not tell the listeners apart (or warn twice):\n%s", out)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
