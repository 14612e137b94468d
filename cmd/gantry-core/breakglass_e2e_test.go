package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
)

const bgAnnotation = "gantry.dev/break-glass-until"

// bgCluster is the cluster with kube-controller-manager, a namespace
// guarded by a real `gantry admission` process (failurePolicy Fail, as the
// chart renders it), and clients for the people of the break-glass tests.
type bgCluster struct {
	admin     *kubernetes.Clientset
	ns        string
	auditFile string
	logFile   string
	// as returns a client for user in groups (impersonated by the admin;
	// RBAC gives them only what the test's Role grants).
	as func(user string, groups ...string) *kubernetes.Clientset
}

func setupBreakGlassCluster(t *testing.T) *bgCluster {
	env := testenv.RequireControllers(t)
	ctx := context.Background()
	uniq := randHex(t, 4)
	dir := t.TempDir()
	rc, err := clientcmd.BuildConfigFromFlags("", env.ControllersKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	rc.WarningHandler = rest.NoWarnings{} // break-glass warnings are expected here
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	c := &bgCluster{admin: admin, ns: "bg-" + uniq, auditFile: filepath.Join(dir, "data", "audit.jsonl"),
		logFile: filepath.Join(dir, "admission.log")}
	c.as = func(user string, groups ...string) *kubernetes.Clientset {
		u := rest.CopyConfig(rc)
		u.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
		cs, err := kubernetes.NewForConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}

	// Signatures are not under test here (no registry involved): the pod
	// spec's violation is podSecurity's, a privileged container.
	cfg := filepath.Join(dir, "gantry.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
queue: {dataDir: %q}
admission:
  listen: 127.0.0.1:0
  verifySignatures: false
  exemptions:
    - {serviceAccount: ci/deployer, reason: "gitops controller; its ReplicaSets and Pods are judged as the controllers'"}
  breakGlass: {groups: [sre], maxDuration: 1h}
`, filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	p := startGantryUntil(t, admissionListeningRE, c.logFile, "admission", "--config", cfg, "--tls-self-signed", tlsDir)

	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), c.ns, metav1.DeleteOptions{}) })
	// Everyone here may create and patch Deployments and Pods in the
	// namespace, and nothing else: mallory is an ordinary developer, bob
	// is on call (group sre), ci/deployer a GitOps controller.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "workloads"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "create", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "create", "update", "patch"}},
	}}
	if _, err := admin.RbacV1().Roles(c.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "workloads"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "workloads"},
		Subjects: []rbacv1.Subject{
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "mallory"},
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "bob"},
			{Kind: "ServiceAccount", Name: "deployer", Namespace: "ci"},
		}}
	if _, err := admin.RbacV1().RoleBindings(c.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	registerWebhook(t, ctx, admin, c.ns, p.addr, tlsDir, uniq)
	return c
}

// podSpec is restricted and non-root, privileged when asked (a podSecurity
// violation that only break-glass admits).
func bgPodSpec(image string, privileged bool) corev1.PodSpec {
	sc := &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	if privileged {
		sc.Privileged, sc.AllowPrivilegeEscalation = ptr.To(true), nil
	}
	return corev1.PodSpec{
		AutomountServiceAccountToken: ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(1000)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "app", Image: image, SecurityContext: sc}},
	}
}

func bgImage(n int) string { return fmt.Sprintf("127.0.0.1:1/fn/app@sha256:%064x", n) }

func bgDeployment(name string, spec corev1.PodSpec, until string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(int32(1)),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec},
	}}
	if until != "" {
		d.Spec.Template.Annotations = map[string]string{bgAnnotation: until}
	}
	return d
}

// updateDeployment reads the Deployment, applies mutate and writes it back,
// again from a fresh read when another writer (a controller) got there
// first; any other error, an admission denial included, is returned.
func updateDeployment(ctx context.Context, cs kubernetes.Interface, ns, name string, mutate func(*appsv1.Deployment)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(d)
		_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
}

// patchTemplateAnnotations merge-patches the pod template's annotations
// only: the pod spec stays as it was.
func patchTemplateAnnotations(ctx context.Context, cs *kubernetes.Clientset, ns, name string, ann map[string]string) error {
	b, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": ann}}}})
	if err != nil {
		return err
	}
	_, err = cs.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, b, metav1.PatchOptions{})
	return err
}

// waitFor polls cond until it holds or a minute passes; an error from
// cond ends the wait at once.
func waitFor(t *testing.T, what string, cond func() (bool, string, error)) {
	t.Helper()
	wait.Until(t, time.Minute, what, func() error {
		ok, state, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !ok {
			return fmt.Errorf("last state: %s", state)
		}
		return nil
	})
}

// podsWith waits until the Deployment's pods carry the annotation value
// (the ReplicaSet controller made them from a template that has it).
func (c *bgCluster) waitPodsWith(t *testing.T, ctx context.Context, name, until string) {
	t.Helper()
	waitFor(t, "pods of "+name+" with "+until, func() (bool, string, error) {
		pods, err := c.admin.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		var seen []string
		for _, p := range pods.Items {
			seen = append(seen, p.Name+"="+p.Annotations[bgAnnotation])
			if p.Annotations[bgAnnotation] == until && len(p.OwnerReferences) == 1 && p.OwnerReferences[0].Kind == "ReplicaSet" {
				return true, "", nil
			}
		}
		return false, strings.Join(seen, ", "), nil
	})
}

// records reads the audit file of the admission process.
func (c *bgCluster) records(t *testing.T) []audit.Event {
	t.Helper()
	b, err := os.ReadFile(c.auditFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, e)
	}
	return out
}

// wantRecord fails t unless a break-glass record by actor with outcome
// names target (a substring) and, when set, reason.
func (c *bgCluster) wantRecord(t *testing.T, actor, outcome, target, reason string) {
	t.Helper()
	recs := c.records(t)
	if slices.ContainsFunc(recs, func(e audit.Event) bool {
		return e.Action == audit.ActionAdmissionBreakGlass && e.Actor == actor && e.Outcome == outcome &&
			strings.Contains(e.Target, target) && strings.Contains(e.Reason, reason)
	}) {
		return
	}
	var lines []string
	for _, e := range recs {
		lines = append(lines, fmt.Sprintf("%s %s %s %s: %s", e.Action, e.Actor, e.Outcome, e.Target, e.Reason))
	}
	t.Errorf("no %s record by %s (%s, %q) for %s in:\n%s", audit.ActionAdmissionBreakGlass, actor, outcome, reason, target, strings.Join(lines, "\n"))
}

func wantRefused(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("admitted")
	}
	for _, s := range append(want, `admission webhook "validate.admission.gantry.dev" denied the request: gantry:`, "breakGlass") {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q missing from: %v", s, err)
		}
	}
}

// TestBreakGlassOnlyForThePeopleNamed: the break-glass annotation through
// kube-apiserver, kube-controller-manager (Deployment → ReplicaSet → Pod,
// the controllers as their own ServiceAccounts) and `gantry admission`.
// Only a member of breakGlass.groups sets or extends it; controllers carry
// it only from a parent where it was admitted.
func TestBreakGlassOnlyForThePeopleNamed(t *testing.T) {
	t.Parallel()
	c := setupBreakGlassCluster(t)
	ctx := context.Background()
	bob := c.as("bob", "sre")
	mallory := c.as("mallory", "dev")
	deployer := c.as("system:serviceaccount:ci:deployer", "system:serviceaccounts", "system:serviceaccounts:ci")
	now := time.Now().UTC()
	t1 := now.Add(20 * time.Minute).Format(time.RFC3339)
	t2 := now.Add(50 * time.Minute).Format(time.RFC3339)

	// A member breaks the glass for a privileged Deployment: admitted,
	// and the ReplicaSet and Pod the controllers create from it too.
	if _, err := bob.AppsV1().Deployments(c.ns).Create(ctx, bgDeployment("glass", bgPodSpec(bgImage(1), true), t1), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a break-glass member's Deployment: %v", err)
	}
	c.waitPodsWith(t, ctx, "glass", t1)
	c.wantRecord(t, "bob", audit.OutcomeOK, "Deployment "+c.ns+"/glass", "admitted despite")
	c.wantRecord(t, "system:serviceaccount:kube-system:deployment-controller", audit.OutcomeOK, "ReplicaSet "+c.ns+"/glass-", "admitted despite")
	c.wantRecord(t, "system:serviceaccount:kube-system:replicaset-controller", audit.OutcomeOK, "Pod "+c.ns+"/glass-", "admitted despite")

	t.Run("renewal by a non-member of the pod template annotation only", func(t *testing.T) {
		// The pod spec is untouched: this was admitted as "unchanged", and
		// the controllers made new Pods armed until t2.
		err := patchTemplateAnnotations(ctx, mallory, c.ns, "glass", map[string]string{bgAnnotation: t2})
		wantRefused(t, err, `"mallory", who is not in a break-glass group`)
		d, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, "glass", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Spec.Template.Annotations[bgAnnotation]; got != t1 {
			t.Fatalf("the template is armed until %s, want %s (the member's)", got, t1)
		}
		c.wantRecord(t, "mallory", audit.OutcomeDenied, "Deployment "+c.ns+"/glass", "not in a break-glass group")
	})

	t.Run("renewal by a member within maxDuration", func(t *testing.T) {
		if err := patchTemplateAnnotations(ctx, bob, c.ns, "glass", map[string]string{bgAnnotation: t2}); err != nil {
			t.Fatalf("a member's renewal: %v", err)
		}
		c.waitPodsWith(t, ctx, "glass", t2)
		c.wantRecord(t, "bob", audit.OutcomeOK, "Deployment "+c.ns+"/glass", "admitted despite")
		tooFar := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
		wantRefused(t, patchTemplateAnnotations(ctx, bob, c.ns, "glass", map[string]string{bgAnnotation: tooFar}), "more than 1h0m0s ahead")
	})

	t.Run("pre-arming a compliant Deployment", func(t *testing.T) {
		_, err := mallory.AppsV1().Deployments(c.ns).Create(ctx, bgDeployment("armed", bgPodSpec(bgImage(2), false), t2), metav1.CreateOptions{})
		wantRefused(t, err, `"mallory", who is not in a break-glass group`)
		if _, err := mallory.AppsV1().Deployments(c.ns).Create(ctx, bgDeployment("plain", bgPodSpec(bgImage(2), false), ""), metav1.CreateOptions{}); err != nil {
			t.Fatalf("a compliant Deployment without the annotation: %v", err)
		}
		wantRefused(t, patchTemplateAnnotations(ctx, mallory, c.ns, "plain", map[string]string{bgAnnotation: t2}), "not in a break-glass group")
		c.wantRecord(t, "mallory", audit.OutcomeDenied, "Deployment "+c.ns+"/plain", "not in a break-glass group")
	})

	t.Run("annotation set on a Pod by a non-member", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "direct", Annotations: map[string]string{bgAnnotation: t2}}, Spec: bgPodSpec(bgImage(3), false)}
		_, err := mallory.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{})
		wantRefused(t, err, "not in a break-glass group")
		pod.Annotations = nil
		if _, err := mallory.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the same Pod without the annotation: %v", err)
		}
		patch := []byte(`{"metadata":{"annotations":{"` + bgAnnotation + `":"` + t2 + `"}}}`)
		_, err = mallory.CoreV1().Pods(c.ns).Patch(ctx, "direct", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		wantRefused(t, err, "not in a break-glass group")
	})

	t.Run("a member's annotation kept on a changed pod spec by an exempt non-member", func(t *testing.T) {
		// ci/deployer is exempt from every rule for what it writes itself,
		// not for what the controllers create from it. Keeping bob's
		// annotation while swapping the image would arm the controllers'
		// ReplicaSet and Pods of an image no member looked at.
		// The controllers write the Deployment too: an update that loses
		// the optimistic-concurrency race is made again on the object as
		// it is now (it failed 1 run in 6 with a conflict before).
		err := updateDeployment(ctx, deployer, c.ns, "glass", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = bgImage(4)
		})
		wantRefused(t, err, "was admitted for the pod spec as it was", `"system:serviceaccount:ci:deployer", who is not in a break-glass group`)

		// Without the annotation the deployer's own update passes (its
		// exemption), and the controllers' ReplicaSet is refused: the
		// exemption does not reach them and nothing arms them.
		if err := updateDeployment(ctx, deployer, c.ns, "glass", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = bgImage(4)
			delete(d.Spec.Template.Annotations, bgAnnotation)
		}); err != nil {
			t.Fatalf("the exempt deployer's update without the annotation: %v", err)
		}
		waitFor(t, "the Deployment controller's ReplicaSet refused", func() (bool, string, error) {
			d, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, "glass", metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			for _, cond := range d.Status.Conditions {
				if cond.Reason == "ReplicaSetCreateError" && strings.Contains(cond.Message, "gantry:") && strings.Contains(cond.Message, "privileged") {
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("%+v", d.Status.Conditions), nil
		})
	})

	t.Run("keeping it on a metadata-only update is not judged again", func(t *testing.T) {
		// A non-member's `kubectl rollout restart` of a Deployment that a
		// member armed: the pod spec and the annotation stay as the member
		// admitted them, and the new Pods inherit the member's expiry.
		if _, err := bob.AppsV1().Deployments(c.ns).Create(ctx, bgDeployment("restart", bgPodSpec(bgImage(5), true), t1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitPodsWith(t, ctx, "restart", t1)
		if err := patchTemplateAnnotations(ctx, mallory, c.ns, "restart", map[string]string{"kubectl.kubernetes.io/restartedAt": now.Format(time.RFC3339)}); err != nil {
			t.Fatalf("a rollout restart that keeps the annotation: %v", err)
		}
		waitFor(t, "a second ReplicaSet armed until "+t1, func() (bool, string, error) {
			rs, err := c.admin.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=restart"})
			if err != nil {
				return false, "", err
			}
			n := 0
			for _, r := range rs.Items {
				if r.Spec.Template.Annotations[bgAnnotation] == t1 && r.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] != "" {
					n++
				}
			}
			return n == 1, fmt.Sprintf("%d ReplicaSets", len(rs.Items)), nil
		})
	})
}
