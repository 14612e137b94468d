// Package registryproxy is a reverse proxy in front of a registry that
// counts what its clients ask of it, for tests and benchmarks (never linked
// into Gantry's binaries): each request and its round trip, with every
// request optionally held for a delay first, as by a registry across a
// network. On loopback a reply can come back before a request sent beside
// it has even left, so round trips are counted reliably only with a delay
// well above the machine's scheduling jitter (10–25 ms).
package registryproxy

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards to one registry over plain HTTP on a loopback port.
type Proxy struct {
	// Host is the proxy's host:port, to put in references instead of the
	// registry's (and in registry.insecure).
	Host string

	srv   *http.Server
	delay atomic.Int64 // nanoseconds

	mu sync.Mutex
	// gen counts Takes: a request is counted in the measurement it
	// started in, even when it ends after the measured call returned (a
	// read cancelled with its caller), and never in the next.
	gen      int
	inflight int // requests of this generation not yet ended
	reqs     []string
	spans    []span
}

type span struct{ start, end time.Time }

// Start listens on a free loopback port and forwards to registry
// (host:port, plain HTTP).
func Start(registry string) (*Proxy, error) {
	target, err := url.Parse("http://" + registry)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Host: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	// A read cancelled by its caller is expected (see gen), not news.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		p.mu.Lock()
		gen := p.gen
		p.inflight++
		p.mu.Unlock()
		time.Sleep(time.Duration(p.delay.Load()))
		rp.ServeHTTP(w, r)
		p.mu.Lock()
		defer p.mu.Unlock()
		if gen != p.gen {
			return
		}
		p.inflight--
		p.reqs = append(p.reqs, r.Method+" "+r.URL.Path)
		p.spans = append(p.spans, span{start, time.Now()})
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetDelay holds every request from now on for d before forwarding it.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// Take returns the requests ("GET /v2/…") since the last Take and how many
// round trips they took, and starts the next measurement. It first waits,
// up to a second, until at least atLeast requests have ended and none is
// in flight (a caller's background read may end after the call it
// measured, or start a moment later).
func (p *Proxy) Take(atLeast int) (reqs []string, trips int) {
	deadline := time.Now().Add(time.Second)
	p.mu.Lock()
	for (p.inflight > 0 || len(p.reqs) < atLeast) && time.Now().Before(deadline) {
		p.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		p.mu.Lock()
	}
	reqs, spans := p.reqs, p.spans
	p.reqs, p.spans = nil, nil
	p.gen++
	p.inflight = 0
	p.mu.Unlock()
	return reqs, waves(spans)
}

// waves counts sequential waves of requests: sorted by start, a request
// that starts before the first of the current wave has ended was sent
// without waiting for it (same wave); one that starts later begins a new
// wave.
func waves(spans []span) int {
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	trips := 0
	var waveEnd time.Time
	for _, s := range spans {
		switch {
		case trips == 0 || !s.start.Before(waveEnd):
			trips++
			waveEnd = s.end
		case s.end.Before(waveEnd):
			waveEnd = s.end
		}
	}
	return trips
}
