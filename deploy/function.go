package deploy

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gantry-dev/gantry/config"
)

// Function is one function to deploy, as the pipeline knows it after the
// build, scan and sign stages. Every field comes from a pushed repository
// (untrusted), so Apply validates all of it before talking to the cluster.
type Function struct {
	// Name is the function's name: the Deployment, Service, container or
	// OpenFaaS Function name (a DNS-1123 label).
	Name string
	// Namespace overrides the configured function namespace; empty uses
	// deploy.namespace.
	Namespace string
	// Image is the signed image, pinned by digest (repo@sha256:…). A tag is
	// refused: what was scanned and signed must be what runs.
	Image string
	// Env is the function's environment (plain values only; secrets go in
	// SecretRefs).
	Env map[string]string
	// SecretRefs name Kubernetes Secrets in the namespace. They are
	// referenced, never copied: their keys appear as files under
	// /var/openfaas/secrets/ (the OpenFaaS convention) at run time.
	SecretRefs []string
	// Resources are Kubernetes quantities; empty fields take the
	// configured defaults.
	Resources Resources
	// Scale bounds the replicas; Min 0 means 1.
	Scale Scale
	// Labels tie the objects to the run that produced them. Labels.Repo
	// also owns the function's name: an apply for another repository than
	// the one that deployed the objects is refused (OwnerError).
	Labels RunLabels
	// IfResourceVersion, when set, makes the workload's apply fail with a
	// conflict if the workload changed since it was read at that version
	// (Current): what was checked against it is what gets replaced.
	IfResourceVersion string
}

