package clusteraudit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// rig is a namespace on the test API server (no controllers, no
// webhooks: objects stay exactly as created) and clients that count the
// list requests they send.
type rig struct {
	cs   *kubernetes.Clientset
	dyn  dynamic.Interface
	ns   string
	mu   sync.Mutex
	reqs []string // list request queries
}

func newRig(t *testing.T) *rig {
	env := testenv.Require(t)
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	rc.WarningHandler = rest.NoWarnings{}
	r := &rig{ns: fmt.Sprintf("clusteraudit-%d", time.Now().UnixNano()%1e9)}
	if r.cs, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	counted := rest.CopyConfig(rc)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/pods") {
				r.mu.Lock()
				r.reqs = append(r.reqs, req.URL.RawQuery)
				r.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	})
	if r.dyn, err = dynamic.NewForConfig(counted); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cs.CoreV1().Namespaces().Delete(context.Background(), r.ns, metav1.DeleteOptions{}) })
	return r
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

const image = "127.0.0.1:1/fn/app@sha256:0000000000000000000000000000000000000000000000000000000000000001"

// spec passes restricted Pod Security and nonRoot (UID 1000); privileged
// breaks Pod Security.
func spec(privileged bool) corev1.PodSpec {
	sc := &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	if privileged {
		sc.Privileged, sc.AllowPrivilegeEscalation = ptr.To(true), nil
	}
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(1000)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "app", Image: image, SecurityContext: sc}},
	}
}

