package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// buildEnv is what `gantry run --no-deploy --sign=false` needs from the test
// environment: BuildKit, the registry and a scanner on the planted DB.
type buildEnv struct {
	env      []string
	registry string // host:port
	base     string // base image by digest
	uniq     string // per-test name part
	dir      string
}

func newBuildEnv(t *testing.T) *buildEnv {
	t.Helper()
	e := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fx, err := scantest.Setup(ctx, e.BuildkitAddr, e.Registry, e.BaseImage, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &buildEnv{registry: e.Registry, base: e.BaseImage, uniq: hex.EncodeToString(b), dir: dir, env: []string{
		"GANTRY_REGISTRY_INSECURE=" + e.Registry,
		"GANTRY_BUILDER_ADDRS=" + e.BuildkitAddr,
		"GANTRY_LINT_HADOLINT=off",
		"GANTRY_SCANNER_DB_REPOSITORIES=" + fx.DBRepository,
		"GANTRY_SCANNER_JAVA_DB_REPOSITORIES=",
		"GANTRY_SCANNER_CACHE_DIR=" + filepath.Join(dir, "cache"),
		"GANTRY_SIGNER_KEY_SOURCE=none",
		"GANTRY_PIPELINE_WORK_DIR=" + filepath.Join(dir, "work"),
	}}
}

// withRootfs adds files under prefix+"/rootfs" (the image's files).
func withRootfs(files map[string]string, prefix string, rootfs map[string]string) map[string]string {
	for p, c := range rootfs {
		files[prefix+"/rootfs"+p] = c
	}
	return files
}

// The workflow's image-repo, dockerfile and context inputs reach gantry run
// as --image, --dockerfile and --context: they build a repository without
// gantry.yaml, replace a one-function file's fields, and are refused with
// several functions.
func TestRunCommandFunctionFlags(t *testing.T) {
	be := newBuildEnv(t)
	df := "FROM " + be.base + "\nCOPY rootfs/ /\nUSER 1000:1000\n"
	one := func(image string) string {
		return "version: 1\nfunctions:\n  - name: hello\n    context: fn\n    image: " + image + "\n"
	}
	img := func(s string) string { return be.registry + "/gantry-flags-" + be.uniq + "/" + s }
	cases := []struct {
		name      string
		files     map[string]string
		args      []string
		code      int
		fn, image string // the one function's name and image repository
		dockerf   string // its Dockerfile, relative to the repository root
		errText   string // in stderr when the run is refused
	}{
		{name: "no gantry.yaml: one function from the flags",
			files: withRootfs(map[string]string{"src/api/Dockerfile.prod": df}, "src/api", scantest.CleanFiles()),
			args:  []string{"--context", "src/api", "--dockerfile", "Dockerfile.prod", "--image", img("api-svc")},
			code:  exitOK, fn: "api-svc", image: img("api-svc"), dockerf: "src/api/Dockerfile.prod"},
		{name: "no gantry.yaml: named with --function",
			files: withRootfs(map[string]string{"Dockerfile": df}, ".", scantest.CleanFiles()),
			args:  []string{"--image", img("x"), "--function", "edge"},
			code:  exitOK, fn: "edge", image: img("x"), dockerf: "Dockerfile"},
		{name: "one function: --image replaces the file's",
			files: withRootfs(map[string]string{"gantry.yaml": one(img("from-file")), "fn/Dockerfile": df}, "fn", scantest.CleanFiles()),
			args:  []string{"--image", img("from-flag")},
			code:  exitOK, fn: "hello", image: img("from-flag"), dockerf: "fn/Dockerfile"},
		{name: "several functions: refused, naming them",
			files: map[string]string{"gantry.yaml": one(img("a")) + "  - name: bye\n    context: fn\n    image: " + img("b") + "\n", "fn/Dockerfile": df},
			args:  []string{"--image", img("c")},
			code:  exitFailure, errText: "gantry.yaml has 2 (bye, hello)"},
		{name: "no gantry.yaml and no --image",
			files: map[string]string{"Dockerfile": df},
			args:  []string{"--dockerfile", "Dockerfile"},
			code:  exitFailure, errText: "give --image REPO"},
		{name: "a tag is refused before anything runs",
			files: map[string]string{"Dockerfile": df},
			args:  []string{"--image", img("x") + ":latest"},
			code:  exitFailure, errText: "without tag or digest"},
		{name: "a context outside the repository is refused",
			files: map[string]string{"Dockerfile": df},
			args:  []string{"--image", img("x"), "--context", "../.."},
			code:  exitFailure, errText: "must stay inside the repository"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := filepath.Join(be.dir, "repo", string(rune('a'+i)))
			gitCommit(t, repo, c.files, "functions")
			args := append([]string{"run", repo, "--no-deploy", "--sign=false", "--output", "json"}, c.args...)
			code, out, stderr := gantry(t, be.env, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, out, stderr)
			}
			if c.errText != "" {
				if !strings.Contains(stderr, c.errText) {
					t.Fatalf("stderr lacks %q:\n%s", c.errText, stderr)
				}
				if strings.Contains(stderr, "==> build") {
					t.Fatalf("a refused command line built something:\n%s", stderr)
				}
				return
			}
			var res runOutput
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if res.Run.State != pipelines.StatePassed || len(res.Functions) != 1 {
				t.Fatalf("run %s %q, functions %+v", res.Run.State, res.Run.Message, res.Functions)
			}
			f := res.Functions[0]
			if f.Name != c.fn || f.Dockerfile != c.dockerf || !strings.HasPrefix(f.Image, c.image+"@sha256:") {
				t.Fatalf("function %s (%s) image %s, want %s (%s) %s@sha256:…", f.Name, f.Dockerfile, f.Image, c.fn, c.dockerf, c.image)
			}
		})
	}
}
