package deploy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/gantry-dev/gantry/config"
)

const testDigest = "sha256:6172f874c3bdcc06e244975eb5972d3c37ca7353704d0fd3bdfdf0f0a8ecb418"

func validFunction() Function {
	return Function{
		Name:       "hello",
		Image:      "127.0.0.1:5000/fn/hello@" + testDigest,
		Env:        map[string]string{"GREETING": "hi", "MODE": "prod"},
		SecretRefs: []string{"hello-db", "hello-api"},
		Scale:      Scale{Min: 2, Max: 5},
		Labels: RunLabels{RunID: "01JABCDEF", Repo: "acme/functions",
			Commit: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main"},
	}
}

func TestNormalizeRefusesBadFunctions(t *testing.T) {
	cfg := config.DefaultDeploy()
	tests := []struct {
		name   string
		mutate func(*Function)
		want   string
	}{
		{"tag instead of digest", func(f *Function) { f.Image = "127.0.0.1:5000/fn/hello:latest" }, "pinned by digest"},
		{"tag and no registry", func(f *Function) { f.Image = "hello" }, "pinned by digest"},
		{"short digest", func(f *Function) { f.Image = "127.0.0.1:5000/fn/hello@sha256:abc" }, "pinned by digest"},
		{"empty image", func(f *Function) { f.Image = "" }, "pinned by digest"},
		{"upper-case name", func(f *Function) { f.Name = "Hello" }, `name "Hello"`},
		{"name with dot", func(f *Function) { f.Name = "a.b" }, `name "a.b"`},
		{"bad namespace", func(f *Function) { f.Namespace = "kube_system" }, `namespace "kube_system"`},
		{"bad env name", func(f *Function) { f.Env = map[string]string{"1BAD": "x"} }, `env "1BAD"`},
		{"env name with =", func(f *Function) { f.Env = map[string]string{"A=B": "x"} }, `env "A=B"`},
		{"huge env value", func(f *Function) { f.Env = map[string]string{"BIG": strings.Repeat("x", maxValueBytes+1)} }, "longer than"},
		{"bad secret name", func(f *Function) { f.SecretRefs = []string{"../etc"} }, `secret reference "../etc"`},
		{"duplicate secret", func(f *Function) { f.SecretRefs = []string{"a", "a"} }, "listed twice"},
		{"bad quantity", func(f *Function) { f.Resources.MemoryLimit = "lots" }, "resources.memoryLimit"},
		{"negative quantity", func(f *Function) { f.Resources.CPURequest = "-1" }, "resources.cpuRequest"},
		{"request above limit", func(f *Function) { f.Resources.CPURequest = "2"; f.Resources.CPULimit = "1" }, "exceeds resources.cpuLimit"},
		{"negative scale", func(f *Function) { f.Scale.Min = -1 }, "must not be negative"},
		{"max below min", func(f *Function) { f.Scale = Scale{Min: 3, Max: 2} }, "below scale.min"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := validFunction()
			tc.mutate(&fn)
			_, err := normalize(cfg, fn)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := normalize(cfg, validFunction()); err != nil {
		t.Fatalf("valid function refused: %v", err)
	}
}

func TestNormalizePinsAndDefaults(t *testing.T) {
	cfg := config.DefaultDeploy()
	fn := validFunction()
	fn.Image = "127.0.0.1:5000/fn/hello:v1@" + testDigest // the tag is dropped, the digest kept
	fn.Scale = Scale{}
	fn.Labels.Commit = strings.Repeat("a", 64) // SHA-256 git object ids do not fit a label value
	n, err := normalize(cfg, fn)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:5000/fn/hello@" + testDigest; n.image != want {
		t.Errorf("image %q, want %q", n.image, want)
	}
	if n.Namespace != cfg.Namespace {
		t.Errorf("namespace %q, want the configured %q", n.Namespace, cfg.Namespace)
	}
	if n.replicas != 1 {
		t.Errorf("replicas %d, want 1 when scale.min is 0", n.replicas)
	}
	if _, ok := n.objectLabels()[LabelCommit]; ok {
		t.Errorf("a 64-character commit became a label value")
	}
	if n.annotations()[AnnotationCommit] != fn.Labels.Commit {
		t.Errorf("the commit is missing from the annotations")
	}
	if got := n.resources[resMemLimit]; got.String() != cfg.DefaultResources.MemoryLimit {
		t.Errorf("default memory limit %s, want %s", got.String(), cfg.DefaultResources.MemoryLimit)
	}
}

// typedDeployment turns the apply configuration into the API type, the
// way the API server would decode it.
func typedDeployment(t *testing.T, cfg config.Deploy, fn Function) *appsv1.Deployment {
	t.Helper()
	n, err := normalize(cfg, fn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(renderDeployment(cfg, n))
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := json.Unmarshal(b, &dep); err != nil {
		t.Fatal(err)
	}
	return &dep
}

// TestPodTemplatePassesRestrictedOffline runs the evaluator Kubernetes' Pod
// Security admission runs, at the latest version, on the rendered pod
// template; the integration test repeats it through a real API server.
func TestPodTemplatePassesRestrictedOffline(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	dep := typedDeployment(t, config.DefaultDeploy(), validFunction())
	res := policy.AggregateCheckResults(eval.EvaluatePod(lv, &dep.Spec.Template.ObjectMeta, &dep.Spec.Template.Spec))
	if !res.Allowed {
		t.Fatalf("rendered pod template fails PSS restricted: %s", res.ForbiddenReason())
	}

	// The evaluator is not lenient: each hardening setting removed makes it fail.
	weakenings := map[string]func(*corev1.PodSpec){
		"runAsNonRoot removed": func(p *corev1.PodSpec) {
			p.SecurityContext.RunAsNonRoot = nil
			p.Containers[0].SecurityContext.RunAsNonRoot = nil
		},
		"capabilities kept": func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.Capabilities = nil },
		"escalation allowed": func(p *corev1.PodSpec) {
			p.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		},
		"no seccomp": func(p *corev1.PodSpec) {
			p.SecurityContext.SeccompProfile = nil
			p.Containers[0].SecurityContext.SeccompProfile = nil
		},
		"root uid": func(p *corev1.PodSpec) { zero := int64(0); p.Containers[0].SecurityContext.RunAsUser = &zero },
	}
	for name, weaken := range weakenings {
		d := dep.DeepCopy()
		weaken(&d.Spec.Template.Spec)
		if policy.AggregateCheckResults(eval.EvaluatePod(lv, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec)).Allowed {
			t.Errorf("%s: still allowed; the check above proves nothing", name)
		}
	}
}

func TestRenderDeploymentShape(t *testing.T) {
	cfg := config.DefaultDeploy()
	fn := validFunction()
	dep := typedDeployment(t, cfg, fn)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]

	if c.Image != fn.Image {
		t.Errorf("image %q, want %q", c.Image, fn.Image)
	}
	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want scale.min 2", *dep.Spec.Replicas)
	}
	if got := dep.Spec.Selector.MatchLabels; len(got) != 1 || got[LabelFunction] != "hello" {
		t.Errorf("selector %v: must hold only the immutable function label", got)
	}
	if dep.Spec.Template.Labels[LabelRun] != fn.Labels.RunID || dep.Spec.Template.Labels[LabelCommit] != fn.Labels.Commit {
		t.Errorf("pod labels %v do not tie the pod to its run", dep.Spec.Template.Labels)
	}
	if dep.Annotations[AnnotationRepo] != "acme/functions" || dep.Annotations[AnnotationRef] != "refs/heads/main" {
		t.Errorf("annotations %v lack repo and ref", dep.Annotations)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("service account token is mounted")
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("root file system is writable")
	}
	if *sc.RunAsUser != cfg.RunAsUser || *pod.SecurityContext.RunAsUser != cfg.RunAsUser {
		t.Errorf("runAsUser not set to %d", cfg.RunAsUser)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if _, ok := mounts["/tmp"]; !ok {
		t.Errorf("no writable /tmp")
	}
	if m, ok := mounts[SecretsDir]; !ok || !m.ReadOnly {
		t.Errorf("secrets not mounted read-only at %s: %+v", SecretsDir, mounts)
	}
	var envNames []string
	for _, e := range c.Env {
		envNames = append(envNames, e.Name)
		if e.ValueFrom != nil {
			t.Errorf("env %s reads from another object", e.Name)
		}
	}
	if strings.Join(envNames, ",") != "GREETING,MODE" {
		t.Errorf("env %v, want sorted GREETING,MODE (stable applies)", envNames)
	}
	var secretNames []string
	for _, v := range pod.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				secretNames = append(secretNames, s.Secret.Name)
			}
		}
		if v.Secret != nil {
			t.Errorf("unexpected secret volume %s", v.Name)
		}
	}
	if strings.Join(secretNames, ",") != "hello-db,hello-api" {
		t.Errorf("secret references %v", secretNames)
	}
	if got := c.Resources.Limits.Memory().String(); got != cfg.DefaultResources.MemoryLimit {
		t.Errorf("memory limit %s, want default %s", got, cfg.DefaultResources.MemoryLimit)
	}
}

