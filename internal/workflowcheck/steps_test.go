package workflowcheck

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/gittest"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// stepNamed returns the pipeline job's step called name.
func stepNamed(t *testing.T, w *workflow, name string) step {
	t.Helper()
	for _, s := range w.Jobs["pipeline"].Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q", name)
	return step{}
}

// runStep runs a step's script as GitHub runs it (bash -eo pipefail) with
// the runner's files in dir, and returns its output and what it wrote to
// GITHUB_ENV and GITHUB_OUTPUT.
func runStep(t *testing.T, s step, dir string, env ...string) (out string, ghEnv, ghOut map[string]string, err error) {
	t.Helper()
	envFile, outFile := filepath.Join(dir, "github_env"), filepath.Join(dir, "github_output")
	for _, f := range []string{envFile, outFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "RUNNER_TEMP="+dir, "GITHUB_ENV="+envFile, "GITHUB_OUTPUT="+outFile,
		"GITHUB_PATH="+filepath.Join(dir, "github_path")), env...)
	b, err := cmd.CombinedOutput()
	return string(b), readKV(t, envFile), readKV(t, outFile), err
}

func readKV(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

var (
	pinnedBySHA    = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)
	versionComment = regexp.MustCompile(`@[0-9a-f]{40} # v\d+\.\d+\.\d+$`)
)

// Every action the workflow uses from elsewhere is pinned by full commit
// SHA: a moved tag cannot change what runs with the job's OIDC token and
// registry credentials.
func TestThirdPartyActionsPinnedBySHA(t *testing.T) {
	w := readWorkflow(t)
	n := 0
	for _, s := range w.Jobs["pipeline"].Steps {
		if s.Uses == "" || strings.HasPrefix(s.Uses, "./") {
			continue
		}
		n++
		if !pinnedBySHA.MatchString(s.Uses) {
			t.Errorf("step %q uses %q: pin it by full commit SHA (owner/repo@<40 hex> # vX.Y.Z)", s.Name, s.Uses)
		}
	}
	if n < 3 {
		t.Errorf("%d actions found, want checkout, setup-go and upload-sarif at least", n)
	}
	// The version comments say what the SHA is.
	raw, err := os.ReadFile(filepath.Join(root, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "uses: ") && !versionComment.MatchString(l) {
			t.Errorf("%q: want `@<sha> # vX.Y.Z`", strings.TrimSpace(l))
		}
	}
}

// jwtWith is an unsigned token whose payload holds claims (the step reads
// claims only; the runner's token service is what it trusts).
func jwtWith(t *testing.T, claims map[string]any) string {
	t.Helper()
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(p) + "." + enc([]byte("signature"))
}

