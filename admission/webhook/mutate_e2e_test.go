package webhook

// Tags resolved, not refused, end to end: the real kube-apiserver calls
// both webhooks the chart registers (mutating, then validating), `kubectl
// run` is the real kubectl, images are in the real registry, signed by the
// real cosign CLI, and the stored objects are read back from the API
// server.

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