func TestRenderOpenFaaSFunction(t *testing.T) {
	fn := validFunction()
	fn.Resources = Resources{CPURequest: "10m", MemoryLimit: "256Mi"}
	n, err := normalize(config.DefaultDeploy(), fn)
	if err != nil {
		t.Fatal(err)
	}
	u := renderOpenFaaSFunction(n)
	spec := u.Object["spec"].(map[string]any)
	if spec["name"] != "hello" || spec["image"] != fn.Image || spec["readOnlyRootFilesystem"] != true {
		t.Errorf("spec %v", spec)
	}
	labels := spec["labels"].(map[string]any)
	if labels["com.openfaas.scale.min"] != "2" || labels["com.openfaas.scale.max"] != "5" {
		t.Errorf("scale labels %v", labels)
	}
	if got := spec["secrets"].([]any); len(got) != 2 || got[0] != "hello-db" {
		t.Errorf("secrets %v", got)
	}
	if spec["requests"].(map[string]any)["cpu"] != "10m" || spec["limits"].(map[string]any)["memory"] != "256Mi" {
		t.Errorf("resources %v %v", spec["requests"], spec["limits"])
	}
}

// FuzzNormalize feeds repository-controlled values through validation and
// rendering: nothing may panic, and whatever is accepted is pinned by
// digest and renders a hardened pod.
func FuzzNormalize(f *testing.F) {
	f.Add("hello", "127.0.0.1:5000/fn/hello@"+testDigest, "KEY", "value", "secret", "100m", "128Mi", int32(1), int32(2), "run-1", "abc")
	f.Add("Hello", "hello:latest", "1", "", "..", "-1", "x", int32(-1), int32(0), "", "")
	f.Add("a", "r@sha256:"+strings.Repeat("0", 64), "A_B", "v", "s.s", "1", "1Gi", int32(0), int32(0), "x/y", strings.Repeat("f", 64))
	cfg := config.DefaultDeploy()
	f.Fuzz(func(t *testing.T, name, image, envKey, envValue, secret, cpu, mem string, minScale, maxScale int32, run, commit string) {
		fn := Function{Name: name, Image: image, Env: map[string]string{envKey: envValue}, SecretRefs: []string{secret},
			Resources: Resources{CPURequest: cpu, MemoryLimit: mem}, Scale: Scale{Min: minScale, Max: maxScale},
			Labels: RunLabels{RunID: run, Commit: commit}}
		n, err := normalize(cfg, fn)
		if err != nil {
			return
		}
		if !strings.Contains(n.image, "@sha256:") && !strings.Contains(n.image, "@sha384:") && !strings.Contains(n.image, "@sha512:") {
			t.Fatalf("accepted unpinned image %q", n.image)
		}
		dep := renderDeployment(cfg, n)
		if *dep.Spec.Template.Spec.Containers[0].SecurityContext.RunAsNonRoot != true {
			t.Fatal("rendered a container that may run as root")
		}
		_ = renderService(cfg, n)
		_ = renderOpenFaaSFunction(n)
	})
}
