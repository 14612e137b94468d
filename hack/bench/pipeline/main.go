// Command pipeline measures push → signed, deployed image: Gantry against
// the same work done by hand with the raw tools, one after another, on the
// same machine and test environment, and prints the figures as a table and
// as JSON lines (target: `gantry run` ≤ 1.0× by hand, processes both).
//
//	go run ./hack/bench/pipeline [-runs 5] [-gantry bin/gantry] [-trivy PATH]
//
// Each round commits a change to a function repository (a new file in the
// image, so the last layer is rebuilt while the base stays cached for
// everyone), then times, interleaved:
//
//   - gantry serve: a signed push delivery to a running `gantry serve`
//     until the run has passed (checkout, lint, build, scan, sign with three
//     attestations, deploy, notify): the product's path.
//   - gantry run: the same pipeline in a fresh `gantry run DIR` process
//     (start-up and DB load included, as in CI).
//   - by hand: buildctl build --push (provenance mode=max, as gantry), trivy
//     image --format json, trivy convert --format cyclonedx (the SBOM from
//     the same scan), cosign sign, cosign attest ×3 (slsaprovenance1, vuln,
//     cyclonedx), kubectl apply of a Deployment pinned by digest; no lint
//     (hadolint cannot be installed here), so the hand path does less.
//
// The trivy CLI is the one hack/testenv installs (GANTRY_TRIVY in its env
// file), built from the Trivy version in go.mod.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

func main() {
	runs := flag.Int("runs", 5, "timed rounds (medians are reported)")
	gantryBin := flag.String("gantry", "bin/gantry", "gantry binary")
	trivyBin := flag.String("trivy", "", "trivy CLI (default: the test environment's, GANTRY_TRIVY)")
	flag.Parse()
	if err := run(*runs, *gantryBin, *trivyBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pipeline:", err)
		os.Exit(1)
	}
}

type bench struct {
	env                   *testenv.Env
	work, repo, image, ns string
	gantry, trivy, cfg    string
	dbRef, secret, token  string
	serveURL              string
	trivyCache, key       string
}

func run(runs int, gantryBin, trivyBin string) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	if trivyBin == "" {
		trivyBin = env.Trivy
	}
	if trivyBin == "" {
		return fmt.Errorf("the test environment has no %s: run hack/testenv up (it installs the trivy CLI)", testenv.KeyTrivy)
	}
	if _, err := os.Stat(trivyBin); err != nil {
		return fmt.Errorf("trivy CLI: %w (hack/testenv up installs it)", err)
	}
	work, err := os.MkdirTemp("", "gantry-bench-pipeline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	id := randHex(3)
	b := &bench{env: env, work: work, trivy: trivyBin, ns: "bench-" + id,
		image: env.Registry + "/bench-" + id + "/hello", secret: randHex(16), token: randHex(16)}
	if b.gantry, err = filepath.Abs(gantryBin); err != nil {
		return err
	}
	ctx := context.Background()

	// Fixtures, untimed.
	b.dbRef = env.Registry + "/bench-" + id + "/trivy-db:2"
	archive, err := scantest.DBArchive(time.Now())
	if err != nil {
		return err
	}
	if _, err := scantest.PushDB(ctx, b.dbRef, archive, name.Insecure); err != nil {
		return err
	}
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		return err
	}
	b.key = b.write("cosign.key", kb.PrivateBytes)
	b.write("cosign.pw", []byte("pw"))
	if out, err := exec.Command(env.Kubectl, "--kubeconfig", env.Kubeconfig, "create", "namespace", b.ns).CombinedOutput(); err != nil {
		return fmt.Errorf("namespace: %v: %s", err, out)
	}
	b.repo = filepath.Join(work, "repo")
	if err := b.initRepo(); err != nil {
		return err
	}
	b.trivyCache = filepath.Join(work, "trivy-cache")
	if err := b.writeConfig(); err != nil {
		return err
	}
	stop, err := b.startServe()
	if err != nil {
		return err
	}
	defer stop()

	fmt.Printf("image %s\nDB    %s\n", b.image, b.dbRef)
	paths := []struct {
		label string
		fn    func(ctx context.Context, commit string) error
	}{
		{"gantry serve: push → run passed", b.viaServe},
		{"gantry run DIR (fresh process)", b.viaRun},
		{"by hand: buildctl, trivy ×2, cosign ×4, kubectl", b.byHand},
	}
	times := make([][]time.Duration, len(paths))
	for round := 0; round <= runs; round++ { // round 0 warms every cache, untimed
		for i, p := range paths {
			commit, err := b.commit(fmt.Sprintf("%d-%d", round, i))
			if err != nil {
				return err
			}
			start := time.Now()
			if err := p.fn(ctx, commit); err != nil {
				return fmt.Errorf("%s: %w", p.label, err)
			}
			if round > 0 {
				times[i] = append(times[i], time.Since(start))
			}
		}
	}
	// gantry run DIR and the hand path are processes: compared. gantry
	// serve is a request to a running server: reported, not compared with
	// processes (its start-up was paid once, before the first push).
	rep := report.New("pipeline")
	kinds := []string{report.InProcess, report.Process, report.Process}
	figs := make([]*report.Figure, len(paths))
	for i, p := range paths {
		figs[i] = rep.Duration(p.label, kinds[i], median(times[i]), runs)
	}
	if err := rep.Compare(figs[1], *figs[2], "<=1.0"); err != nil {
		return err
	}
	fmt.Printf("\n%-50s %-10s %10s %8s\n", "path (median of "+fmt.Sprint(runs)+")", "kind", "wall", "ratio")
	for _, f := range figs {
		r := ""
		if f.Ratio != nil {
			r = fmt.Sprintf("%.2fx", *f.Ratio)
		}
		fmt.Printf("%-50s %-10s %8.0fms %8s\n", f.Name, f.Kind, f.Value, r)
	}
	fmt.Println()
	return rep.WriteJSON(os.Stdout)
}

