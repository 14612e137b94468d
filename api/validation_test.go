package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/pipelines"
)

// TestHostileIDsAndNames sends run ids, stage (log) names and filters
// that try path traversal, NATS subject wildcards, encoded separators,
// control characters and oversized values, as raw request lines (so no
// client cleans them first). Each is refused with 400 or 404 (or, for a
// path with dot segments, redirected by the mux to the cleaned path), and
// no answer carries anything but the API's own JSON or the run's log.
func TestHostileIDsAndNames(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	res, err := r.queue.Enqueue(ctx, pipelines.Request{DeliveryID: "hostile-1", Repo: "acme/app", Ref: "refs/heads/main", Commit: strings.Repeat("a", 40)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.RunID
	base := "/api/v1/runs/"
	for _, tc := range []struct {
		target string
		want   []int
	}{
		{base + "../../../../etc/passwd", []int{307, 404}},
		{base + "..%2f..%2f..%2fetc%2fpasswd", []int{400, 404}},
		{base + "%2e%2e/%2e%2e/etc/passwd", []int{307, 400, 404}},
		{base + "*", []int{404}},
		{base + ">", []int{404}},
		{base + "gantry_runs.%3E", []int{404}},
		{base + id + "%00", []int{400, 404}},
		{base + id + "%0d%0aX-Injected:%201", []int{400, 404}},
		{base + strings.Repeat("9", 5000), []int{404, 431}},
		{base + strings.ToLower(id) + "x", []int{404}},
		{base + id + "/logs?stage=../../../../etc/passwd", []int{404}},
		{base + id + "/logs?stage=%00", []int{404}},
		{base + id + "/logs?stage=build%2F..%2F..%2Fsecret", []int{404}},
		{base + id + "/logs?stage=*", []int{404}},
		{base + "../" + id + "/logs", []int{307, 404}},
		{"/api/v1/runs?before=../../etc", []int{400}},
		{"/api/v1/runs?before=*", []int{400}},
		{"/api/v1/runs?state=queued%00", []int{400}},
		{"/api/v1/runs?limit=-1", []int{400}},
		{"/api/v1/runs?limit=99999999999999999999", []int{400}},
		{"/api/v1/runs?repo=" + strings.Repeat("a", 300), []int{400}},
	} {
		t.Run(tc.target[:min(len(tc.target), 60)], func(t *testing.T) {
			code, loc, body := rawGet(t, r.srv.Listener.Addr().String(), tc.target, "secret-token")
			ok := false
			for _, w := range tc.want {
				ok = ok || code == w
			}
			if !ok {
				t.Fatalf("GET %s: %d (want one of %v): %s", tc.target, code, tc.want, body)
			}
			// Go's mux answers a path with dot segments by redirecting to the
			// cleaned path (which, outside /api/v1, no route serves).
			if code == 307 && (strings.Contains(loc, "..") || !strings.HasPrefix(loc, "/")) {
				t.Fatalf("redirected to an uncleaned path: %q", loc)
			}
			for _, leak := range []string{"root:", "X-Injected", "panic", "goroutine"} {
				if strings.Contains(body, leak) {
					t.Fatalf("answer contains %q: %s", leak, body)
				}
			}
		})
	}
}

// rawGet sends one request line as written and returns the status,
// Location and body.
func rawGet(t *testing.T, addr, target, token string) (int, string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", target, token)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}
