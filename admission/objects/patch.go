package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ImageField is one container image of a workload and where it sits in the
// object as sent, as an RFC 6901 JSON Pointer
// ("/spec/template/spec/containers/0/image").
type ImageField struct {
	// List is containers, initContainers or ephemeralContainers.
	List      string
	Index     int
	Container string
	Image     string
	Pointer   string
}

// ImageFields lists the image of every init, regular and ephemeral
// container of the workload's pod spec, in that order. The pointers follow
// the kind's SpecPath: the positions are those of the JSON the workload was
// decoded from, since decoding keeps the order of every list.
func (w *Workload) ImageFields() []ImageField {
	if w.Spec == nil {
		return nil
	}
	base := "/" + strings.ReplaceAll(w.SpecPath, ".", "/")
	var out []ImageField
	add := func(list string, i int, name, image string) {
		out = append(out, ImageField{List: list, Index: i, Container: name, Image: image,
			Pointer: base + "/" + list + "/" + strconv.Itoa(i) + "/image"})
	}
	for i, c := range w.Spec.InitContainers {
		add("initContainers", i, c.Name, c.Image)
	}
	for i, c := range w.Spec.Containers {
		add("containers", i, c.Name, c.Image)
	}
	for i, c := range w.Spec.EphemeralContainers {
		add("ephemeralContainers", i, c.Name, c.Image)
	}
	return out
}

// ImageChange replaces the image at Pointer, which must currently be From.
type ImageChange struct {
	Pointer  string
	From, To string
}

// PatchOp is one RFC 6902 operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// ImagePatch builds the RFC 6902 JSON Patch for the changes: for each, a
// "test" that the field still holds From, then a "replace" with To. The
// test makes the patch all-or-nothing against the object it was computed
// for: if the object the API server applies it to differs, the patch fails
// and the request is refused, instead of an image being written somewhere
// it was not checked. Pointers must be ones ImageFields produced.
func ImagePatch(changes []ImageChange) ([]byte, error) {
	ops := make([]PatchOp, 0, 2*len(changes))
	seen := map[string]bool{}
	for _, c := range changes {
		if !validImagePointer(c.Pointer) {
			return nil, fmt.Errorf("not an image field pointer: %q", c.Pointer)
		}
		if seen[c.Pointer] {
			return nil, fmt.Errorf("image field %s changed twice", c.Pointer)
		}
		if c.To == "" {
			return nil, errors.New("empty image in a patch")
		}
		seen[c.Pointer] = true
		ops = append(ops, PatchOp{Op: "test", Path: c.Pointer, Value: c.From}, PatchOp{Op: "replace", Path: c.Pointer, Value: c.To})
	}
	return json.Marshal(ops)
}

// validImagePointer accepts exactly the pointers ImageFields produces, for
// the spec paths of the supported kinds.
func validImagePointer(p string) bool {
	for _, k := range kinds {
		base := "/" + strings.ReplaceAll(k.specPath, ".", "/") + "/"
		rest, ok := strings.CutPrefix(p, base)
		if !ok {
			continue
		}
		list, rest, ok := strings.Cut(rest, "/")
		if !ok || (list != "containers" && list != "initContainers" && list != "ephemeralContainers") {
			continue
		}
		idx, field, ok := strings.Cut(rest, "/")
		if !ok || field != "image" {
			continue
		}
		if n, err := strconv.Atoi(idx); err == nil && n >= 0 && strconv.Itoa(n) == idx {
			return true
		}
	}
	return false
}
