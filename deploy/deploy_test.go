package deploy

// Integration tests: everything below goes through the test environment's
// real kube-apiserver (server-side apply, admission, RBAC, CRDs, status
// subresources). No kubelet or controller-manager runs there, so rollouts
// are completed by writing the status subresource as the controllers would.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
)

type cluster struct {
	rc   *rest.Config
	kube kubernetes.Interface
	dyn  dynamic.Interface
	env  *testenv.Env
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := testenv.Require(t)
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{rc: rc, kube: kubernetes.NewForConfigOrDie(rc), dyn: dynamic.NewForConfigOrDie(rc), env: env}
}

func randSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// namespace creates a unique namespace with the given labels and its
// default ServiceAccount (no controller-manager creates it here).
func (c *cluster) namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	name := "gantry-deploy-" + randSuffix()
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { _ = c.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := c.kube.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func testConfig(ns string) config.Deploy {
	cfg := config.DefaultDeploy()
	cfg.Namespace = ns
	cfg.Mode = ModeKubernetes
	cfg.WaitForRollout = false
	cfg.RolloutTimeout = 3 * time.Second
	return cfg
}

func (c *cluster) function(name string) Function {
	fn := validFunction()
	fn.Name = name
	fn.Image = c.env.BaseImage
	return fn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestApplyHardenedDeploymentAndService(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, nil)
	const secretValue = "s3cr3t-value-that-must-not-be-copied"
	if _, err := c.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hello-db"},
		StringData: map[string]string{"password": secretValue}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := New(testConfig(ns), c.rc)
	if err != nil {
		t.Fatal(err)
	}
	fn := c.function("hello")
	res, err := d.Apply(ctx, fn)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.Mode != ModeKubernetes || len(res.Objects) != 2 || res.Objects[0].Kind != "Deployment" || res.Objects[1].Kind != "Service" {
		t.Fatalf("result %+v", res)
	}
	if res.RolledOut {
		t.Fatal("RolledOut without waiting")
	}

	dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != fn.Image {
		t.Errorf("stored image %q, want %q", got, fn.Image)
	}
	var managers []string
	for _, m := range dep.ManagedFields {
		managers = append(managers, fmt.Sprintf("%s/%s", m.Manager, m.Operation))
	}
	if len(managers) != 1 || managers[0] != "gantry/Apply" {
		t.Errorf("managed fields %v, want only gantry/Apply", managers)
	}
	raw, err := json.Marshal(dep)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secretValue) || strings.Contains(string(raw), "c3Ny") {
		t.Error("the Secret's value was copied into the Deployment")
	}
	svc, err := c.kube.CoreV1().Services(ns).Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector[LabelFunction] != "hello" || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("service spec %+v", svc.Spec)
	}

	// Redelivery: the same apply changes nothing.
	again, err := d.Apply(ctx, fn)
	if err != nil {
		t.Fatal(err)
	}
	if again.Objects[0].Generation != res.Objects[0].Generation || again.Objects[0].ResourceVersion != res.Objects[0].ResourceVersion {
		t.Errorf("re-applying the same function wrote the Deployment again: %+v then %+v", res.Objects[0], again.Objects[0])
	}
	// A new image is a new generation.
	fn.Image = strings.Split(fn.Image, "@")[0] + "@sha256:" + strings.Repeat("1", 64)
	next, err := d.Apply(ctx, fn)
	if err != nil {
		t.Fatal(err)
	}
	if next.Objects[0].Generation != res.Objects[0].Generation+1 {
		t.Errorf("generation %d after a new image, want %d", next.Objects[0].Generation, res.Objects[0].Generation+1)
	}

	// Someone edits the image by hand: Gantry takes its field back
	// (forceConflicts: true), or refuses with the conflict named (false).
	dep, err = c.kube.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Spec.Containers[0].Image = "busybox:latest"
	if _, err := c.kube.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	strict := testConfig(ns)
	strict.ForceConflicts = false
	ds := newDeployer(t, strict, c.rc)
	_, err = ds.Apply(ctx, fn)
	var re *RejectedError
	if !errors.As(err, &re) || re.Code != 409 || re.Admission || !strings.Contains(err.Error(), "kubectl-edit") {
		t.Fatalf("want a 409 conflict naming kubectl-edit, got %v", err)
	}
	if _, err := d.Apply(ctx, fn); err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	dep, err = c.kube.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != fn.Image {
		t.Errorf("after forced apply image %q, want %q", got, fn.Image)
	}
}

