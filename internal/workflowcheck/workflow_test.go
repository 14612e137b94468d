package workflowcheck

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"go.yaml.in/yaml/v3"
)

const root = "../.."

var files = []string{".github/workflows/gantry.yml", "examples/github-workflow-caller.yml"}

func TestActionlint(t *testing.T) {
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		errs, err := l.Lint(f, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			t.Errorf("%s:%d:%d: %s [%s]", f, e.Line, e.Column, e.Message, e.Kind)
		}
	}
}

type workflow struct {
	On struct {
		WorkflowCall struct {
			Inputs  map[string]map[string]any `yaml:"inputs"`
			Secrets map[string]map[string]any `yaml:"secrets"`
			Outputs map[string]map[string]any `yaml:"outputs"`
		} `yaml:"workflow_call"`
	} `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Jobs        map[string]struct {
		Permissions map[string]string `yaml:"permissions"`
		Steps       []struct {
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func TestReusableWorkflowContract(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	call := w.On.WorkflowCall
	for _, in := range []string{"context", "dockerfile", "image-repo", "severities", "ignore-file", "fail-on", "sign"} {
		if _, ok := call.Inputs[in]; !ok {
			t.Errorf("input %s missing", in)
		}
	}
	for _, s := range []string{"registry-username", "registry-password", "cosign-key", "cosign-password"} {
		if _, ok := call.Secrets[s]; !ok {
			t.Errorf("secret %s missing", s)
		}
	}
	for _, o := range []string{"digest", "verdict"} {
		if _, ok := call.Outputs[o]; !ok {
			t.Errorf("output %s missing", o)
		}
	}
	// Least privilege: the workflow grants read by default and the job
	// exactly the four permissions it needs.
	if len(w.Permissions) != 1 || w.Permissions["contents"] != "read" {
		t.Errorf("top-level permissions %v", w.Permissions)
	}
	job, ok := w.Jobs["pipeline"]
	if !ok {
		t.Fatal("no pipeline job")
	}
	want := map[string]string{"id-token": "write", "contents": "read", "packages": "write", "security-events": "write"}
	if len(job.Permissions) != len(want) {
		t.Errorf("job permissions %v, want %v", job.Permissions, want)
	}
	for k, v := range want {
		if job.Permissions[k] != v {
			t.Errorf("job permission %s: %q, want %q", k, job.Permissions[k], v)
		}
	}
	var uses []string
	var runScript string
	for _, s := range job.Steps {
		uses = append(uses, s.Uses)
		runScript += s.Run
		// Inputs reach scripts only through env, never by ${{ }} in run:
		// (script injection).
		if strings.Contains(s.Run, "${{") {
			t.Errorf("a run: script expands an expression directly: %q", s.Run)
		}
	}
	if !slices.ContainsFunc(uses, func(u string) bool { return strings.HasPrefix(u, "github/codeql-action/upload-sarif@") }) {
		t.Error("SARIF is not uploaded to code scanning")
	}
	for _, flag := range []string{"gantry run", "--sarif-dir", "--summary-file \"$GITHUB_STEP_SUMMARY\"", "--output json"} {
		if !strings.Contains(runScript, flag) {
			t.Errorf("the pipeline step lacks %q", flag)
		}
	}
}

// The linter is live: a broken workflow is reported.
func TestActionlintCatchesErrors(t *testing.T) {
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := "on: workflow_call\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ inputs.nope }}\n        uses: actions/checkout@v4\n"
	errs, err := l.Lint("bad.yml", []byte(bad), nil)
	if err != nil || len(errs) == 0 {
		t.Fatalf("no error reported for a broken workflow (%v)", err)
	}
}
