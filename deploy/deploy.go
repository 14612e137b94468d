// Package deploy applies functions to the function namespace with
// client-go: server-side apply (field manager "gantry") of a hardened
// Deployment and Service, or of an OpenFaaS Function when the
// functions.openfaas.com CRD is installed. Images are pinned by digest,
// Secrets are referenced and never copied, admission refusals are reported
// verbatim, and waiting for the rollout is a separate, optional step.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/kubeconfig"
)

// FieldManager owns every field Gantry applies.
const FieldManager = "gantry"

// Modes of deployment (config deploy.mode, and Result.Mode).
const (
	ModeAuto       = "auto"
	ModeKubernetes = "kubernetes"
	ModeOpenFaaS   = "openfaas"
)

// FunctionGVR is the OpenFaaS Function resource.
var FunctionGVR = schema.GroupVersionResource{Group: OpenFaaSGroup, Version: OpenFaaSVersion, Resource: OpenFaaSResource}

// Deployer applies functions. It is safe for concurrent use: the pipeline
// deploys functions in parallel through one Deployer.
type Deployer struct {
	cfg  config.Deploy
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

// New builds a Deployer for the cluster rc points at. rc is copied; the
// copy gets the configured request timeout and a warning handler that
// records the API server's warnings (e.g. Pod Security "warn" findings)
// on each Result.
func New(cfg config.Deploy, rc *rest.Config) (*Deployer, error) {
	if rc == nil {
		return nil, errors.New("deploy: no Kubernetes client configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	switch cfg.Mode {
	case ModeAuto, ModeKubernetes, ModeOpenFaaS:
	default:
		return nil, fmt.Errorf("deploy: mode %q is not one of auto, kubernetes, openfaas", cfg.Mode)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = cfg.RequestTimeout
	if rc.QPS == 0 {
		// Parallel functions share this client; client-go's default (5)
		// would throttle their rollout polls.
		rc.QPS, rc.Burst = 20, 40
	}
	if rc.UserAgent == "" {
		rc.UserAgent = "gantry-deployer"
	}
	rc.WarningHandler = nil
	rc.WarningHandlerWithContext = warningRecorder{}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("deploy: Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("deploy: Kubernetes dynamic client: %w", err)
	}
	return &Deployer{cfg: cfg, kube: kube, dyn: dyn}, nil
}

// RESTConfig loads the client configuration: the kubeconfig file when one is
// named, else in-cluster credentials, else $KUBECONFIG or ~/.kube/config.
func RESTConfig(file string) (*rest.Config, error) {
	rc, err := kubeconfig.Load(file)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	return rc, nil
}

// Object identifies one applied object.
type Object struct {
	APIVersion      string `json:"apiVersion"`
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceVersion"`
	Generation      int64  `json:"generation"`
}

// Result is what Apply did.
type Result struct {
	// Mode is kubernetes (Deployment + Service) or openfaas (Function).
	Mode      string `json:"mode"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Image is the digest reference applied.
	Image string `json:"image"`
	// Objects are the applied objects, the workload first.
	Objects []Object `json:"objects"`
	// Warnings are the API server's warnings, verbatim (e.g. Pod Security
	// "warn" mode findings, deprecations).
	Warnings []string `json:"warnings,omitempty"`
	// RolledOut is true once WaitForRollout saw the new pods available.
	RolledOut bool `json:"rolledOut"`
}

// Apply validates fn, applies it with server-side apply, and, when
// deploy.waitForRollout is set, waits for the rollout. On a rollout
// failure the Result is returned with the error, so the caller can record
// what was applied.
func (d *Deployer) Apply(ctx context.Context, fn Function) (*Result, error) {
	n, err := normalize(d.cfg, fn)
	if err != nil {
		return nil, err
	}
	mode, err := d.resolveMode(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.checkOwner(ctx, mode, n); err != nil {
		return nil, err
	}
	rec := &warnings{}
	ctx = context.WithValue(ctx, warningsKey{}, rec)
	res := &Result{Mode: mode, Namespace: n.Namespace, Name: n.Name, Image: n.image}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: d.cfg.ForceConflicts}

	if mode == ModeOpenFaaS {
		u := renderOpenFaaSFunction(n)
		if fn.IfResourceVersion != "" {
			u.SetResourceVersion(fn.IfResourceVersion)
		}
		got, err := d.dyn.Resource(FunctionGVR).Namespace(n.Namespace).Apply(ctx, n.Name, u, opts)
		if err != nil {
			return nil, explain(err, OpenFaaSKind, n.Namespace, n.Name)
		}
		res.Objects = append(res.Objects, Object{APIVersion: got.GetAPIVersion(), Kind: got.GetKind(), Namespace: got.GetNamespace(),
			Name: got.GetName(), UID: string(got.GetUID()), ResourceVersion: got.GetResourceVersion(), Generation: got.GetGeneration()})
	} else {
		// The Deployment goes first: if admission refuses it, no Service
		// is left pointing at nothing.
		dac := renderDeployment(d.cfg, n)
		if fn.IfResourceVersion != "" {
			dac.WithResourceVersion(fn.IfResourceVersion)
		}
		dep, err := d.kube.AppsV1().Deployments(n.Namespace).Apply(ctx, dac, opts)
		if err != nil {
			return nil, explain(err, "Deployment", n.Namespace, n.Name)
		}
		res.Objects = append(res.Objects, Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: dep.Namespace,
			Name: dep.Name, UID: string(dep.UID), ResourceVersion: dep.ResourceVersion, Generation: dep.Generation})
		svc, err := d.kube.CoreV1().Services(n.Namespace).Apply(ctx, renderService(d.cfg, n), opts)
		if err != nil {
			return nil, explain(err, "Service", n.Namespace, n.Name)
		}
		res.Objects = append(res.Objects, Object{APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace,
			Name: svc.Name, UID: string(svc.UID), ResourceVersion: svc.ResourceVersion, Generation: svc.Generation})
	}
	res.Warnings = rec.list()

	if d.cfg.WaitForRollout {
		if err := d.WaitForRollout(ctx, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// resolveMode turns auto into kubernetes or openfaas by asking the API
// server (discovery) whether the Function CRD is served. It is asked on
// every deploy, so installing OpenFaaS later needs no restart.
func (d *Deployer) resolveMode(ctx context.Context) (string, error) {
	if d.cfg.Mode == ModeKubernetes {
		return ModeKubernetes, nil
	}
	served, err := d.functionCRDServed(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case served:
		return ModeOpenFaaS, nil
	case d.cfg.Mode == ModeOpenFaaS:
		return "", fmt.Errorf("deploy: deploy.mode is openfaas but the API server does not serve %s (install OpenFaaS with its CRDs, or set deploy.mode to auto or kubernetes)", FunctionGVR.GroupResource())
	default:
		return ModeKubernetes, nil
	}
}

func (d *Deployer) functionCRDServed(ctx context.Context) (bool, error) {
	var list metav1.APIResourceList
	err := d.kube.Discovery().RESTClient().Get().AbsPath("/apis", OpenFaaSGroup, OpenFaaSVersion).Do(ctx).Into(&list)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		// Fail closed: guessing "no CRD" could deploy beside an operator
		// that owns the function.
		return false, fmt.Errorf("deploy: asking the API server whether %s is installed: %w", FunctionGVR.GroupResource(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == OpenFaaSResource {
			return true, nil
		}
	}
	return false, nil
}

// RejectedError is an API server refusal of an applied object. Message is
// the server's text, verbatim: for an admission webhook or policy it is
// the policy's own reason, which names the rule and the fix.
type RejectedError struct {
	Kind, Namespace, Name string
	// Code is the HTTP status (403 Forbidden, 422 Invalid, 409 Conflict…).
	Code int32
	// Reason is the Kubernetes status reason.
	Reason metav1.StatusReason
	// Message is the API server's message, unchanged.
	Message string
	// Admission is true when an admission controller (webhook,
	// ValidatingAdmissionPolicy, Pod Security) refused the object, as
	// opposed to RBAC, a conflict or a schema error.
	Admission bool
}

func (e *RejectedError) Error() string {
	what := "the API server"
	if e.Admission {
		what = "admission"
	}
	return fmt.Sprintf("deploy: %s %s/%s refused by %s: %s", e.Kind, e.Namespace, e.Name, what, e.Message)
}

// IsAdmissionDenied reports whether err is an admission refusal: a policy
// verdict, not a malfunction.
func IsAdmissionDenied(err error) bool {
	var re *RejectedError
	return errors.As(err, &re) && re.Admission
}

// admissionMarkers are the fixed phrases the API server puts before an
// admission controller's own message.
var admissionMarkers = []string{
	"admission webhook",         // validating/mutating webhooks
	"ValidatingAdmissionPolicy", // CEL policies
	"violates PodSecurity",      // Pod Security admission
	"denied the request",        // webhook wording
	"denied request",            // policy wording
}

func explain(err error, kind, namespace, name string) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fmt.Errorf("deploy: applying %s %s/%s: %w", kind, namespace, name, err)
	}
	s := status.Status()
	re := &RejectedError{Kind: kind, Namespace: namespace, Name: name, Code: s.Code, Reason: s.Reason, Message: s.Message}
	for _, m := range admissionMarkers {
		if strings.Contains(s.Message, m) {
			re.Admission = true
			break
		}
	}
	switch {
	case re.Admission:
	case apierrors.IsNotFound(err) && strings.Contains(s.Message, "namespaces"):
		re.Message += " (create the function namespace and the deployer Role: manifests/deployer-rbac.yaml)"
	case apierrors.IsForbidden(err):
		re.Message += " (the deployer needs the Role in manifests/deployer-rbac.yaml in this namespace)"
	case apierrors.IsConflict(err) && strings.Contains(s.Message, "has been modified"):
		re.Message += " (the function changed since it was checked before this deploy: another run deployed it meanwhile; the deploy is checked again)"
	case apierrors.IsConflict(err):
		re.Message += " (another field manager owns these fields; set deploy.forceConflicts: true to take them over)"
	}
	return re
}

// warningRecorder sends the API server's Warning headers to the recorder
// in the request's context; requests without one drop them.
type warningRecorder struct{}

type warningsKey struct{}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

func (warningRecorder) HandleWarningHeaderWithContext(ctx context.Context, code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	if w, ok := ctx.Value(warningsKey{}).(*warnings); ok {
		w.mu.Lock()
		w.msgs = append(w.msgs, text)
		w.mu.Unlock()
	}
}