// TestPodSecurityRestrictedByTheAPIServer lets the API server's own Pod
// Security admission judge the pod Gantry's Deployment would create: the
// namespace enforces and warns on "restricted".
func TestPodSecurityRestrictedByTheAPIServer(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	})
	d, err := New(testConfig(ns), c.rc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Apply(ctx, c.function("strict"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("the API server warned about the Deployment: %v", res.Warnings)
	}
	dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, "strict", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podFrom := func(name string, spec corev1.PodSpec) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: dep.Spec.Template.Labels}, Spec: spec}
	}
	if _, err := c.kube.CoreV1().Pods(ns).Create(ctx, podFrom("from-template", dep.Spec.Template.Spec), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server refused the pod Gantry's template makes: %v", err)
	}
	// Control: the same namespace refuses a pod without the hardening.
	weak := dep.Spec.Template.Spec.DeepCopy()
	weak.SecurityContext = nil
	weak.Containers[0].SecurityContext = nil
	_, err = c.kube.CoreV1().Pods(ns).Create(ctx, podFrom("weak", *weak), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("control pod without a security context: want a PodSecurity refusal, got %v", err)
	}

	// A Deployment that would make such pods draws warnings, and Apply
	// reports them verbatim.
	weakDep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "weak"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "weak"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "weak"}}, Spec: *weak},
		},
	}
	rec := &warnings{}
	wctx := context.WithValue(ctx, warningsKey{}, rec)
	if _, err := d.kube.AppsV1().Deployments(ns).Create(wctx, weakDep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := rec.list(); len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), "would violate PodSecurity") {
		t.Fatalf("warnings %v: the recorder misses the API server's Pod Security warning", w)
	}
}

// TestAdmissionDenialReportedVerbatim installs a ValidatingAdmissionPolicy
// (admission run by the API server itself) scoped to one namespace, and
// checks Apply returns its message unchanged and marked as admission.
func TestAdmissionDenialReportedVerbatim(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	suffix := randSuffix()
	ns := c.namespace(t, map[string]string{"gantry-test-policy": suffix})
	message := "functions named blocked are refused by test policy " + suffix
	fail := admissionregistrationv1.Fail
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "gantry-deploy-test-" + suffix},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: `object.metadata.name != "blocked"`, Message: message}},
		},
	}
	if _, err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(context.Background(), policy.Name, metav1.DeleteOptions{})
	})
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"gantry-test-policy": suffix}}},
		},
	}
	if _, err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	d, err := New(testConfig(ns), c.rc)
	if err != nil {
		t.Fatal(err)
	}
	// A new policy takes effect once the API server has loaded it: poll
	// with a server-side dry run until it denies.
	probe := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "blocked"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: c.env.BaseImage}}}}}}
	wait.Until(t, 30*time.Second, "the policy to take effect", func() error {
		_, err := c.kube.AppsV1().Deployments(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), message) {
			return nil
		}
		return fmt.Errorf("last dry run: %v", err)
	})

	_, err = d.Apply(ctx, c.function("blocked"))
	var re *RejectedError
	if !errors.As(err, &re) {
		t.Fatalf("want *RejectedError, got %T %v", err, err)
	}
	if !re.Admission || !IsAdmissionDenied(err) {
		t.Errorf("not marked as an admission denial: %+v", re)
	}
	if !strings.Contains(re.Message, message) || !strings.Contains(re.Message, policy.Name) {
		t.Errorf("message %q lacks the policy's own words or name", re.Message)
	}
	if _, err := c.kube.CoreV1().Services(ns).Get(ctx, "blocked", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Service was created for a refused Deployment (err %v)", err)
	}
	// The same Deployer deploys other functions in that namespace.
	if _, err := d.Apply(ctx, c.function("allowed")); err != nil {
		t.Fatalf("unrelated function: %v", err)
	}
}

