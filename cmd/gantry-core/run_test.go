package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// functionRepo commits a function repository to a new local git repo:
// one function "hello" whose image adds files (path → content) to the
// test base image.
func functionRepo(t *testing.T, dir, base, image string, rootfs map[string]string) string {
	t.Helper()
	files := map[string]string{
		"gantry.yaml": "version: 1\nfunctions:\n  - name: hello\n    context: functions/hello\n    image: " + image + "\n" +
			"    env: {GREETING: hi}\n    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 32Mi}}\n",
		"functions/hello/Dockerfile": "FROM " + base + "\nCOPY rootfs/ /\nUSER 1000:1000\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
	}
	for p, c := range rootfs {
		files["functions/hello/rootfs"+p] = c
	}
	return gitCommit(t, dir, files, "add hello")
}

func TestRunCommand(t *testing.T) {
	e := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fx, err := scantest.Setup(ctx, e.BuildkitAddr, e.Registry, e.BaseImage, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, pubPath := cosignKeyFiles(t, dir)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("identities:\n  - {name: ci, key: "+pubPath+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	rc, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	uniq := hex.EncodeToString(b)
	ns := "gantry-run-" + uniq
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })

	env := []string{
		"GANTRY_REGISTRY_INSECURE=" + e.Registry,
		"GANTRY_BUILDER_ADDRS=" + e.BuildkitAddr,
		"GANTRY_LINT_HADOLINT=off",
		"GANTRY_SCANNER_DB_REPOSITORIES=" + fx.DBRepository,
		"GANTRY_SCANNER_JAVA_DB_REPOSITORIES=",
		"GANTRY_SCANNER_CACHE_DIR=" + filepath.Join(dir, "cache"),
		"GANTRY_SIGNER_KEY_SOURCE=file", "GANTRY_SIGNER_KEY_FILE=" + keyPath, "COSIGN_PASSWORD=pw",
		"GANTRY_DEPLOY_KUBECONFIG=" + e.Kubeconfig, "GANTRY_DEPLOY_NAMESPACE=" + ns,
		"GANTRY_DEPLOY_MODE=kubernetes", "GANTRY_DEPLOY_WAIT_FOR_ROLLOUT=false",
		"GANTRY_PIPELINE_WORK_DIR=" + filepath.Join(dir, "work"),
	}

	cases := []struct {
		name       string
		rootfs     map[string]string
		args       []string
		wantCode   int
		wantStage  map[string]pipelines.State
		wantReason string
		deployed   bool
		withBye    bool // add a second function, "bye", with the planted CVE
	}{
		{"clean image: built, scanned, signed, deployed", scantest.CleanFiles(), nil, exitOK,
			map[string]pipelines.State{"checkout": pipelines.StatePassed, "lint": pipelines.StatePassed, "build": pipelines.StatePassed,
				"scan": pipelines.StatePassed, "sign": pipelines.StatePassed, "deploy": pipelines.StatePassed, "notify": pipelines.StatePassed},
			"", true, false},
		{"planted CVE: fails at scan, nothing signed or deployed", scantest.VulnerableFiles(), nil, exitPolicy,
			map[string]pipelines.State{"build": pipelines.StatePassed, "scan": pipelines.StateFailed, "sign": pipelines.StateCancelled,
				"deploy": pipelines.StateCancelled},
			scantest.FixableHigh, false, false},
		{"root user: fails at lint", nil, nil, exitPolicy,
			map[string]pipelines.State{"lint": pipelines.StateFailed, "build": pipelines.StateCancelled}, "gantry-root-user", false, false},
		// Two functions, "bye" with the planted CVE: it stops at scan, hello
		// goes on to be signed and deployed, and the run fails at notify.
		{"two functions, one vulnerable", scantest.CleanFiles(), nil, exitPolicy,
			map[string]pipelines.State{"scan": pipelines.StatePassed, "sign": pipelines.StatePassed, "deploy": pipelines.StatePassed,
				"notify": pipelines.StateFailed},
			"bye failed scan", true, true},
		{"no deploy", scantest.CleanFiles(), []string{"--no-deploy"}, exitOK,
			map[string]pipelines.State{"sign": pipelines.StatePassed, "deploy": pipelines.StatePassed}, "", false, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repoDir := filepath.Join(dir, "repo", string(rune('a'+i)))
			image := e.Registry + "/gantry-run-" + uniq + "/hello" + string(rune('a'+i))
			functionRepo(t, repoDir, e.BaseImage, image, c.rootfs)
			if c.rootfs == nil { // the lint case: drop the USER line
				df := "functions/hello/Dockerfile"
				b, err := os.ReadFile(filepath.Join(repoDir, df))
				if err != nil {
					t.Fatal(err)
				}
				gitCommit(t, repoDir, map[string]string{df: strings.Replace(string(b), "USER 1000:1000\n", "", 1)}, "root")
			}
			two := c.withBye
			if two {
				addFunction(t, repoDir, "bye", e.BaseImage, image+"-bye", scantest.VulnerableFiles())
			}
			sarif, summary := filepath.Join(dir, "sarif"+c.name[:4]), filepath.Join(dir, "summary"+c.name[:4]+".md")
			args := append([]string{"run", repoDir, "--name", "acme/hello", "--output", "json",
				"--sarif-dir", sarif, "--summary-file", summary}, c.args...)
			code, out, stderr := gantry(t, env, args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.wantCode, out, stderr)
			}
			if testing.Verbose() {
				t.Logf("progress:\n%s\nresult:\n%s", stderr, out)
			}
			var res runOutput
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			for _, name := range slices.Sorted(maps.Keys(c.wantStage)) {
				if s := res.Run.Stage(name); s == nil || s.State != c.wantStage[name] {
					t.Errorf("stage %s: %+v, want %s", name, s, c.wantStage[name])
				}
			}
			if c.wantReason != "" && !strings.Contains(res.Run.Message, c.wantReason) &&
				!strings.Contains(stderr, c.wantReason) {
				t.Errorf("reason %q in neither message %q nor progress", c.wantReason, res.Run.Message)
			}
			if want := map[bool]int{false: 1, true: 2}[two]; len(res.Functions) != want {
				t.Fatalf("functions %+v, want %d", res.Functions, want)
			}
			fn := res.Functions[0]
			if two {
				bye := res.Functions[1]
				if fn.FailedStage != "" || bye.FailedStage != "scan" || len(bye.Findings) == 0 || bye.Findings[0].ID == "" {
					t.Errorf("hello %+v\nbye %+v", fn, bye)
				}
				if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "bye", metav1.GetOptions{}); err == nil {
					t.Errorf("the vulnerable function was deployed")
				}
			}
			if c.wantCode == exitOK && !strings.HasPrefix(fn.Image, image+"@sha256:") {
				t.Errorf("image %q, want %s@sha256:…", fn.Image, image)
			}
			if md, err := os.ReadFile(summary); err != nil || !strings.Contains(string(md), "## Gantry run: "+string(res.Run.State)) {
				t.Errorf("summary %q, %v", md, err)
			}
			if c.wantStage["scan"] != "" {
				if _, err := os.Stat(filepath.Join(sarif, "scan-hello.sarif")); err != nil {
					t.Errorf("scan SARIF: %v", err)
				}
			}
			if c.wantCode == exitOK {
				// The image is signed by the configured key, with its
				// attestations: gantry verify says so.
				code, vout, verr := gantry(t, env, "verify", fn.Image, "--policy", policy)
				if code != exitOK {
					t.Errorf("verify %s: exit %d\n%s\n%s", fn.Image, code, vout, verr)
				}
			}
			dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
			if c.deployed {
				if err != nil {
					t.Fatalf("deployment: %v", err)
				}
				if got := dep.Spec.Template.Spec.Containers[0].Image; got != fn.Image {
					t.Errorf("deployed image %q, want %q", got, fn.Image)
				}
				if dep.Annotations[deploy.AnnotationRun] != res.Run.ID || dep.Annotations[deploy.AnnotationCommit] != res.Run.Commit {
					t.Errorf("annotations %v, want run %s commit %s", dep.Annotations, res.Run.ID, res.Run.Commit)
				}
				if err := cs.AppsV1().Deployments(ns).Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			} else if err == nil {
				t.Errorf("deployment exists: %s", dep.Spec.Template.Spec.Containers[0].Image)
			}
		})
	}
}

