package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock lets tests move time without sleeping.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time           { return c.t }
func (c *fakeClock) advance(d time.Duration)  { c.t = c.t.Add(d) }
func withClock(k *Keyed, c *fakeClock) *Keyed { k.now = c.now; return k }

func TestKeyedAllow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	k := withClock(New(Limit{Rate: 2, Burst: 3}, 10), clk)
	for i := range 3 {
		if ok, _ := k.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, retry := k.Allow("a")
	if ok || retry <= 0 || retry > 500*time.Millisecond {
		t.Fatalf("beyond the burst: ok=%v retry=%s, want refused with retry ≤ 1/rate", ok, retry)
	}
	if ok, _ := k.Allow("b"); !ok {
		t.Fatal("another key shares a's bucket")
	}
	clk.advance(retry)
	if ok, _ := k.Allow("a"); !ok {
		t.Fatal("not allowed after the advertised retry delay")
	}
	if ok, _ := k.Allow("a"); ok {
		t.Fatal("a refused request must not have been counted as a token")
	}
	var nilK *Keyed
	if ok, _ := nilK.Allow("x"); !ok || New(Limit{}, 10) != nil {
		t.Fatal("a zero limit must allow everything")
	}
}

func TestKeyedMemoryIsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	k := withClock(New(Limit{Rate: 1, Burst: 1}, 3), clk)
	for _, key := range []string{"a", "b", "c"} {
		k.Allow(key)
	}
	// Full with busy keys: a new key lands in the shared overflow bucket.
	if ok, _ := k.Allow("d"); !ok {
		t.Fatal("first overflow request refused")
	}
	if ok, _ := k.Allow("e"); ok {
		t.Fatal("overflow keys must share one bucket")
	}
	if k.Len() != 3 {
		t.Fatalf("tracked %d keys, want 3", k.Len())
	}
	// Once buckets refill they are forgotten and new keys get their own.
	clk.advance(2 * time.Second)
	if ok, _ := k.Allow("f"); !ok || k.Len() != 1 {
		t.Fatalf("after refill: ok=%v tracked=%d", ok, k.Len())
	}
}

func TestFailureBudget(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	k := withClock(New(Limit{Rate: 0.5, Burst: 3}, 10), clk)
	for i := range 3 {
		if blocked, _ := k.Blocked("src"); blocked {
			t.Fatalf("blocked after %d failures, budget 3", i)
		}
		k.Spend("src")
	}
	blocked, retry := k.Blocked("src")
	if !blocked || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("after 3 failures: blocked=%v retry=%s", blocked, retry)
	}
	if b, _ := k.Blocked("other"); b {
		t.Fatal("another source is blocked")
	}
	clk.advance(retry)
	if b, _ := k.Blocked("src"); b {
		t.Fatal("still blocked after the advertised retry delay")
	}

	// A table full of failing sources never blocks a source with no
	// failures on record (the overflow bucket is not a shared verdict).
	full := withClock(New(Limit{Rate: 0.001, Burst: 1}, 2), clk)
	for _, src := range []string{"a", "b", "c", "d"} {
		full.Spend(src)
	}
	if b, _ := full.Blocked("a"); !b {
		t.Fatal("a tracked failing source is not blocked")
	}
	if b, _ := full.Blocked("innocent"); b {
		t.Fatal("an innocent source is blocked because the table is full")
	}
}

