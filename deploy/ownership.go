package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Ownership: the repositories that push are tenants of the function
// namespace. A function name belongs to the repository whose run deployed
// it first (the gantry.dev/repo annotation on its objects); an apply for
// another repository is refused, naming the owner, so that one repository
// cannot take over another's function by choosing the same name.

// ErrNotOwner marks an apply refused because the function's objects
// belong to another repository (or to no repository: made by hand).
var ErrNotOwner = errors.New("function owned by another repository")

// OwnerError is an apply refused for ownership.
type OwnerError struct {
	Kind, Namespace, Name string
	// Owner is the repository that deployed the object ("" when it was
	// not deployed from a repository: by hand, or by `gantry deploy`).
	Owner string
	// Repo is the repository whose apply was refused.
	Repo string
}

func (e *OwnerError) Error() string {
	owner := "no repository (it was not deployed by a Gantry run: made by hand, or by `gantry deploy`)"
	if e.Owner != "" {
		owner = "repository " + e.Owner + ", which deployed it first"
	}
	return fmt.Sprintf("deploy: %s %s/%s belongs to %s; %s may not deploy a function of that name (rename the function, or have an operator delete the objects or give %s its own namespace: deploy.tenants.namespaces)",
		e.Kind, e.Namespace, e.Name, owner, e.Repo, e.Repo)
}

func (e *OwnerError) Unwrap() error { return ErrNotOwner }

// Deployed is what a function's workload in the cluster says about the
// run that applied it (the gantry.dev annotations).
type Deployed struct {
	Kind, Namespace, Name         string
	Repo, Commit, Ref, Run, Image string
	// ResourceVersion of the workload when read: Apply with
	// Function.IfResourceVersion set refuses to apply over a newer one.
	ResourceVersion string
}

// Current returns the workload (Deployment, or OpenFaaS Function) of fn
// as deployed now, or nil when there is none.
func (d *Deployer) Current(ctx context.Context, fn Function) (*Deployed, error) {
	ns := fn.Namespace
	if ns == "" {
		ns = d.cfg.Namespace
	}
	for _, v := range []string{fn.Name, ns} {
		if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
			return nil, fmt.Errorf("%w %q: %s", ErrInvalid, v, strings.Join(msgs, "; "))
		}
	}
	mode, err := d.resolveMode(ctx)
	if err != nil {
		return nil, err
	}
	return d.current(ctx, mode, ns, fn.Name)
}

func (d *Deployer) current(ctx context.Context, mode, ns, name string) (*Deployed, error) {
	var (
		kind string
		meta metav1.Object
	)
	if mode == ModeOpenFaaS {
		kind = OpenFaaSKind
		u, err := d.dyn.Resource(FunctionGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explain(err, kind, ns, name)
		}
		meta = u
	} else {
		kind = "Deployment"
		dep, err := d.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explain(err, kind, ns, name)
		}
		meta = dep
	}
	a := meta.GetAnnotations()
	return &Deployed{Kind: kind, Namespace: ns, Name: name, Repo: a[AnnotationRepo], Commit: a[AnnotationCommit],
		Ref: a[AnnotationRef], Run: a[AnnotationRun], Image: a[AnnotationImage], ResourceVersion: meta.GetResourceVersion()}, nil
}

// checkOwner refuses n when an object it would apply exists and was
// deployed for another repository. An apply without a repository (`gantry
// deploy` by an operator) is not checked.
func (d *Deployer) checkOwner(ctx context.Context, mode string, n *normalized) error {
	repo := n.Labels.Repo
	if repo == "" {
		return nil
	}
	type object struct {
		kind string
		get  func() (metav1.Object, error)
	}
	objs := []object{}
	if mode == ModeOpenFaaS {
		objs = append(objs, object{OpenFaaSKind, func() (metav1.Object, error) {
			return d.dyn.Resource(FunctionGVR).Namespace(n.Namespace).Get(ctx, n.Name, metav1.GetOptions{})
		}})
	} else {
		objs = append(objs,
			object{"Deployment", func() (metav1.Object, error) {
				return d.kube.AppsV1().Deployments(n.Namespace).Get(ctx, n.Name, metav1.GetOptions{})
			}},
			object{"Service", func() (metav1.Object, error) {
				return d.kube.CoreV1().Services(n.Namespace).Get(ctx, n.Name, metav1.GetOptions{})
			}})
	}
	for _, o := range objs {
		m, err := o.get()
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return explain(err, o.kind, n.Namespace, n.Name)
		}
		if owner := m.GetAnnotations()[AnnotationRepo]; !strings.EqualFold(owner, repo) {
			return &OwnerError{Kind: o.kind, Namespace: n.Namespace, Name: n.Name, Owner: owner, Repo: repo}
		}
	}
	return nil
}