// Resources are CPU and memory requests and limits (e.g. "100m", "128Mi").
type Resources struct {
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// Scale is the replica range. The Deployment runs Min replicas; OpenFaaS
// gets both as com.openfaas.scale.min/max for its autoscaler.
type Scale struct {
	Min, Max int32
}

// RunLabels identify the run: they become labels where Kubernetes allows
// the value, and annotations always.
type RunLabels struct {
	RunID  string
	Repo   string // owner/name
	Commit string // full SHA
	Ref    string // refs/heads/main
}

// Label and annotation keys Gantry sets.
const (
	LabelFunction    = "gantry.dev/function"
	LabelRun         = "gantry.dev/run"
	LabelCommit      = "gantry.dev/commit"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelName        = "app.kubernetes.io/name"
	AnnotationRun    = "gantry.dev/run"
	AnnotationRepo   = "gantry.dev/repo"
	AnnotationCommit = "gantry.dev/commit"
	AnnotationRef    = "gantry.dev/ref"
	AnnotationImage  = "gantry.dev/image"
	ManagedByValue   = "gantry"
)

// SecretsDir is where referenced Secrets are mounted (as OpenFaaS does).
const SecretsDir = "/var/openfaas/secrets"

// ErrInvalid marks a Function that cannot be deployed as given; the error
// says which field and how to fix it.
var ErrInvalid = errors.New("invalid function")

// maxEnv and maxSecrets bound what a repository can ask for; the API
// server's own object size limit is far larger.
const (
	maxEnv        = 256
	maxSecrets    = 64
	maxValueBytes = 32 << 10
	maxLabelBytes = 1 << 10
)

// normalized is a Function after validation and defaulting.
type normalized struct {
	Function
	image     string // repo@digest, tag dropped
	resources map[string]resource.Quantity
	replicas  int32
}

const (
	resCPURequest = "cpuRequest"
	resMemRequest = "memoryRequest"
	resCPULimit   = "cpuLimit"
	resMemLimit   = "memoryLimit"
)

// normalize validates fn and fills defaults from cfg. All problems are
// reported at once.
func normalize(cfg config.Deploy, fn Function) (*normalized, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if msgs := validation.IsDNS1123Label(fn.Name); len(msgs) > 0 {
		bad("name %q: %s", fn.Name, strings.Join(msgs, "; "))
	}
	if fn.Namespace == "" {
		fn.Namespace = cfg.Namespace
	}
	if msgs := validation.IsDNS1123Label(fn.Namespace); len(msgs) > 0 {
		bad("namespace %q: %s", fn.Namespace, strings.Join(msgs, "; "))
	}

	n := &normalized{Function: fn, resources: map[string]resource.Quantity{}}
	if d, err := name.NewDigest(fn.Image); err != nil {
		bad("image %q must be pinned by digest (repo@sha256:<64 hex>), as built and signed; a tag could point elsewhere by the time it is pulled: %v", fn.Image, err)
	} else {
		n.image = d.Context().Name() + "@" + d.DigestStr()
	}

	if len(fn.Env) > maxEnv {
		bad("env: %d variables, at most %d", len(fn.Env), maxEnv)
	}
	for _, k := range sortedKeys(fn.Env) {
		if msgs := validation.IsEnvVarName(k); len(msgs) > 0 {
			bad("env %q: %s", k, strings.Join(msgs, "; "))
		}
		if len(fn.Env[k]) > maxValueBytes {
			bad("env %q: value longer than %d bytes (put large data in a Secret or ConfigMap)", k, maxValueBytes)
		}
	}

	if len(fn.SecretRefs) > maxSecrets {
		bad("secrets: %d references, at most %d", len(fn.SecretRefs), maxSecrets)
	}
	seen := map[string]bool{}
	for _, s := range fn.SecretRefs {
		if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
			bad("secret reference %q: %s", s, strings.Join(msgs, "; "))
		}
		if seen[s] {
			bad("secret reference %q listed twice", s)
		}
		seen[s] = true
	}

	def := cfg.DefaultResources
	for _, r := range []struct{ key, value, fallback string }{
		{resCPURequest, fn.Resources.CPURequest, def.CPURequest},
		{resMemRequest, fn.Resources.MemoryRequest, def.MemoryRequest},
		{resCPULimit, fn.Resources.CPULimit, def.CPULimit},
		{resMemLimit, fn.Resources.MemoryLimit, def.MemoryLimit},
	} {
		v := r.value
		if v == "" {
			v = r.fallback
		}
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			bad("resources.%s %q is not a non-negative Kubernetes quantity (e.g. 100m, 128Mi)", r.key, v)
			continue
		}
		n.resources[r.key] = q
	}
	for _, pair := range [][2]string{{resCPURequest, resCPULimit}, {resMemRequest, resMemLimit}} {
		req, okReq := n.resources[pair[0]]
		lim, okLim := n.resources[pair[1]]
		if okReq && okLim && req.Cmp(lim) > 0 {
			bad("resources.%s %s exceeds resources.%s %s", pair[0], req.String(), pair[1], lim.String())
		}
	}

	if fn.Scale.Min < 0 || fn.Scale.Max < 0 {
		bad("scale: min and max must not be negative")
	}
	n.replicas = max(fn.Scale.Min, 1)
	if fn.Scale.Max != 0 && fn.Scale.Max < n.replicas {
		bad("scale.max %d is below scale.min %d", fn.Scale.Max, n.replicas)
	}

	for field, v := range map[string]string{"run id": fn.Labels.RunID, "repo": fn.Labels.Repo, "commit": fn.Labels.Commit, "ref": fn.Labels.Ref} {
		if len(v) > maxLabelBytes {
			bad("%s: longer than %d bytes", field, maxLabelBytes)
		}
	}

	if len(errs) > 0 {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalid, fn.Name, errors.Join(errs...))
	}
	return n, nil
}

// objectLabels are set on every object and pod. Run id and commit become
// labels only when Kubernetes accepts them as label values (a SHA-256 git
// commit id is 64 characters, one more than a label value allows); they
// are always in the annotations.
func (n *normalized) objectLabels() map[string]string {
	l := map[string]string{
		LabelName:      n.Name,
		LabelManagedBy: ManagedByValue,
		LabelFunction:  n.Name,
	}
	if v := n.Labels.RunID; v != "" && len(validation.IsValidLabelValue(v)) == 0 {
		l[LabelRun] = v
	}
	if v := n.Labels.Commit; v != "" && len(validation.IsValidLabelValue(v)) == 0 {
		l[LabelCommit] = v
	}
	return l
}

func (n *normalized) annotations() map[string]string {
	a := map[string]string{AnnotationImage: n.image}
	for k, v := range map[string]string{
		AnnotationRun: n.Labels.RunID, AnnotationRepo: n.Labels.Repo,
		AnnotationCommit: n.Labels.Commit, AnnotationRef: n.Labels.Ref,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

// selector picks the function's pods; it never changes (a Deployment's
// selector is immutable), so it holds the function name only.
func (n *normalized) selector() map[string]string {
	return map[string]string{LabelFunction: n.Name}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
