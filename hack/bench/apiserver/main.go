// Command apiserver measures what the admission webhook adds to a Pod
// CREATE through the real kube-apiserver of the test environment, in one
// run: Pod CREATEs (real ones, in a fresh namespace, deleted afterwards)
//
//  1. with no webhook registered (the baseline),
//  2. with the webhook registered, the image digest already verified (warm),
//  3. with the webhook registered, each create naming a signed digest the
//     webhook has never seen (cold: image config read and signature
//     verification against the registry).
//
// The webhook is the admission server as `gantry admission` wires it
// (admission.Build, webhook.Serve over TLS on loopback), registered with
// the chart's ValidatingWebhookConfiguration. Images are pushed and signed
// (signer library, a generated key) before the timed loops. The cases run
// in rounds: no webhook, then the webhook registered (waiting until the API
// server calls it) with warm and cold creates alternating, then removed
// (waiting until it no longer does); so drift in the machine's load falls
// on every case alike. p50/p99 per case and the latency added against
// case 1, as a table and JSON lines. All three are requests to a running
// API server: in-process figures. It needs the test environment
// (hack/testenv up):
//
//	go run ./hack/bench/apiserver [-n 200] [-rounds 4] [-warmup 5]
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/hack/bench/internal/webhookrig"
	"github.com/gantry-dev/gantry/internal/chart"
	goci "github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/signer"
)

