package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// psaFixtures is where the pod-security-admission module keeps the Pods
// Kubernetes itself tests the restricted profile with.
func psaFixtures(t *testing.T) string {
	t.Helper()
	out, err := goEnv("GOMODCACHE")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, "k8s.io", "pod-security-admission@v0.37.2", "test", "testdata", "restricted")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("PSA fixtures not in the module cache (run `go mod download k8s.io/pod-security-admission`): %v", err)
	}
	return dir
}

func goEnv(key string) (string, error) {
	if v := os.Getenv(key); v != "" {
		return v, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(strings.Split(gp, string(os.PathListSeparator))[0], "pkg", "mod"), nil
	}
	return filepath.Join(home, "go", "pkg", "mod"), nil
}

// asDeployment wraps a fixture Pod's metadata and spec in a Deployment
// template.
func asDeployment(t *testing.T, pod []byte) []byte {
	t.Helper()
	var p map[string]any
	if err := yaml.Unmarshal(pod, &p); err != nil {
		t.Fatal(err)
	}
	meta, _ := p["metadata"].(map[string]any)
	d := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": meta["name"]},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "x"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}, "annotations": meta["annotations"]}, "spec": p["spec"]},
		},
	}
	b, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The restricted fixtures of pod-security-admission give the same verdict
// through `gantry policy check` as through Kubernetes' own admission, at
// the version each was written for, as Pods and as Deployment templates.
func TestPolicyCheckMatchesPSAFixtures(t *testing.T) {
	root := psaFixtures(t)
	versions, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	checked := 0
	for _, v := range versions {
		for _, verdict := range []string{"pass", "fail"} {
			files, _ := filepath.Glob(filepath.Join(root, v.Name(), verdict, "*.yaml"))
			if len(files) == 0 {
				continue
			}
			sort.Strings(files)
			for _, wrap := range []string{"Pod", "Deployment"} {
				var manifest bytes.Buffer
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					if wrap == "Deployment" {
						b = asDeployment(t, b)
					}
					manifest.WriteString("---\n")
					manifest.Write(b)
				}
				mf := filepath.Join(tmp, fmt.Sprintf("%s-%s-%s.yaml", v.Name(), verdict, wrap))
				cfg := filepath.Join(tmp, v.Name()+".gantry.yaml")
				if err := os.WriteFile(mf, manifest.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cfg, []byte("admission:\n  podSecurity:\n    version: "+v.Name()+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				code, out, stderr := gantry(t, nil, "policy", "check", "--config", cfg, "-f", mf, "--offline", "-o", "json")
				var res policyCheckResult
				if err := json.Unmarshal([]byte(out), &res); err != nil {
					t.Fatalf("%s: exit %d, not JSON: %v\n%s", mf, code, err, stderr)
				}
				if len(res.Objects) != len(files) {
					t.Fatalf("%s: %d objects for %d fixtures", mf, len(res.Objects), len(files))
				}
				for i, o := range res.Objects {
					checked++
					want := verdict == "pass"
					if o.Allowed != want {
						var why []string
						for _, x := range o.Violations {
							why = append(why, x.String())
						}
						t.Errorf("%s %s as %s: allowed=%v, want %v: %s", v.Name(), filepath.Base(files[i]), wrap, o.Allowed, want, strings.Join(why, "; "))
					}
				}
				wantCode := exitOK
				if verdict == "fail" {
					wantCode = exitPolicy
				}
				if code != wantCode {
					t.Errorf("%s: exit %d, want %d", mf, code, wantCode)
				}
			}
		}
	}
	if checked < 2000 {
		t.Fatalf("only %d fixtures checked", checked)
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`apiVersion: v1
kind: Pod
metadata: {name: ok}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: example.com/app@sha256:`+strings.Repeat("a", 64)+`
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`), 0o600)
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n"), 0o600)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"policy", "check", "-f", good, "--offline"}, exitOK, "ALLOW  Pod default/ok"},
		{[]string{"policy", "check", "-f", good, "--verify-signatures=false"}, exitOK, "allow"},
		{[]string{"policy", "check", "-f", good, "--offline", "--verify-signatures=true"}, exitFailure, ""},
		{[]string{"policy", "check"}, exitFailure, ""},
		{[]string{"policy", "check", "-f", filepath.Join(dir, "missing.yaml"), "--offline"}, exitFailure, ""},
		{[]string{"policy", "check", "-f", empty, "--offline"}, exitFailure, ""},
		{[]string{"policy", "check", "-f", broken, "--offline"}, exitFailure, ""},
	} {
		code, out, stderr := gantry(t, nil, c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%v: exit %d (want %d), out %q, stderr %q", c.args, code, c.code, out, stderr)
		}
	}
}
