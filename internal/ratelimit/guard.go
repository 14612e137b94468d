package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources finds a request's client address: the TCP peer, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that
// is not itself a trusted proxy (everything left of it is client-written
// and could be forged). IPv6 clients are keyed by their /64, the block one
// host usually holds, so that rotating addresses within it does not buy a
// fresh bucket.
type Sources struct {
	Trusted []netip.Prefix
}

// Of returns the client key of r: an IPv4 address or an IPv6 /64.
func (s Sources) Of(r *http.Request) string {
	a := s.addr(r)
	if !a.IsValid() {
		return r.RemoteAddr
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (s Sources) addr(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() || !s.trusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	var all []string
	for _, h := range hops {
		all = append(all, strings.Split(h, ",")...)
	}
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
		if err != nil {
			break // a malformed hop: stop at the last address we trust
		}
		a = a.Unmap().WithZone("")
		if !s.trusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

func (s Sources) trusted(a netip.Addr) bool {
	for _, p := range s.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// Metrics count refusals and failed authentications.
type Metrics struct {
	limited  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// NewMetrics registers gantry_rate_limited_total and
// gantry_auth_failures_total on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_rate_limited_total",
			Help: "Requests refused with 429, by limit (webhook_source, webhook_repo, api_token, failed_auth).",
		}, []string{"limit"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_auth_failures_total",
			Help: "Failed authentications (401: bad webhook signature, unknown or expired token), by endpoint.",
		}, []string{"endpoint"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.limited, m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Limited counts one refusal by limit.
func (m *Metrics) Limited(limit string) {
	if m != nil {
		m.limited.WithLabelValues(limit).Inc()
	}
}

// Guard protects one endpoint: a source address that has spent its
// failed-authentication budget is refused before any work (no HMAC, no
// token lookup), then each source is held to its request rate; every 401
// the endpoint answers spends one unit of the source's failure budget.
type Guard struct {
	// Endpoint labels metrics ("webhook", "api").
	Endpoint string
	// LimitName labels the per-source refusals ("webhook_source").
	LimitName string
	Sources   Sources
	// PerSource limits requests per client address (nil: none).
	PerSource *Keyed
	// Failures is the failed-authentication budget per address (nil: none).
	Failures *Keyed
	Metrics  *Metrics
}

// Wrap returns next behind the guard.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src := g.Sources.Of(r)
		if blocked, retry := g.Failures.Blocked(src); blocked {
			g.Metrics.Limited("failed_auth")
			Refuse(w, retry, "too many failed authentications from this address")
			return
		}
		if ok, retry := g.PerSource.Allow(src); !ok {
			g.Metrics.Limited(g.LimitName)
			Refuse(w, retry, "too many requests from this address")
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == http.StatusUnauthorized {
			g.Failures.Spend(src)
			if g.Metrics != nil {
				g.Metrics.failures.WithLabelValues(g.Endpoint).Inc()
			}
		}
	})
}

// statusWriter records the status code; Unwrap keeps http.ResponseController
// (flushing streamed logs, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// PerKey returns middleware that limits requests by key(r) (e.g. the
// authenticated principal); an empty key is not limited.
func PerKey(k *Keyed, limitName, what string, m *Metrics, key func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if k == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if kv := key(r); kv != "" {
				if ok, retry := k.Allow(kv); !ok {
					m.Limited(limitName)
					Refuse(w, retry, what)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
