package deploy

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	before, _ := d.Current(ctx, owner)

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
	if now, _ := d.Current(ctx, owner); now.ResourceVersion != before.ResourceVersion || now.Repo != before.Repo {
		t.Fatalf("the owner's Deployment changed: %+v, was %+v", now, before)
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
