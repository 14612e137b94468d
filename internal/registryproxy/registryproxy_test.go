package registryproxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWaves(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name  string
		spans []span
		want  int
	}{
		{"none", nil, 0},
		{"one", []span{{at(0), at(10)}}, 1},
		{"two together", []span{{at(0), at(10)}, {at(1), at(12)}}, 1},
		{"one after the other", []span{{at(0), at(10)}, {at(10), at(20)}}, 2},
		// The second of a wave starts after the first's reply: a new wave.
		{"a sibling sent late", []span{{at(0), at(10)}, {at(11), at(21)}}, 2},
		{"two waves of two, unsorted", []span{{at(11), at(21)}, {at(0), at(10)}, {at(12), at(22)}, {at(1), at(11)}}, 2},
		// A wave ends with its first reply: what starts after it waited.
		{"a long request beside two short ones", []span{{at(0), at(50)}, {at(1), at(10)}, {at(20), at(30)}}, 2},
	}
	for _, tc := range cases {
		if got := waves(tc.spans); got != tc.want {
			t.Errorf("%s: %d waves, want %d", tc.name, got, tc.want)
		}
	}
}

// TestTake: through the proxy held 20 ms a request, two requests sent
// together are one round trip and two in sequence are two; a request still
// in flight when Take is called is counted in that measurement, not the
// next.
func TestTake(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			time.Sleep(100 * time.Millisecond)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer reg.Close()
	p, err := Start(strings.TrimPrefix(reg.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetDelay(20 * time.Millisecond)
	get := func(path string) {
		resp, err := http.Get("http://" + p.Host + path)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}
	together := func(paths ...string) {
		var wg sync.WaitGroup
		for _, path := range paths {
			wg.Go(func() { get(path) })
		}
		wg.Wait()
	}

	together("/v2/a/manifests/1", "/v2/a/manifests/2")
	if reqs, trips := p.Take(0); len(reqs) != 2 || trips != 1 {
		t.Fatalf("together: %d requests in %d round trips, want 2 in 1: %v", len(reqs), trips, reqs)
	}
	get("/v2/a/manifests/1")
	get("/v2/a/blobs/1")
	if reqs, trips := p.Take(0); len(reqs) != 2 || trips != 2 || reqs[1] != "GET /v2/a/blobs/1" {
		t.Fatalf("in sequence: %v in %d round trips, want 2 in 2", reqs, trips)
	}
	done := make(chan struct{})
	go func() { defer close(done); get("/v2/a/slow") }()
	// Wait until it is at the proxy, not yet answered.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		n := p.inflight
		p.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the proxy")
		}
	}
	if reqs, trips := p.Take(0); len(reqs) != 1 || trips != 1 {
		t.Fatalf("in flight at Take: %v in %d round trips, want it counted", reqs, trips)
	}
	<-done
	if reqs, _ := p.Take(0); len(reqs) != 0 {
		t.Fatalf("the next measurement got %v", reqs)
	}
}