func (b *bench) write(name string, data []byte) string {
	p := filepath.Join(b.work, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		panic(err)
	}
	return p
}

func (b *bench) initRepo() error {
	files := map[string]string{
		"gantry.yaml": "version: 1\nfunctions:\n  - name: hello\n    context: hello\n    image: " + b.image + "\n",
		"hello/Dockerfile": "FROM " + b.env.BaseImage + "\nCOPY rootfs/ /\nCOPY round.txt /www/round.txt\n" +
			"RUN wc -c /www/round.txt > /www/size\nUSER 1000:1000\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
	}
	for p, c := range scantest.CleanFiles() {
		files["hello/rootfs"+p] = c
	}
	for p, c := range files {
		full := filepath.Join(b.repo, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return err
		}
	}
	_, err := git.PlainInitWithOptions(b.repo, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	return err
}

// commit changes round.txt (a new last layer) and commits it.
func (b *bench) commit(tag string) (string, error) {
	if err := os.WriteFile(filepath.Join(b.repo, "hello", "round.txt"), []byte(tag+" "+randHex(8)+"\n"), 0o644); err != nil {
		return "", err
	}
	repo, err := git.PlainOpen(b.repo)
	if err != nil {
		return "", err
	}
	wt, _ := repo.Worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return "", err
	}
	h, err := wt.Commit("round "+tag, &git.CommitOptions{Author: &object.Signature{Name: "bench", Email: "b@example.com", When: time.Now()}})
	return h.String(), err
}

func (b *bench) writeConfig() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	b.serveURL = "http://" + addr
	sum := sha256.Sum256([]byte(b.token))
	p := func(n string) string { return filepath.Join(b.work, n) }
	b.write("secret", []byte(b.secret))
	b.write("tokens", []byte("sha256:"+hex.EncodeToString(sum[:])+"\n"))
	cfg := fmt.Sprintf(`log: {level: warn}
registry: {insecure: [%q]}
builder: {addrs: [%q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%q], javaDbRepositories: [], cacheDir: %q}
signer: {keySource: file, keyFile: %q, passwordFile: %q}
deploy: {kubeconfig: %q, namespace: %q, mode: kubernetes, waitForRollout: false}
server: {listen: %q, insecureHTTP: true}
webhooks: {githubSecretFiles: [%q], repos: [{name: bench/hello, branches: [main]}]}
queue: {dataDir: %q}
api: {tokensFile: %q}
pipeline: {allowLocalRepos: true, workDir: %q, mirrors: {bench/hello: %q}}
`, b.env.Registry, b.env.BuildkitAddr, b.dbRef, p("gantry-cache"), b.key, p("cosign.pw"), b.env.Kubeconfig, b.ns,
		addr, p("secret"), p("queue"), p("tokens"), p("runs"), b.repo)
	b.cfg = b.write("gantry.yaml", []byte(cfg))
	return nil
}

func (b *bench) startServe() (func(), error) {
	logf, err := os.Create(filepath.Join(b.work, "serve.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.gantry, "serve", "--config", b.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(b.serveURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, nil
			}
		}
	}
	stop()
	return nil, errors.New("gantry serve did not become ready")
}