func main() {
	n := flag.Int("n", 200, "timed Pod CREATEs per case")
	rounds := flag.Int("rounds", 4, "rounds of (no webhook; webhook registered)")
	warmup := flag.Int("warmup", 5, "untimed creates at the start of each phase of a round")
	flag.Parse()
	if err := run(*n, *rounds, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(n, rounds, warmup int) error {
	if n < 1 || rounds < 1 || warmup < 1 {
		return errors.New("-n, -rounds and -warmup must be at least 1")
	}
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "gantry-bench-apiserver-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	id := fmt.Sprintf("%d", time.Now().UnixNano())

	// Images: one for the no-webhook and warm cases, n+warmup never-seen
	// ones for the cold case, all signed; one unsigned to see the webhook
	// take effect.
	reg, err := goci.New(config.Registry{Insecure: []string{env.Registry}, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.pub"), pubPEM, 0o600); err != nil {
		return err
	}
	sgn := signer.NewWithSignerVerifier(sv, "bench key", reg)
	repo := fmt.Sprintf("%s/bench-apiserver-%s/fn", env.Registry, id)
	nImages := 1 + n + rounds*warmup
	fmt.Printf("pushing and signing %d images in %s …\n", nImages, repo)
	t0 := time.Now()
	imgs, err := pushAndSign(ctx, reg, sgn, repo, nImages)
	if err != nil {
		return err
	}
	fmt.Printf("pushed and signed in %s\n", time.Since(t0).Round(time.Millisecond))
	warmImg, coldImgs := imgs[0], imgs[1:]
	unsigned, err := push(ctx, reg, repo, "unsigned")
	if err != nil {
		return err
	}

	// The webhook server, as `gantry admission` wires it.
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  - name: bench\n    key: bench.pub\n"), 0o600); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Registry.Insecure = []string{env.Registry}
	cfg.Registry.Timeout = 5 * time.Second
	cfg.Admission.SignerPolicy = policy
	// Connections the API server opens to the webhook: few when it keeps
	// them, one per create when it does not.
	var ln *countingListener
	// calls counts the reviews the API server sends, so each case is
	// checked to be what it says: no call without the webhook, one per
	// create with it.
	// lastReview is the time the webhook took for its last review, to
	// tell the webhook's own time from the API server's cost of calling it.
	var calls, lastReview atomic.Int64
	rig, err := webhookrig.Start(cfg, webhookrig.Options{
		Listener: func(l net.Listener) net.Listener { ln = &countingListener{Listener: l}; return ln },
		Handler:  func(h http.Handler) http.Handler { return counted(&calls, &lastReview, h) },
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := rig.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: webhook server:", err)
		}
	}()

	// The API server client: no client-side rate limit, so only the
	// server's time is measured.
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout, rc.QPS, rc.Burst = 30*time.Second, 10000, 10000
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ns := "bench-apiserver-" + id
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() {
		// Unscheduled Pods are removed at once; then the namespace.
		bg := context.Background()
		if err := kube.CoreV1().Pods(ns).DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, "bench: deleting pods:", err)
		}
		_ = kube.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
	}()
	seq := 0
	create := func(image string, dryRun bool) (time.Duration, error) {
		seq++
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		p := pod(fmt.Sprintf("p-%d", seq), image)
		start := time.Now()
		_, err := kube.CoreV1().Pods(ns).Create(ctx, p, opts)
		return time.Since(start), err
	}
	timed := func(images []string) ([]time.Duration, error) {
		var out []time.Duration
		for _, img := range images {
			d, err := create(img, false)
			if err != nil {
				return nil, fmt.Errorf("creating a Pod with %s: %w", img, err)
			}
			out = append(out, d)
		}
		return out, nil
	}

	// The chart's webhook configuration for the namespace, registered and
	// removed once per round.
	root, err := chart.Root(".")
	if err != nil {
		return err
	}
	vwc, err := chart.WebhookAt(root, "gantry-bench-"+id, []string{ns}, rig.URL, rig.CAPEM)
	if err != nil {
		return err
	}
	vwcs := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	defer func() { _ = vwcs.Delete(context.Background(), vwc.Name, metav1.DeleteOptions{}) }()
	// inEffect waits until the API server calls the webhook (an unsigned
	// image is denied by it) or, with want false, no longer does.
	inEffect := func(want bool) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := create(unsigned, true)
			denied := err != nil && strings.Contains(err.Error(), "gantry:")
			if err != nil && !denied {
				return fmt.Errorf("probe create: %w", err)
			}
			if denied == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the webhook registration did not take effect in 30s (want called: %v)", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Rounds: creates with no webhook registered (case 1), then with it
	// registered, warm (2) and cold (3) alternating; the registration is
	// removed before the next round. Drift in the machine's load falls on
	// every case alike.
	var none, warm, cold, warmSrv, coldSrv []time.Duration
	coldNext := 0
	per := (n + rounds - 1) / rounds
	fmt.Printf("%d Pod CREATEs per case in %d rounds (no webhook, then webhook warm/cold alternating) …\n", n, rounds)
	for r := 0; len(none) < n; r++ {
		k := min(per, n-len(none))
		if _, err := timed(repeat(warmImg, warmup)); err != nil {
			return err
		}
		before := calls.Load()
		d, err := timed(repeat(warmImg, k))
		if err != nil {
			return err
		}
		if c := calls.Load() - before; c != 0 {
			return fmt.Errorf("round %d: the webhook was called %d times with no webhook registered", r, c)
		}
		none = append(none, d...)

		if _, err := vwcs.Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := inEffect(true); err != nil {
			return err
		}
		// Untimed: the warm digest verified once (first round), and
		// connections settled.
		for range warmup {
			if _, err := timed([]string{warmImg, coldImgs[coldNext]}); err != nil {
				return err
			}
			coldNext++
		}
		before = calls.Load()
		for range k {
			dw, err := create(warmImg, false)
			if err != nil {
				return fmt.Errorf("creating a Pod with %s: %w", warmImg, err)
			}
			sw := time.Duration(lastReview.Load())
			dc, err := create(coldImgs[coldNext], false)
			if err != nil {
				return fmt.Errorf("creating a Pod with %s: %w", coldImgs[coldNext], err)
			}
			sc := time.Duration(lastReview.Load())
			coldNext++
			warm, cold = append(warm, dw), append(cold, dc)
			warmSrv, coldSrv = append(warmSrv, sw), append(coldSrv, sc)
		}
		if c := calls.Load() - before; c < int64(2*k) {
			return fmt.Errorf("round %d: the webhook was called %d times for %d creates", r, c, 2*k)
		}
		if err := vwcs.Delete(ctx, vwc.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		if err := inEffect(false); err != nil {
			return err
		}
	}

	fmt.Printf("no webhook:          n=%d p50=%s p99=%s\n", len(none), pct(none, 50), pct(none, 99))
	fmt.Printf("webhook, warm digest: n=%d p50=%s p99=%s (added p50 %s, p99 %s)\n", len(warm), pct(warm, 50), pct(warm, 99),
		pct(warm, 50)-pct(none, 50), pct(warm, 99)-pct(none, 99))
	fmt.Printf("webhook, cold digest: n=%d p50=%s p99=%s (added p50 %s, p99 %s)\n", len(cold), pct(cold, 50), pct(cold, 99),
		pct(cold, 50)-pct(none, 50), pct(cold, 99)-pct(none, 99))
	fmt.Printf("in the webhook server: warm review p50=%s p99=%s, cold review p50=%s p99=%s; %d connections accepted from the API server for %d reviews\n\n",
		pct(warmSrv, 50), pct(warmSrv, 99), pct(coldSrv, 50), pct(coldSrv, 99), ln.accepted.Load(), calls.Load())

	// All three are requests to a running API server from this program:
	// in-process figures, compared with each other only.
	rep := report.New("apiserver")
	base50 := rep.Duration("Pod CREATE, no webhook, p50", report.InProcess, pct(none, 50), len(none))
	base99 := rep.Duration("Pod CREATE, no webhook, p99", report.InProcess, pct(none, 99), len(none))
	for _, c := range []struct {
		label string
		d     []time.Duration
	}{{"warm digest", warm}, {"cold digest", cold}} {
		for _, q := range []struct {
			p    int
			base *report.Figure
		}{{50, base50}, {99, base99}} {
			f := rep.Duration(fmt.Sprintf("Pod CREATE, webhook, %s, p%d", c.label, q.p), report.InProcess, pct(c.d, q.p), len(c.d))
			if err := rep.Compare(f, *q.base, ""); err != nil {
				return err
			}
			rep.Duration(fmt.Sprintf("added by the webhook, %s, p%d", c.label, q.p), report.InProcess, pct(c.d, q.p)-pct(none, q.p), len(c.d))
		}
	}
	for _, c := range []struct {
		label string
		d     []time.Duration
	}{{"warm", warmSrv}, {"cold", coldSrv}} {
		for _, p := range []int{50, 99} {
			rep.Duration(fmt.Sprintf("time in the webhook server, %s review, p%d", c.label, p), report.InProcess, pct(c.d, p), len(c.d))
		}
	}
	rep.Add(report.Figure{Name: "connections accepted by the webhook from the API server", Kind: report.InProcess,
		Value: float64(ln.accepted.Load()), Unit: "connections", Samples: int(calls.Load())})
	return rep.WriteJSON(os.Stdout)
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// counted counts the requests h serves and records how long the last took
// (from its body read to its answer written).
func counted(n, last *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		start := time.Now()
		h.ServeHTTP(w, r)
		last.Store(int64(time.Since(start)))
	})
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// pod is a Pod that meets the admission policy's restricted profile.
func pod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{Name: "app", Image: image, SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}}},
		},
	}
}

// pushAndSign pushes n small distinct images (successive builds of one
// function) and signs each, four at a time.
func pushAndSign(ctx context.Context, reg *goci.Client, sgn *signer.Signer, repo string, n int) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			img, err := push(ctx, reg, repo, fmt.Sprintf("b%d", i))
			if err != nil {
				errs[i] = err
				return
			}
			d, err := reg.ParseDigest(img)
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := sgn.Sign(ctx, d); err != nil {
				errs[i] = err
				return
			}
			out[i] = img
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// push writes a small random image that runs as user 1000 and returns
// repo@digest.
func push(ctx context.Context, reg *goci.Client, repo, tag string) (string, error) {
	img, err := random.Image(1024, 1)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", "amd64", "1000"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref, err := reg.ParseReference(repo + ":" + tag)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img, reg.RemoteOptions(ctx)...); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return repo + "@" + d.String(), nil
}

// pct is the p-th percentile (nearest rank) of d.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}
