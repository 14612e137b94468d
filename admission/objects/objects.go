// Package objects turns the raw objects the admission webhook and `gantry
// policy check` receive into the pod specs that policy is evaluated on: a
// Pod, or the pod template of a Deployment, ReplicaSet, StatefulSet,
// DaemonSet, Job, CronJob or ReplicationController. Checking templates
// refuses a bad Deployment when it is applied, not later when its
// ReplicaSet silently fails to create Pods.
package objects

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Workload is one object that carries a pod spec.
type Workload struct {
	// Kind is the object's kind, e.g. Deployment.
	Kind string
	// Name and Namespace are the object's own (Name may be empty when the
	// object uses generateName).
	Name, Namespace string
	// SpecPath is where the pod spec sits in the object, for messages.
	SpecPath string
	// Object is the object's own metadata.
	Object metav1.ObjectMeta
	// PodMeta is the metadata of the Pod (or of the pod template).
	PodMeta metav1.ObjectMeta
	// Spec is the pod spec; nil when the object carries none.
	Spec *corev1.PodSpec
}

// String names the object the way messages do: Kind namespace/name.
func (w *Workload) String() string {
	n := w.Name
	if n == "" {
		n = w.Object.GenerateName + "*"
	}
	if w.Namespace != "" {
		n = w.Namespace + "/" + n
	}
	return w.Kind + " " + n
}

// kind describes one supported kind: its group/version and where its pod
// spec lives.
type kind struct {
	gv       schema.GroupVersion
	specPath string
	decode   func([]byte) (metav1.ObjectMeta, *corev1.PodTemplateSpec, error)
}

func podTemplate[T any](get func(*T) (metav1.ObjectMeta, *corev1.PodTemplateSpec)) func([]byte) (metav1.ObjectMeta, *corev1.PodTemplateSpec, error) {
	return func(b []byte) (metav1.ObjectMeta, *corev1.PodTemplateSpec, error) {
		var obj T
		if err := strictUnmarshal(b, &obj); err != nil {
			return metav1.ObjectMeta{}, nil, err
		}
		m, t := get(&obj)
		return m, t, nil
	}
}

var kinds = map[string]kind{
	"Pod": {corev1.SchemeGroupVersion, "spec", podTemplate(func(p *corev1.Pod) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return p.ObjectMeta, &corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
	})},
	"Deployment": {appsv1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *appsv1.Deployment) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.Template
	})},
	"ReplicaSet": {appsv1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *appsv1.ReplicaSet) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.Template
	})},
	"StatefulSet": {appsv1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *appsv1.StatefulSet) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.Template
	})},
	"DaemonSet": {appsv1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *appsv1.DaemonSet) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.Template
	})},
	"Job": {batchv1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *batchv1.Job) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.Template
	})},
	"CronJob": {batchv1.SchemeGroupVersion, "spec.jobTemplate.spec.template.spec", podTemplate(func(d *batchv1.CronJob) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, &d.Spec.JobTemplate.Spec.Template
	})},
	"ReplicationController": {corev1.SchemeGroupVersion, "spec.template.spec", podTemplate(func(d *corev1.ReplicationController) (metav1.ObjectMeta, *corev1.PodTemplateSpec) {
		return d.ObjectMeta, d.Spec.Template // may be nil
	})},
}

