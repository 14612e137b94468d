package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestBuildCommand(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	genv := []string{"GANTRY_BUILDER_ADDRS=" + env.BuildkitAddr, "GANTRY_REGISTRY_INSECURE=" + env.Registry}
	dir := t.TempDir()
	writeFile(t, dir, "Dockerfile", "ARG BASE\nFROM ${BASE}\nCOPY index.html /www/index.html\nUSER 1000:1000\n")
	writeFile(t, dir, "index.html", fmt.Sprintf("hello %d\n", time.Now().UnixNano()))
	writeFile(t, dir, "fail/Dockerfile", "ARG BASE\nFROM ${BASE}\nRUN echo about to fail && exit 7\n")
	repo := fmt.Sprintf("%s/test/cli-build-%d", env.Registry, time.Now().UnixNano())

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := gantry(t, genv, "build", "--context", dir, "--image", repo, "--push",
			"--build-arg", "BASE="+env.BaseImage, "--output", "json")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		var out buildOutput
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, stdout)
		}
		if !strings.HasPrefix(out.Digest, "sha256:") || out.Ref != repo+"@"+out.Digest || !out.Pushed ||
			out.ProvenanceDigest == "" || out.Size <= 0 || out.DurationSeconds <= 0 || out.Duration == "" {
			t.Errorf("output %+v", out)
		}
		// Progress went to stderr, like buildctl --progress=plain.
		if !strings.Contains(stderr, "COPY index.html /www/index.html") || !strings.Contains(stderr, "DONE") {
			t.Errorf("no plain progress on stderr:\n%s", stderr)
		}
	})
	t.Run("text prints the digest last", func(t *testing.T) {
		code, stdout, stderr := gantry(t, genv, "build", "--context", dir, "--image", repo, "--push",
			"--build-arg", "BASE="+env.BaseImage, "--progress", "quiet")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "sha256:") || !strings.Contains(stdout, "pushed "+repo+"@"+last) {
			t.Errorf("stdout:\n%s", stdout)
		}
		if stderr != "" {
			t.Errorf("--progress quiet wrote:\n%s", stderr)
		}
	})
	t.Run("rawjson progress", func(t *testing.T) {
		code, stdout, stderr := gantry(t, genv, "build", "--context", dir, "--image", repo, "--push",
			"--build-arg", "BASE="+env.BaseImage, "--progress", "rawjson")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		for _, l := range lines {
			var st struct {
				Vertexes []struct{ Name string } `json:"vertexes"`
			}
			if err := json.Unmarshal([]byte(l), &st); err != nil {
				t.Fatalf("stderr line is not a JSON status: %v: %q", err, l)
			}
		}
		if !strings.Contains(stderr, `"name":"[internal] load build definition from Dockerfile"`) || !strings.HasPrefix(strings.TrimSpace(stdout), "pushed ") {
			t.Errorf("rawjson progress:\n%.600s\nstdout:\n%s", stderr, stdout)
		}
	})
	t.Run("failing step exits 2 naming it", func(t *testing.T) {
		code, _, stderr := gantry(t, genv, "build", "--context", dir, "--file", "fail/Dockerfile", "--image", repo,
			"--build-arg", "BASE="+env.BaseImage, "--progress", "quiet")
		if code != exitFailure {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		for _, want := range []string{"exit code 7", "Dockerfile:3", "about to fail"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
	t.Run("unreachable daemon names the address", func(t *testing.T) {
		code, _, stderr := gantry(t, []string{"GANTRY_BUILDER_ADDRS=unix:///nonexistent/bk.sock", "GANTRY_BUILDER_DIAL_TIMEOUT=2s"},
			"build", "--context", dir, "--image", repo)
		if code != exitFailure || !strings.Contains(stderr, "unix:///nonexistent/bk.sock") {
			t.Errorf("exit %d\n%s", code, stderr)
		}
	})
	for _, args := range [][]string{
		{"build", "--image", repo},
		{"build", "--context", dir},
		{"build", "--context", dir, "--image", repo, "--secret", "tok=value"},
		{"build", "--context", dir, "--image", repo, "--build-arg", "NOEQUALS"},
		{"build", "--context", dir, "--image", repo, "--progress", "tty"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			if code, _, stderr := gantry(t, genv, args...); code != exitFailure || !strings.HasPrefix(stderr, "gantry: ") {
				t.Errorf("exit %d, stderr %q", code, stderr)
			}
		})
	}
}
