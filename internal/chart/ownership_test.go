package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestOwnershipPolicyMatchesChart checks that the chart renders the
// function-ownership ValidatingAdmissionPolicy that deploy
// TestOwnershipPolicyClosesTheRace installs from
// manifests/function-ownership-policy.yaml (same spec, same binding for the
// default function namespace), and that the binding covers every function
// namespace the worker deploys to, and only those.
func TestOwnershipPolicyMatchesChart(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "manifests/function-ownership-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Documents(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref) != 2 {
		t.Fatalf("manifests/function-ownership-policy.yaml holds %d objects, want the policy and its binding", len(ref))
	}
	docs := renderAll(t, Release{Name: "gantry", Namespace: "gantry-system"}, "openfaas-fn")
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		want, got := byKind(t, docs, kind), byKind(t, ref, kind)
		if len(want) != 1 || len(got) != 1 {
			t.Fatalf("%s: chart renders %d, manifest holds %d; want one each", kind, len(want), len(got))
		}
		for _, path := range [][]any{{"metadata", "name"}, {"spec"}} {
			if w, g := get(want[0], path...), get(got[0], path...); !reflect.DeepEqual(w, g) {
				t.Errorf("%s %v: the manifest has\n%v\nthe chart renders\n%v", kind, path, g, w)
			}
		}
	}

	docs = renderAll(t, Release{Name: "fx", Namespace: "gantry-system"}, "fn-a", "fn-b")
	pols, binds := byKind(t, docs, "ValidatingAdmissionPolicy"), byKind(t, docs, "ValidatingAdmissionPolicyBinding")
	if len(pols) != 1 || len(binds) != 1 {
		t.Fatalf("chart renders %d policies and %d bindings, want one each", len(pols), len(binds))
	}
	if n, p := str(pols[0], "metadata", "name"), str(binds[0], "spec", "policyName"); n != "fx-function-ownership" || p != n {
		t.Errorf("policy %q bound as %q, want both fx-function-ownership", n, p)
	}
	sel := get(binds[0], "spec", "matchResources", "namespaceSelector")
	want := map[string]any{"matchExpressions": []any{map[string]any{
		"key": "kubernetes.io/metadata.name", "operator": "In", "values": []any{"fn-a", "fn-b"},
	}}}
	if !reflect.DeepEqual(sel, want) {
		t.Errorf("binding's namespaceSelector = %v, want %v", sel, want)
	}
}
