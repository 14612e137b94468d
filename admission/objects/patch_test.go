package objects

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The patch is applied with the JSON Patch library the API server's
// mutating webhook dispatcher uses (gopkg.in/evanphx/json-patch.v4).

func pinned(image string) string { return image + "@sha256:" + strings.Repeat("c", 64) }

// changesFor pins every image of w (an empty or missing image is never
// pinned: it is not a reference).
func changesFor(w *Workload) []ImageChange {
	var out []ImageChange
	for _, f := range w.ImageFields() {
		if f.Image == "" {
			continue
		}
		out = append(out, ImageChange{Pointer: f.Pointer, From: f.Image, To: pinned(f.Image)})
	}
	return out
}

// applyAndCheck applies the patch of changes to raw and checks that the
// result decodes to the same workload with exactly the changed images.
func applyAndCheck(t *testing.T, gvk schema.GroupVersionKind, raw []byte, w *Workload, changes []ImageChange) {
	t.Helper()
	out, err := applyPatch(raw, changes)
	if err != nil {
		t.Fatal(err)
	}
	checkPatched(t, gvk, out, w, changes)
}

func applyPatch(raw []byte, changes []ImageChange) ([]byte, error) {
	p, err := ImagePatch(changes)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	patch, err := jsonpatch.DecodePatch(p)
	if err != nil {
		return nil, fmt.Errorf("decode patch %s: %w", p, err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("apply %s to %s: %w", p, raw, err)
	}
	return out, nil
}

func checkPatched(t *testing.T, gvk schema.GroupVersionKind, out []byte, w *Workload, changes []ImageChange) {
	t.Helper()
	got, err := Decode(gvk, out)
	if err != nil {
		t.Fatalf("patched object does not decode: %v\n%s", err, out)
	}
	want := map[string]string{}
	for _, c := range changes {
		want[c.Pointer] = c.To
	}
	gotFields, wantFields := got.ImageFields(), w.ImageFields()
	if len(gotFields) != len(wantFields) {
		t.Fatalf("%d image fields after the patch, %d before", len(gotFields), len(wantFields))
	}
	for i, f := range gotFields {
		exp := wantFields[i].Image
		if to, ok := want[f.Pointer]; ok {
			exp = to
		}
		if f.Pointer != wantFields[i].Pointer || f.Image != exp {
			t.Fatalf("%s: image %q, want %q", f.Pointer, f.Image, exp)
		}
	}
	// Nothing else changed.
	for _, f := range gotFields {
		setImage(got, f, "")
	}
	for _, f := range wantFields {
		setImage(w, f, "")
	}
	if !equality.Semantic.DeepEqual(got.Spec, w.Spec) || !equality.Semantic.DeepEqual(got.Object, w.Object) || !equality.Semantic.DeepEqual(got.PodMeta, w.PodMeta) {
		t.Fatalf("the patch changed more than images:\n%s", out)
	}
}

func setImage(w *Workload, f ImageField, image string) {
	switch f.List {
	case "initContainers":
		w.Spec.InitContainers[f.Index].Image = image
	case "containers":
		w.Spec.Containers[f.Index].Image = image
	case "ephemeralContainers":
		w.Spec.EphemeralContainers[f.Index].Image = image
	}
}

var patchKinds = []struct {
	gvk  schema.GroupVersionKind
	wrap func(spec string) string
}{
	{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, func(s string) string { return s }},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, tmplWrap},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, tmplWrap},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, tmplWrap},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, tmplWrap},
	{schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, tmplWrap},
	{schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, func(s string) string {
		return `{"schedule":"* * * * *","jobTemplate":{"spec":` + tmplWrap(s) + `}}`
	}},
	{schema.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}, tmplWrap},
}

func tmplWrap(s string) string {
	return `{"replicas":2,"template":{"metadata":{"labels":{"a":"b"}},"spec":` + s + `}}`
}

func TestImagePatchEveryKindAndContainerList(t *testing.T) {
	spec := `{"initContainers":[{"name":"i0","image":"r/init:1"},{"name":"i1","image":"r/init@sha256:` + strings.Repeat("a", 64) + `"}],` +
		`"containers":[{"name":"c0","image":"r/app:1.2"},{"name":"c1","image":"r/side"},{"name":"c2","image":"r/app:1.2"}],` +
		`"ephemeralContainers":[{"name":"e0","image":"r/dbg:latest"}]}`
	for _, k := range patchKinds {
		t.Run(k.gvk.Kind, func(t *testing.T) {
			raw := []byte(`{"apiVersion":"x","kind":"` + k.gvk.Kind + `","metadata":{"name":"n","namespace":"fn"},"spec":` + k.wrap(spec) + `}`)
			w, err := Decode(k.gvk, raw)
			if err != nil {
				t.Fatal(err)
			}
			fields := w.ImageFields()
			if len(fields) != 6 || fields[0].List != "initContainers" || fields[2].Container != "c0" || fields[5].List != "ephemeralContainers" {
				t.Fatalf("fields: %+v", fields)
			}
			if !strings.HasPrefix(fields[3].Pointer, "/"+strings.ReplaceAll(w.SpecPath, ".", "/")+"/containers/1/image") {
				t.Fatalf("pointer %s", fields[3].Pointer)
			}
			// All of them, and only some (the pinned init image stays).
			applyAndCheck(t, k.gvk, raw, w, changesFor(w))
			w, _ = Decode(k.gvk, raw)
			some := changesFor(w)
			applyAndCheck(t, k.gvk, raw, w, []ImageChange{some[0], some[4]})
		})
	}
}

