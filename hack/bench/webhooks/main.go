// Command webhooks measures the GitHub webhook receiver end to end: signed
// push deliveries over loopback HTTP to `gantry serve`'s handler, each
// answered 202 only once its run is durably queued (embedded NATS
// JetStream on a temporary data dir, or -nats-url). It prints deliveries/s
// and the p50/p90/p99/max latency to the 202, first for a baseline: the same
// signed deliveries verified and published to JetStream by a minimal
// receiver (baseline.go), then for Gantry's, with the ratios, as a table and
// as JSON lines.
//
//	go run ./hack/bench/webhooks [-n 20000] [-c 16] [-branches 100] [-sync] [-flood 16 -flood-sources 1]
//
// With -flood N, N more senders post deliveries with bad signatures from
// other loopback addresses (127.1.0.x) during the run, through the same
// failed-authentication guard `gantry serve` puts in front of the receiver
// (server.rateLimits.failedAuthPerSource at its default); the figures for
// the valid deliveries show what the flood costs them.
//
// Every delivery has a new delivery id (replay guard write), a push guard
// write (repo, ref, before, after), a new run record, a queue message and
// an update of its branch's recent runs (superseding itself is decided by
// the workers at checkout, by git ancestry).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/ratelimit"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/server"
	"github.com/gantry-dev/gantry/webhooks"
)

