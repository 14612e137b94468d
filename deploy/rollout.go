package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// pollInterval is how often WaitForRollout reads the workload's status.
// A poll (not a watch) keeps the deployer's RBAC to get, and survives API
// server restarts without resync logic; a rollout takes seconds at least.
var pollInterval = 500 * time.Millisecond

// RolloutError says why a rollout did not complete.
type RolloutError struct {
	Kind, Namespace, Name string
	// Timeout is true when deploy.rolloutTimeout (or the caller's context)
	// ran out; false when the rollout failed for good (e.g. the
	// Deployment's progress deadline passed, or a newer image replaced it).
	Timeout bool
	// State is the last status seen, e.g. "1 of 2 updated replicas available".
	State string
}

func (e *RolloutError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("deploy: rollout of %s %s/%s did not finish in time: %s (check the pods' events: image pull, crash loop, readiness, quota)",
			e.Kind, e.Namespace, e.Name, e.State)
	}
	return fmt.Sprintf("deploy: rollout of %s %s/%s failed: %s", e.Kind, e.Namespace, e.Name, e.State)
}

// WaitForRollout waits, at most deploy.rolloutTimeout, until the workload
// Apply produced runs its new pods: for a Deployment, what `kubectl
// rollout status` checks (observed generation, updated, no old, all
// available); for an OpenFaaS Function, its Ready condition. It sets
// res.RolledOut on success and returns a *RolloutError otherwise.
func (d *Deployer) WaitForRollout(ctx context.Context, res *Result) error {
	if res == nil || len(res.Objects) == 0 {
		return errors.New("deploy: WaitForRollout needs the Result of Apply")
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.RolloutTimeout)
	defer cancel()
	w := res.Objects[0]
	check := d.deploymentRolledOut
	if res.Mode == ModeOpenFaaS {
		check = d.functionReady
	}
	state := "no status read yet"
	for {
		done, s, err := check(ctx, res)
		if err != nil {
			return &RolloutError{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, State: err.Error()}
		}
		if s != "" {
			state = s
		}
		if done {
			res.RolledOut = true
			return nil
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return &RolloutError{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, Timeout: true, State: state}
		case <-t.C:
		}
	}
}

// deploymentRolledOut reports done, the state in words, or a permanent
// failure. Transient read errors are a state, not a failure.
func (d *Deployer) deploymentRolledOut(ctx context.Context, res *Result) (bool, string, error) {
	dep, err := d.kube.AppsV1().Deployments(res.Namespace).Get(ctx, res.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "", errors.New("the Deployment was deleted")
	}
	if err != nil {
		if outOfTime(ctx, err) {
			return false, "", nil // keep the last real state
		}
		return false, "reading the Deployment: " + err.Error(), nil
	}
	if img := containerImage(dep, res.Name); img != res.Image {
		return false, "", fmt.Errorf("superseded: the Deployment now runs %s, not %s", img, res.Image)
	}
	return deploymentStatus(dep)
}

// outOfTime reports whether a read failed because the wait ran out of
// time. client-go's rate limiter says so before the deadline, when waiting
// for a token would pass it ("rate: Wait(n=1) would exceed context
// deadline", not a wrapped context error): the same thing.
func outOfTime(ctx context.Context, err error) bool {
	return ctx.Err() != nil || strings.Contains(err.Error(), "would exceed context deadline")
}

func containerImage(dep *appsv1.Deployment, name string) string {
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

// deploymentStatus follows kubectl's rollout status logic.
func deploymentStatus(dep *appsv1.Deployment) (bool, string, error) {
	st := dep.Status
	if dep.Generation > st.ObservedGeneration {
		return false, fmt.Sprintf("waiting for the deployment controller to observe generation %d (observed %d)", dep.Generation, st.ObservedGeneration), nil
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("progress deadline exceeded: %s", c.Message)
		}
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want), nil
}

// functionReady reads the OpenFaaS Function's Ready condition, which the
// operator sets once the function's pods are available.
func (d *Deployer) functionReady(ctx context.Context, res *Result) (bool, string, error) {
	u, err := d.dyn.Resource(FunctionGVR).Namespace(res.Namespace).Get(ctx, res.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "", errors.New("the Function was deleted")
	}
	if err != nil {
		if outOfTime(ctx, err) {
			return false, "", nil // keep the last real state
		}
		return false, "reading the Function: " + err.Error(), nil
	}
	if img, _, _ := unstructured.NestedString(u.Object, "spec", "image"); img != res.Image {
		return false, "", fmt.Errorf("superseded: the Function now runs %s, not %s", img, res.Image)
	}
	return functionStatus(u)
}

func functionStatus(u *unstructured.Unstructured) (bool, string, error) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		if og, ok := m["observedGeneration"].(int64); ok && og < u.GetGeneration() {
			return false, fmt.Sprintf("waiting for the OpenFaaS operator to observe generation %d (observed %d)", u.GetGeneration(), og), nil
		}
		msg, _ := m["message"].(string)
		if m["status"] == string(corev1.ConditionTrue) {
			return true, "Ready: " + msg, nil
		}
		return false, fmt.Sprintf("not Ready (%v): %s", m["reason"], msg), nil
	}
	return false, "the OpenFaaS operator has not reported a Ready condition yet", nil
}
