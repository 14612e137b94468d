// Package clusteraudit answers "what would break if admission enforced
// now?" for a cluster that already runs things: it lists the workloads of
// the function namespaces from the API server and judges each one with the
// admission webhook's own evaluator (package admission), so the reasons and
// fixes are the webhook's, word for word. `gantry policy audit` prints the
// result; `gantry admission` runs it periodically and publishes gauges.
//
// Each object is decoded by objects.Decode from the JSON the API server
// returns, exactly as the webhook decodes AdmissionRequest.object, and
// judged as a CREATE of that object:
//
//   - the requester is the workload controller that submits the object's
//     pods (system:serviceaccount:kube-system:…-controller): the owner's
//     controller for an object a workload kind owns, else the object's own
//     controller for a Deployment, StatefulSet, DaemonSet, Job, CronJob,
//     ReplicaSet or ReplicationController (also one an operator owns);
//     nobody for a bare Pod. So exemptions by
//     user, group or serviceAccount apply only as they would to those
//     controllers (namespace and image exemptions apply as always), and a
//     valid break-glass annotation admits a workload as it admits the pods
//     its controller creates, while one on a bare Pod is refused: nobody
//     can tell who set it;
//   - mode does not hide anything: an object is "denied" when it has a
//     violation that no break-glass annotation admits, whatever the
//     namespace's mode is today (Mode says whether it is enforced now);
//   - a Pod, ReplicaSet or Job whose controller owner is in the listing and
//     has the same violations is reported once, under the owner (Covers
//     counts it); one with different violations is reported on its own, so
//     a forged ownerReference cannot hide a Pod;
//   - Pods that have finished (phase Succeeded or Failed) are not running
//     and are skipped.
package clusteraudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
)

// Schema names the JSON report format (see docs/admission.md).
const Schema = "gantry.dev/policy-audit/v1"

// DefaultPageSize is the list page size (Limit/Continue).
const DefaultPageSize = 250

// resources maps every kind admission covers to its resource name. A kind
// objects.Kinds adds without an entry here makes Run fail, not skip it.
var resources = map[string]string{
	"Pod": "pods", "ReplicationController": "replicationcontrollers",
	"Deployment": "deployments", "ReplicaSet": "replicasets", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
	"Job": "jobs", "CronJob": "cronjobs",
}

// Resources lists what the audit lists, for each kind admission covers,
// sorted by kind; it fails for a kind without a known resource.
func Resources() ([]schema.GroupVersionResource, error) {
	var out []schema.GroupVersionResource
	for _, gvk := range objects.Kinds() {
		res, ok := resources[gvk.Kind]
		if !ok {
			return nil, fmt.Errorf("kind %s is admitted but the audit does not know its resource", gvk.Kind)
		}
		out = append(out, gvk.GroupVersion().WithResource(res))
	}
	return out, nil
}

// controllerUsers is the workload controller that creates objects owned by
// a kind (the kube-controller-manager service accounts).
var controllerUsers = map[string]string{
	"Deployment":            "system:serviceaccount:kube-system:deployment-controller",
	"ReplicaSet":            "system:serviceaccount:kube-system:replicaset-controller",
	"StatefulSet":           "system:serviceaccount:kube-system:statefulset-controller",
	"DaemonSet":             "system:serviceaccount:kube-system:daemon-set-controller",
	"Job":                   "system:serviceaccount:kube-system:job-controller",
	"CronJob":               "system:serviceaccount:kube-system:cronjob-controller",
	"ReplicationController": "system:serviceaccount:kube-system:replication-controller",
}

// Options select what is audited.
type Options struct {
	// Namespaces to list (at least one).
	Namespaces []string
	// Selector is a label selector over the workloads (empty: all).
	Selector string
	// Parallel bounds the objects judged at once (default 4).
	Parallel int
	// PageSize is the Limit of each list call (default 250).
	PageSize int64
	// Now stamps the report (default time.Now).
	Now func() time.Time
}

// Report is the result of one audit; its JSON form is the stable schema
// of `gantry policy audit --output json`.
type Report struct {
	Schema      string    `json:"schema"`
	GeneratedAt time.Time `json:"generatedAt"`
	Namespaces  []string  `json:"namespaces"`
	Selector    string    `json:"selector,omitempty"`
	// Scanned counts the objects judged (after skipping finished Pods).
	Scanned int `json:"scanned"`
	// Denied counts the workloads admission would deny.
	Denied int `json:"denied"`
	// Workloads lists every workload with a violation, denied or admitted
	// by break-glass, sorted by namespace, kind and name.
	Workloads []Workload `json:"workloads"`
}

// Workload is one reported object.
type Workload struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// Mode is the namespace's admission mode today (enforce, warn, audit):
	// enforce means it would be refused now, the others once enforced.
	Mode  string `json:"mode"`
	Level string `json:"level"`
	// Denied is false only when a valid break-glass annotation admits it
	// (until BreakGlass).
	Denied     bool   `json:"denied"`
	BreakGlass string `json:"breakGlass,omitempty"`
	// Covers lists the owned objects (ReplicaSets, Pods, Jobs) reported
	// under this one because they have the same violations.
	Covers     []string              `json:"covers,omitempty"`
	Violations []admission.Violation `json:"violations"`
	Exempt     []string              `json:"exempt,omitempty"`
}

// Object names it as messages do: Kind namespace/name.
func (w Workload) Object() string { return w.Kind + " " + w.Namespace + "/" + w.Name }

// ListError is a list call the API server refused or that failed; Fix says
// what to grant when it is an RBAC refusal.
type ListError struct {
	Resource, Namespace string
	Err                 error
}