// The step that finds the workflow's own commit: it asks the runner's
// token service (Authorization header, its own audience), fetches exactly
// the commit the token names from the repository it names, and refuses
// claims that are not a repository and a full SHA. Run for real against
// an httptest token service and a local git server (file://).
func TestFetchGantryAtTheWorkflowCommit(t *testing.T) {
	w := readWorkflow(t)
	s := stepNamed(t, w, "Fetch Gantry at this workflow's commit")
	srv := t.TempDir()
	repoDir := filepath.Join(srv, "gantry-dev", "gantry")
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	git := gittest.Git(t, repoDir)
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repoDir, "go.mod"), []byte("module example.com/first\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "go.mod")
	git("commit", "-q", "-m", "first")
	first := strings.TrimSpace(git("rev-parse", "HEAD"))
	if err := os.WriteFile(filepath.Join(repoDir, "go.mod"), []byte("module example.com/second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "second")

	const requestToken = "runner-request-token-5ec7e7"
	var claims map[string]any
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+requestToken || r.URL.Query().Get("audience") != "gantry-workflow-source" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": jwtWith(t, claims)})
	}))
	defer tokens.Close()
	env := []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + tokens.URL + "/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + requestToken, "GITHUB_SERVER_URL=file://" + srv}

	t.Run("the commit the token names, not the branch head", func(t *testing.T) {
		// The caller pinned the workflow at the first commit; main has moved on.
		claims = map[string]any{"job_workflow_ref": "gantry-dev/gantry/.github/workflows/gantry.yml@refs/heads/main", "job_workflow_sha": first}
		dir := t.TempDir()
		out, ghEnv, ghOut, err := runStep(t, s, dir, env...)
		if err != nil {
			t.Fatalf("step failed: %v\n%s", err, out)
		}
		if ghOut["repository"] != "gantry-dev/gantry" || ghOut["sha"] != first || ghEnv["GANTRY_SRC"] != filepath.Join(dir, "gantry-src") {
			t.Errorf("outputs %v env %v", ghOut, ghEnv)
		}
		mod, err := os.ReadFile(filepath.Join(dir, "gantry-src", "go.mod"))
		if err != nil || !strings.Contains(string(mod), "example.com/first") {
			t.Errorf("checked-out go.mod = %q (%v), want the first commit's", mod, err)
		}
		if strings.Contains(out, requestToken) {
			t.Error("the step printed the runner's request token")
		}
	})
	for _, c := range []struct {
		name   string
		claims map[string]any
		env    []string
	}{
		{"no token service (id-token not granted)", nil, []string{"ACTIONS_ID_TOKEN_REQUEST_URL="}},
		{"wrong request token", map[string]any{"job_workflow_ref": "gantry-dev/gantry/.github/workflows/gantry.yml@refs/heads/main", "job_workflow_sha": first},
			[]string{"ACTIONS_ID_TOKEN_REQUEST_TOKEN=nope"}},
		{"short sha", map[string]any{"job_workflow_ref": "gantry-dev/gantry/.github/workflows/gantry.yml@v1", "job_workflow_sha": first[:12]}, nil},
		{"path in the repository", map[string]any{"job_workflow_ref": "gantry-dev/../../etc/.github/workflows/gantry.yml@v1", "job_workflow_sha": first}, nil},
		{"option as repository", map[string]any{"job_workflow_ref": "--upload-pack=touch /tmp/x/.github/workflows/gantry.yml@v1", "job_workflow_sha": first}, nil},
		{"no claims", map[string]any{"sub": "repo:acme/app:ref:refs/heads/main"}, nil},
		{"a commit the repository does not have", map[string]any{"job_workflow_ref": "gantry-dev/gantry/.github/workflows/gantry.yml@v1", "job_workflow_sha": strings.Repeat("ab", 20)}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims = c.claims
			dir := t.TempDir()
			out, ghEnv, ghOut, err := runStep(t, s, dir, append(slices.Clone(env), c.env...)...)
			if err == nil {
				t.Fatalf("step passed:\n%s", out)
			}
			t.Logf("refused: %s", strings.TrimSpace(out))
			if ghEnv["GANTRY_SRC"] != "" || ghOut["sha"] != "" {
				t.Errorf("a refused step still set GANTRY_SRC=%q sha=%q", ghEnv["GANTRY_SRC"], ghOut["sha"])
			}
		})
	}
}

