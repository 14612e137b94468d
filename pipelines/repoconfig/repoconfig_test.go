package repoconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodGantry = `version: 1
functions:
  - name: hello
    context: functions/hello
    image: registry.example.com/team/hello
    buildArgs: {GREETING: hi}
    env: {MODE: prod}
    secrets: [api-key]
    resources:
      requests: {cpu: 50m, memory: 64Mi}
      limits: {memory: 128Mi}
    scale: {min: 2, max: 5}
  - name: bye
    image: 127.0.0.1:5000/team/bye
scan:
  severities: [MEDIUM]
  includeUnfixable: true
  ignoreFile: .gantry/ignore.yaml
lint:
  failOn: warning
`

func TestParseGantry(t *testing.T) {
	r, err := ParseGantry([]byte(goodGantry))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "bye,hello" {
		t.Fatalf("names %s", got)
	}
	h := r.Functions[0]
	if h.Context != "functions/hello" || h.Dockerfile != "Dockerfile" || h.Scale.Min != 2 || h.Scale.Max != 5 ||
		h.Resources.Requests["cpu"] != "50m" || h.Env["MODE"] != "prod" || h.Secrets[0] != "api-key" {
		t.Fatalf("hello: %+v", h)
	}
	b := r.Functions[1]
	if b.Context != "." || b.Scale.Min != 1 || b.Scale.Max != 1 {
		t.Fatalf("defaults not applied: %+v", b)
	}
	if r.Overrides.Scan.Severities[0] != "MEDIUM" || !r.Overrides.Scan.IncludeUnfixable || r.Overrides.Lint.FailOn != "warning" {
		t.Fatalf("overrides: %+v", r.Overrides)
	}
}

