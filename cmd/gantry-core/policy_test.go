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

	corev1 "k8s.io/api/core/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/admission"
)

// psaModule is the module whose test fixtures are the restricted Pods
// Kubernetes itself tests Pod Security admission with.
const psaModule = "k8s.io/pod-security-admission"

// psaFixtureFiles is how many restricted fixtures (pass and fail, every
// policy version) psaModule holds at the version go.mod requires. The test
// runs exactly these: a fixture missing or added fails it, so when the
// dependency moves, this number moves deliberately with it.
const psaFixtureFiles = 2982

// psaFixtures is the fixture directory of the psaModule version go.mod
// requires, in the module cache.
func psaFixtures(t *testing.T) string {
	t.Helper()
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	version := ""
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == psaModule {
			version = f[1]
		}
	}
	if version == "" {
		t.Fatalf("go.mod does not require %s", psaModule)
	}
	out, err := goEnv("GOMODCACHE")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(out, filepath.FromSlash(psaModule)+"@"+version, "test", "testdata", "restricted")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("PSA fixtures not in the module cache (run `go mod download %s`): %v", psaModule, err)
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

// psaCheckReasons is, for each check a fail fixture is named after (its
// file name is the check's id in lower case and a number), the reasons
// Kubernetes gives when that check denies a pod: the fixture must be
// denied for the reason it was written for. Two reasons where a restricted
// check takes the place of its baseline counterpart.
var psaCheckReasons = map[string][]string{
	"allowprivilegeescalation":   {"allowPrivilegeEscalation != false"},
	"apparmorprofile":            {"forbidden AppArmor profile"},
	"capabilities_baseline":      {"non-default capabilities", "unrestricted capabilities"},
	"capabilities_restricted":    {"unrestricted capabilities"},
	"hostnamespaces":             {"host namespaces"},
	"hostpathvolumes":            {"hostPath volumes", "restricted volume types"},
	"hostports":                  {"hostPort"},
	"hostprobesandhostlifecycle": {"probe or lifecycle host"},
	"privileged":                 {"privileged"},
	"procmount":                  {"procMount"},
	"procmount_restricted":       {"procMount"},
	"restrictedvolumes":          {"restricted volume types"},
	"runasnonroot":               {"runAsNonRoot != true"},
	"runasuser":                  {"runAsUser=0"},
	"seccompprofile_baseline":    {"seccompProfile"},
	"seccompprofile_restricted":  {"seccompProfile"},
	"selinuxoptions":             {"seLinuxOptions"},
	"sysctls":                    {"forbidden sysctls"},
	"windowshostprocess":         {"hostProcess"},
}

// psaDenials is what Kubernetes' own Pod Security evaluator says of the
// fixture pod at restricted:version, worded as gantry words a podSecurity
// violation of a spec at specPath.
func psaDenials(t *testing.T, ev policy.Evaluator, version string, pod []byte, specPath string) []string {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(pod, &p); err != nil {
		t.Fatal(err)
	}
	v, err := psapi.ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: v}
	res := policy.AggregateCheckResults(ev.EvaluatePod(lv, &p.ObjectMeta, &p.Spec))
	var out []string
	for i, reason := range res.ForbiddenReasons {
		if d := res.ForbiddenDetails[i]; d != "" {
			reason += " (" + d + ")"
		}
		out = append(out, fmt.Sprintf("%q (%s): %s", lv.String(), specPath, reason))
	}
	sort.Strings(out)
	return out
}