// The steps that install gantry from source and start BuildKit, run for
// real on this machine (root, runc): gantry is built from this checkout,
// buildkitd from the version in go.mod; the BuildKit address the step
// exports answers, and the cleanup step stops the daemon.
func TestInstallAndStartBuildKitSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gantry and buildkitd")
	}
	if os.Getuid() != 0 {
		t.Skip("buildkitd needs root (the workflow uses sudo on a runner)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc is missing: hack/testenv up installs it")
	}
	src, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	w := readWorkflow(t)
	dir := t.TempDir()
	srcEnv := "GANTRY_SRC=" + src
	// The binaries the steps built last time are put back into bin/
	// first: each step's go build links again unless a binary is exactly
	// what it would link (its build ID), and resets the time of each, so a
	// binary that still has the seed's time was not built by the step.
	bin := filepath.Join(dir, "bin")
	gantryBins, buildkitBins := []string{"gantry", "gantry-core"}, []string{"buildkitd", "buildctl"}
	cache := testenv.OpenBinCache(t, src, "workflow-steps")
	cache.Seed(t, bin, append(gantryBins, buildkitBins...)...)
	built := func(step string, names []string) {
		t.Helper()
		if u := testenv.Untouched(t, bin, names...); len(u) > 0 {
			t.Fatalf("%s did not build %v", step, u)
		}
		cache.Store(t, bin, names...)
	}

	out, _, _, err := runStep(t, stepNamed(t, w, "Install gantry"), dir, srcEnv, "GANTRY_VERSION=source")
	if err != nil {
		t.Fatalf("Install gantry: %v\n%s", err, out)
	}
	built("Install gantry", gantryBins)
	if !regexp.MustCompile(`(?m)^gantry \S+ \(commit \S+, go`).MatchString(out) {
		t.Errorf("Install gantry printed no version:\n%s", out)
	}
	// The front and its role binaries are installed side by side: a
	// command that runs in gantry-admission works from bin/gantry.
	check := exec.Command(filepath.Join(dir, "bin", "gantry"), "policy", "check", "--offline", "-f", "-")
	check.Stdin = strings.NewReader(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"r.example/i:1","securityContext":{"privileged":true}}]}}`)
	if out, err := check.CombinedOutput(); !isExit(err, 1) || !strings.Contains(string(out), "deny") {
		t.Errorf("installed gantry policy check of a privileged pod: %v\n%s", err, out)
	}
	path, err := os.ReadFile(filepath.Join(dir, "github_path"))
	if err != nil || strings.TrimSpace(string(path)) != filepath.Join(dir, "bin") {
		t.Errorf("GITHUB_PATH = %q (%v)", path, err)
	}

	start := stepNamed(t, w, "Start BuildKit")
	out, ghEnv, _, err := runStep(t, start, dir, srcEnv)
	pidFile := filepath.Join(dir, "buildkit", "pid")
	t.Cleanup(func() { // whatever happens below, no daemon outlives the test
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err != nil {
		t.Fatalf("Start BuildKit: %v\n%s", err, out)
	}
	built("Start BuildKit", buildkitBins)
	addr := ghEnv["GANTRY_BUILDER_ADDRS"]
	if addr != "unix://"+filepath.Join(dir, "buildkit", "buildkitd.sock") {
		t.Fatalf("GANTRY_BUILDER_ADDRS = %q", addr)
	}
	workers, err := exec.Command(filepath.Join(dir, "bin", "buildctl"), "--addr", addr, "debug", "workers").CombinedOutput()
	if err != nil || !strings.Contains(string(workers), "linux/amd64") {
		t.Fatalf("buildctl debug workers: %v\n%s", err, workers)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}

	out, _, _, err = runStep(t, stepNamed(t, w, "Remove key material, stop BuildKit"), dir)
	if err != nil {
		t.Fatalf("cleanup step: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("buildkitd (pid %d) still running 30s after the cleanup step", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running reports whether pid is a live process (an exited one whose
// parent has not reaped it yet is a zombie: not running).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// The input check, registry credentials, signing key, cleanup and verdict
// steps, run by bash as the runner runs them: the Docker config and the key
// are written owner-only with what the secrets hold, removed by the
// cleanup step, and the verdict step exits with the pipeline's code.
func TestCredentialKeyAndVerdictSteps(t *testing.T) {
	w := readWorkflow(t)
	dir := t.TempDir()

	check := stepNamed(t, w, "Check inputs")
	for _, c := range []struct {
		sign, failOn string
		ok           bool
	}{{"keyless", "fixable", true}, {"key", "any", true}, {"none", "fixable", false}, {"key", "some", false}} {
		out, _, _, err := runStep(t, check, dir, "SIGN="+c.sign, "FAIL_ON="+c.failOn)
		if (err == nil) != c.ok {
			t.Errorf("Check inputs sign=%s fail-on=%s: err %v, want ok=%v\n%s", c.sign, c.failOn, err, c.ok, out)
		}
	}

	out, ghEnv, _, err := runStep(t, stepNamed(t, w, "Registry credentials"), dir,
		"REGISTRY_USER=octo", "REGISTRY_PASSWORD=s3cret-pw", "IMAGE_REPO=ghcr.io/acme/hello", "REGISTRY=ghcr.io")
	if err != nil {
		t.Fatalf("Registry credentials: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "docker", "config.json")
	if ghEnv["DOCKER_CONFIG"] != filepath.Join(dir, "docker") {
		t.Errorf("DOCKER_CONFIG = %q", ghEnv["DOCKER_CONFIG"])
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("config.json: %v\n%s", err, raw)
	}
	if got, _ := base64.StdEncoding.DecodeString(cfg.Auths["ghcr.io"].Auth); string(got) != "octo:s3cret-pw" || len(cfg.Auths) != 1 {
		t.Errorf("auths = %+v (decoded %q)", cfg.Auths, got)
	}
	if strings.Contains(out, "s3cret-pw") {
		t.Error("the credentials step printed the password")
	}

	key := "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
	if out, _, _, err := runStep(t, stepNamed(t, w, "Signing key"), dir, "COSIGN_KEY="); err == nil {
		t.Errorf("sign: key without the cosign-key secret passed:\n%s", out)
	}
	if out, _, _, err := runStep(t, stepNamed(t, w, "Signing key"), dir, "COSIGN_KEY="+key); err != nil {
		t.Fatalf("Signing key: %v\n%s", err, out)
	}
	for _, f := range []string{cfgPath, filepath.Join(dir, "cosign.key")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: want owner-only", f, fi.Mode().Perm())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cosign.key")); strings.TrimSpace(string(b)) != key {
		t.Errorf("cosign.key = %q", b)
	}

	if out, _, _, err := runStep(t, stepNamed(t, w, "Remove key material, stop BuildKit"), dir); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	for _, f := range []string{cfgPath, filepath.Join(dir, "cosign.key")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s survives the cleanup step (%v)", f, err)
		}
	}

	verdict := stepNamed(t, w, "Verdict")
	for code, want := range map[string]int{"0": 0, "1": 1, "2": 2, "": 2} {
		out, _, _, err := runStep(t, verdict, dir, "VERDICT=x", "CODE="+code)
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Verdict with CODE=%q exits %d, want %d\n%s", code, got, want, out)
		}
	}
}

// isExit reports whether err is a process's exit with code.
func isExit(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}