func TestSources(t *testing.T) {
	trusted := Sources{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		src          Sources
		want         string
	}{
		{"peer", "192.0.2.1:5000", nil, trusted, "192.0.2.1"},
		{"untrusted peer's XFF is ignored", "192.0.2.1:5000", []string{"203.0.113.9"}, trusted, "192.0.2.1"},
		{"no proxies configured", "10.1.1.1:5000", []string{"203.0.113.9"}, Sources{}, "10.1.1.1"},
		{"trusted proxy", "10.1.1.1:5000", []string{"203.0.113.9"}, trusted, "203.0.113.9"},
		{"client-written hops left of the real one", "10.1.1.1:5000", []string{"1.1.1.1, 203.0.113.9"}, trusted, "203.0.113.9"},
		{"chain of trusted proxies", "10.1.1.1:5000", []string{"203.0.113.9, 10.2.2.2", "10.3.3.3"}, trusted, "203.0.113.9"},
		{"garbage hop stops the walk", "10.1.1.1:5000", []string{"203.0.113.9, junk, 10.2.2.2"}, trusted, "10.2.2.2"},
		{"only trusted hops", "10.1.1.1:5000", []string{"10.2.2.2"}, trusted, "10.2.2.2"},
		{"ipv6 peer: its /64", "[2001:db8::1]:443", nil, trusted, "2001:db8::/64"},
		{"ipv6 peer, other address in the same /64", "[2001:db8::ffff:1]:443", nil, trusted, "2001:db8::/64"},
		{"v4-mapped v6 peer", "[::ffff:192.0.2.7]:443", nil, trusted, "192.0.2.7"},
		{"ipv6 trusted proxy", "[fd00::1]:443", []string{"2001:db8:1:2:3::2"}, trusted, "2001:db8:1:2::/64"},
		{"zone in a hop", "10.1.1.1:5000", []string{"fe80::1%eth0"}, trusted, "fe80::/64"},
		{"unparsable peer", "pipe", nil, trusted, "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.src.Of(r); got != tc.want {
				t.Fatalf("Of = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzSources feeds untrusted X-Forwarded-For values: no panic, and the
// answer is an IPv4 address or an IPv6 /64.
func FuzzSources(f *testing.F) {
	for _, s := range []string{"", "203.0.113.9", "1.1.1.1, 10.0.0.1", "::1,,", "junk", "[::1]:80", "10.0.0.1,2001:db8::1%eth0"} {
		f.Add(s)
	}
	src := Sources{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "10.9.9.9:1234"
		r.Header.Set("X-Forwarded-For", xff)
		got := src.Of(r)
		if a, err := netip.ParseAddr(got); err == nil && a.Is4() {
			return
		}
		if p, err := netip.ParsePrefix(got); err != nil || p.Bits() != 64 || !p.Addr().Is6() {
			t.Fatalf("Of = %q, neither an IPv4 address nor an IPv6 /64", got)
		}
	})
}

func TestGuard(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{
		Endpoint: "api", LimitName: "api_source", Metrics: m,
		PerSource: withClock(New(Limit{Rate: 1, Burst: 5}, 100), clk),
		Failures:  withClock(New(Limit{Rate: 0.1, Burst: 2}, 100), clk),
	}
	reached := 0
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	do := func(addr, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/runs", nil)
		r.RemoteAddr = addr + ":4000"
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	steps := []struct {
		addr, token string
		want        int
	}{
		{"192.0.2.1", "bad", 401},
		{"192.0.2.1", "bad", 401},
		{"192.0.2.1", "good", 429}, // failure budget spent: even a good token waits
		{"192.0.2.2", "good", 200}, // other sources are not affected
		{"192.0.2.2", "good", 200},
		{"192.0.2.2", "good", 200},
		{"192.0.2.2", "good", 200},
		{"192.0.2.2", "good", 200}, // the fifth: its burst is spent
		{"192.0.2.2", "good", 429},
	}
	for i, s := range steps {
		w := do(s.addr, s.token)
		if w.Code != s.want {
			t.Fatalf("step %d (%s, %s): %d, want %d", i, s.addr, s.token, w.Code, s.want)
		}
		if w.Code == 429 {
			secs, err := strconv.Atoi(w.Header().Get("Retry-After"))
			if err != nil || secs < 1 {
				t.Fatalf("step %d: Retry-After %q", i, w.Header().Get("Retry-After"))
			}
		}
	}
	if reached != 2+5 {
		t.Fatalf("handler reached %d times, want 7 (refusals must not reach it)", reached)
	}
	if got := testutil.ToFloat64(m.failures.WithLabelValues("api")); got != 2 {
		t.Fatalf("failed authentications counted: %v", got)
	}
	if got := testutil.ToFloat64(m.limited.WithLabelValues("failed_auth")); got != 1 {
		t.Fatalf("failed_auth refusals: %v", got)
	}
	if got := testutil.ToFloat64(m.limited.WithLabelValues("api_source")); got != 1 {
		t.Fatalf("api_source refusals: %v", got)
	}
	// The failure budget refills.
	clk.advance(11 * time.Second)
	if w := do("192.0.2.1", "good"); w.Code != 200 {
		t.Fatalf("after the budget refilled: %d", w.Code)
	}
}

func TestPerKey(t *testing.T) {
	k := New(Limit{Rate: 0.001, Burst: 1}, 10)
	h := PerKey(k, "api_token", "too many requests for this token", nil, func(r *http.Request) string {
		return r.Header.Get("X-Who")
	})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	for i, tc := range []struct {
		who  string
		want int
	}{{"alice", 204}, {"alice", 429}, {"bob", 204}, {"", 204}, {"", 204}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Who", tc.who)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Fatalf("step %d (%q): %d, want %d", i, tc.who, w.Code, tc.want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}