func TestParseGantryRejects(t *testing.T) {
	fn := func(extra string) string {
		return "version: 1\nfunctions:\n  - name: hello\n    image: r.example/x\n" + extra
	}
	cases := map[string]struct{ content, want string }{
		"unknown key":         {fn("    colour: red\n"), "unknown key functions[].colour"},
		"unknown top key":     {fn("deploy: {}\n"), "unknown key deploy"},
		"wrong version":       {"version: 2\nfunctions: []\n", "version must be 1"},
		"no functions":        {"version: 1\n", "no functions"},
		"bad name":            {"version: 1\nfunctions:\n  - name: Hello_World\n    image: r.example/x\n", "DNS label"},
		"duplicate name":      {fn("  - name: hello\n    image: r.example/y\n"), "used twice"},
		"missing image":       {"version: 1\nfunctions:\n  - name: a\n", "image is required"},
		"tagged image":        {"version: 1\nfunctions:\n  - name: a\n    image: r.example/x:latest\n", "without tag or digest"},
		"digest image":        {"version: 1\nfunctions:\n  - name: a\n    image: r.example/x@sha256:" + strings.Repeat("a", 64) + "\n", "without tag or digest"},
		"context escapes":     {fn("    context: ../other\n"), "must stay inside"},
		"absolute dockerfile": {fn("    dockerfile: /etc/passwd\n"), "must be relative"},
		"bad env name":        {fn("    env: {\"A-B\": x}\n"), "not a valid variable name"},
		"bad quantity":        {fn("    resources: {limits: {memory: lots}}\n"), "not a quantity"},
		"unknown resource":    {fn("    resources: {limits: {gpu: \"1\"}}\n"), "unknown resource"},
		"bad scale":           {fn("    scale: {min: 3, max: 1}\n"), "scale"},
		"bad severity":        {fn("scan: {severities: [SEVERE]}\n"), "not a severity"},
		"bad failOn":          {fn("lint: {failOn: never}\n"), "lint.failOn"},
		"ignore escapes":      {fn("scan: {ignoreFile: ../../x}\n"), "must stay inside"},
		"not yaml":            {"functions: [\n", "gantry.yaml"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseGantry([]byte(c.content))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseGantryReportsAllProblemsAtOnce(t *testing.T) {
	_, err := ParseGantry([]byte("version: 1\nfunctions:\n  - name: A\n  - name: b\n    image: x:1\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`function "A"`, "DNS label", `function "b"`, "without tag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
}

const goodStack = `version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: dockerfile
    handler: ./hello
    image: registry.example.com/team/hello:latest
    environment: {write_debug: "true"}
    secrets: [api-key]
    limits: {memory: 128Mi}
    requests: {cpu: 50m, memory: 64Mi}
    labels:
      com.openfaas.scale.min: "2"
      com.openfaas.scale.max: "4"
    build_args: {GO111MODULE: "on"}
  api:
    lang: golang-middleware
    handler: ./api
    image: registry.example.com/team/api
    build_options: [dev]
configuration:
  templates:
    - name: golang-middleware
      source: https://github.com/openfaas/golang-http-template#0123456789abcdef0123456789abcdef01234567
  copy: [./common]
`

func TestParseStack(t *testing.T) {
	r, err := ParseStack([]byte(goodStack))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != StackFile || len(r.Functions) != 2 {
		t.Fatalf("%+v", r)
	}
	api, f := r.Functions[0], r.Functions[1]
	if api.Name != "api" || api.Template != "golang-middleware" || api.Handler != "./api" || api.Context != "./api" ||
		len(api.BuildOptions) != 1 || api.BuildOptions[0] != "dev" || f.Template != "" {
		t.Fatalf("api: %+v", api)
	}
	want := TemplateSource{Name: "golang-middleware", URL: "https://github.com/openfaas/golang-http-template", Commit: "0123456789abcdef0123456789abcdef01234567"}
	if len(r.Templates) != 1 || r.Templates[0] != want || len(r.Copy) != 1 || r.Copy[0] != "./common" {
		t.Fatalf("templates %+v copy %v", r.Templates, r.Copy)
	}
	if f.Name != "hello" || f.Context != "./hello" || f.Image != "registry.example.com/team/hello" ||
		f.Scale.Min != 2 || f.Scale.Max != 4 || f.Resources.Limits["memory"] != "128Mi" ||
		f.Resources.Requests["cpu"] != "50m" || f.Env["write_debug"] != "true" || f.BuildArgs["GO111MODULE"] != "on" {
		t.Fatalf("hello: %+v", f)
	}
}

func TestParseStackRejects(t *testing.T) {
	base := "version: 1.0\nfunctions:\n  f:\n    lang: dockerfile\n    handler: ./f\n    image: r.example/f:latest\n"
	cases := map[string]struct{ content, want string }{
		"template without handler":    {"functions:\n  f:\n    lang: node18\n    image: r.example/f\n", "handler is required for template \"node18\""},
		"template name a path":        {"functions:\n  f:\n    lang: ../node\n    handler: ./f\n    image: r.example/f\n", "not a template name"},
		"no lang":                     {"functions:\n  f:\n    handler: ./f\n    image: r.example/f\n", "lang is required"},
		"build_options on dockerfile": {base + "    build_options: [dev]\n", "build_options are a template's"},
		"unpinned template source": {base + "configuration:\n  templates:\n    - {name: node18, source: https://github.com/openfaas/templates}\n",
			"is not pinned to a commit: write it as https://github.com/openfaas/templates#<the 40-hex commit SHA>"},
		"template source on a tag": {base + "configuration:\n  templates:\n    - {name: node18, source: https://github.com/openfaas/templates#1.0}\n", "is not pinned to a commit"},
		"template key unknown":     {base + "configuration:\n  templates:\n    - {name: node18, src: x}\n", "unknown key \"src\""},
		"copy escaping":            {base + "configuration:\n  copy: [../secrets]\n", "must stay inside"},
		"fprocess":                 {base + "    fprocess: cat\n", "fprocess is not supported"},
		"namespace":                {base + "    namespace: kube-system\n", "namespace is set by the platform"},
		"writable rootfs":          {base + "    readonly_root_filesystem: false\n", "read-only root filesystem"},
		"unknown key":              {base + "    colour: red\n", "unknown key functions.f.colour"},
		"digest image":             {"functions:\n  f:\n    lang: dockerfile\n    image: r.example/f@sha256:" + strings.Repeat("b", 64) + "\n", "digest"},
		"bad scale label":          {base + "    labels: {com.openfaas.scale.min: many}\n", "not a number"},
		"escaping handler":         {"functions:\n  f:\n    lang: dockerfile\n    handler: ../../etc\n    image: r.example/f\n", "must stay inside"},
		"other provider":           {"provider: {name: faasd2}\n" + base[len("version: 1.0\n"):], "only openfaas"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseStack([]byte(c.content))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func writeRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLoadPrefersGantryYAMLAndChecksPaths(t *testing.T) {
	root := writeRepo(t, map[string]string{
		"gantry.yaml":      "version: 1\nfunctions:\n  - name: a\n    context: fn\n    image: r.example/a\n",
		"stack.yml":        goodStack,
		"fn/Dockerfile":    "FROM scratch\n",
		"hello/Dockerfile": "FROM scratch\n",
		"api/handler.go":   "package function\n",
		"common/util.go":   "package common\n",
	})
	r, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != GantryFile || r.Functions[0].Name != "a" {
		t.Fatalf("%+v", r)
	}
	// Without gantry.yaml, stack.yml is read.
	if err := os.Remove(filepath.Join(root, "gantry.yaml")); err != nil {
		t.Fatal(err)
	}
	if r, err = Load(root); err != nil || r.Source != StackFile {
		t.Fatalf("stack.yml: %+v %v", r, err)
	}
}

func TestLoadRefusesEscapesAndMissingFiles(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeRepo(t, map[string]string{
		"gantry.yaml": "version: 1\nfunctions:\n  - name: a\n    context: link\n    image: r.example/a\n",
	})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "outside the repository") {
		t.Fatalf("symlinked context: %v", err)
	}

	root = writeRepo(t, map[string]string{
		"gantry.yaml": "version: 1\nfunctions:\n  - name: a\n    context: nothere\n    image: r.example/a\n",
	})
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "nothere") {
		t.Fatalf("missing context: %v", err)
	}

	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "nothing to build") {
		t.Fatalf("empty repo: %v", err)
	}

	root = writeRepo(t, map[string]string{"real.yaml": goodGantry})
	if err := os.Symlink(filepath.Join(root, "real.yaml"), filepath.Join(root, "gantry.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("symlinked gantry.yaml: %v", err)
	}

	root = writeRepo(t, map[string]string{"gantry.yaml": "# " + strings.Repeat("x", MaxFileSize)})
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodGantry))
	f.Add([]byte(goodStack))
	f.Add([]byte("functions: {a: {lang: dockerfile}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (*Repo, error){ParseGantry, ParseStack} {
			r, err := parse(b)
			if err != nil {
				continue
			}
			// Whatever is accepted must satisfy the invariants the
			// pipeline relies on.
			for _, fn := range r.Functions {
				if fn.Name == "" || fn.Image == "" || relPathInside(fn.Context) != nil || relPathInside(fn.Dockerfile) != nil {
					t.Fatalf("accepted an invalid function: %+v", fn)
				}
			}
		}
	})
}

func TestLoadRefusesIgnoreFileOutsideTheRepository(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := writeRepo(t, map[string]string{
		"gantry.yaml":   "version: 1\nfunctions:\n  - name: a\n    image: r.example/a\nscan:\n  ignoreFile: .gantry/ignore.yaml\n",
		"Dockerfile":    "FROM scratch\n",
		".gantry/.keep": "",
	})
	if err := os.Symlink(outside, filepath.Join(root, ".gantry", "ignore.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(root)
	if err == nil || !strings.Contains(err.Error(), "scan.ignoreFile") || !strings.Contains(err.Error(), "outside the repository") {
		t.Fatalf("symlinked ignore file: %v", err)
	}
	// A missing ignore file is named at load time too.
	if err := os.Remove(filepath.Join(root, ".gantry", "ignore.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), ".gantry/ignore.yaml") {
		t.Fatalf("missing ignore file: %v", err)
	}
}