// The restricted fixtures of pod-security-admission give the same verdict
// for the same reasons through `gantry policy check` as through
// Kubernetes' own evaluator, at the version each was written for, as Pods
// and as Deployment templates: every fixture, each denied for the check it
// is named after, with Kubernetes' words; only the runAsNonRoot and
// runAsUser fixtures also break gantry's own nonRoot rule.
func TestPolicyCheckMatchesPSAFixtures(t *testing.T) {
	t.Parallel()
	root := psaFixtures(t)
	versions, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	fixtures, checked := 0, 0
	for _, v := range versions {
		for _, verdict := range []string{"pass", "fail"} {
			files, err := filepath.Glob(filepath.Join(root, v.Name(), verdict, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				continue
			}
			fixtures += len(files)
			sort.Strings(files)
			pods := make([][]byte, len(files))
			for i, f := range files {
				if pods[i], err = os.ReadFile(f); err != nil {
					t.Fatal(err)
				}
			}
			for _, wrap := range []string{"Pod", "Deployment"} {
				specPath := "spec"
				var manifest bytes.Buffer
				for _, b := range pods {
					if wrap == "Deployment" {
						b, specPath = asDeployment(t, b), "spec.template.spec"
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
					name := fmt.Sprintf("%s %s/%s as %s", v.Name(), verdict, filepath.Base(files[i]), wrap)
					if o.Index != i {
						t.Errorf("%s: answered as object %d", name, o.Index)
					}
					var pss, nonRoot []string
					for _, x := range o.Violations {
						switch x.Rule {
						case admission.RulePodSecurity:
							pss = append(pss, x.Message)
						case admission.RuleNonRoot:
							nonRoot = append(nonRoot, x.Message)
						default:
							t.Errorf("%s: violation of rule %s: %s", name, x.Rule, x)
						}
					}
					sort.Strings(pss)
					check := strings.TrimRight(strings.TrimSuffix(filepath.Base(files[i]), ".yaml"), "0123456789")
					if verdict == "pass" {
						if o.Skipped != "" || !o.Allowed || len(o.Violations) != 0 {
							t.Errorf("%s: allowed=%v skipped=%q, violations %v; want allowed with none", name, o.Allowed, o.Skipped, o.Violations)
						}
						continue
					}
					if o.Allowed {
						t.Errorf("%s: allowed, want denied", name)
					}
					if want := psaDenials(t, ev, v.Name(), pods[i], specPath); strings.Join(pss, "\n") != strings.Join(want, "\n") {
						t.Errorf("%s: podSecurity violations\n  %s\nwant Kubernetes' own\n  %s", name, strings.Join(pss, "\n  "), strings.Join(want, "\n  "))
					}
					reasons, known := psaCheckReasons[check]
					if !known {
						t.Errorf("%s: fixture for check %q, which the test does not know the reasons of", name, check)
					}
					named := false
					for _, m := range pss {
						for _, r := range reasons {
							named = named || strings.Contains(m, "): "+r+" (") || strings.HasSuffix(m, "): "+r)
						}
					}
					if known && !named {
						t.Errorf("%s: not denied for %s (%s): %v", name, check, strings.Join(reasons, " or "), pss)
					}
					if wantNonRoot := check == "runasnonroot" || check == "runasuser"; wantNonRoot != (len(nonRoot) > 0) {
						t.Errorf("%s: nonRoot violations %v, want them: %v", name, nonRoot, wantNonRoot)
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
	if fixtures != psaFixtureFiles || checked != 2*psaFixtureFiles {
		t.Fatalf("%d fixtures found and %d decisions checked, want %d and %d (psaFixtureFiles must move with %s)",
			fixtures, checked, psaFixtureFiles, 2*psaFixtureFiles, psaModule)
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	good := write("good.yaml", []byte(`apiVersion: v1
kind: Pod
metadata: {name: ok}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: example.com/app@sha256:`+strings.Repeat("a", 64)+`
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`))
	empty := write("empty.yaml", []byte("# nothing\n"))
	broken := write("broken.yaml", []byte("apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n"))
	for _, c := range []struct {
		args      []string
		code      int
		out, errs string // what stdout and stderr must hold: the error named
	}{
		{[]string{"policy", "check", "-f", good, "--offline"}, exitOK, "ALLOW  Pod default/ok", ""},
		{[]string{"policy", "check", "-f", good, "--verify-signatures=false"}, exitOK, "allow", ""},
		{[]string{"policy", "check", "-f", good, "--offline", "--verify-signatures=true"}, exitFailure, "", "--offline cannot verify signatures"},
		{[]string{"policy", "check"}, exitFailure, "", "-f MANIFEST is required"},
		{[]string{"policy", "check", "-f", filepath.Join(dir, "missing.yaml"), "--offline"}, exitFailure, "", "missing.yaml: no such file"},
		{[]string{"policy", "check", "-f", empty, "--offline"}, exitFailure, "", "empty.yaml: no objects"},
		{[]string{"policy", "check", "-f", broken, "--offline"}, exitFailure, "", "broken.yaml: document 1: decode Pod"},
	} {
		code, out, stderr := gantry(t, nil, c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(stderr, c.errs) {
			t.Errorf("%v: exit %d (want %d), out %q (want %q), stderr %q (want %q)", c.args, code, c.code, out, c.out, stderr, c.errs)
		}
	}
}
