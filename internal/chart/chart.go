// Package chart renders the Helm chart in charts/gantry with Helm's own
// template engine (as a library, no helm binary), for the plain manifests
// in manifests/ and for tests that register exactly what the chart renders.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// Release names the install.
type Release struct {
	Name, Namespace string
}

// Render renders the chart at dir with values (merged over values.yaml)
// and returns the documents as one multi-document YAML stream, sorted by
// template file name, without empty documents.
func Render(dir string, rel Release, values map[string]any) ([]byte, error) {
	return RenderOnly(dir, rel, values, "")
}

// RenderOnly is Render limited to the templates whose file name starts
// with prefix ("admission-", "pipeline-"; "" for all).
func RenderOnly(dir string, rel Release, values map[string]any, prefix string) ([]byte, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	vals, err := chartutil.ToRenderValues(ch, values,
		chartutil.ReleaseOptions{Name: rel.Name, Namespace: rel.Namespace, IsInstall: true, Revision: 1},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		if strings.HasSuffix(n, ".yaml") && strings.HasPrefix(path.Base(n), prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out bytes.Buffer
	for _, n := range names {
		for _, doc := range strings.Split(files[n], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", strings.TrimPrefix(n, ch.Name()+"/"), strings.Trim(doc, "\n"))
		}
	}
	return out.Bytes(), nil
}

// ReadValues reads a values file.
func ReadValues(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Documents splits a rendered stream into objects.
func Documents(rendered []byte) ([]map[string]any, error) {
	var out []map[string]any
	for _, doc := range strings.Split(string(rendered), "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("rendered document: %w\n%s", err, doc)
		}
		out = append(out, m)
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Root finds the module root (the directory with go.mod) above dir.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// ManifestsValues and Manifests are the plain-manifest inputs and outputs:
// the admission webhook, and the pipeline (receiver, workers, their RBAC
// and NetworkPolicies, the function namespaces' NetworkPolicies).
const (
	ChartDir          = "charts/gantry"
	ManifestsValues   = "charts/gantry/manifests-values.yaml"
	Manifests         = "manifests/gantry-admission.yaml"
	PipelineManifests = "manifests/gantry-pipeline.yaml"
)

// RenderPipelineManifests renders manifests/gantry-pipeline.yaml.
func RenderPipelineManifests(root string) ([]byte, error) {
	vals, err := ReadValues(filepath.Join(root, ManifestsValues))
	if err != nil {
		return nil, err
	}
	body, err := RenderOnly(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, vals, "pipeline-")
	if err != nil {
		return nil, err
	}
	// The NATS cluster the pipeline queues on (nats-*.yaml).
	nats, err := RenderOnly(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, vals, "nats-")
	if err != nil {
		return nil, err
	}
	body = append(body, nats...)
	head := "# Rendered from charts/gantry by `go run ./hack/render-manifests` with\n" +
		"# " + ManifestsValues + " (release gantry, namespace gantry-system).\n" +
		"# Do not edit: change the chart and re-render (a test checks they agree).\n" +
		"# Create the Secrets it names first (pipeline.secrets); see docs/security.md.\n" +
		"# The NATS cluster's certificates come from cert-manager; see docs/queue.md.\n"
	return append([]byte(head), body...), nil
}

// RenderManifests renders the plain manifests as committed in manifests/.
func RenderManifests(root string) ([]byte, error) {
	vals, err := ReadValues(filepath.Join(root, ManifestsValues))
	if err != nil {
		return nil, err
	}
	body, err := RenderOnly(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, vals, "admission-")
	if err != nil {
		return nil, err
	}
	head := "# Rendered from charts/gantry by `go run ./hack/render-manifests` with\n" +
		"# " + ManifestsValues + " (release gantry, namespace gantry-system).\n" +
		"# Do not edit: change the chart and re-render (a test checks they agree).\n" +
		"# Needs cert-manager for the serving certificate; see docs/admission.md.\n"
	return append([]byte(head), body...), nil
}