func setDeploymentStatus(t *testing.T, c *cluster, ns, name string, mutate func(*appsv1.Deployment)) {
	t.Helper()
	dep, err := c.kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Error(err)
		return
	}
	mutate(dep)
	if _, err := c.kube.AppsV1().Deployments(ns).UpdateStatus(context.Background(), dep, metav1.UpdateOptions{}); err != nil {
		t.Error(err)
	}
}

func TestWaitForRollout(t *testing.T) {
	old := pollInterval
	pollInterval = 50 * time.Millisecond
	t.Cleanup(func() { pollInterval = old })
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, nil)
	cfg := testConfig(ns)
	cfg.WaitForRollout = true
	cfg.RolloutTimeout = 1500 * time.Millisecond
	d, err := New(cfg, c.rc)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("timeout names the last state", func(t *testing.T) {
		res, err := d.Apply(ctx, c.function("slow"))
		var re *RolloutError
		if !errors.As(err, &re) || !re.Timeout {
			t.Fatalf("want a rollout timeout, got %v", err)
		}
		if res == nil || len(res.Objects) != 2 || res.RolledOut {
			t.Fatalf("the applied objects must be reported with the timeout: %+v", res)
		}
		if !strings.Contains(re.State, "observe generation 1") {
			t.Errorf("state %q does not say the controller has not observed the Deployment", re.State)
		}
	})

	t.Run("success once the controller reports available replicas", func(t *testing.T) {
		nd := newDeployer(t, testConfig(ns), c.rc)
		res, err := nd.Apply(ctx, c.function("fast"))
		if err != nil {
			t.Fatal(err)
		}
		// Half-way: updated but not available; then done.
		setDeploymentStatus(t, c, ns, "fast", func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1, ReadyReplicas: 1}
		})
		err = d.WaitForRollout(ctx, res)
		var re *RolloutError
		if !errors.As(err, &re) || !re.Timeout || !strings.Contains(re.State, "1 of 2 updated replicas available") {
			t.Fatalf("want a timeout with 1 of 2 available, got %v", err)
		}
		// The waiter reads the half-way status at least once before the
		// controller reports the rollout done: it waits, not just reads.
		rc := rest.CopyConfig(c.rc)
		read := make(chan struct{}, 1)
		rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(req *http.Request) (*http.Response, error) {
				resp, err := rt.RoundTrip(req)
				if err == nil && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/deployments/fast") {
					select {
					case read <- struct{}{}:
					default:
					}
				}
				return resp, err
			})
		})
		cfg := cfg
		cfg.RolloutTimeout = time.Minute
		waiter := newDeployer(t, cfg, rc)
		done := make(chan error, 1)
		go func() { done <- waiter.WaitForRollout(ctx, res) }()
		select {
		case <-read:
		case err := <-done:
			t.Fatalf("the rollout wait ended before the replicas were available: %v", err)
		}
		setDeploymentStatus(t, c, ns, "fast", func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2}
		})
		if err := <-done; err != nil {
			t.Fatalf("rollout: %v", err)
		}
		if !res.RolledOut {
			t.Error("RolledOut not set")
		}
	})

	t.Run("progress deadline fails at once", func(t *testing.T) {
		nd := newDeployer(t, testConfig(ns), c.rc)
		res, err := nd.Apply(ctx, c.function("stuck"))
		if err != nil {
			t.Fatal(err)
		}
		setDeploymentStatus(t, c, ns, "stuck", func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 1,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
					Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "stuck-abc" has timed out progressing.`}}}
		})
		err = d.WaitForRollout(ctx, res)
		var re *RolloutError
		if !errors.As(err, &re) || re.Timeout || !strings.Contains(re.State, `"stuck-abc" has timed out`) {
			t.Fatalf("want an immediate failure quoting the controller, got %v", err)
		}
	})

	t.Run("superseded image fails at once", func(t *testing.T) {
		nd := newDeployer(t, testConfig(ns), c.rc)
		fn := c.function("raced")
		res, err := nd.Apply(ctx, fn)
		if err != nil {
			t.Fatal(err)
		}
		fn.Image = strings.Split(fn.Image, "@")[0] + "@sha256:" + strings.Repeat("2", 64)
		if _, err := nd.Apply(ctx, fn); err != nil {
			t.Fatal(err)
		}
		err = d.WaitForRollout(ctx, res)
		var re *RolloutError
		if !errors.As(err, &re) || re.Timeout || !strings.Contains(re.State, "superseded") {
			t.Fatalf("want superseded, got %v", err)
		}
	})
}

// TestDeployerRBAC applies manifests/deployer-rbac.yaml, then deploys as
// that ServiceAccount (impersonated): it can deploy into its namespace and
// nowhere else.
func TestDeployerRBAC(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	fnNS := c.namespace(t, nil)
	saNS := c.namespace(t, nil)
	otherNS := c.namespace(t, nil)
	raw, err := os.ReadFile("../manifests/deployer-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(raw)), 4096)
	var kinds []string
	var saName string // the ServiceAccount the manifest binds (the chart's worker)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deployer-rbac.yaml: %v", err)
		}
		if u.Object == nil {
			continue
		}
		kinds = append(kinds, u.GetKind())
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		switch u.GetKind() {
		case "Role":
			var r rbacv1.Role
			if err := yaml.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			r.Namespace = fnNS
			for _, rule := range r.Rules {
				for _, v := range rule.Verbs {
					if v == "*" || v == "delete" || v == "deletecollection" || v == "escalate" || v == "bind" {
						t.Errorf("role grants %q on %v", v, rule.Resources)
					}
				}
				for _, res := range rule.Resources {
					if res == "secrets" || res == "*" {
						t.Errorf("role grants access to %q", res)
					}
				}
			}
			if _, err := c.kube.RbacV1().Roles(fnNS).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := yaml.Unmarshal(b, &rb); err != nil {
				t.Fatal(err)
			}
			rb.Namespace = fnNS
			if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" {
				t.Fatalf("RoleBinding subjects %v, want one ServiceAccount", rb.Subjects)
			}
			saName = rb.Subjects[0].Name
			rb.Subjects[0].Namespace = saNS
			if _, err := c.kube.RbacV1().RoleBindings(fnNS).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("unexpected %s in the deployer RBAC: it must hold a Role and a RoleBinding only (nothing cluster-wide)", u.GetKind())
		}
	}
	if strings.Join(kinds, ",") != "Role,RoleBinding" {
		t.Fatalf("manifest holds %v, want Role,RoleBinding", kinds)
	}
	if _, err := c.kube.CoreV1().ServiceAccounts(saNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: saName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	as := rest.CopyConfig(c.rc)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + saNS + ":" + saName}
	cfg := testConfig(fnNS)
	cfg.Mode = ModeAuto // discovery must work with these rights too
	d, err := New(cfg, as)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Apply(ctx, c.function("rbac"))
	if err != nil {
		t.Fatalf("deploying as the deployer ServiceAccount: %v", err)
	}
	if res.Mode != ModeKubernetes {
		t.Fatalf("mode %s", res.Mode)
	}
	if _, err := d.Apply(ctx, c.function("rbac")); err != nil {
		t.Fatalf("re-deploying (patch of an existing object): %v", err)
	}
	res.Objects[0].Generation = 1
	cfgWait := cfg
	cfgWait.RolloutTimeout = 300 * time.Millisecond
	dw := newDeployer(t, cfgWait, as)
	var roe *RolloutError
	if err := dw.WaitForRollout(ctx, res); !errors.As(err, &roe) || !roe.Timeout || strings.Contains(roe.State, "forbidden") {
		t.Fatalf("rollout wait as the deployer: want a plain timeout (status readable), got %v", err)
	}

	fn := c.function("elsewhere")
	fn.Namespace = otherNS
	_, err = d.Apply(ctx, fn)
	var re *RejectedError
	if !errors.As(err, &re) || re.Code != 403 || re.Admission || !strings.Contains(re.Message, "deployer-rbac.yaml") {
		t.Fatalf("deploying outside the function namespace: want RBAC 403 with the fix, got %v", err)
	}
}

// TestOpenFaaSFunctionCRD installs the OpenFaaS Function CRD and checks
// auto mode switches to it, applies a Function the API server validates
// against the CRD's schema, and waits on its Ready condition. It owns the
// cluster-scoped CRD, so its steps run in order, not in parallel.
func TestOpenFaaSFunctionCRD(t *testing.T) {
	old := pollInterval
	pollInterval = 50 * time.Millisecond
	t.Cleanup(func() { pollInterval = old })
	c := newCluster(t)
	ctx := ctxT(t)
	ns := c.namespace(t, nil)
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crds := c.dyn.Resource(crdGVR)
	const crdName = "functions.openfaas.com"
	if _, err := crds.Get(ctx, crdName, metav1.GetOptions{}); err == nil {
		t.Fatalf("%s is already installed in the test API server; another test left it behind", crdName)
	}

	cfg := testConfig(ns)
	cfg.Mode = ModeOpenFaaS
	strict := newDeployer(t, cfg, c.rc)
	if _, err := strict.Apply(ctx, c.function("nocrd")); err == nil || !strings.Contains(err.Error(), "does not serve functions.openfaas.com") {
		t.Fatalf("mode openfaas without the CRD: want a clear error, got %v", err)
	}
	cfg.Mode = ModeAuto
	d := newDeployer(t, cfg, c.rc)
	res, err := d.Apply(ctx, c.function("before"))
	if err != nil || res.Mode != ModeKubernetes {
		t.Fatalf("auto without the CRD: want a Deployment, got %+v, %v", res, err)
	}

	raw, err := os.ReadFile("testdata/openfaas-function-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("installing the Function CRD: %v", err)
	}
	t.Cleanup(func() {
		if err := crds.Delete(context.Background(), crdName, metav1.DeleteOptions{}); err != nil {
			t.Errorf("removing the Function CRD: %v", err)
			return
		}
		// Later tests check that it is not installed.
		wait.Until(t, 10*time.Second, "the Function CRD to be removed", func() error {
			_, err := crds.Get(context.Background(), crdName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		})
	})
	// The CRD is served once Established; discovery follows.
	wait.Until(t, 30*time.Second, "the Function CRD to be served", func() error {
		served, err := d.functionCRDServed(ctx)
		if err == nil && !served {
			err = errors.New("not served yet")
		}
		return err
	})

	fn := c.function("openfaas-fn")
	fn.Resources = Resources{CPURequest: "10m", MemoryLimit: "96Mi"}
	res, err = d.Apply(ctx, fn)
	if err != nil {
		t.Fatalf("apply Function: %v", err)
	}
	if res.Mode != ModeOpenFaaS || len(res.Objects) != 1 || res.Objects[0].Kind != OpenFaaSKind {
		t.Fatalf("result %+v", res)
	}
	got, err := c.dyn.Resource(FunctionGVR).Namespace(ns).Get(ctx, "openfaas-fn", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := got.Object["spec"].(map[string]any)
	if spec["image"] != fn.Image || spec["name"] != "openfaas-fn" || spec["readOnlyRootFilesystem"] != true {
		t.Errorf("stored spec %v", spec)
	}
	if env := spec["environment"].(map[string]any); env["GREETING"] != "hi" {
		t.Errorf("environment %v", env)
	}
	if lim := spec["limits"].(map[string]any); lim["memory"] != "96Mi" {
		t.Errorf("limits %v", lim)
	}
	if _, err := c.kube.AppsV1().Deployments(ns).Get(ctx, "openfaas-fn", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Gantry made a Deployment beside the Function (err %v); the operator owns that", err)
	}
	// The Function carries the run and its owner: Current reads them back,
	// and another repository may not take the name over.
	if cur, err := d.Current(ctx, fn); err != nil || cur == nil || cur.Kind != OpenFaaSKind || cur.Repo != fn.Labels.Repo || cur.Commit != fn.Labels.Commit {
		t.Fatalf("Current of the Function: %+v %v", cur, err)
	}
	intruder := fn
	intruder.Labels.Repo = "acme/intruder"
	if _, err := d.Apply(ctx, intruder); !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), fn.Labels.Repo) {
		t.Fatalf("another repository's apply of the Function: %v, want refused naming %s", err, fn.Labels.Repo)
	}

	// Rollout: not Ready, then Ready (written as the operator would).
	setReady := func(status string) {
		f, err := c.dyn.Resource(FunctionGVR).Namespace(ns).Get(ctx, "openfaas-fn", metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		if err := unstructured.SetNestedSlice(f.Object, []any{map[string]any{
			"type": "Ready", "status": status, "reason": "Test", "message": "pods " + status,
			"observedGeneration": f.GetGeneration(), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}, "status", "conditions"); err != nil {
			t.Error(err)
			return
		}
		if _, err := c.dyn.Resource(FunctionGVR).Namespace(ns).UpdateStatus(ctx, f, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
	}
	short := cfg
	short.RolloutTimeout = 500 * time.Millisecond
	ds := newDeployer(t, short, c.rc)
	var roe *RolloutError
	if err := ds.WaitForRollout(ctx, res); !errors.As(err, &roe) || !roe.Timeout || !strings.Contains(roe.State, "not reported a Ready condition") {
		t.Fatalf("before any status: %v", err)
	}
	setReady("False")
	if err := ds.WaitForRollout(ctx, res); !errors.As(err, &roe) || !strings.Contains(roe.State, "not Ready (Test): pods False") {
		t.Fatalf("Ready=False: %v", err)
	}
	setReady("True")
	if err := ds.WaitForRollout(ctx, res); err != nil || !res.RolledOut {
		t.Fatalf("Ready=True: %v", err)
	}

	// A schema violation (what a wrong shape would cause) is refused by
	// the API server, reported as such and not as admission.
	bad := renderOpenFaaSFunction(&normalized{Function: Function{Name: "bad", Namespace: ns}, image: fn.Image})
	if err := unstructured.SetNestedField(bad.Object, "not-a-bool", "spec", "readOnlyRootFilesystem"); err != nil {
		t.Fatal(err)
	}
	_, err = c.dyn.Resource(FunctionGVR).Namespace(ns).Apply(ctx, "bad", bad, metav1.ApplyOptions{FieldManager: FieldManager})
	if err == nil {
		t.Fatal("the CRD schema accepted a string for readOnlyRootFilesystem; the test CRD is not structural")
	}
	if re := explain(err, OpenFaaSKind, ns, "bad"); IsAdmissionDenied(re) {
		t.Errorf("schema error classified as admission: %v", re)
	}
}

// newDeployer is New for a configuration the test expects to be valid.
func newDeployer(t *testing.T, cfg config.Deploy, rc *rest.Config) *Deployer {
	t.Helper()
	d, err := New(cfg, rc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
