// Command psacheck is the startup benchmark's floor for `gantry policy
// check --offline`: the least a program can do to decide the same thing
// with the same parts. It decodes one Pod from standard input as the API
// server does (sigs.k8s.io/json, case-sensitive) into k8s.io/api types and
// runs Kubernetes' own Pod Security evaluator (restricted, latest), exiting
// 0 when allowed, 1 when not. No configuration, no CLI framework, no
// workload kinds but Pod, no non-root or signature rules: what it costs to
// start is what linking Kubernetes' types and evaluator costs.
package main

import (
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	sigsjson "sigs.k8s.io/json"
)

func main() {
	b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		fail(err)
	}
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(b, &pod); err != nil {
		fail(err)
	}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fail(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	res := policy.AggregateCheckResults(ev.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec))
	if !res.Allowed {
		fmt.Println("deny:", res.ForbiddenDetail())
		os.Exit(1)
	}
	fmt.Println("allow")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "psacheck:", err)
	os.Exit(2)
}