func (e *ListError) Error() string {
	msg := fmt.Sprintf("cannot list %s in namespace %s: %v", e.Resource, e.Namespace, e.Err)
	if apierrors.IsForbidden(e.Err) {
		res, group, _ := strings.Cut(e.Resource, ".")
		if group == "" {
			group = `"" (core)`
		}
		msg += fmt.Sprintf(`; grant the RBAC verb "list" on resource %q (apiGroup %s) in namespace %s`, res, group, e.Namespace)
	}
	return msg
}

func (e *ListError) Unwrap() error { return e.Err }

// item is one listed object.
type item struct {
	gvk   schema.GroupVersionKind
	obj   *unstructured.Unstructured
	w     *objects.Workload
	d     admission.Decision
	keys  []string
	owner types.UID
}

// Run lists the workloads and judges each one with eval.
func Run(ctx context.Context, eval *admission.Evaluator, dyn dynamic.Interface, o Options) (*Report, error) {
	if len(o.Namespaces) == 0 {
		return nil, errors.New("no namespace to audit")
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ns := slices.Clone(o.Namespaces)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	rep := &Report{Schema: Schema, GeneratedAt: o.Now().UTC(), Namespaces: ns, Selector: o.Selector, Workloads: []Workload{}}

	gvrs, err := Resources()
	if err != nil {
		return nil, err
	}
	kinds := objects.Kinds()
	var items []*item
	for _, n := range ns {
		for i, gvk := range kinds {
			got, err := list(ctx, dyn, gvrs[i], n, o.Selector, o.PageSize)
			if err != nil {
				return nil, err
			}
			for _, u := range got {
				if gvk.Kind == "Pod" {
					if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase == "Succeeded" || phase == "Failed" {
						continue
					}
				}
				items = append(items, &item{gvk: gvk, obj: u})
			}
		}
	}
	rep.Scanned = len(items)

	// Judge every object, a few at a time.
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, o.Parallel)
		mu       sync.Mutex
		firstErr error
	)
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := judge(ctx, eval, it); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Fold owned objects into their owner when the verdict is the same.
	byUID := map[types.UID]*item{}
	for _, it := range items {
		byUID[it.obj.GetUID()] = it
	}
	rootOf := func(it *item) *item {
		for seen := 0; seen < 8; seen++ { // owner chains are short; a cycle stops here
			p, ok := byUID[it.owner]
			if !ok || it.owner == "" || !slices.Equal(p.keys, it.keys) {
				return it
			}
			it = p
		}
		return it
	}
	reported := map[*item]*Workload{}
	var order []*item
	for _, it := range items {
		if len(it.d.Violations) == 0 {
			continue
		}
		r := rootOf(it)
		if _, ok := reported[r]; !ok {
			reported[r] = toWorkload(r)
			order = append(order, r)
		}
		if r != it {
			reported[r].Covers = append(reported[r].Covers, it.w.Kind+" "+it.w.Name)
		}
	}
	for _, r := range order {
		w := reported[r]
		slices.Sort(w.Covers)
		if w.Denied {
			rep.Denied++
		}
		rep.Workloads = append(rep.Workloads, *w)
	}
	slices.SortFunc(rep.Workloads, func(a, b Workload) int {
		return strings.Compare(a.Namespace+"\x00"+a.Kind+"\x00"+a.Name, b.Namespace+"\x00"+b.Kind+"\x00"+b.Name)
	})
	return rep, nil
}

// list reads one resource in one namespace, page by page.
func list(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, selector string, limit int64) ([]*unstructured.Unstructured, error) {
	name := gvr.Resource
	if gvr.Group != "" {
		name += "." + gvr.Group
	}
	var out []*unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: selector, Limit: limit}
	for {
		l, err := dyn.Resource(gvr).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, &ListError{Resource: name, Namespace: ns, Err: err}
		}
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
		if opts.Continue = l.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// judge decodes the object as the webhook decodes a request's object and
// evaluates it as a CREATE.
func judge(ctx context.Context, eval *admission.Evaluator, it *item) error {
	raw, err := json.Marshal(it.obj.Object)
	if err != nil {
		return err
	}
	w, err := objects.Decode(it.gvk, raw)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", it.gvk.Kind, it.obj.GetNamespace(), it.obj.GetName(), err)
	}
	it.w = w
	user := controllerUsers[w.Kind]
	if ref := metav1.GetControllerOfNoCopy(it.obj); ref != nil {
		it.owner = ref.UID
		if u, ok := controllerUsers[ref.Kind]; ok {
			user = u
		} // else an operator's object (e.g. an OpenFaaS Function's Deployment): as unowned
	}
	it.d = eval.Evaluate(ctx, admission.Request{Operation: "CREATE", Namespace: w.Namespace, Username: user, Workload: w})
	for _, v := range it.d.Violations {
		// The pod spec's path differs between a Pod and its owner's
		// template; the finding does not.
		msg := strings.Replace(v.Message, " ("+w.SpecPath+"): ", ": ", 1)
		it.keys = append(it.keys, strings.Join([]string{v.Rule, v.Container, v.Image, msg, v.Fix}, "\x00"))
	}
	it.keys = append(it.keys, "breakGlass\x00"+it.d.BreakGlass)
	return nil
}

func toWorkload(it *item) *Workload {
	mode := it.d.Mode
	return &Workload{Namespace: it.w.Namespace, Kind: it.w.Kind, Name: it.w.Name, Mode: mode, Level: it.d.Level,
		Denied: it.d.BreakGlass == "", BreakGlass: it.d.BreakGlass,
		Violations: it.d.Violations, Exempt: it.d.Exempt}
}