func (b *bench) viaServe(ctx context.Context, commit string) error {
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": commit,
		"repository":  map[string]any{"full_name": "bench/hello", "clone_url": "https://github.com/bench/hello.git"},
		"head_commit": map[string]any{"id": commit, "message": "bench"}, "sender": map[string]any{"login": "bench"}})
	mac := hmac.New(sha256.New, []byte(b.secret))
	mac.Write(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.serveURL+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randHex(16))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var a struct {
		RunID string `json:"runId"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("push: HTTP %d", resp.StatusCode)
	}
	if err != nil || a.RunID == "" {
		return fmt.Errorf("push: 202 without a run id (%v)", err)
	}
	// Poll the run until it ends, for at most runDeadline.
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.serveURL+"/api/v1/runs/"+a.RunID, nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("run %s: %w", a.RunID, err)
		}
		var r struct{ State, Message string }
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			return fmt.Errorf("GET run %s: HTTP %d (%v)", a.RunID, resp.StatusCode, err)
		}
		switch r.State {
		case "passed":
			return nil
		case "failed", "error", "cancelled":
			return fmt.Errorf("run %s %s: %s", a.RunID, r.State, r.Message)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s still %s after %s", a.RunID, r.State, runDeadline)
		case <-tick.C:
		}
	}
}

// runDeadline bounds one push's wait for its run to end.
const runDeadline = 5 * time.Minute

func (b *bench) viaRun(ctx context.Context, commit string) error {
	cmd := exec.CommandContext(ctx, b.gantry, "run", b.repo, "--config", b.cfg, "--name", "bench/hello", "--commit", commit)
	// Its own scanner cache: the running gantry serve holds its cache's lock.
	cmd.Env = append(os.Environ(), "GANTRY_SCANNER_CACHE_DIR="+filepath.Join(b.work, "run-cache"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, tail(out))
	}
	return nil
}

var digestRE = regexp.MustCompile(`"containerimage.digest":\s*"(sha256:[0-9a-f]{64})"`)

func (b *bench) byHand(ctx context.Context, commit string) error {
	dir := filepath.Join(b.work, "hand")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	envs := append(os.Environ(), "COSIGN_PASSWORD=pw", "TRIVY_NO_PROGRESS=true")
	sh := func(bin string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = envs
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), args[0], err, tail(out))
		}
		return out, nil
	}
	// The same commit, checked out (git itself: go-git here).
	src := filepath.Join(dir, "src")
	repo, err := git.PlainClone(src, false, &git.CloneOptions{URL: b.repo, Depth: 1})
	if err != nil {
		return err
	}
	if head, _ := repo.Head(); head.Hash().String() != commit {
		return fmt.Errorf("checked out %s, want %s", head.Hash(), commit)
	}
	meta := filepath.Join(dir, "meta.json")
	ctxDir := filepath.Join(src, "hello")
	if _, err := sh(b.env.Buildctl, "--addr", b.env.BuildkitAddr, "build", "--frontend", "dockerfile.v0",
		"--local", "context="+ctxDir, "--local", "dockerfile="+ctxDir, "--opt", "attest:provenance=mode=max",
		"--output", "type=image,name="+b.image+",push=true", "--metadata-file", meta); err != nil {
		return err
	}
	mb, _ := os.ReadFile(meta)
	m := digestRE.FindSubmatch(mb)
	if m == nil {
		return errors.New("no digest in buildctl's metadata")
	}
	ref := b.image + "@" + string(m[1])
	scan := filepath.Join(dir, "scan.json")
	common := []string{"--cache-dir", b.trivyCache, "--quiet"}
	if _, err := sh(b.trivy, append([]string{"image", "--db-repository", b.dbRef, "--skip-java-db-update", "--insecure",
		"--skip-version-check", "--disable-telemetry", "--image-src", "remote", "--scanners", "vuln",
		"--format", "json", "--output", scan, ref}, common...)...); err != nil {
		return err
	}
	sbom := filepath.Join(dir, "sbom.json")
	if _, err := sh(b.trivy, append([]string{"convert", "--format", "cyclonedx", "--output", sbom, scan}, common...)...); err != nil {
		return err
	}
	prov := filepath.Join(dir, "prov.json")
	if err := os.WriteFile(prov, []byte(`{"buildDefinition":{"buildType":"https://example.com/hand","externalParameters":{"commit":"`+commit+`"}},"runDetails":{"builder":{"id":"https://example.com/hand"}}}`), 0o600); err != nil {
		return err
	}
	cosignArgs := []string{"--key", b.key, "--tlog-upload=false", "-y", "--allow-insecure-registry"}
	if _, err := sh(b.env.Cosign, append([]string{"sign"}, append(cosignArgs, ref)...)...); err != nil {
		return err
	}
	for _, a := range []struct{ typ, pred string }{{"slsaprovenance1", prov}, {"vuln", scan}, {"cyclonedx", sbom}} {
		if _, err := sh(b.env.Cosign, append([]string{"attest", "--type", a.typ, "--predicate", a.pred}, append(cosignArgs, ref)...)...); err != nil {
			return err
		}
	}
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: hello-hand, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello-hand}}
  template:
    metadata: {labels: {app: hello-hand}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: hello
          image: %s
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, b.ns, ref)
	cmd := exec.CommandContext(ctx, b.env.Kubectl, "--kubeconfig", b.env.Kubeconfig, "apply", "--server-side", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %v: %s", err, out)
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return string(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
