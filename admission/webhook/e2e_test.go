package webhook

// End to end: the real kube-apiserver of the test environment calls this
// webhook server over TLS, with the ValidatingWebhookConfiguration the Helm
// chart renders (only clientConfig points at the test server), images in
// the real registry signed by the real cosign CLI, and the signer package's
// verifier behind the cache.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/admission/online"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/chart"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/tlsreload"
)

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pushTestImage writes a small random image whose config runs as user.
func pushTestImage(t *testing.T, repo, user string) string {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.User = "linux", "amd64", user
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return repo + "@" + d.String()
}

func cosign(t *testing.T, env *testenv.Env, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(env.Cosign, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=e2e-password", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %v: %v\n%s", args, err, out)
	}
}

type e2e struct {
	env        *testenv.Env
	kube       *kubernetes.Clientset
	nsIn       string
	nsOut      string
	good, root string
	unsigned   string
	stop       func()
}

// e2eOptions vary the setup: cfg edits the server's configuration (given
// the guarded namespace), mutate registers the chart's mutating webhook too.
type e2eOptions struct {
	cfg    func(c *config.Config, nsIn string)
	mutate bool
}

func setupE2E(t *testing.T) *e2e { return setupE2EWith(t, e2eOptions{}) }

func setupE2EWith(t *testing.T, o e2eOptions) *e2e {
	env := testenv.Require(t)
	ctx := context.Background()
	id := randomSuffix()
	dir := t.TempDir()

	// Images: signed non-root, signed root-by-default, unsigned.
	repo := env.Registry + "/admission-e2e-" + id
	x := &e2e{
		env:      env,
		good:     pushTestImage(t, repo+"/good", "1000"),
		root:     pushTestImage(t, repo+"/root", ""),
		unsigned: pushTestImage(t, repo+"/unsigned", "1000"),
	}
	cosign(t, env, dir, "generate-key-pair")
	for _, img := range []string{x.good, x.root} {
		cosign(t, env, dir, "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", img)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  - name: e2e\n    key: cosign.pub\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The server, as `gantry admission` wires it.
	cfg := config.Default()
	cfg.Registry.Insecure = []string{env.Registry}
	cfg.Registry.Timeout = 5 * time.Second
	cfg.Admission.SignerPolicy = policy
	x.nsIn, x.nsOut = "adm-in-"+id, "adm-out-"+id
	if o.cfg != nil {
		o.cfg(cfg, x.nsIn)
	}
	eval, err := online.Build(cfg, online.Options{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls.crt"), certPEM)
	writeFile(t, filepath.Join(dir, "tls.key"), keyPEM)
	rl, err := tlsreload.NewReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Serve(sctx, ln, rl.TLSConfig(), New(eval, Options{MaxBodyBytes: cfg.Admission.MaxBodyBytes}), nil)
	}()
	stopped := false
	x.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}
	t.Cleanup(x.stop)

	// Namespaces: one guarded, one outside the selector.
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	if x.kube, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{x.nsIn, x.nsOut} {
		if _, err := x.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = x.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}

	// The webhook configuration exactly as the chart renders it for this
	// namespace, pointed at the test server.
	r, err := chart.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := chart.WebhookAt(r, "gantry-e2e-"+id, []string{x.nsIn}, "https://"+ln.Addr().String()+"/validate", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) != 1 {
		t.Fatalf("chart rendered %d webhooks, want 1", len(vwc.Webhooks))
	}
	if _, err := x.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = x.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
	})
	if o.mutate {
		mwc, err := chart.MutatingWebhookAt(r, "gantry-e2e-"+id, []string{x.nsIn}, "https://"+ln.Addr().String()+"/mutate", caPEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = x.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
		})
	}

	// Wait until the API server calls the webhook.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := x.createPod(ctx, x.nsIn, x.pod("probe", x.unsigned, nil), true)
		if err != nil && strings.Contains(err.Error(), "gantry:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never took effect; last result: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return x
}

func restrictedSC() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func (x *e2e) pod(name, image string, edit func(*corev1.SecurityContext)) *corev1.Pod {
	sc := restrictedSC()
	if edit != nil {
		edit(sc)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: image, SecurityContext: sc}},
		},
	}
}

func (x *e2e) createPod(ctx context.Context, ns string, p *corev1.Pod, dryRun bool) error {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := x.kube.CoreV1().Pods(ns).Create(ctx, p, opts)
	return err
}

