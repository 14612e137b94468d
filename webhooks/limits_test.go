package webhooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/ratelimit"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/webhooks"
)

// newLimitedReceiver is newReceiver with options changed by set and the
// handler wrapped by wrap (nil: none), over a real queue with no workers.
func newLimitedReceiver(t *testing.T, set func(*webhooks.Options, *pipelines.Queue), wrap func(http.Handler) http.Handler) *receiver {
	t.Helper()
	testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{DataDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	secrets, _ := webhooks.NewSecrets([]byte(vectorSecret))
	opts := webhooks.Options{
		Secrets: secrets, Queue: q,
		Repos: []webhooks.Repo{{Name: "acme/app", Branches: []string{"*"}}, {Name: "acme/other", Branches: []string{"*"}}},
	}
	set(&opts, q)
	h, err := webhooks.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var hh http.Handler = h
	if wrap != nil {
		hh = wrap(h)
	}
	srv := httptest.NewServer(hh)
	t.Cleanup(srv.Close)
	return &receiver{url: srv.URL, queue: q, handler: hh}
}

func pushTo(repo string, n int) delivery {
	return delivery{event: "push", id: newDeliveryID(), body: pushPayload(repo, fmt.Sprintf("refs/heads/b%d", n), sha(n+1), "change", false)}
}

func TestRepoRateLimit(t *testing.T) {
	lim := ratelimit.New(ratelimit.Limit{Rate: 0.01, Burst: 2}, 100)
	r := newLimitedReceiver(t, func(o *webhooks.Options, _ *pipelines.Queue) {
		o.RepoLimit = lim.Allow
	}, nil)
	for i, want := range []int{202, 202, 429} {
		d := pushTo("Acme/App", i) // repo names are limited case-insensitively
		req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(d.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", d.id)
		req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(vectorSecret), d.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a webhooks.Answer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("push %d: answer is not JSON: %v", i, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("push %d: %d %+v, want %d", i, resp.StatusCode, a, want)
		}
		if want == 429 {
			secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || secs < 1 {
				t.Fatalf("429 without a Retry-After in seconds: %q", resp.Header.Get("Retry-After"))
			}
			if a.RunID != "" {
				t.Fatal("a limited push got a run")
			}
		}
	}
	// Another repository has its own bucket.
	if code, a := r.send(t, pushTo("acme/other", 9)); code != 202 {
		t.Fatalf("other repo: %d %+v", code, a)
	}
}

func TestQueuedRunsBoundPerRepo(t *testing.T) {
	var backlog *pipelines.Backlog
	r := newLimitedReceiver(t, func(o *webhooks.Options, q *pipelines.Queue) {
		b, err := q.WatchBacklog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backlog = b
		o.Backlog, o.MaxQueuedPerRepo = b.Queued, 2
	}, nil)
	var ids []string
	for i := range 2 {
		code, a := r.send(t, pushTo("acme/app", i))
		if code != 202 {
			t.Fatalf("push %d: %d %+v", i, code, a)
		}
		ids = append(ids, a.RunID)
	}
	// The watch is asynchronous: wait until it has seen both runs.
	waitQueued(t, backlog, "acme/app", 2)
	code, a := r.send(t, pushTo("acme/app", 3))
	if code != http.StatusServiceUnavailable || a.RunID != "" {
		t.Fatalf("push beyond the bound: %d %+v, want 503 without a run", code, a)
	}
	page, err := r.queue.List(context.Background(), pipelines.Filter{Repo: "acme/app"})
	if err != nil || len(page.Runs) != 2 {
		t.Fatalf("runs after the refused push: %d %v (the refused push must not be stored)", len(page.Runs), err)
	}
	if code, a := r.send(t, pushTo("acme/other", 4)); code != 202 {
		t.Fatalf("another repository is not bounded by acme/app's backlog: %d %+v", code, a)
	}
	// When a queued run leaves the queue, pushes are accepted again.
	if _, err := r.queue.Cancel(context.Background(), ids[0], "test"); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, backlog, "acme/app", 1)
	if code, a := r.send(t, pushTo("acme/app", 5)); code != 202 {
		t.Fatalf("push after a run left the queue: %d %+v", code, a)
	}
}

func waitQueued(t *testing.T, b *pipelines.Backlog, repo string, want int) {
	t.Helper()
	wait.Until(t, 10*time.Second, fmt.Sprintf("backlog of %s to be %d", repo, want), func() error {
		n, err := b.Queued(context.Background(), repo)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			return fmt.Errorf("backlog %d", n)
		}
		return nil
	})
}