func evaluator(t *testing.T, mutate func(*config.Admission)) *admission.Evaluator {
	t.Helper()
	a := config.DefaultAdmission()
	a.VerifySignatures = false // signatures need a registry; the rules here are Pod Security and break-glass
	if mutate != nil {
		mutate(&a)
	}
	e, err := admission.New(a, admission.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (r *rig) pod(t *testing.T, name string, s corev1.PodSpec, owner *metav1.OwnerReference, ann map[string]string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}, Spec: s}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	p, err := r.cs.CoreV1().Pods(r.ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ownedBy(kind, name string, uid types.UID) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}

// TestPagesAndSkipsFinishedPods: the pods are listed page by page (Limit,
// Continue) and every page is judged; a Pod that has finished is not.
func TestPagesAndSkipsFinishedPods(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for i := range 5 {
		r.pod(t, fmt.Sprintf("priv-%d", i), spec(true), nil, nil)
	}
	done := r.pod(t, "done", spec(true), nil, nil)
	done.Status.Phase = corev1.PodSucceeded
	if _, err := r.cs.CoreV1().Pods(r.ns).UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, evaluator(t, nil), r.dyn, Options{Namespaces: []string{r.ns}, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range rep.Workloads {
		names = append(names, w.Name)
	}
	if rep.Scanned != 5 || rep.Denied != 5 || strings.Join(names, ",") != "priv-0,priv-1,priv-2,priv-3,priv-4" {
		t.Fatalf("scanned %d, denied %d: %v", rep.Scanned, rep.Denied, names)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// 6 pods, pages of 2: three requests, the last two with continue.
	if len(r.reqs) != 3 || !strings.Contains(r.reqs[0], "limit=2") || strings.Contains(r.reqs[0], "continue=") ||
		!strings.Contains(r.reqs[1], "continue=") || !strings.Contains(r.reqs[2], "continue=") {
		t.Fatalf("pod list requests: %q", r.reqs)
	}
}

// TestOwnersAndBreakGlass: an owned Pod with its owner's violations is
// reported under the owner; one with other violations, or whose owner is
// not listed, on its own. A valid break-glass annotation on a workload
// admits it (as it admits the pods its controller makes) and is shown, not
// counted as denied; one on a bare Pod is refused, as nobody can tell who
// set it.
func TestOwnersAndBreakGlass(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	until := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	eval := evaluator(t, func(a *config.Admission) { a.BreakGlass.Groups = []string{"sre"}; a.BreakGlass.MaxDuration = time.Hour })

	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.ReplicaSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: spec(true)}}}
	rs, err := r.cs.AppsV1().ReplicaSets(r.ns).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.pod(t, "web-1", spec(true), ownedBy("ReplicaSet", "web", rs.UID), nil)
	odd := spec(false)
	odd.HostNetwork = true
	r.pod(t, "web-odd", odd, ownedBy("ReplicaSet", "web", rs.UID), nil)
	r.pod(t, "orphan", spec(true), ownedBy("ReplicaSet", "gone", typesUID("0b7d1c1e-0000-4000-8000-000000000000")), nil)
	r.pod(t, "fine", spec(false), ownedBy("ReplicaSet", "web", rs.UID), nil)

	bg := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "hotfix"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hotfix"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "hotfix"},
			Annotations: map[string]string{"gantry.dev/break-glass-until": until}}, Spec: spec(true)}}}
	if _, err := r.cs.AppsV1().Deployments(r.ns).Create(ctx, bg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An operator's Deployment (an OpenFaaS Function's) is judged as an
	// unowned one.
	fn := bg.DeepCopy()
	fn.Name = "fn-op"
	fn.OwnerReferences = []metav1.OwnerReference{{APIVersion: "openfaas.com/v1", Kind: "Function", Name: "fn-op", UID: "3c0a7e52-0000-4000-8000-000000000000", Controller: ptr.To(true)}}
	if _, err := r.cs.AppsV1().Deployments(r.ns).Create(ctx, fn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.pod(t, "bare-bg", spec(true), nil, map[string]string{"gantry.dev/break-glass-until": until})

	rep, err := Run(ctx, eval, r.dyn, Options{Namespaces: []string{r.ns}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range rep.Workloads {
		var rules []string
		for _, v := range w.Violations {
			rules = append(rules, v.Rule)
		}
		got = append(got, fmt.Sprintf("%s denied=%v bg=%q covers=%v %s", w.Object(), w.Denied, w.BreakGlass, w.Covers, strings.Join(rules, ",")))
	}
	ns := r.ns
	want := []string{
		"Deployment " + ns + "/fn-op denied=false bg=\"" + until + "\" covers=[] podSecurity,podSecurity",
		"Deployment " + ns + "/hotfix denied=false bg=\"" + until + "\" covers=[] podSecurity,podSecurity",
		"Pod " + ns + "/bare-bg denied=true bg=\"\" covers=[] breakGlass",
		"Pod " + ns + "/orphan denied=true bg=\"\" covers=[] podSecurity,podSecurity",
		"Pod " + ns + "/web-odd denied=true bg=\"\" covers=[] podSecurity",
		"ReplicaSet " + ns + "/web denied=true bg=\"\" covers=[Pod web-1] podSecurity,podSecurity",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Scanned != 8 || rep.Denied != 4 {
		t.Fatalf("scanned %d denied %d", rep.Scanned, rep.Denied)
	}

	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"break-glass until " + until + "  Deployment/hotfix", "ReplicaSet/web (+1 owned)", "8 scanned in " + ns + ", 4 would be denied\n"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	// The JSON keys are the documented schema.
	b, err := json.Marshal(rep.Workloads[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"namespace":`, `"kind":"Deployment"`, `"name":"hotfix"`, `"mode":"enforce"`, `"level":"restricted:latest"`, `"denied":false`, `"breakGlass":`, `"violations":[{"rule":"podSecurity","message":`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

// TestFailsClosed: a cancelled or failed audit is an error, never a short
// report that looks clean.
func TestFailsClosed(t *testing.T) {
	r := newRig(t)
	r.pod(t, "priv", spec(true), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rep, err := Run(ctx, evaluator(t, nil), r.dyn, Options{Namespaces: []string{r.ns}}); err == nil {
		t.Fatalf("cancelled: report %+v", rep)
	}
	if _, err := Run(context.Background(), evaluator(t, nil), r.dyn, Options{}); err == nil {
		t.Fatal("no namespace: no error")
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
