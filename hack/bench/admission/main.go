// Command admission benchmarks the admission webhook over TLS on loopback:
// AdmissionReviews at a fixed rate for an image whose verdict is cached
// (warm), then one review per never-seen image (cold: image config read +
// signature verification against the registry, every registry request
// counted by a proxy), compared with cosign's own library verifying a
// never-seen image in process (target: cold review ≤ 1.0× it, ≤ 2 registry
// round trips per image, the very first review of a fresh webhook too);
// `cosign verify` per image is reported as a process figure. Table and JSON lines. It needs the test environment (hack/testenv
// up) for the registry and the cosign binary:
//
//	go run ./hack/bench/admission [-rate 1000] [-duration 5s] [-cold 20] [-first 5]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	sigs "github.com/sigstore/cosign/v2/pkg/signature"

	"github.com/gantry-dev/gantry/admission/online"
	"github.com/gantry-dev/gantry/admission/webhook"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/hack/bench/internal/webhookrig"
	"github.com/gantry-dev/gantry/internal/testenv"
)

func main() {
	rate := flag.Int("rate", 1000, "warm requests per second")
	duration := flag.Duration("duration", 5*time.Second, "warm phase length")
	cold := flag.Int("cold", 20, "number of never-seen images for the cold phase")
	cosignRuns := flag.Int("cosign", 5, "number of `cosign verify` runs to compare with")
	firstN := flag.Int("first", 5, "number of fresh webhooks whose very first review is counted")
	flag.Parse()
	if err := run(*rate, *duration, *cold, *cosignRuns, *firstN); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(rate int, duration time.Duration, coldN, cosignRuns, firstN int) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-admission-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cosignCLI := func(args ...string) error {
		cmd := exec.Command(env.Cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=bench", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cosign %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := cosignCLI("generate-key-pair"); err != nil {
		return err
	}
	repo := fmt.Sprintf("%s/bench-admission-%d", env.Registry, time.Now().UnixNano())
	fmt.Printf("pushing and signing %d images in %s …\n", coldN+1+firstN, repo)
	var imgs []string
	for i := 0; i <= coldN+firstN; i++ {
		// Successive builds of one function: new digests in one repository.
		img, err := push(repo+"/fn", fmt.Sprintf("b%d", i))
		if err != nil {
			return err
		}
		if err := cosignCLI("sign", "--key", "cosign.key", "--tlog-upload=false", "-y", img); err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	// The last firstN images are for the very first reviews of fresh
	// webhooks.
	imgs, firstImgs := imgs[:coldN+1], imgs[coldN+1:]
	// Every registry request of the cold phase goes through a counting
	// proxy, so the round trips per review are measured, not assumed.
	proxy, err := startCountingProxy(env.Registry)
	if err != nil {
		return err
	}
	defer proxy.close()
	viaProxy := func(img string) string { return proxy.host + img[len(env.Registry):] }

	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  - name: bench\n    key: cosign.pub\n"), 0o600); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Registry.Insecure = []string{env.Registry, proxy.host}
	cfg.Registry.Timeout = 5 * time.Second
	cfg.Admission.SignerPolicy = policy
	rig, err := webhookrig.Start(cfg, webhookrig.Options{})
	if err != nil {
		return err
	}
	defer rig.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rig.CAPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	hookURL := rig.URL
	send := func(image string) (time.Duration, error) {
		body := review(image)
		start := time.Now()
		resp, err := client.Post(hookURL, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusOK {
			return d, fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
		}
		if !bytes.Contains(b, []byte(`"allowed":true`)) {
			return d, fmt.Errorf("denied: %s", b)
		}
		return d, nil
	}

	// Cold: each image seen for the first time (half of them: the other
	// half is for cosign's library, which must not find them cached either).
	half := len(imgs[1:]) / 2
	var coldLat []time.Duration
	var coldReqs, coldTrips, firstTrips, laterTrips float64
	for i, img := range imgs[1 : 1+half] {
		proxy.reset()
		d, err := send(viaProxy(img))
		if err != nil {
			return fmt.Errorf("cold %s: %w", img, err)
		}
		coldLat = append(coldLat, d)
		n, trips := proxy.stats()
		coldReqs += float64(n) / float64(half)
		coldTrips += float64(trips) / float64(half)
		// The first review is the webhook's first contact with the
		// registry; the others are not. (One sample; the figure below
		// is the median over fresh webhooks.)
		if i == 0 {
			firstTrips = float64(trips)
		} else {
			laterTrips += float64(trips) / float64(half-1)
		}
	}

	// The very first review of a fresh webhook (a new evaluator, so new
	// registry clients): its first contact with the registry. The proxy is
	// in registry.insecure and needs no credentials, so its scheme and auth
	// are known and no ping is sent. Counted over firstN fresh webhooks
	// (a wave count of one review is sensitive to scheduling on a loaded
	// machine), the median reported.
	var firstTripsAll []int
	for _, img := range firstImgs {
		e, err := online.Build(cfg, online.Options{})
		if err != nil {
			return err
		}
		h := webhook.New(e, webhook.Options{})
		proxy.reset()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(review(viaProxy(img)))))
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"allowed":true`)) {
			return fmt.Errorf("first review of %s: HTTP %d: %s", img, rec.Code, rec.Body.Bytes())
		}
		_, trips := proxy.stats()
		firstTripsAll = append(firstTripsAll, trips)
	}
	if len(firstTripsAll) > 0 {
		slices.Sort(firstTripsAll)
		firstTrips = float64(firstTripsAll[len(firstTripsAll)/2])
	}

	// The in-process baseline: cosign's own library verifying a
	// never-seen image with a new registry client, through the same proxy.
	pub, err := sigs.PublicKeyFromKeyRef(context.Background(), filepath.Join(dir, "cosign.pub"))
	if err != nil {
		return err
	}
	var libLat []time.Duration
	var libReqs, libTrips float64
	nLib := float64(len(imgs[1+half:]))
	for _, img := range imgs[1+half:] {
		proxy.reset()
		ref, err := name.ParseReference(viaProxy(img), name.Insecure)
		if err != nil {
			return err
		}
		co := &cosign.CheckOpts{SigVerifier: pub, IgnoreTlog: true, IgnoreSCT: true,
			RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))}}
		start := time.Now()
		found, _, err := cosign.VerifyImageSignatures(context.Background(), ref, co)
		if err == nil && len(found) == 0 {
			err = fmt.Errorf("no verified signature")
		}
		if err != nil {
			return fmt.Errorf("cosign library %s: %w", img, err)
		}
		libLat = append(libLat, time.Since(start))
		n, trips := proxy.stats()
		libReqs += float64(n) / nLib
		libTrips += float64(trips) / nLib
	}

	// Warm: one image, already verified, at a fixed rate (open loop).
	if _, err := send(imgs[0]); err != nil {
		return err
	}
	for range 200 { // warm up connections
		if _, err := send(imgs[0]); err != nil {
			return err
		}
	}
	var (
		mu      sync.Mutex
		warmLat []time.Duration
		errs    int
		wg      sync.WaitGroup
	)
	// Open loop: request i is sent at start + i/rate whether or not earlier
	// ones have finished, so a slow server shows up as latency.
	interval := time.Second / time.Duration(rate)
	total := int(duration / interval)
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := send(imgs[0])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			warmLat = append(warmLat, d)
		}()
	}
	achieved := float64(total) / time.Since(start).Seconds()
	wg.Wait()

	// cosign verify per image, the way a script would check each image.
	var cosignLat []time.Duration
	for i := 0; i < cosignRuns && i < len(imgs); i++ {
		start := time.Now()
		if err := cosignCLI("verify", "--key", "cosign.pub", "--insecure-ignore-tlog", imgs[i]); err != nil {
			return err
		}
		cosignLat = append(cosignLat, time.Since(start))
	}

	if errs > 0 {
		return fmt.Errorf("%d warm requests failed", errs)
	}
	fmt.Printf("warm  (cached digest, target %d req/s, sent %.0f req/s for %s): n=%d errors=%d p50=%s p99=%s max=%s\n",
		rate, achieved, duration, len(warmLat), errs, pct(warmLat, 50), pct(warmLat, 99), pct(warmLat, 100))
	fmt.Printf("cold  (registry fetch + verify, per new image): n=%d p50=%s p99=%s; per image %.1f registry requests in %.1f round trips\n",
		len(coldLat), pct(coldLat, 50), pct(coldLat, 99), coldReqs, coldTrips)
	fmt.Printf("cosign library, new client, per new image: n=%d p50=%s p99=%s; per image %.1f registry requests in %.1f round trips\n",
		len(libLat), pct(libLat, 50), pct(libLat, 99), libReqs, libTrips)
	fmt.Printf("cosign verify CLI per image (process): n=%d p50=%s p99=%s\n", len(cosignLat), pct(cosignLat, 50), pct(cosignLat, 99))

	// In-process work against in-process work: a cold review served by the
	// running webhook against cosign's library in a running program. The
	// CLI is a process and is reported, not compared (its start-up would
	// be most of the ratio).
	rep := report.New("admission")
	rep.Duration("warm review p50", report.InProcess, pct(warmLat, 50), len(warmLat))
	rep.Duration("warm review p99", report.InProcess, pct(warmLat, 99), len(warmLat))
	lib := rep.Duration("cosign library verify, never-seen image, p50", report.InProcess, pct(libLat, 50), len(libLat))
	cold := rep.Duration("cold review p50", report.InProcess, pct(coldLat, 50), len(coldLat))
	if err := rep.Compare(cold, *lib, "<=1.0"); err != nil {
		return err
	}
	// Round trips: sequential waves of registry requests (requests in
	// flight together count once); the target bounds them, not the count.
	rep.Add(report.Figure{Name: "cosign library registry requests per image", Kind: report.InProcess, Value: round1(libReqs), Unit: "requests", Samples: len(libLat)})
	rep.Add(report.Figure{Name: "cosign library registry round trips per image", Kind: report.InProcess, Value: round1(libTrips), Unit: "round trips", Samples: len(libLat)})
	rep.Add(report.Figure{Name: "cold review registry requests per image", Kind: report.InProcess, Value: round1(coldReqs), Unit: "requests", Samples: len(coldLat)})
	trips := rep.Add(report.Figure{Name: "cold review registry round trips per image", Kind: report.InProcess, Value: round1(coldTrips), Unit: "round trips", Samples: len(coldLat)})
	if err := rep.Bound(trips, "<=2"); err != nil {
		return err
	}
	first := rep.Add(report.Figure{Name: "cold review registry round trips, first review (registry not yet contacted)", Kind: report.InProcess, Value: firstTrips, Unit: "round trips", Samples: len(firstTripsAll)})
	if err := rep.Bound(first, "<=2"); err != nil {
		return err
	}
	rep.Add(report.Figure{Name: "cold review registry round trips per image, registry already contacted", Kind: report.InProcess, Value: round1(laterTrips), Unit: "round trips", Samples: half - 1})
	rep.Duration("cosign verify process per image p50", report.Process, pct(cosignLat, 50), len(cosignLat))
	fmt.Printf("ratio cold review / cosign library = %.2fx (target <= 1.0); registry round trips per cold review %.1f (target <= 2): %.0f for the first review of a fresh webhook (median of %v), %.1f for the others\n\n",
		*cold.Ratio, coldTrips, firstTrips, firstTripsAll, laterTrips)
	return rep.WriteJSON(os.Stdout)
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// countingProxy forwards to the registry and records when each request
// started and ended.
type countingProxy struct {
	host  string
	mu    sync.Mutex
	spans [][2]time.Time
	close func()
}

func startCountingProxy(registry string) (*countingProxy, error) {
	target, err := url.Parse("http://" + registry)
	if err != nil {
		return nil, err
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rp.ServeHTTP(w, r)
		p.mu.Lock()
		p.spans = append(p.spans, [2]time.Time{start, time.Now()})
		p.mu.Unlock()
	})}
	go func() { _ = srv.Serve(ln) }()
	p.host = ln.Addr().String()
	p.close = func() { _ = srv.Close() }
	return p, nil
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.spans = nil
	p.mu.Unlock()
}

// stats returns the requests since reset and how many round trips they
// took: requests sorted by start; a request that starts before the first
// of the current wave has ended was sent without waiting for it (same
// wave), one that starts later begins a new wave.
func (p *countingProxy) stats() (requests, trips int) {
	p.mu.Lock()
	spans := slices.Clone(p.spans)
	p.mu.Unlock()
	slices.SortFunc(spans, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	var waveEnd time.Time
	for _, s := range spans {
		if trips == 0 || !s[0].Before(waveEnd) {
			trips++
			waveEnd = s[1]
			continue
		}
		if s[1].Before(waveEnd) {
			waveEnd = s[1]
		}
	}
	return len(spans), trips
}

func push(repo, tag string) (string, error) {
	img, err := random.Image(1024, 1)
	if err != nil {
		return "", err
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", "amd64", "1000"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref, err := name.ParseReference(repo + ":" + tag)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img); err != nil {
		return "", err
	}
	d, _ := img.Digest()
	return repo + "@" + d.String(), nil
}

func review(image string) []byte {
	return fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"b","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"fn","operation":"CREATE","userInfo":{"username":"bench"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"app","image":%q,"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}}}`, image)
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}
