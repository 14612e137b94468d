package workflowcheck

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
		Steps       []step            `yaml:"steps"`
	} `yaml:"jobs"`
}

type step struct {
	Name string            `yaml:"name"`
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func readWorkflow(t *testing.T) *workflow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return &w
}

func TestReusableWorkflowContract(t *testing.T) {
	w := readWorkflow(t)
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
		// gantry run gives each SARIF file's runs their own category; one
		// set here would not override them, and suggests all share one.
		if strings.HasPrefix(s.Uses, "github/codeql-action/upload-sarif@") && s.With["category"] != "" {
			t.Errorf("upload-sarif sets category %q: the files carry theirs (gantry/lint|scan/FUNCTION/)", s.With["category"])
		}
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

// inputRef matches an expression that is exactly one input.
var inputRef = regexp.MustCompile(`^\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}$`)

// Every input does something: it is read by a step (env, with, if), and an
// env variable bound to it is used by that step's script. (The context,
// dockerfile and image-repo inputs once were declared and ignored.)
func TestEveryInputIsUsed(t *testing.T) {
	w := readWorkflow(t)
	job := w.Jobs["pipeline"]
	for in := range w.On.WorkflowCall.Inputs {
		used := false
		for _, s := range job.Steps {
			if strings.Contains(s.If, "inputs."+in) {
				used = true
			}
			for _, v := range s.With {
				if strings.Contains(v, "inputs."+in) {
					used = true
				}
			}
			for name, v := range s.Env {
				if !strings.Contains(v, "inputs."+in) {
					continue
				}
				if s.Run == "" || !strings.Contains(s.Run, "$"+name) && !strings.Contains(s.Run, "${"+name) &&
					!strings.HasPrefix(name, "GANTRY_") { // GANTRY_* are read by gantry itself
					t.Errorf("input %s: env %s is not used by its step's script", in, name)
				}
				used = true
			}
		}
		if !used {
			t.Errorf("input %s is declared but no step reads it", in)
		}
	}
}

// The pipeline step's script, run by bash as GitHub runs it, with a stub
// gantry that records its arguments: the inputs become the flags they
// promise (only when given), values stay single arguments (no injection),
// and the exit code becomes the verdict output.
func TestPipelineStepFlags(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("the workflow's pipeline step uses jq (preinstalled on GitHub's runners): apt-get install jq")
	}
	w := readWorkflow(t)
	var run *step
	for i, s := range w.Jobs["pipeline"].Steps {
		if s.ID == "run" {
			run = &w.Jobs["pipeline"].Steps[i]
		}
	}
	if run == nil {
		t.Fatal("no step with id run")
	}
	const digest = "r.example/acme/hello@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name    string
		inputs  map[string]string
		code    int
		want    []string // flags (with values) that must be there, in order
		absent  []string
		verdict string
	}{
		{"defaults: gantry.yaml decides", nil, 0, []string{"run", "."}, []string{"--image", "--context", "--dockerfile"}, "passed"},
		{"image-repo lower-cased", map[string]string{"image-repo": "ghcr.io/Acme/Hello"}, 0,
			[]string{"--image", "ghcr.io/acme/hello"}, []string{"--context", "--dockerfile"}, "passed"},
		{"all three", map[string]string{"image-repo": "r.example/x", "context": "svc/api", "dockerfile": "Dockerfile.prod"}, 1,
			[]string{"--image", "r.example/x", "--context", "svc/api", "--dockerfile", "Dockerfile.prod"}, nil, "failed"},
		{"hostile values stay one argument", map[string]string{"context": "a b;$(touch pwned)`id`", "dockerfile": "x\" --sign=false"}, 2,
			[]string{"--context", "a b;$(touch pwned)`id`", "--dockerfile", "x\" --sign=false"}, []string{"--sign=false"}, "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			stub := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$STUB_ARGS\"\n" +
				"printf '{\"functions\":[{\"name\":\"hello\",\"image\":\"%s\"}]}\\n' \"$STUB_IMAGE\"\nexit \"$STUB_CODE\"\n"
			if err := os.WriteFile(filepath.Join(bin, "gantry"), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "RUNNER_TEMP=" + dir,
				"GITHUB_OUTPUT=" + filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"),
				"STUB_ARGS=" + filepath.Join(dir, "args"), "STUB_IMAGE=" + digest, "STUB_CODE=" + strconv.Itoa(c.code)}
			for name, v := range run.Env {
				if m := inputRef.FindStringSubmatch(v); m != nil {
					val, ok := c.inputs[m[1]]
					if !ok {
						val, _ = w.On.WorkflowCall.Inputs[m[1]]["default"].(string)
					}
					env = append(env, name+"="+val)
				}
			}
			cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run.Run)
			cmd.Dir, cmd.Env = dir, env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("step failed: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("an input was executed by the shell")
			}
			raw, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
			if !containsInOrder(args, c.want) {
				t.Errorf("args %q lack %q", args, c.want)
			}
			for _, a := range c.absent {
				if slices.Contains(args, a) {
					t.Errorf("args %q have %s", args, a)
				}
			}
			out, _ := os.ReadFile(filepath.Join(dir, "output"))
			for _, line := range []string{"verdict=" + c.verdict, "digest=" + digest, "exit_code=" + strconv.Itoa(c.code)} {
				if !slices.Contains(strings.Split(string(out), "\n"), line) {
					t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", line, out)
				}
			}
		})
	}
}

// containsInOrder reports whether want appears in args as a contiguous run.
func containsInOrder(args, want []string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