func TestUnknownBacklogFailsClosed(t *testing.T) {
	r := newLimitedReceiver(t, func(o *webhooks.Options, _ *pipelines.Queue) {
		o.MaxQueuedPerRepo = 5
		o.Backlog = func(context.Context, string) (int, error) { return 0, errors.New("watch ended") }
	}, nil)
	if code, a := r.send(t, pushTo("acme/app", 1)); code != http.StatusServiceUnavailable || a.RunID != "" {
		t.Fatalf("push with an unknown backlog: %d %+v, want 503", code, a)
	}
}

// TestFloodOfBadSignaturesDoesNotStopValidDeliveries sends badly signed
// deliveries from other loopback addresses while GitHub's (valid) ones
// arrive: the flood is refused (401, then 429 once its failure budget is
// spent) and every valid delivery is still answered 202 and queued.
// Latency under a flood is measured by `go run ./hack/bench/webhooks -flood 16`.
func TestFloodOfBadSignaturesDoesNotStopValidDeliveries(t *testing.T) {
	guard := &ratelimit.Guard{Endpoint: "webhook", LimitName: "webhook_source",
		PerSource: ratelimit.New(ratelimit.Limit{Rate: 1000, Burst: 1000}, 1000),
		Failures:  ratelimit.New(ratelimit.Limit{Rate: 1, Burst: 20}, 1000)}
	r := newLimitedReceiver(t, func(*webhooks.Options, *pipelines.Queue) {}, guard.Wrap)

	stop := make(chan struct{})
	var flood sync.WaitGroup
	var unauthorized, limited, other atomic.Int64
	for i := range 8 {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%4))}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: src}).DialContext}}
		flood.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				d := pushTo("acme/app", 1000+j)
				req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(d.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", d.id)
				req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte("forged"), d.body))
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 401:
					unauthorized.Add(1)
				case 429:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// Valid deliveries start once the flood has spent its budgets, and go
	// on while it continues.
	for deadline := time.Now().Add(10 * time.Second); limited.Load() < 100; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(stop)
			flood.Wait()
			t.Fatalf("the flood was never throttled: %d answered 401, %d refused 429", unauthorized.Load(), limited.Load())
		}
	}
	var ids []string
	for i := range 40 {
		code, a := r.send(t, pushTo("acme/app", i))
		if code != 202 || a.Status != "queued" {
			close(stop)
			flood.Wait()
			t.Fatalf("valid delivery %d during the flood: %d %+v", i, code, a)
		}
		ids = append(ids, a.RunID)
	}
	close(stop)
	flood.Wait()
	for _, id := range ids {
		run, err := r.queue.Get(context.Background(), id)
		if err != nil || run.State != pipelines.StateQueued {
			t.Fatalf("run %s of a 202: %v %v", id, run, err)
		}
	}
	if other.Load() != 0 {
		t.Fatalf("%d forged deliveries got an answer other than 401/429", other.Load())
	}
	// 4 sources x burst 20 (+ the trickle the refill allows) are checked;
	// the rest never reach the HMAC.
	if unauthorized.Load() == 0 || limited.Load() == 0 || unauthorized.Load() > 4*20+4*10 {
		t.Fatalf("flood: %d answered 401, %d refused 429", unauthorized.Load(), limited.Load())
	}
	t.Logf("flood: %d answered 401, %d refused 429; 40 valid deliveries queued", unauthorized.Load(), limited.Load())
}