// addFunction adds a second function to the repository's gantry.yaml,
// with its own Dockerfile and files, and commits.
func addFunction(t *testing.T, repoDir, fn, base, image string, rootfs map[string]string) {
	t.Helper()
	cfg := filepath.Join(repoDir, "gantry.yaml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "  - name: "+fn+"\n    context: functions/"+fn+"\n    image: "+image+"\n"...)
	files := map[string]string{"gantry.yaml": string(b),
		"functions/" + fn + "/Dockerfile": "FROM " + base + "\nCOPY rootfs/ /\nUSER 1000:1000\n"}
	for p, c := range rootfs {
		files["functions/"+fn+"/rootfs"+p] = c
	}
	gitCommit(t, repoDir, files, "add "+fn)
}

// FuzzMDEscape: untrusted text (function names, messages from a pushed
// repository) cannot break out of a summary table cell or inject HTML.
func FuzzMDEscape(f *testing.F) {
	for _, s := range []string{"a|b", "x\n| y |", "<img src=x>", "`code`", "[link](http://x)", "*bold* _it_", `\|`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := mdEscape(s)
		if strings.ContainsAny(out, "\n\r<>`") {
			t.Fatalf("mdEscape(%q) = %q keeps a line break, angle bracket or backtick", s, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] != '|' {
				continue
			}
			n := 0 // backslashes right before: odd means the | is escaped
			for j := i - 1; j >= 0 && out[j] == '\\'; j-- {
				n++
			}
			if n%2 == 0 {
				t.Fatalf("mdEscape(%q) = %q has an unescaped |", s, out)
			}
		}
	})
}
