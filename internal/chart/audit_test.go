package chart

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/clusteraudit"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// renderAudit renders the chart with the periodic audit on.
func renderAudit(t *testing.T, rel Release, fnNamespaces ...string) []map[string]any {
	t.Helper()
	ns := make([]any, len(fnNamespaces))
	for i, n := range fnNamespaces {
		ns[i] = n
	}
	out, err := RenderOnly(filepath.Join(root(t), ChartDir), rel, map[string]any{"admission": map[string]any{
		"functionNamespaces": ns,
		"audit":              map[string]any{"interval": "10m", "selector": "tier=fn"},
		"tls":                map[string]any{"mode": "secret", "existingSecret": "gantry-admission-tls", "caBundle": "Y2E="},
	}}, "admission-")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Documents(out)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// TestAdmissionAuditChart: with admission.audit.interval set, the webhook's
// ServiceAccount gets "list" on exactly the resources the audit lists, in
// each function namespace only, its token is mounted, the API server is
// reachable, and the rendered configuration turns the audit on there.
// Without it (TestLeastPrivilege) none of this is rendered.
func TestAdmissionAuditChart(t *testing.T) {
	docs := renderAudit(t, Release{Name: "gantry", Namespace: "gantry-system"}, "fn-a", "fn-b")
	gvrs, err := clusteraudit.Resources()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, g := range gvrs {
		want = append(want, g.Group+"/"+g.Resource+":list")
	}
	slices.Sort(want)
	var roleNS []string
	for _, r := range byKind(t, docs, "Role") {
		roleNS = append(roleNS, str(r, "metadata", "namespace"))
		var got []string
		for _, rule := range get(r, "rules").([]any) {
			for _, g := range get(rule, "apiGroups").([]any) {
				for _, res := range get(rule, "resources").([]any) {
					for _, v := range get(rule, "verbs").([]any) {
						got = append(got, fmt.Sprint(g)+"/"+fmt.Sprint(res)+":"+fmt.Sprint(v))
					}
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Role %s grants %v, want %v", str(r, "metadata", "name"), got, want)
		}
	}
	if slices.Sort(roleNS); !slices.Equal(roleNS, []string{"fn-a", "fn-b"}) {
		t.Errorf("audit Roles in %v, want one in each function namespace", roleNS)
	}
	for _, k := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if n := len(byKind(t, docs, k)); n != 0 {
			t.Errorf("%d %s: the audit needs nothing cluster-wide", n, k)
		}
	}
	for _, b := range byKind(t, docs, "RoleBinding") {
		subj, _ := get(b, "subjects").([]any)
		if len(subj) != 1 || str(subj[0], "kind") != "ServiceAccount" || str(subj[0], "name") != "gantry-admission" || str(subj[0], "namespace") != "gantry-system" {
			t.Errorf("RoleBinding %s/%s binds %v, want the admission ServiceAccount only", str(b, "metadata", "namespace"), str(b, "metadata", "name"), subj)
		}
	}
	dep := byKind(t, docs, "Deployment")
	if len(dep) != 1 || get(dep[0], "spec", "template", "spec", "automountServiceAccountToken") != true {
		t.Fatalf("the admission pod does not mount its token: %v", get(dep[0], "spec", "template", "spec", "automountServiceAccountToken"))
	}
	egress, _ := yaml.Marshal(get(byKind(t, docs, "NetworkPolicy")[0], "spec", "egress"))
	if !strings.Contains(string(egress), "10.96.0.1/32") || !strings.Contains(string(egress), "6443") {
		t.Errorf("the admission pod cannot reach the API server:\n%s", egress)
	}
	cfg := renderedConfig(t, docs, "gantry-admission")
	if a := cfg.Admission.Audit; a.Interval != 10*time.Minute || !slices.Equal(a.Namespaces, []string{"fn-a", "fn-b"}) || a.Selector != "tier=fn" || a.Kubeconfig != "" {
		t.Errorf("audit config %+v", a)
	}
}

// TestAdmissionAuditRoleSuffices creates the Role and RoleBinding the chart
// renders on the test API server, and runs the audit as that
// ServiceAccount (impersonated): it lists every kind in the function
// namespace, and nothing in another one.
func TestAdmissionAuditRoleSuffices(t *testing.T) {
	env := testenv.Require(t)
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	sys, fn, other := "gantry-audit-"+suffix, "fn-audit-"+suffix, "other-audit-"+suffix
	for _, ns := range []string{sys, fn, other} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}
	for _, d := range renderAudit(t, Release{Name: "gantry", Namespace: sys}, fn) {
		b, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		switch d["kind"] {
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict(b, &r); err != nil {
				t.Fatal(err)
			}
			if _, err := kc.RbacV1().Roles(r.Namespace).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "RoleBinding":
			var r rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict(b, &r); err != nil {
				t.Fatal(err)
			}
			if _, err := kc.RbacV1().RoleBindings(r.Namespace).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sa := rest.CopyConfig(rc)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + sys + ":gantry-admission",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sys, "system:authenticated"}}
	dyn, err := dynamic.NewForConfig(sa)
	if err != nil {
		t.Fatal(err)
	}
	acfg := config.DefaultAdmission()
	acfg.VerifySignatures = false
	eval, err := admission.New(acfg, admission.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC is evaluated as the binding lands; poll until it does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = clusteraudit.Run(ctx, eval, dyn, clusteraudit.Options{Namespaces: []string{fn}})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the chart's Role does not let the audit run: %v", err)
	}
	_, err = clusteraudit.Run(ctx, eval, dyn, clusteraudit.Options{Namespaces: []string{other}})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `grant the RBAC verb "list" on resource "cronjobs" (apiGroup batch) in namespace `+other) {
		t.Fatalf("another namespace: %v", err)
	}
}
