package objects

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

const podSpec = `{"containers":[{"name":"app","image":"r/app@sha256:aa"}],"initContainers":[{"name":"init","image":"r/init"}],"ephemeralContainers":[{"name":"dbg","image":"r/dbg"}]}`

func TestDecodeEveryKind(t *testing.T) {
	tmpl := `{"metadata":{"annotations":{"k":"v"}},"spec":` + podSpec + `}`
	cases := []struct {
		gvk  schema.GroupVersionKind
		spec string
		path string
	}{
		{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, podSpec, "spec"},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
		{schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
		{schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, `{"jobTemplate":{"spec":{"template":` + tmpl + `}}}`, "spec.jobTemplate.spec.template.spec"},
		{schema.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}, `{"template":` + tmpl + `}`, "spec.template.spec"},
	}
	for _, c := range cases {
		t.Run(c.gvk.Kind, func(t *testing.T) {
			raw := `{"metadata":{"name":"x","namespace":"ns","annotations":{"k":"v"}},"spec":` + c.spec + `}`
			w, err := Decode(c.gvk, []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if w.Spec == nil || len(w.Spec.Containers) != 1 || len(w.Spec.InitContainers) != 1 || len(w.Spec.EphemeralContainers) != 1 {
				t.Fatalf("spec not decoded: %+v", w.Spec)
			}
			if w.SpecPath != c.path || w.String() != c.gvk.Kind+" ns/x" || w.PodMeta.Annotations["k"] != "v" {
				t.Fatalf("got path %q, name %q, pod annotations %v", w.SpecPath, w.String(), w.PodMeta.Annotations)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []struct {
		gvk  schema.GroupVersionKind
		raw  string
		want string
	}{
		{schema.GroupVersionKind{Group: "apps", Version: "v1beta1", Kind: "Deployment"}, `{}`, "unsupported kind apps/v1beta1/Deployment"},
		{schema.GroupVersionKind{Version: "v1", Kind: "Service"}, `{}`, "unsupported kind"},
		{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, ``, "empty object"},
		{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, `{"spec":{"containers":"x"}}`, "decode Pod"},
		{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, `[1,2]`, "decode Pod"},
	} {
		_, err := Decode(c.gvk, []byte(c.raw))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %s: error %v, want %q", c.gvk, c.raw, err, c.want)
		}
	}
}

// A field spelled with the wrong case must not decode into the real field
// (the API server would not have accepted it either).
func TestDecodeIsCaseSensitive(t *testing.T) {
	w, err := Decode(schema.GroupVersionKind{Version: "v1", Kind: "Pod"},
		[]byte(`{"spec":{"containers":[{"name":"a","image":"i","securityContext":{"Privileged":true}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if sc := w.Spec.Containers[0].SecurityContext; sc != nil && sc.Privileged != nil {
		t.Fatal("case-insensitive decoding")
	}
}

func TestDecodeManifest(t *testing.T) {
	m := `# a comment
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  containers: [{name: c, image: i}]
---
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d, namespace: x}
  spec:
    template:
      spec:
        containers: [{name: c, image: i}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm}
`
	docs, err := DecodeManifest(strings.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 || docs[0].Workload.String() != "Pod a" || docs[1].Workload.String() != "Deployment x/d" || docs[2].Skipped == "" {
		t.Fatalf("%+v", docs)
	}
	for _, bad := range []string{
		"apiVersion: apps/v1beta2\nkind: Deployment\nmetadata: {name: d}\n",
		"kind: Pod\n",
		"apiVersion: v1\nkind: Pod\nspec: {containers: 5}\n",
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n",
		"a: [\n",
	} {
		if _, err := DecodeManifest(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add("apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: c, image: i}]\n")
	f.Add("apiVersion: batch/v1\nkind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {containers: []}}}}}\n---\nx: 1\n")
	f.Add("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: ReplicationController, spec: {}}]\n")
	f.Add(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":null}}`)
	f.Fuzz(func(t *testing.T, s string) {
		docs, err := DecodeManifest(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, d := range docs {
			if d.Workload == nil && d.Skipped == "" {
				t.Fatalf("document %d neither decoded nor skipped", d.Index)
			}
		}
	})
}