func TestE2EAgainstKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	x := setupE2E(t)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	deployment := func(p *corev1.Pod) error {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}}, Spec: p.Spec},
		}}
		_, err := x.kube.AppsV1().Deployments(x.nsIn).Create(ctx, d, dry)
		return err
	}
	cronJob := func(p *corev1.Pod) error {
		spec := p.Spec
		spec.RestartPolicy = corev1.RestartPolicyNever
		c := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: batchv1.CronJobSpec{
			Schedule:    "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}},
		}}
		_, err := x.kube.BatchV1().CronJobs(x.nsIn).Create(ctx, c, dry)
		return err
	}
	privileged := func(sc *corev1.SecurityContext) { sc.Privileged = ptr.To(true); sc.AllowPrivilegeEscalation = nil }
	runAsRoot := func(sc *corev1.SecurityContext) { sc.RunAsUser = ptr.To(int64(0)); sc.RunAsNonRoot = nil }
	cases := []struct {
		name   string
		create func() error
		want   []string // empty: admitted
	}{
		{"signed restricted pod admitted", func() error { return x.createPod(ctx, x.nsIn, x.pod("ok", x.good, nil), true) }, nil},
		{"unsigned image refused", func() error { return x.createPod(ctx, x.nsIn, x.pod("p", x.unsigned, nil), true) },
			[]string{"signature", x.unsigned, "no signature"}},
		{"privileged pod refused", func() error { return x.createPod(ctx, x.nsIn, x.pod("p", x.good, privileged), true) },
			[]string{"podSecurity", "privileged"}},
		{"runAsUser 0 refused", func() error { return x.createPod(ctx, x.nsIn, x.pod("p", x.good, runAsRoot), true) },
			[]string{"nonRoot", "runAsUser is 0"}},
		{"image that runs as root by default refused", func() error { return x.createPod(ctx, x.nsIn, x.pod("p", x.root, nil), true) },
			[]string{"nonRoot", "runs as root: the pod sets no runAsUser"}},
		{"tag refused (requireDigest)", func() error {
			return x.createPod(ctx, x.nsIn, x.pod("p", strings.Split(x.good, "@")[0]+":v1", nil), true)
		}, []string{"not pinned by digest"}},
		{"deployment with an unsigned image refused", func() error { return deployment(x.pod("", x.unsigned, nil)) },
			[]string{"Deployment " + x.nsIn + "/d refused", "no signature"}},
		{"deployment with a privileged pod refused", func() error { return deployment(x.pod("", x.good, privileged)) },
			[]string{"Deployment", "privileged"}},
		{"deployment with a root image refused", func() error { return deployment(x.pod("", x.root, nil)) },
			[]string{"Deployment", "runs as root"}},
		{"good deployment admitted", func() error { return deployment(x.pod("", x.good, nil)) }, nil},
		{"cronjob with runAsUser 0 refused", func() error { return cronJob(x.pod("", x.good, runAsRoot)) },
			[]string{"CronJob " + x.nsIn + "/c refused", "runAsUser is 0"}},
		{"cronjob with an unsigned image refused", func() error { return cronJob(x.pod("", x.unsigned, nil)) },
			[]string{"CronJob", "no signature"}},
		{"namespace outside the selector untouched", func() error {
			return x.createPod(ctx, x.nsOut, x.pod("p", x.unsigned, func(sc *corev1.SecurityContext) { privileged(sc); runAsRoot(sc) }), true)
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.create()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("admitted")
			}
			// Refused by this webhook, not by API validation.
			for _, s := range append(c.want, `admission webhook "validate.admission.gantry.dev" denied the request: gantry:`) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q missing from: %v", s, err)
				}
			}
		})
	}

	t.Run("ephemeral container with a bad image refused", func(t *testing.T) {
		p, err := x.kube.CoreV1().Pods(x.nsIn).Create(ctx, x.pod("eph", x.good, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		add := func(image string) error {
			q := p.DeepCopy()
			q.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: image, SecurityContext: restrictedSC()}}}
			_, err := x.kube.CoreV1().Pods(x.nsIn).UpdateEphemeralContainers(ctx, p.Name, q, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
		if err := add(x.unsigned); err == nil || !strings.Contains(err.Error(), "no signature") {
			t.Fatalf("unsigned debug container: %v", err)
		}
		if err := add(x.good); err != nil {
			t.Fatalf("signed debug container refused: %v", err)
		}
	})

	t.Run("webhook down refuses (fail closed)", func(t *testing.T) {
		x.stop()
		err := x.createPod(ctx, x.nsIn, x.pod("down", x.good, nil), true)
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Fatalf("with the webhook down: %v", err)
		}
		// Outside the selector nothing changes.
		if err := x.createPod(ctx, x.nsOut, x.pod("down", x.good, nil), true); err != nil {
			t.Fatalf("outside the selector: %v", err)
		}
	})
}
