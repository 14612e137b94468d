// Command admission benchmarks the admission webhook over TLS on loopback:
// AdmissionReviews at a fixed rate for an image whose verdict is cached
// (warm), then one review per never-seen image (cold: image config read +
// signature verification against the registry), compared with running
// `cosign verify` per image. It needs the test environment (hack/testenv
// up) for the registry and the cosign binary:
//
//	go run ./hack/bench/admission [-rate 1000] [-duration 5s] [-cold 20]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/webhook"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/tlsreload"
)

func main() {
	rate := flag.Int("rate", 1000, "warm requests per second")
	duration := flag.Duration("duration", 5*time.Second, "warm phase length")
	cold := flag.Int("cold", 20, "number of never-seen images for the cold phase")
	cosignRuns := flag.Int("cosign", 5, "number of `cosign verify` runs to compare with")
	flag.Parse()
	if err := run(*rate, *duration, *cold, *cosignRuns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(rate int, duration time.Duration, coldN, cosignRuns int) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-admission-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cosign := func(args ...string) error {
		cmd := exec.Command(env.Cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=bench", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cosign %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := cosign("generate-key-pair"); err != nil {
		return err
	}
	repo := fmt.Sprintf("%s/bench-admission-%d", env.Registry, time.Now().UnixNano())
	fmt.Printf("pushing and signing %d images in %s …\n", coldN+1, repo)
	var imgs []string
	for i := 0; i <= coldN; i++ {
		// Successive builds of one function: new digests in one repository.
		img, err := push(repo+"/fn", fmt.Sprintf("b%d", i))
		if err != nil {
			return err
		}
		if err := cosign("sign", "--key", "cosign.key", "--tlog-upload=false", "-y", img); err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  - name: bench\n    key: cosign.pub\n"), 0o600); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Registry.Insecure = []string{env.Registry}
	cfg.Registry.Timeout = 5 * time.Second
	cfg.Admission.SignerPolicy = policy
	eval, err := admission.Build(cfg, admission.BuildOptions{})
	if err != nil {
		return err
	}
	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = webhook.Serve(ctx, ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}},
			webhook.New(eval, webhook.Options{}), nil)
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	url := "https://" + ln.Addr().String() + "/validate"
	send := func(image string) (time.Duration, error) {
		body := review(image)
		start := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if !bytes.Contains(b, []byte(`"allowed":true`)) {
			return d, fmt.Errorf("denied: %s", b)
		}
		return d, nil
	}

	// Cold: each image seen for the first time.
	var coldLat []time.Duration
	for _, img := range imgs[1:] {
		d, err := send(img)
		if err != nil {
			return fmt.Errorf("cold %s: %w", img, err)
		}
		coldLat = append(coldLat, d)
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
		if err := cosign("verify", "--key", "cosign.pub", "--insecure-ignore-tlog", imgs[i]); err != nil {
			return err
		}
		cosignLat = append(cosignLat, time.Since(start))
	}

	fmt.Printf("warm  (cached digest, target %d req/s, sent %.0f req/s for %s): n=%d errors=%d p50=%s p99=%s max=%s\n",
		rate, achieved, duration, len(warmLat), errs, pct(warmLat, 50), pct(warmLat, 99), pct(warmLat, 100))
	fmt.Printf("cold  (registry fetch + verify, per new image): n=%d p50=%s p99=%s\n", len(coldLat), pct(coldLat, 50), pct(coldLat, 99))
	fmt.Printf("cosign verify CLI per image: n=%d p50=%s p99=%s\n", len(cosignLat), pct(cosignLat, 50), pct(cosignLat, 99))
	if c := pct(coldLat, 50); c > 0 {
		fmt.Printf("ratio: cosign verify p50 / cold review p50 = %.1fx\n", float64(pct(cosignLat, 50))/float64(c))
	}
	if errs > 0 {
		return fmt.Errorf("%d warm requests failed", errs)
	}
	return nil
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