func TestImagePatchRefusesAStaleObject(t *testing.T) {
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	raw := []byte(`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"r/app:1"}]}}`)
	p, err := ImagePatch([]ImageChange{{Pointer: "/spec/containers/0/image", From: "r/app:1", To: pinned("r/app:1")}})
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(p)
	if err != nil {
		t.Fatal(err)
	}
	// Another writer changed the image in between: the test op fails, nothing is written.
	moved := []byte(strings.Replace(string(raw), "r/app:1", "r/evil:1", 1))
	if out, err := patch.Apply(moved); err == nil {
		t.Fatalf("a patch for r/app:1 applied to r/evil:1: %s", out)
	}
	if _, err := Decode(gvk, raw); err != nil {
		t.Fatal(err)
	}
}

func TestImagePatchRefusesOtherPointers(t *testing.T) {
	for _, p := range []string{"", "/spec/containers/0/name", "/metadata/name", "/spec/containers/-1/image", "/spec/containers/01/image",
		"/spec/containers/0/image/x", "/spec/volumes/0/image", "/spec/template/spec/containers/x/image", "spec/containers/0/image"} {
		if _, err := ImagePatch([]ImageChange{{Pointer: p, From: "a", To: "b"}}); err == nil {
			t.Errorf("pointer %q accepted", p)
		}
	}
	if _, err := ImagePatch([]ImageChange{{Pointer: "/spec/containers/0/image", From: "a", To: "b"}, {Pointer: "/spec/containers/0/image", From: "a", To: "c"}}); err == nil {
		t.Error("one field changed twice accepted")
	}
	if _, err := ImagePatch([]ImageChange{{Pointer: "/spec/containers/0/image", From: "a", To: ""}}); err == nil {
		t.Error("empty image accepted")
	}
	for _, k := range Kinds() {
		p := "/" + strings.ReplaceAll(kinds[k.Kind].specPath, ".", "/") + "/ephemeralContainers/12/image"
		if _, err := ImagePatch([]ImageChange{{Pointer: p, From: "a", To: "b"}}); err != nil {
			t.Errorf("%s: %v", k.Kind, err)
		}
	}
}

// FuzzImagePatch: for any object that decodes as a supported kind, the
// patch that pins every image either applies (with the API server's JSON
// Patch library) and changes exactly those images and nothing else, or
// fails on its own "test" operations, writing nothing (duplicate keys can
// make the typed decoding and the patch library see different values; the
// API server never sends such an object, and if it did the request would
// be refused). Re-encoded without duplicates, the patch always applies.
func FuzzImagePatch(f *testing.F) {
	f.Add(uint8(0), `{"spec":{"containers":[{"name":"a","image":"r/a:1"}],"initContainers":[{"image":"x"}]}}`)
	f.Add(uint8(1), `{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"r/a:1"},{"image":"b"}],"ephemeralContainers":[{"image":"e"}]}}}}`)
	f.Add(uint8(6), `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"r/a"}]}}}}}}`)
	f.Add(uint8(7), `{"spec":{"template":null}}`)
	f.Add(uint8(0), `{"spec":{"containers":[{"image":"a"}],"containers":[{"image":"b"},{"image":"c"}]}}`)
	f.Add(uint8(0), `{"spec":{"containers":[{"image":"a~/b"}],"Containers":[{"image":"z"}]}}`)
	f.Fuzz(func(t *testing.T, k uint8, raw string) {
		kind := patchKinds[int(k)%len(patchKinds)]
		w, err := Decode(kind.gvk, []byte(raw))
		if err != nil || w.Spec == nil {
			return
		}
		changes := changesFor(w)
		if len(changes) == 0 {
			if p, err := ImagePatch(nil); err != nil || string(p) != "[]" {
				t.Fatalf("empty patch: %s %v", p, err)
			}
			return
		}
		out, err := applyPatch([]byte(raw), changes)
		if err != nil {
			if !strings.Contains(err.Error(), "test failed") {
				t.Fatalf("the patch failed other than on its test: %v", err)
			}
		} else {
			checkPatched(t, kind.gvk, out, w, changes)
		}
		// The same object as the API server would send it: one key each.
		var v any
		if json.Unmarshal([]byte(raw), &v) != nil {
			return
		}
		canon, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		cw, err := Decode(kind.gvk, canon)
		if err != nil || cw.Spec == nil {
			return
		}
		applyAndCheck(t, kind.gvk, canon, cw, changesFor(cw))
	})
}