func main() {
	n := flag.Int("n", 20000, "deliveries")
	c := flag.Int("c", 16, "concurrent senders")
	branches := flag.Int("branches", 100, "distinct branches pushed to (supersede cancels the previous run of a branch)")
	natsURL := flag.String("nats-url", "", "external NATS JetStream (default: embedded on a temporary dir)")
	syncAlways := flag.Bool("sync", false, "embedded server fsyncs every write (queue.syncAlways)")
	supersede := flag.Bool("supersede", true, "queue.cancelSuperseded")
	flood := flag.Int("flood", 0, "concurrent senders of badly signed deliveries during the run")
	floodSources := flag.Int("flood-sources", 1, "distinct loopback addresses the flood comes from")
	guarded := flag.Bool("guard", true, "put the failed-authentication guard in front of the receiver (as gantry serve does)")
	flag.Parse()
	if err := run(*n, *c, *branches, *natsURL, *syncAlways, *supersede, *flood, *floodSources, *guarded); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n, conc, branches int, natsURL string, syncAlways, supersede bool, flood, floodSources int, guarded bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gantry-bench-webhooks-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	q, err := pipelines.Open(ctx, pipelines.Options{
		Connection:       pipelines.Connection{URL: natsURL, DataDir: dir, SyncAlways: syncAlways},
		CancelSuperseded: supersede,
	})
	if err != nil {
		return err
	}
	defer q.Close()
	secret := []byte("bench secret")
	secrets, _ := webhooks.NewSecrets(secret)
	hook, err := webhooks.New(webhooks.Options{Secrets: secrets, Queue: q,
		Repos: []webhooks.Repo{{Name: "acme/app", Branches: []string{"*"}}}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	fa := config.DefaultRateLimits().FailedAuthPerSource
	guard := &ratelimit.Guard{Endpoint: "webhook", LimitName: "webhook_source",
		Failures: ratelimit.New(ratelimit.Limit{Rate: fa.Rate, Burst: fa.Burst}, 100000)}
	var h http.Handler = hook
	if guarded {
		h = guard.Wrap(hook)
	}
	go func() { served <- server.Serve(sctx, ln, server.Options{Webhook: h, InsecureHTTP: true}) }()
	url := "http://" + ln.Addr().String() + "/webhooks/github"

	// Payloads are built and signed up front: the sender's own work is not
	// what is measured.
	ds := make([]delivery, n+conc)
	for i := range ds {
		ref := fmt.Sprintf("refs/heads/b%d", i%branches)
		if i >= n {
			ref = fmt.Sprintf("refs/heads/warm-%d", i) // warm-up pushes: their own (the push guard knows a push by its content)
		}
		body, _ := json.Marshal(map[string]any{
			"ref": ref, "after": fmt.Sprintf("%040x", i+1),
			"before":      fmt.Sprintf("%040x", i),
			"repository":  map[string]any{"full_name": "acme/app", "clone_url": "https://github.com/acme/app.git"},
			"pusher":      map[string]any{"name": "octocat", "email": "octocat@example.com"},
			"sender":      map[string]any{"login": "octocat"},
			"head_commit": map[string]any{"id": fmt.Sprintf("%040x", i+1), "message": "bench commit\n\nwith a body"},
		})
		ds[i] = delivery{id: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), sig: webhooks.Sign(secret, body), body: body}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}, Timeout: 15 * time.Second}
	send := func(url string, d delivery) (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", d.id)
		req.Header.Set("X-Hub-Signature-256", d.sig)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		var a webhooks.Answer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			return 0, fmt.Errorf("delivery %s to %s: %d %+v %v", d.id, url, resp.StatusCode, a, err)
		}
		return took, nil
	}

	// The baseline first: the same signed deliveries, verified and
	// published to JetStream by a minimal receiver (baseline.go).
	base, err := startBaseline(ctx, secret, filepath.Join(dir, "baseline"), syncAlways)
	if err != nil {
		return err
	}
	for i := 0; i < conc && i < n; i++ {
		if _, err := send(base.url, ds[n+i]); err != nil {
			base.close()
			return fmt.Errorf("baseline warm-up: %w", err)
		}
	}
	baseLat, baseElapsed, err := measure(ds[:n], conc, func(d delivery) (time.Duration, error) { return send(base.url, d) })
	base.close()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	// Warm up connections and JetStream (not counted).
	for i := 0; i < conc && i < n; i++ {
		if _, err := send(url, ds[n+i]); err != nil {
			return err
		}
	}
	ds = ds[:n]
	var floodSent, floodLimited, floodUnauthorized atomic.Int64
	floodDone := make(chan struct{})
	var floodWG sync.WaitGroup
	for i := range flood {
		src := &net.TCPAddr{IP: net.IPv4(127, 1, 0, byte(1+i%max(1, floodSources)))}
		fc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: src}).DialContext, MaxIdleConnsPerHost: 1}}
		floodWG.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-floodDone:
					return
				default:
				}
				d := ds[j%len(ds)]
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("flood-%d-%d", i, j))
				req.Header.Set("X-Hub-Signature-256", "sha256="+fmt.Sprintf("%064x", j))
				resp, err := fc.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				floodSent.Add(1)
				switch resp.StatusCode {
				case http.StatusTooManyRequests:
					floodLimited.Add(1)
				case http.StatusUnauthorized:
					floodUnauthorized.Add(1)
				}
			}
		})
	}
	lat, elapsed, err := measure(ds, conc, func(d delivery) (time.Duration, error) { return send(url, d) })
	close(floodDone)
	floodWG.Wait()
	stop()
	<-served
	if err != nil {
		return err
	}
	pct := func(lat []time.Duration, p float64) time.Duration {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	depth, _ := q.Depth(ctx)
	mode := "embedded NATS (no fsync per write)"
	if syncAlways {
		mode = "embedded NATS, fsync every write"
	}
	if natsURL != "" {
		mode = "external NATS " + natsURL + " (baseline: embedded)"
	}
	fmt.Printf("webhook receiver: %d signed push deliveries, %d concurrent senders, %d branches, %s, GOMAXPROCS=%d\n",
		n, conc, branches, mode, runtime.GOMAXPROCS(0))
	rep := report.New("webhooks")
	type side struct {
		name    string
		lat     []time.Duration
		elapsed time.Duration
		rate    *report.Figure
		p50     *report.Figure
		p99     *report.Figure
	}
	sides := []*side{
		{name: "minimal receiver (HMAC + JetStream publish)", lat: baseLat, elapsed: baseElapsed},
		{name: "gantry receiver", lat: lat, elapsed: elapsed},
	}
	for _, sd := range sides {
		slices.Sort(sd.lat)
		sd.rate = rep.Add(report.Figure{Name: sd.name + ", deliveries/s", Kind: report.InProcess,
			Value: math.Round(float64(n) / sd.elapsed.Seconds()), Unit: "1/s", Samples: n})
		sd.p50 = rep.Duration(sd.name+", p50 to 202", report.InProcess, pct(sd.lat, 0.50), n)
		sd.p99 = rep.Duration(sd.name+", p99 to 202", report.InProcess, pct(sd.lat, 0.99), n)
		fmt.Printf("%-46s %8.0f deliveries/s  p50 %s  p90 %s  p99 %s  max %s\n", sd.name, sd.rate.Value,
			pct(sd.lat, 0.50).Round(10*time.Microsecond), pct(sd.lat, 0.90).Round(10*time.Microsecond),
			pct(sd.lat, 0.99).Round(10*time.Microsecond), sd.lat[len(sd.lat)-1].Round(10*time.Microsecond))
	}
	// No target: the ratios say what the receiver's checks cost (replay and
	// push guards, run record, branch index) over publishing alone.
	g, b := sides[1], sides[0]
	for _, p := range [][2]*report.Figure{{g.rate, b.rate}, {g.p50, b.p50}, {g.p99, b.p99}} {
		if err := rep.Compare(p[0], *p[1], ""); err != nil {
			return err
		}
	}
	fmt.Printf("gantry / minimal: throughput %.2fx, p50 %.2fx, p99 %.2fx\n", *g.rate.Ratio, *g.p50.Ratio, *g.p99.Ratio)
	fmt.Printf("queued messages: %d (every 202 is a durable queue entry)\n", depth)
	if flood > 0 {
		fmt.Printf("flood (guard=%v, gantry receiver only): %d senders from %d addresses, %d bad deliveries (%.0f/s): %d answered 401, %d refused 429 before any HMAC\n",
			guarded, flood, floodSources, floodSent.Load(), float64(floodSent.Load())/elapsed.Seconds(), floodUnauthorized.Load(), floodLimited.Load())
	}
	fmt.Println()
	return rep.WriteJSON(os.Stdout)
}

type delivery struct {
	id, sig string
	body    []byte
}

// measure sends every delivery from conc senders and returns each one's
// latency (in delivery order) and the wall time of the whole.
func measure(ds []delivery, conc int, send func(delivery) (time.Duration, error)) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, len(ds))
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ds) {
					return
				}
				d, err := send(ds[i])
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lat[i] = d
			}
		})
	}
	wg.Wait()
	return lat, time.Since(start), firstErr
}
