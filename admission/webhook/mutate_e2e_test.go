package webhook

// Tags resolved, not refused, end to end: the real kube-apiserver calls
// both webhooks the chart registers (mutating, then validating), `kubectl
// run` is the real kubectl, images are in the real registry, signed by the
// real cosign CLI, and the stored objects are read back from the API
// server.

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/config"
)

func TestE2ETagsResolvedToVerifiedDigests(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	x := setupE2EWith(t, e2eOptions{mutate: true, cfg: func(c *config.Config, nsIn string) {
		// `kubectl run` sets no securityContext: Pod Security is not what
		// this test is about. Signatures and nonRoot still apply.
		c.Admission.Exemptions = []config.AdmissionExemption{{Namespace: nsIn, Rules: []string{"podSecurity"},
			Reason: "kubectl run as users type it"}}
	}})
	ctx := context.Background()
	goodRepo, goodDigest, _ := strings.Cut(x.good, "@")
	unsignedRepo, unsignedDigest, _ := strings.Cut(x.unsigned, "@")
	goodTag, unsignedTag := goodRepo+":v1", unsignedRepo+":v1"
	const mutating = `admission webhook "mutate.admission.gantry.dev" denied the request: gantry:`

	// Wait until the API server calls the mutating webhook too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := x.createPod(ctx, x.nsIn, x.pod("probe", unsignedTag, nil), true)
		if err != nil && strings.Contains(err.Error(), mutating) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mutating webhook never took effect; last result: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(x.env.Kubectl, append([]string{"--kubeconfig", x.env.Kubeconfig, "-n", x.nsIn}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("kubectl run with a tag of a signed image stores the digest", func(t *testing.T) {
		if out, err := kubectl("run", "fn", "--image", goodTag, "--restart=Never"); err != nil {
			t.Fatalf("kubectl run: %v\n%s", err, out)
		}
		p, err := x.kube.CoreV1().Pods(x.nsIn).Get(ctx, "fn", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.Spec.Containers[0].Image, goodTag+"@"+goodDigest; got != want {
			t.Fatalf("stored image %q, want %q", got, want)
		}
		// Later updates of the stored Pod go through both webhooks unchanged.
		if out, err := kubectl("label", "pod", "fn", "tier=web"); err != nil {
			t.Fatalf("kubectl label: %v\n%s", err, out)
		}
	})

	t.Run("kubectl run with a tag of an unsigned image is refused naming tag and digest", func(t *testing.T) {
		out, err := kubectl("run", "bad", "--image", unsignedTag, "--restart=Never")
		if err == nil {
			t.Fatalf("admitted:\n%s", out)
		}
		for _, s := range []string{mutating, `image "` + unsignedTag + `"`, "the tag resolves to " + unsignedRepo + "@" + unsignedDigest, "not signed by a trusted identity"} {
			if !strings.Contains(out, s) {
				t.Errorf("%q missing from:\n%s", s, out)
			}
		}
		if _, err := x.kube.CoreV1().Pods(x.nsIn).Get(ctx, "bad", metav1.GetOptions{}); err == nil {
			t.Fatal("the refused Pod is stored")
		}
	})

	deployment := func(name, image string) (*appsv1.Deployment, error) {
		p := x.pod("", image, nil)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: p.Spec},
		}}
		d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image, SecurityContext: restrictedSC()}}
		return x.kube.AppsV1().Deployments(x.nsIn).Create(ctx, d, metav1.CreateOptions{})
	}

	t.Run("deployment template stores the digest", func(t *testing.T) {
		if _, err := deployment("web", goodTag); err != nil {
			t.Fatal(err)
		}
		d, err := x.kube.AppsV1().Deployments(x.nsIn).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spec := d.Spec.Template.Spec
		for _, img := range []string{spec.Containers[0].Image, spec.InitContainers[0].Image} {
			if img != goodTag+"@"+goodDigest {
				t.Fatalf("stored template image %q, want %s@%s", img, goodTag, goodDigest)
			}
		}
	})

	t.Run("deployment with a tag of an unsigned image is refused", func(t *testing.T) {
		_, err := deployment("bad", unsignedTag)
		if err == nil {
			t.Fatal("admitted")
		}
		for _, s := range []string{mutating, "Deployment " + x.nsIn + "/bad refused", unsignedTag, unsignedDigest} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q missing from: %v", s, err)
			}
		}
	})

	t.Run("debug container by tag is pinned", func(t *testing.T) {
		p, err := x.kube.CoreV1().Pods(x.nsIn).Get(ctx, "fn", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: goodTag, SecurityContext: restrictedSC()}}}
		got, err := x.kube.CoreV1().Pods(x.nsIn).UpdateEphemeralContainers(ctx, p.Name, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := got.Spec.EphemeralContainers[0].Image; img != goodTag+"@"+goodDigest {
			t.Fatalf("stored debug image %q", img)
		}
	})

	t.Run("a tag a later mutating webhook adds is pinned on reinvocation", func(t *testing.T) {
		// A sidecar injector registered after Gantry's webhook (the API server
		// calls mutating webhooks in the order of their configurations' names)
		// adds a container by tag.
		inj := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var rev admissionv1.AdmissionReview
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rev); err != nil || rev.Request == nil {
				http.Error(w, "bad review", http.StatusBadRequest)
				return
			}
			var p corev1.Pod
			_ = json.Unmarshal(rev.Request.Object.Raw, &p)
			resp := &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
			if !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "sidecar" }) {
				patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-",
					"value": corev1.Container{Name: "sidecar", Image: goodTag, SecurityContext: restrictedSC()}}})
				pt := admissionv1.PatchTypeJSONPatch
				resp.Patch, resp.PatchType = patch, &pt
			}
			rev.Response, rev.Request = resp, nil
			_ = json.NewEncoder(w).Encode(rev)
		}))
		t.Cleanup(inj.Close)
		caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inj.Certificate().Raw})
		mwc := &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zz-inject-" + x.nsIn},
			Webhooks: []admregv1.MutatingWebhook{{
				Name: "inject.test.gantry.dev", AdmissionReviewVersions: []string{"v1"},
				SideEffects: ptr.To(admregv1.SideEffectClassNone), FailurePolicy: ptr.To(admregv1.Fail),
				ReinvocationPolicy: ptr.To(admregv1.NeverReinvocationPolicy),
				ClientConfig:       admregv1.WebhookClientConfig{URL: ptr.To(inj.URL + "/inject"), CABundle: caPEM},
				NamespaceSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": x.nsIn}},
				ObjectSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"inject": "yes"}},
				Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create},
					Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			}}}
		if _, err := x.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = x.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
		})
		pod := x.pod("injected", x.good, nil)
		pod.Labels = map[string]string{"inject": "yes"}
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := x.kube.CoreV1().Pods(x.nsIn).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Spec.Containers) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the injector never took effect")
			}
			time.Sleep(100 * time.Millisecond)
		}
		got, err := x.kube.CoreV1().Pods(x.nsIn).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Containers) != 2 || got.Spec.Containers[1].Image != goodTag+"@"+goodDigest {
			t.Fatalf("stored containers: %+v", got.Spec.Containers)
		}
	})

	t.Run("unknown tag refused (fail closed)", func(t *testing.T) {
		err := x.createPod(ctx, x.nsIn, x.pod("p", goodRepo+":missing", nil), true)
		if err == nil || !strings.Contains(err.Error(), mutating) || !strings.Contains(err.Error(), "could not resolve the tag to a digest") {
			t.Fatalf("unknown tag: %v", err)
		}
	})

	t.Run("mutating webhook down refuses tags (fail closed)", func(t *testing.T) {
		x.stop()
		err := x.createPod(ctx, x.nsIn, x.pod("down", goodTag, nil), true)
		if err == nil || !strings.Contains(err.Error(), `failed calling webhook "mutate.admission.gantry.dev"`) {
			t.Fatalf("with the webhook down: %v", err)
		}
	})
}
