package chart

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/config"
)

func root(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	r, err := Root(wd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestManifestsMatchChart(t *testing.T) {
	r := root(t)
	want, err := RenderManifests(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(r, Manifests))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with charts/gantry: run `go run ./hack/render-manifests`", Manifests)
	}
}

func byKind(t *testing.T, docs []map[string]any, kind string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, d := range docs {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

func get(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := m.(map[string]any)
			m = mm[k]
		case int:
			s, _ := m.([]any)
			if k >= len(s) {
				return nil
			}
			m = s[k]
		}
	}
	return m
}

func TestChartInvariants(t *testing.T) {
	r := root(t)
	for _, mode := range []string{"certManager", "helm"} {
		t.Run(mode, func(t *testing.T) {
			out, err := RenderOnly(filepath.Join(r, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"},
				map[string]any{"admission": map[string]any{"tls": map[string]any{"mode": mode}, "functionNamespaces": []any{"fn-a", "fn-b"}}}, "admission-")
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Documents(out)
			if err != nil {
				t.Fatal(err)
			}
			dep := byKind(t, docs, "Deployment")
			if len(dep) != 1 || get(dep[0], "spec", "replicas") != float64(2) {
				t.Fatalf("deployment replicas: %v", get(dep, 0, "spec", "replicas"))
			}
			pdb := byKind(t, docs, "PodDisruptionBudget")
			if len(pdb) != 1 || get(pdb[0], "spec", "minAvailable") != float64(1) {
				t.Fatal("no PDB with minAvailable 1")
			}
			if sa := byKind(t, docs, "ServiceAccount"); len(sa) != 1 || get(sa[0], "automountServiceAccountToken") != false {
				t.Fatal("ServiceAccount token must not be mounted")
			}
			for _, k := range []string{"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} {
				if len(byKind(t, docs, k)) != 0 {
					t.Fatalf("the webhook needs no API access, yet the chart grants a %s", k)
				}
			}
			whs := byKind(t, docs, "ValidatingWebhookConfiguration")
			if len(whs) != 1 {
				t.Fatal("no ValidatingWebhookConfiguration")
			}
			wh := get(whs[0], "webhooks", 0)
			if get(wh, "failurePolicy") != "Fail" || get(wh, "timeoutSeconds") != float64(10) || get(wh, "sideEffects") != "None" {
				t.Fatalf("webhook: %v", wh)
			}
			sel, _ := yaml.Marshal(get(wh, "namespaceSelector"))
			for _, s := range []string{"fn-a", "fn-b", "NotIn", "gantry-system"} {
				if !strings.Contains(string(sel), s) {
					t.Errorf("namespaceSelector lacks %s:\n%s", s, sel)
				}
			}
			if mode == "helm" {
				secret := byKind(t, docs, "Secret")
				if len(secret) != 1 || get(secret[0], "data", "ca.crt") != get(wh, "clientConfig", "caBundle") {
					t.Fatal("caBundle is not the CA of the generated Secret")
				}
				if ca, _ := base64.StdEncoding.DecodeString(get(wh, "clientConfig", "caBundle").(string)); !strings.Contains(string(ca), "BEGIN CERTIFICATE") {
					t.Fatal("caBundle is not a PEM certificate")
				}
			}

			// The webhook's own pod passes the policy it enforces
			// (restricted, non-root), so it could run in any namespace.
			cms := byKind(t, docs, "ConfigMap")
			var gantryYAML string
			for _, cm := range cms {
				if s, ok := get(cm, "data", "gantry.yaml").(string); ok {
					gantryYAML = s
				}
			}
			p := filepath.Join(t.TempDir(), "gantry.yaml")
			if err := os.WriteFile(p, []byte(gantryYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(config.Source{File: p})
			if err != nil {
				t.Fatalf("rendered gantry.yaml does not load: %v\n%s", err, gantryYAML)
			}
			// The root filesystem is read-only: the audit file (exemptions,
			// break-glass) must sit on a writable volume, or the webhook
			// would not start.
			auditDir := filepath.Dir(cfg.Audit.FilePath(cfg.Queue.DataDir))
			var auditVolume string
			for _, m := range get(dep[0], "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
				if get(m, "mountPath") == auditDir && get(m, "readOnly") != true {
					auditVolume, _ = get(m, "name").(string)
				}
			}
			writable := false
			for _, v := range get(dep[0], "spec", "template", "spec", "volumes").([]any) {
				if get(v, "name") == auditVolume && get(v, "emptyDir") != nil {
					writable = true
				}
			}
			if auditDir == "." || !writable {
				t.Errorf("audit file %s is not on a writable volume of the admission pod", cfg.Audit.FilePath(cfg.Queue.DataDir))
			}

			cfg.Admission.VerifySignatures = false
			cfg.Admission.Namespaces = nil
			eval, err := admission.New(cfg.Admission, admission.Options{})
			if err != nil {
				t.Fatal(err)
			}
			depYAML, _ := yaml.Marshal(dep[0])
			mdocs, err := objects.DecodeManifest(bytes.NewReader(depYAML))
			if err != nil {
				t.Fatal(err)
			}
			d := eval.Evaluate(context.Background(), admission.Request{Operation: "CREATE", Namespace: "gantry-system", Workload: mdocs[0].Workload})
			if !d.Allowed {
				t.Fatalf("the chart's own Deployment fails the policy:\n%s", d.Message())
			}
		})
	}
}

func TestChartRefusesUnsafeValues(t *testing.T) {
	r := root(t)
	for name, vals := range map[string]map[string]any{
		"own namespace guarded": {"admission": map[string]any{"functionNamespaces": []any{"gantry-system"}}},
		"no namespaces":         {"admission": map[string]any{"functionNamespaces": []any{}}},
		"bad tls mode":          {"admission": map[string]any{"tls": map[string]any{"mode": "none"}}},
		"secret without CA":     {"admission": map[string]any{"tls": map[string]any{"mode": "secret", "existingSecret": "s"}}},
	} {
		if _, err := Render(filepath.Join(r, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, vals); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

// renderedConfig loads the gantry.yaml of the rendered ConfigMap name with
// Gantry's own config loader (defaults, validation), as the pod will.
func renderedConfig(t *testing.T, docs []map[string]any, name string) *config.Config {
	t.Helper()
	var gantryYAML string
	for _, cm := range byKind(t, docs, "ConfigMap") {
		if str(cm, "metadata", "name") == name {
			gantryYAML = str(cm, "data", "gantry.yaml")
		}
	}
	p := filepath.Join(t.TempDir(), "gantry.yaml")
	if err := os.WriteFile(p, []byte(gantryYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{File: p})
	if err != nil {
		t.Fatalf("the gantry.yaml of ConfigMap %s does not load: %v\n%s", name, err, gantryYAML)
	}
	return cfg
}
