package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/wait"
)

// TestFunctionNamesAreOwnedByTheirRepository: against kube-apiserver, a
// repository cannot take over a function another repository deployed, nor
// an object made by hand; Current reads back what is deployed; an apply
// guarded by a resourceVersion fails once the workload changed.
func TestFunctionNamesAreOwnedByTheirRepository(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, nil)
	d, err := New(testConfig(ns), c.rc)
	if err != nil {
		t.Fatal(err)
	}
	owner := c.function("hello")
	owner.Labels.Repo = "acme/owner"
	if cur, err := d.Current(ctx, owner); err != nil || cur != nil {
		t.Fatalf("Current before any deploy: %+v %v", cur, err)
	}
	if _, err := d.Apply(ctx, owner); err != nil {
		t.Fatal(err)
	}
	cur, err := d.Current(ctx, owner)
	if err != nil || cur == nil || cur.Repo != "acme/owner" || cur.Commit != owner.Labels.Commit || cur.Run != owner.Labels.RunID || cur.ResourceVersion == "" {
		t.Fatalf("Current: %+v %v", cur, err)
	}

	// The owner again (another commit), and with the name's case changed.
	again := owner
	again.Labels.Commit, again.Labels.Repo = strings.Repeat("b", 40), "ACME/owner"
	if _, err := d.Apply(ctx, again); err != nil {
		t.Fatalf("the owner's next deploy: %v", err)
	}
	before, err := d.Current(ctx, owner)
	if err != nil || before == nil {
		t.Fatalf("Current after the owner's next deploy: %+v %v", before, err)
	}

	cases := []struct {
		name, repo, fn string
		prepare        func()
		owner          string
	}{
		{name: "another repository, same function name", repo: "acme/intruder", fn: "hello", owner: "acme/owner"},
		{name: "a Deployment made by hand", repo: "acme/intruder", fn: "manual", owner: "", prepare: func() {
			dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "manual"}, Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: c.env.BaseImage}}}}}}
			if _, err := c.kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a Service of another repository without its Deployment", repo: "acme/intruder", fn: "svc-only", owner: "acme/owner", prepare: func() {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc-only", Annotations: map[string]string{AnnotationRepo: "acme/owner"}},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
			if _, err := c.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare()
			}
			fn := c.function(tc.fn)
			fn.Labels.Repo = tc.repo
			_, err := d.Apply(ctx, fn)
			var oe *OwnerError
			if !errors.Is(err, ErrNotOwner) || !errors.As(err, &oe) || !strings.EqualFold(oe.Owner, tc.owner) || oe.Repo != tc.repo {
				t.Fatalf("apply by %s: %v, want an OwnerError naming %q", tc.repo, err, tc.owner)
			}
			if tc.owner != "" && !strings.Contains(strings.ToLower(err.Error()), tc.owner) {
				t.Errorf("error does not name the owner: %v", err)
			}
		})
	}
	if now, err := d.Current(ctx, owner); err != nil || now == nil || now.ResourceVersion != before.ResourceVersion || now.Repo != before.Repo {
		t.Fatalf("the owner's Deployment changed: %+v (%v), was %+v", now, err, before)
	}

	t.Run("apply guarded by a stale resourceVersion", func(t *testing.T) {
		fn := again
		fn.Labels.Commit = strings.Repeat("c", 40)
		fn.IfResourceVersion = cur.ResourceVersion // read before the second deploy
		_, err := d.Apply(ctx, fn)
		var re *RejectedError
		if !errors.As(err, &re) || re.Code != 409 || !strings.Contains(re.Message, "another run deployed it meanwhile") {
			t.Fatalf("apply over a changed workload: %v, want a 409 conflict", err)
		}
		fn.IfResourceVersion = before.ResourceVersion
		if _, err := d.Apply(ctx, fn); err != nil {
			t.Fatalf("apply at the current resourceVersion: %v", err)
		}
	})

	t.Run("an operator's apply (no repository) is not checked", func(t *testing.T) {
		fn := c.function("hello")
		fn.Labels.Repo = ""
		if _, err := d.Apply(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOwnershipPolicyClosesTheRace: manifests/function-ownership-policy.yaml,
// installed in kube-apiserver and bound to a test namespace, denies what
// Gantry's own check cannot see in time: an apply for another repository
// landing on an object that appeared after the check (here: an apply that
// skips the check altogether, as the loser of a race does).
func TestOwnershipPolicyClosesTheRace(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, nil)
	raw, err := os.ReadFile("../manifests/function-ownership-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d documents, want the policy and its binding", len(docs))
	}
	var pol admissionregistrationv1.ValidatingAdmissionPolicy
	var bind admissionregistrationv1.ValidatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &pol); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &bind); err != nil {
		t.Fatal(err)
	}
	suffix := "-" + ns
	pol.Name += suffix
	bind.Name += suffix
	bind.Spec.PolicyName = pol.Name
	bind.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	adm := c.kube.AdmissionregistrationV1()
	if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, &pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), pol.Name, metav1.DeleteOptions{})
	})
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, &bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), bind.Name, metav1.DeleteOptions{})
	})

	d, err := New(testConfig(ns), c.rc)
	if err != nil {
		t.Fatal(err)
	}
	owner := c.function("hello")
	owner.Labels.Repo = "acme/owner"
	if _, err := d.Apply(ctx, owner); err != nil {
		t.Fatal(err)
	}
	n, err := normalize(d.cfg, owner)
	if err != nil {
		t.Fatal(err)
	}
	// The owner's own next apply passes (the policy is in force once it
	// denies the intruder; poll until then, bounded).
	intruder := *n
	intruder.Labels.Repo = "acme/intruder"
	// A dry run: an apply let through before the policy took effect
	// changes nothing.
	wait.Until(t, 30*time.Second, "the ownership policy to deny another repository's apply", func() error {
		_, err := d.kube.AppsV1().Deployments(ns).Apply(ctx, renderDeployment(d.cfg, &intruder),
			metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "belongs to repository acme/owner") {
			return nil
		}
		return fmt.Errorf("last dry run: %v", err)
	})
	for _, c2 := range []struct {
		name string
		repo string
		deny bool
	}{
		{"the owner again", "acme/owner", false},
		{"the owner, the name's case changed", "ACME/Owner", false},
		{"the record removed", "", true},
	} {
		m := *n
		m.Labels.Repo = c2.repo
		_, err := d.kube.AppsV1().Deployments(ns).Apply(ctx, renderDeployment(d.cfg, &m), metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if (err != nil) != c2.deny {
			t.Errorf("%s: %v, want denied=%v", c2.name, err, c2.deny)
		}
	}
	svc := *n
	svc.Labels.Repo = "acme/intruder"
	if _, err := d.kube.CoreV1().Services(ns).Apply(ctx, renderService(d.cfg, &svc), metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err == nil ||
		!strings.Contains(err.Error(), "belongs to repository") {
		t.Errorf("Service handed to another repository: %v", err)
	}
}