// Kinds lists the supported kinds as group/version/Kind, sorted.
func Kinds() []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, 0, len(kinds))
	for k, v := range kinds {
		out = append(out, v.gv.WithKind(k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// ErrUnsupported is returned for a kind or version that carries no pod
// spec Gantry knows of.
var ErrUnsupported = errors.New("unsupported kind")

// Decode decodes one JSON object of the given kind.
func Decode(gvk schema.GroupVersionKind, raw []byte) (*Workload, error) {
	k, ok := kinds[gvk.Kind]
	if !ok || k.gv != gvk.GroupVersion() {
		return nil, fmt.Errorf("%w %s (supported: %s)", ErrUnsupported, gvkString(gvk), supportedList())
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%s: empty object", gvk.Kind)
	}
	meta, tmpl, err := k.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", gvk.Kind, err)
	}
	w := &Workload{Kind: gvk.Kind, Name: meta.Name, Namespace: meta.Namespace, SpecPath: k.specPath, Object: meta}
	if tmpl != nil {
		w.PodMeta = tmpl.ObjectMeta
		spec := tmpl.Spec
		w.Spec = &spec
	}
	return w, nil
}

// strictUnmarshal decodes JSON case-sensitively, as the API server does, so
// that a field spelled "Privileged" cannot hide from a check that reads
// "privileged".
func strictUnmarshal(b []byte, into any) error {
	return sigsjson.UnmarshalCaseSensitivePreserveInts(b, into)
}

func gvkString(gvk schema.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Version + "/" + gvk.Kind
	}
	return gvk.Group + "/" + gvk.Version + "/" + gvk.Kind
}

func supportedList() string {
	var s []string
	for _, g := range Kinds() {
		s = append(s, gvkString(g))
	}
	return strings.Join(s, ", ")
}

// MaxManifestDocuments bounds how many objects one manifest may hold.
const MaxManifestDocuments = 10000

// Document is one object from a manifest file.
type Document struct {
	// Index is the object's position in the file (0-based, after List
	// expansion), for messages.
	Index int
	// Workload is set for supported kinds.
	Workload *Workload
	// Skipped says why an object was not evaluated (a kind without a pod
	// spec, e.g. a Service).
	Skipped string
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json2RawMessage `json:"items"`
}

// json2RawMessage keeps the bytes of one List item.
type json2RawMessage []byte

func (m *json2RawMessage) UnmarshalJSON(b []byte) error {
	*m = append((*m)[:0], b...)
	return nil
}

// DecodeManifest reads multi-document YAML (or JSON), expands v1 Lists, and
// decodes every supported object. Objects of other kinds are returned as
// skipped; an object of a supported kind that does not decode, or a
// document without apiVersion/kind, is an error.
func DecodeManifest(r io.Reader) ([]Document, error) {
	yr := utilyaml.NewYAMLReader(bufioReader(r))
	var out []Document
	for doc := 0; ; doc++ {
		b, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc+1, err)
		}
		if len(bytes.TrimSpace(stripComments(b))) == 0 {
			continue
		}
		j, err := yaml.YAMLToJSON(b)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		items, err := expand(j, doc+1)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if len(out) >= MaxManifestDocuments {
				return nil, fmt.Errorf("more than %d objects in one manifest", MaxManifestDocuments)
			}
			d := Document{Index: len(out)}
			var tm typeMeta
			if err := strictUnmarshal(it, &tm); err != nil {
				return nil, fmt.Errorf("document %d: %w", doc+1, err)
			}
			gv, err := schema.ParseGroupVersion(tm.APIVersion)
			if err != nil || tm.APIVersion == "" || tm.Kind == "" {
				return nil, fmt.Errorf("document %d: apiVersion and kind are required", doc+1)
			}
			w, err := Decode(gv.WithKind(tm.Kind), it)
			switch {
			case errors.Is(err, ErrUnsupported):
				if _, known := kinds[tm.Kind]; known {
					// A supported kind at a version we do not decode must not
					// pass unchecked.
					return nil, fmt.Errorf("document %d: %w", doc+1, err)
				}
				d.Skipped = fmt.Sprintf("%s %s: no pod spec", tm.APIVersion, tm.Kind)
			case err != nil:
				return nil, fmt.Errorf("document %d: %w", doc+1, err)
			default:
				defaultLikeAPIServer(w)
				d.Workload = w
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// expand returns the items of a v1 List (recursively), or the object itself.
func expand(j []byte, doc int) ([][]byte, error) {
	var tm typeMeta
	if err := strictUnmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("document %d: %w", doc, err)
	}
	if tm.APIVersion != "v1" || !strings.HasSuffix(tm.Kind, "List") {
		return [][]byte{j}, nil
	}
	var out [][]byte
	for _, it := range tm.Items {
		// Lists inside Lists are not something kubectl produces; refuse
		// them rather than recurse without bound.
		var inner typeMeta
		if err := strictUnmarshal(it, &inner); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if inner.APIVersion == "v1" && strings.HasSuffix(inner.Kind, "List") {
			return nil, fmt.Errorf("document %d: a List inside a List is not supported", doc)
		}
		out = append(out, it)
	}
	return out, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// defaultLikeAPIServer applies the API server's defaulting that changes a
// policy verdict, so that a manifest is judged as the object the webhook
// will see: a volume without a source becomes an emptyDir.
func defaultLikeAPIServer(w *Workload) {
	if w.Spec == nil {
		return
	}
	for i := range w.Spec.Volumes {
		if reflect.ValueOf(w.Spec.Volumes[i].VolumeSource).IsZero() {
			w.Spec.Volumes[i].EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
}
