package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	corev1 "k8s.io/api/core/v1"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
	"github.com/gantry-dev/gantry/webhooks"
)

// buildGate is an HTTP endpoint a Dockerfile's RUN step fetches (the
// BuildKit worker uses the host network): the request is held until the
// test opens the gate, so a run stays in flight exactly as long as a test
// needs, without a fixed sleep.
type buildGate struct {
	addr    string
	open    chan struct{}
	arrived chan struct{}
	once    sync.Once
}

func newBuildGate(t *testing.T) *buildGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &buildGate{addr: ln.Addr().String(), open: make(chan struct{}), arrived: make(chan struct{}, 16)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
		select {
		case <-g.open:
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, "open")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { g.release(); _ = srv.Close() })
	return g
}

func (g *buildGate) release() { g.once.Do(func() { close(g.open) }) }

// TestReplayAndTenancyE2E runs gantry serve with the real stages against
// buildkitd, the registry and kube-apiserver, and attacks it with signed
// push bodies: an old push re-posted under a new delivery id (after its
// successor was deployed, and while a newer run is in flight), a force
// push back to an older commit, a second repository deploying a function
// of the first's name, and a function mounting a Secret the server's
// policy does not give its repository. Then a rollback the repository
// allows: deployed and audited.
func TestReplayAndTenancyE2E(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	uniq := randHex(t, 4)
	write := fileWriter(t, dir)
	dbRef := e.Registry + "/replay-" + uniq + "/trivy-db:2"
	pushTestDB(ctx, t, dbRef)
	ns := "gantry-replay-" + uniq
	cs := kubeNamespace(ctx, t, e.Kubeconfig, ns)
	// acme/third has a namespace of its own (deploy.tenants.namespaces).
	ns3 := ns + "-third"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns3}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns3, metav1.DeleteOptions{}) })

	repoDir, otherDir, thirdDir := filepath.Join(dir, "hello"), filepath.Join(dir, "other"), filepath.Join(dir, "third")
	image := e.Registry + "/replay-" + uniq + "/hello"
	token := "replay-token-" + uniq
	secret := "replay webhook secret " + uniq
	dataDir := filepath.Join(dir, "data")
	cfg := write("gantry.yaml", fmt.Appendf(nil, `
registry: {insecure: [%[1]q]}
builder: {addrs: [%[2]q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%[3]q], javaDbRepositories: [], cacheDir: %[4]q}
signer: {keySource: none}
deploy:
  kubeconfig: %[5]q
  namespace: %[6]q
  mode: kubernetes
  waitForRollout: false
  tenants: {secrets: {acme/hello: ["hello-*"]}, namespaces: {acme/third: %[13]q}}
server: {listen: 127.0.0.1:0, insecureHTTP: true}
webhooks:
  githubSecretFiles: [%[7]q]
  repos: [{name: acme/hello, branches: ["*"]}, {name: acme/other, branches: ["*"]}, {name: acme/third, branches: ["*"]}]
queue: {dataDir: %[8]q, ackWait: 2s, retryDelay: 100ms, workers: 3}
api: {tokensFile: %[9]q, publicURL: "http://gantry.example"}
pipeline: {allowLocalRepos: true, workDir: %[10]q, mirrors: {acme/hello: %[11]q, acme/other: %[12]q, acme/third: %[14]q}}
`, e.Registry, e.BuildkitAddr, dbRef, filepath.Join(dir, "trivy"), e.Kubeconfig, ns,
		write("secret", []byte(secret)), dataDir, write("tokens", []byte("sha256:"+sha256Hex(token)+"\n")),
		filepath.Join(dir, "work"), repoDir, otherDir, ns3, thirdDir))
	serveLog := filepath.Join(dir, "serve.log")
	srv := startGantry(t, serveLog, "serve", "--config", cfg)

	// post sends a signed push body under a delivery id and returns the
	// answer and the HTTP status.
	post := func(t *testing.T, repo, before, after, delivery string) (webhooks.Answer, int) {
		t.Helper()
		return postPush(t, srv.addr, secret, pushDelivery{Repo: repo, Ref: "refs/heads/main", Before: before, After: after, ID: delivery})
	}
	queued := func(t *testing.T, repo, before, after, delivery string) string {
		t.Helper()
		a, code := post(t, repo, before, after, delivery)
		if code != http.StatusAccepted || a.RunID == "" {
			t.Fatalf("push %s %s..%s: %d %+v", repo, before, after, code, a)
		}
		return a.RunID
	}
	getRun := func(t *testing.T, id string) pipelines.Run {
		t.Helper()
		var r pipelines.Run
		if code := apiGet(t, srv.addr, token, "/api/v1/runs/"+id, &r); code != 200 {
			t.Fatalf("run %s: HTTP %d", id, code)
		}
		return r
	}
	waitRun := func(t *testing.T, id string) pipelines.Run {
		t.Helper()
		finished := false
		defer func() {
			if !finished {
				t.Logf("serve log:\n%s", readFile(t, serveLog))
			}
		}()
		r := wait.For(t, 3*time.Minute, "run "+id+" to finish", func() (pipelines.Run, error) {
			r := getRun(t, id)
			if !r.State.Final() {
				return r, fmt.Errorf("state %q", r.State)
			}
			return r, nil
		})
		finished = true
		return r
	}
	passed := func(t *testing.T, id string) pipelines.Run {
		t.Helper()
		r := waitRun(t, id)
		if r.State != pipelines.StatePassed {
			t.Fatalf("run %s (%s): %s %s", id, r.Commit, r.State, r.Message)
		}
		return r
	}
	deployed := func(t *testing.T) (commit, run, rv string) {
		t.Helper()
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return dep.Annotations[deploy.AnnotationCommit], dep.Annotations[deploy.AnnotationRun], dep.ResourceVersion
	}
	// unchanged asserts that the Deployment is still the one deployed by
	// run at commit, untouched since resourceVersion rv.
	unchanged := func(t *testing.T, what, commit, run, rv string) {
		t.Helper()
		c, r, v := deployed(t)
		if c != commit || r != run || v != rv {
			t.Fatalf("%s: the Deployment now holds commit %s of run %s (resourceVersion %s); want commit %s of run %s untouched (%s)",
				what, c, r, v, commit, run, rv)
		}
	}
	version := func(v string) map[string]string {
		return map[string]string{"functions/hello/rootfs/version.txt": v + "\n"}
	}
	zero := strings.Repeat("0", 40)

	commitA := functionRepo(t, repoDir, e.BaseImage, image, scantest.CleanFiles())
	runA := passed(t, queued(t, "acme/hello", zero, commitA, "a-"+uniq))
	commitB := gitCommit(t, repoDir, version("b"), "b")
	runB := passed(t, queued(t, "acme/hello", commitA, commitB, "b-"+uniq))
	_, _, rvB := deployed(t)
	unchanged(t, "after push B", commitB, runB.ID, rvB)

	t.Run("old push re-posted under a new delivery id: nothing deployed, B stays", func(t *testing.T) {
		a, code := post(t, "acme/hello", zero, commitA, "replay-a-"+uniq)
		if code/100 != 2 {
			t.Fatalf("replay answered %d %+v, want a 2xx answer (no error for GitHub to retry)", code, a)
		}
		if a.RunID != "" && a.RunID != runA.ID {
			if r := waitRun(t, a.RunID); r.State == pipelines.StatePassed {
				t.Errorf("the replayed push ran to the end: %s %s", r.State, r.Message)
			}
		}
		if a.Status != "duplicate" || a.RunID != runA.ID || !strings.Contains(a.Reason, "queued before under another delivery id") {
			t.Errorf("replay answered %+v, want duplicate of run %s", a, runA.ID)
		}
		unchanged(t, "after the replay", commitB, runB.ID, rvB)
	})

	t.Run("force push back to an older commit: refused as stale naming both commits", func(t *testing.T) {
		r := waitRun(t, queued(t, "acme/hello", commitB, commitA, "force-a-"+uniq))
		if r.State != pipelines.StateFailed || !strings.Contains(r.Message, "stale") ||
			!strings.Contains(r.Message, commitA) || !strings.Contains(r.Message, commitB) {
			t.Fatalf("run %s: %s %q, want failed as stale naming %s and %s", r.ID, r.State, r.Message, commitA, commitB)
		}
		if s := r.Stage("deploy"); s == nil || s.State != pipelines.StateFailed {
			t.Errorf("deploy stage %+v, want failed", s)
		}
		unchanged(t, "after the force push back", commitB, runB.ID, rvB)
	})

	gate := newBuildGate(t)
	var commitC, runC string
	t.Run("older pushes while a newer run is in flight: the newer run is not cancelled", func(t *testing.T) {
		// C's build waits at the gate: C is in flight until it opens.
		df := gitCommit(t, repoDir, map[string]string{
			"functions/hello/Dockerfile": "FROM " + e.BaseImage + "\nRUN wget -q -O /gate http://" + gate.addr + "/" + uniq +
				"\nCOPY rootfs/ /\nUSER 1000:1000\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
			"functions/hello/rootfs/version.txt": "c\n"}, "c")
		commitC = df
		runC = queued(t, "acme/hello", commitB, commitC, "c-"+uniq)
		select {
		case <-gate.arrived:
		case <-ctx.Done():
			t.Fatalf("C's build never reached the gate\n%s", readFile(t, serveLog))
		}
		// Replays of A's and B's bodies: duplicates of their runs.
		for _, p := range []struct{ before, after, run string }{{zero, commitA, runA.ID}, {commitA, commitB, runB.ID}} {
			a, code := post(t, "acme/hello", p.before, p.after, "replay-inflight-"+p.after[:8]+"-"+uniq)
			if code/100 != 2 || a.Status != "duplicate" || a.RunID != p.run {
				t.Errorf("replay of %s during C: %d %+v, want duplicate of %s", p.after[:8], code, a, p.run)
			}
		}
		// A force push back to B while C is in flight: a new run of an
		// older commit; it stops itself and leaves C alone.
		stale := waitRun(t, queued(t, "acme/hello", commitC, commitB, "force-b-"+uniq))
		if stale.State == pipelines.StatePassed {
			t.Fatalf("the older commit's run passed: %q", stale.Message)
		}
		if stale.State != pipelines.StateCancelled || stale.SupersededBy != runC || !strings.Contains(stale.Message, commitC[:12]) {
			t.Errorf("older run during C: %s %q by %q, want cancelled in favour of %s", stale.State, stale.Message, stale.SupersededBy, runC)
		}
		if r := getRun(t, runC); r.State != pipelines.StateRunning {
			t.Fatalf("run C after the older pushes: %s %q", r.State, r.Message)
		}
		gate.release()
		passed(t, runC)
		c, r, _ := deployed(t)
		if c != commitC || r != runC {
			t.Fatalf("deployed commit %s of run %s, want C %s of %s", c, r, commitC, runC)
		}
	})
	if t.Failed() {
		return
	}
	_, _, rvC := deployed(t)

	t.Run("another repository deploying a function of the same name: refused naming the owner", func(t *testing.T) {
		commitO := functionRepo(t, otherDir, e.BaseImage, e.Registry+"/replay-"+uniq+"/other", scantest.CleanFiles())
		r := waitRun(t, queued(t, "acme/other", zero, commitO, "other-"+uniq))
		if r.State != pipelines.StateFailed || !strings.Contains(r.Message, "acme/hello") || !strings.Contains(r.Message, "belongs to") {
			t.Fatalf("run %s: %s %q, want failed naming the owner acme/hello", r.ID, r.State, r.Message)
		}
		unchanged(t, "after acme/other's push", commitC, runC, rvC)
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil || svc.Annotations[deploy.AnnotationRepo] != "acme/hello" {
			t.Fatalf("Service hello: %v %v", svc.Annotations, err)
		}
	})

	t.Run("a repository with a namespace of its own: deployed there, the other function untouched", func(t *testing.T) {
		commit3 := functionRepo(t, thirdDir, e.BaseImage, e.Registry+"/replay-"+uniq+"/third", scantest.CleanFiles())
		passed(t, queued(t, "acme/third", zero, commit3, "third-"+uniq))
		dep, err := cs.AppsV1().Deployments(ns3).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil || dep.Annotations[deploy.AnnotationRepo] != "acme/third" || dep.Annotations[deploy.AnnotationCommit] != commit3 {
			t.Fatalf("Deployment hello in %s: %v %v", ns3, dep.Annotations, err)
		}
		unchanged(t, "after acme/third's push", commitC, runC, rvC)
	})

	t.Run("a Secret the server's policy does not give the repository: refused", func(t *testing.T) {
		gy := readFile(t, filepath.Join(repoDir, "gantry.yaml"))
		sha := gitCommit(t, repoDir, map[string]string{"gantry.yaml": gy + "    secrets: [hello-api, db-password]\n"}, "secrets")
		r := waitRun(t, queued(t, "acme/hello", commitC, sha, "secret-"+uniq))
		if r.State != pipelines.StateFailed || !strings.Contains(r.Message, "db-password") || strings.Contains(r.Message, "hello-api,") {
			t.Fatalf("run %s: %s %q, want failed naming db-password only", r.ID, r.State, r.Message)
		}
		unchanged(t, "after the secret push", commitC, runC, rvC)
		// Back to no secrets for what follows.
		if err := os.WriteFile(filepath.Join(repoDir, "gantry.yaml"), []byte(gy), 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("rollback allowed by the repository: deployed and audited", func(t *testing.T) {
		gy := readFile(t, filepath.Join(repoDir, "gantry.yaml"))
		commitE := gitCommit(t, repoDir, map[string]string{"gantry.yaml": "rollback: allow\n" + gy}, "allow rollbacks")
		runE := passed(t, queued(t, "acme/hello", commitC, commitE, "e-"+uniq))
		// Back to C (C's build is cached; the gate is open anyway).
		back := passed(t, queued(t, "acme/hello", commitE, commitC, "back-to-c-"+uniq))
		c, r, _ := deployed(t)
		if c != commitC || r != back.ID {
			t.Fatalf("deployed commit %s of run %s, want the rollback to C by run %s", c, r, back.ID)
		}
		f, err := os.Open(filepath.Join(dataDir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		found := false
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev struct {
				Action  string            `json:"action"`
				Target  string            `json:"target"`
				Details map[string]string `json:"details"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Action == "deploy.rollback" {
				found = ev.Details["commit"] == commitC && ev.Details["deployedCommit"] == commitE &&
					ev.Details["run"] == back.ID && ev.Details["deployedRun"] == runE.ID && strings.Contains(ev.Target, ns)
			}
		}
		if !found {
			t.Fatalf("no deploy.rollback audit record for run %s (C over E):\n%s", back.ID, readFile(t, filepath.Join(dataDir, "audit.jsonl")))
		}
	})
}
