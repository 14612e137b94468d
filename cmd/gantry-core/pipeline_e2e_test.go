package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	controlapi "github.com/moby/buildkit/api/services/control"
	bkclient "github.com/moby/buildkit/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/chart"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/notify"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
	"github.com/gantry-dev/gantry/webhooks"
)

// fakeGitHub speaks the parts of GitHub's REST API notify uses, to the
// real go-github client: App installation tokens, commit statuses, check
// runs (create and update, ≤ 50 annotations per request).
type fakeGitHub struct {
	mu        sync.Mutex
	statuses  []ghStatus
	checkRuns map[int64]*ghCheckRun
	nextID    int64
	tooMany   bool // a request carried more than 50 annotations
}

type ghStatus struct {
	SHA         string `json:"-"`
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
}

type ghCheckRun struct {
	HeadSHA     string `json:"head_sha"`
	Status      string `json:"status"`
	Conclusion  string `json:"conclusion"`
	Annotations []struct {
		Path    string `json:"path"`
		Level   string `json:"annotation_level"`
		Message string `json:"message"`
	}
}

func (g *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && !strings.HasPrefix(r.Header.Get("Authorization"), "token ") {
		http.Error(w, `{"message":"Requires authentication"}`, http.StatusUnauthorized)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && regexp.MustCompile(`^/app/installations/\d+/access_tokens$`).MatchString(p):
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_e2e","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	case r.Method == http.MethodPost && strings.Contains(p, "/statuses/"):
		var s ghStatus
		if err := json.Unmarshal(body, &s); err != nil {
			http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
			return
		}
		s.SHA = p[strings.LastIndex(p, "/")+1:]
		g.statuses = append(g.statuses, s)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":1}`)
	case strings.Contains(p, "/check-runs"):
		var in struct {
			HeadSHA    string `json:"head_sha"`
			Status     string `json:"status"`
			Conclusion string `json:"conclusion"`
			Output     *struct {
				Annotations json.RawMessage `json:"annotations"`
			} `json:"output"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
			return
		}
		var cr *ghCheckRun
		if r.Method == http.MethodPost {
			g.nextID++
			cr = &ghCheckRun{HeadSHA: in.HeadSHA}
			if g.checkRuns == nil {
				g.checkRuns = map[int64]*ghCheckRun{}
			}
			g.checkRuns[g.nextID] = cr
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":%d}`, g.nextID)
		} else {
			var id int64
			fmt.Sscan(p[strings.LastIndex(p, "/")+1:], &id)
			if cr = g.checkRuns[id]; cr == nil {
				http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
				return
			}
			fmt.Fprintf(w, `{"id":%d}`, id)
		}
		if in.Status != "" {
			cr.Status = in.Status
		}
		if in.Conclusion != "" {
			cr.Conclusion, cr.Status = in.Conclusion, "completed"
		}
		if in.Output != nil && len(in.Output.Annotations) > 0 {
			var as []struct {
				Path    string `json:"path"`
				Level   string `json:"annotation_level"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(in.Output.Annotations, &as); err != nil {
				http.Error(w, `{"message":"Invalid request: output.annotations"}`, http.StatusUnprocessableEntity)
				return
			}
			if len(as) > 50 {
				g.tooMany = true
			}
			cr.Annotations = append(cr.Annotations, as...)
		}
	default:
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
	}
}

func (g *fakeGitHub) forSHA(sha string) (st []ghStatus, crs []ghCheckRun) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.statuses {
		if s.SHA == sha {
			st = append(st, s)
		}
	}
	for _, c := range g.checkRuns {
		if c.HeadSHA == sha {
			crs = append(crs, *c)
		}
	}
	return st, crs
}

// ceSink records CloudEvents whose signature verifies.
type ceSink struct {
	key  []byte
	mu   sync.Mutex
	got  [][]byte
	bads int
}

func (s *ceSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := notify.VerifySignature(s.key, body, r.Header.Get(notify.SignatureHeader)); err != nil {
		s.bads++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	s.got = append(s.got, body)
}

func (s *ceSink) forRun(id string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, b := range s.got {
		if strings.Contains(string(b), `"id":"`+id+`/`) {
			out = append(out, b)
		}
	}
	return out
}

// TestPipelineE2E runs gantry serve with the real stages and gantry
// admission registered with the API server, and sends signed push
// deliveries: one success, a planted CVE (fails at scan, notified), then
// unsigned and privileged pods (denied), and a run whose worker is killed
// with SIGKILL mid-build (resumed, finished once).
func TestPipelineE2E(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	uniq := randHex(t, 4)
	write := fileWriter(t, dir)

	// Test DB, signing key, policy, GitHub App key, sinks.
	dbRef := e.Registry + "/e2e-" + uniq + "/trivy-db:2"
	pushTestDB(ctx, t, dbRef)
	keyPath, pubPath := cosignKeyFiles(t, dir)
	pwPath := write("cosign.pw", []byte("pw"))
	policy := write("policy.yaml", []byte("identities:\n  - {name: e2e, key: "+pubPath+"}\n"))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	appKey := write("app.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	gh := &fakeGitHub{}
	ghSrv := httptest.NewServer(gh)
	defer ghSrv.Close()
	ce := &ceSink{key: []byte(randHex(t, 32))}
	ceSrv := httptest.NewServer(ce)
	defer ceSrv.Close()
	ceKey := write("ce.key", ce.key)

	// Function namespace, guarded by the webhook.
	ns := "gantry-e2e-" + uniq
	cs := kubeNamespace(ctx, t, e.Kubeconfig, ns)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The function repository (a local git repo, reached through
	// pipeline.mirrors; the push carries GitHub's https clone URL).
	repoDir := filepath.Join(dir, "repo")
	image := e.Registry + "/e2e-" + uniq + "/hello"
	commit1 := functionRepo(t, repoDir, e.BaseImage, image, scantest.CleanFiles())

	token := "e2e-token-" + uniq
	tokenSum := sha256Hex(token)
	secret := "e2e webhook secret " + uniq
	admPort := freePortT(t)
	cfg := write("gantry.yaml", fmt.Appendf(nil, `
registry: {insecure: [%[1]q]}
builder: {addrs: [%[2]q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%[3]q], javaDbRepositories: [], cacheDir: %[4]q}
signer: {keySource: file, keyFile: %[5]q, passwordFile: %[6]q}
deploy: {kubeconfig: %[7]q, namespace: %[8]q, mode: kubernetes, waitForRollout: false}
notify:
  backoff: 10ms
  github: {apiURL: %[9]q, appID: 1, installationID: 7, privateKeyFile: %[10]q}
  cloudEvents: {url: %[11]q, secretFile: %[12]q, source: e2e}
admission: {listen: %[13]q, signerPolicy: %[14]q}
server: {listen: 127.0.0.1:0, insecureHTTP: true}
webhooks:
  githubSecretFiles: [%[15]q]
  repos: [{name: acme/hello, branches: ["*"]}]
queue: {dataDir: %[16]q, ackWait: 2s, retryDelay: 100ms}
api: {tokensFile: %[17]q, publicURL: "http://gantry.example"}
pipeline: {allowLocalRepos: true, workDir: %[18]q, mirrors: {acme/hello: %[19]q}}
`, e.Registry, e.BuildkitAddr, dbRef, filepath.Join(dir, "trivy"), keyPath, pwPath, e.Kubeconfig, ns,
		ghSrv.URL+"/", appKey, ceSrv.URL, ceKey, "127.0.0.1:"+admPort, policy,
		write("secret", []byte(secret)), filepath.Join(dir, "data"), write("tokens", []byte("sha256:"+tokenSum+"\n")),
		filepath.Join(dir, "work"), repoDir))

	// gantry admission, registered as the chart renders it.
	tlsDir := filepath.Join(dir, "adm-tls")
	startGantryUntil(t, regexp.MustCompile(`admission webhook listening`), filepath.Join(dir, "admission.log"),
		"admission", "--config", cfg, "--tls-self-signed", tlsDir)
	registerWebhook(t, ctx, cs, ns, "127.0.0.1:"+admPort, tlsDir, uniq)

	serveLog := filepath.Join(dir, "serve.log")
	srv := startGantry(t, serveLog, "serve", "--config", cfg)
	pushCommit := func(sha string) string {
		t.Helper()
		a := pushSigned(t, srv.addr, secret, sha)
		if a.RunID == "" {
			t.Fatalf("push %s not queued: %+v", sha, a)
		}
		return a.RunID
	}
	waitRun := func(id string) pipelines.Run {
		t.Helper()
		finished := false
		defer func() {
			if !finished {
				t.Logf("serve log:\n%s", readFile(t, serveLog))
			}
		}()
		run := wait.For(t, 3*time.Minute, "run "+id+" to finish", func() (pipelines.Run, error) {
			var r pipelines.Run
			if code := apiGet(t, srv.addr, token, "/api/v1/runs/"+id, &r); code != 200 || !r.State.Final() {
				return r, fmt.Errorf("HTTP %d, state %q", code, r.State)
			}
			return r, nil
		})
		finished = true
		return run
	}

	t.Run("success: built, scanned, signed, deployed, admitted, reported", func(t *testing.T) {
		run := waitRun(pushCommit(commit1))
		if run.State != pipelines.StatePassed {
			t.Fatalf("run %s: %s %s", run.ID, run.State, run.Message)
		}
		img := run.Outputs["image.hello"]
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := dep.Spec.Template.Spec.Containers[0].Image; got != img || !strings.HasPrefix(img, image+"@sha256:") {
			t.Errorf("deployed %q, run image %q", got, img)
		}
		if dep.Annotations[deploy.AnnotationRun] != run.ID {
			t.Errorf("annotations %v", dep.Annotations)
		}
		st, crs := gh.forSHA(commit1)
		if len(st) < 2 || st[0].State != "pending" || st[len(st)-1].State != "success" || st[len(st)-1].Context != "gantry/hello" {
			t.Errorf("statuses %+v, want pending then success for gantry/hello", st)
		}
		if len(crs) != 1 || crs[0].Conclusion != "success" {
			t.Errorf("check runs %+v", crs)
		}
		var logs string
		apiGet(t, srv.addr, token, "/api/v1/runs/"+run.ID+"/logs?stage=sign", &logs)
		for _, want := range []string{"signed " + img, "attested https://slsa.dev/provenance/v1", "attested https://cosign.sigstore.dev/attestation/vuln/v1", "attested https://cyclonedx.org/bom"} {
			if !strings.Contains(logs, want) {
				t.Errorf("sign log lacks %q:\n%s", want, logs)
			}
		}
	})

	t.Run("planted CVE: fails at scan, not deployed, notified", func(t *testing.T) {
		sha := commitFiles(t, repoDir, scantest.VulnerableFiles())
		run := waitRun(pushCommit(sha))
		if run.State != pipelines.StateFailed || run.Stage("scan").State != pipelines.StateFailed ||
			run.Stage("deploy").State != pipelines.StateCancelled {
			t.Fatalf("run %s: %s %q, stages %+v", run.ID, run.State, run.Message, run.Stages)
		}
		if !strings.Contains(run.Message, "scan gate") {
			t.Errorf("message %q", run.Message)
		}
		// The Deployment of the first run stays; it is not the vulnerable commit.
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dep.Annotations[deploy.AnnotationCommit] == sha {
			t.Errorf("the vulnerable commit was deployed")
		}
		evs := ce.forRun(run.ID)
		if len(evs) != 1 {
			t.Fatalf("%d CloudEvents for run %s (bad signatures %d)", len(evs), run.ID, ce.bads)
		}
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Verdict     string `json:"verdict"`
				TopFindings []struct {
					ID, Fixed string
				} `json:"topFindings"`
			} `json:"data"`
		}
		if err := json.Unmarshal(evs[0], &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "dev.gantry.run.failure" || ev.Data.Verdict != "failure" || len(ev.Data.TopFindings) == 0 ||
			!strings.Contains(string(evs[0]), scantest.FixableHigh) || !strings.Contains(string(evs[0]), "3.0.99-1") {
			t.Errorf("event %s", evs[0])
		}
		st, crs := gh.forSHA(sha)
		if len(st) == 0 || st[len(st)-1].State != "failure" || !strings.Contains(st[len(st)-1].Description, "scan") {
			t.Errorf("statuses %+v", st)
		}
		if len(crs) != 1 || crs[0].Conclusion != "failure" {
			t.Fatalf("check runs %+v", crs)
		}
		found := false
		for _, a := range crs[0].Annotations {
			if strings.Contains(a.Message, scantest.FixableHigh) || strings.Contains(a.Message, "openssl") {
				found = a.Path == "functions/hello/Dockerfile" && a.Level == "failure"
			}
		}
		if !found || gh.tooMany {
			t.Errorf("annotations %+v (more than 50 in a request: %v)", crs[0].Annotations, gh.tooMany)
		}
	})

	t.Run("admission refuses an unsigned image and a privileged pod", func(t *testing.T) {
		unsigned, err := scantest.BuildImage(ctx, e.BuildkitAddr, e.BaseImage, image+"-unsigned", scantest.CleanFiles())
		if err != nil {
			t.Fatal(err)
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		signed := dep.Spec.Template.Spec.Containers[0].Image
		cases := []struct {
			name, image string
			privileged  bool
			want        string
		}{
			{"unsigned", unsigned, false, "signature"},
			{"privileged", signed, true, "privileged"},
			{"signed-hardened", signed, false, ""},
		}
		for _, c := range cases {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: c.name}, Spec: dep.Spec.Template.Spec}
			pod.Spec.Containers = []corev1.Container{*dep.Spec.Template.Spec.Containers[0].DeepCopy()}
			pod.Spec.Containers[0].Image = c.image
			if c.privileged {
				pod.Spec.Containers[0].SecurityContext.Privileged = ptr.To(true)
				pod.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
			}
			_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s: denied: %v", c.name, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), "gantry:") || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s: %v, want a gantry denial naming %q", c.name, err, c.want)
			}
		}
	})

	t.Run("cancel through the API stops the BuildKit solve", func(t *testing.T) {
		df := filepath.Join(repoDir, "functions/hello/Dockerfile")
		orig, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := os.WriteFile(df, orig, 0o644); err != nil {
				t.Error(err)
			}
		}()
		slow := strings.Replace(string(orig), "USER 1000:1000", "RUN sleep 60 && echo "+uniq+"-cancel > /slow\nUSER 1000:1000", 1)
		if err := os.WriteFile(df, []byte(slow), 0o644); err != nil {
			t.Fatal(err)
		}
		sha := commitFiles(t, repoDir, scantest.CleanFiles())
		id := pushCommit(sha)
		bk, err := bkclient.New(ctx, e.BuildkitAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer bk.Close()
		// Cancel once the daemon runs the slow step.
		waitBuildStep(ctx, t, bk, id, "RUN sleep 60")
		req, err := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/api/v1/runs/"+id+"/cancel", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("cancel: %d", resp.StatusCode)
		}
		run := waitRun(id)
		if run.State != pipelines.StateCancelled {
			t.Fatalf("run %s: %s %s", id, run.State, run.Message)
		}
		// The daemon's history: the run's build ended with an error (it
		// was cancelled), long before its 60 s step could have finished.
		rec := wait.For(t, 30*time.Second, "the build of run "+id+" to end on the daemon after the cancel", func() (*controlapi.BuildHistoryRecord, error) {
			rec := buildRecord(ctx, t, bk, id)
			if rec == nil || rec.CompletedAt == nil {
				return nil, fmt.Errorf("record %+v", rec)
			}
			return rec, nil
		})
		if rec.Error == nil {
			t.Fatalf("build %s completed without error after the cancel", rec.Ref)
		}
	})

	t.Run("kill -9 of the worker mid-build: resumed and finished once", func(t *testing.T) {
		// A build step slow enough to be killed in.
		df := filepath.Join(repoDir, "functions/hello/Dockerfile")
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		slow := strings.Replace(string(b), "USER 1000:1000", "RUN sleep 4 && echo "+uniq+" > /slow\nUSER 1000:1000", 1)
		slow = strings.Replace(slow, "COPY rootfs/ /\n", "", 1)
		if err := os.WriteFile(df, []byte(slow), 0o644); err != nil {
			t.Fatal(err)
		}
		// Back to clean files so this run passes.
		sha := commitFiles(t, repoDir, scantest.CleanFiles())
		id := pushCommit(sha)
		bk, err := bkclient.New(ctx, e.BuildkitAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer bk.Close()
		// Kill once the daemon runs the slow step: mid-build.
		waitBuildStep(ctx, t, bk, id, "RUN sleep 4")
		if err := syscall.Kill(-srv.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-srv.done
		srv = startGantry(t, serveLog, "serve", "--config", cfg)
		run := waitRun(id)
		if run.State != pipelines.StatePassed {
			t.Fatalf("run %s after kill: %s %s", id, run.State, run.Message)
		}
		if s := run.Stage("build"); s.Attempts < 2 || run.Attempts < 2 {
			t.Errorf("build attempts %d, run attempts %d: the kill did not land mid-build", s.Attempts, run.Attempts)
		}
		for _, name := range []string{"scan", "sign", "deploy", "notify"} {
			if s := run.Stage(name); s.Attempts != 1 {
				t.Errorf("stage %s ran %d times, want once", name, s.Attempts)
			}
		}
		st, crs := gh.forSHA(sha)
		success := 0
		for _, s := range st {
			if s.State == "success" {
				success++
			}
		}
		if success != 1 || len(crs) != 1 {
			t.Errorf("reported %d success statuses and %d check runs, want 1 and 1: %+v", success, len(crs), st)
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil || dep.Spec.Template.Spec.Containers[0].Image != run.Outputs["image.hello"] {
			t.Errorf("deployment %v, %v", dep, err)
		}
	})
}

// commitFiles replaces functions/hello/rootfs with files and commits.
func commitFiles(t *testing.T, repoDir string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(repoDir, "functions/hello/rootfs")
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	prefixed := make(map[string]string, len(files))
	for p, c := range files {
		prefixed[filepath.Join("functions/hello/rootfs", p)] = c
	}
	return gitCommit(t, repoDir, prefixed, "change")
}

func registerWebhook(t *testing.T, ctx context.Context, cs *kubernetes.Clientset, ns, listen, tlsDir, uniq string) {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := chart.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := chart.WebhookAt(root, "gantry-e2e-"+uniq, []string{ns}, "https://"+listen+"/validate", ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
	})
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "127.0.0.1:1/x@sha256:" + strings.Repeat("0", 64)}}}}
	wait.Until(t, 30*time.Second, "the webhook to take effect", func() error {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "gantry:") {
			return nil
		}
		return fmt.Errorf("last dry run: %v", err)
	})
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func nameInsecure() []name.Option { return []name.Option{name.Insecure} }

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func freePortT(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// pushSigned sends a push delivery of acme/hello@sha to refs/heads/main,
// signed with secret.
func pushSigned(t *testing.T, addr, secret, sha string) webhooks.Answer {
	t.Helper()
	a, code := postPush(t, addr, secret, pushDelivery{Repo: "acme/hello", Ref: "refs/heads/main", After: sha, ID: "e2e-" + sha[:12]})
	if code != http.StatusAccepted {
		t.Fatalf("push %s: %d %+v", sha, code, a)
	}
	return a
}

// waitBuildStep waits until BuildKit runs the step of the run's build
// whose name contains step: started and not finished, as the daemon
// itself reports it. A step already done (or cached) when the wait begins
// fails the test rather than passing unnoticed.
func waitBuildStep(ctx context.Context, t *testing.T, bk *bkclient.Client, runID, step string) {
	t.Helper()
	ref := wait.For(t, 2*time.Minute, "a build of run "+runID+" on the daemon", func() (string, error) {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		stream, err := bk.ControlClient().ListenBuildHistory(hctx, &controlapi.BuildHistoryRequest{ActiveOnly: true, EarlyExit: true})
		if err != nil {
			return "", err
		}
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return "", errors.New("no active build")
			}
			if err != nil {
				return "", err
			}
			if ev.Record != nil && strings.HasPrefix(ev.Record.Ref, runID+"-") && ev.Record.CompletedAt == nil {
				return ev.Record.Ref, nil
			}
		}
	})
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	stream, err := bk.ControlClient().Status(sctx, &controlapi.StatusRequest{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for {
		st, err := stream.Recv()
		if err != nil {
			t.Fatalf("build %s ended (%v) without being seen inside step %q; steps seen: %q", ref, err, step, steps)
		}
		for _, v := range st.Vertexes {
			if !strings.Contains(v.Name, step) {
				continue
			}
			if v.Started != nil && v.Completed == nil && !v.Cached {
				return
			}
			steps = append(steps, fmt.Sprintf("%s (cached %v, completed %v)", v.Name, v.Cached, v.Completed != nil))
		}
	}
}

// buildRecord finds the daemon's history record of the run's build (its
// BuildKit id starts with the run id).
func buildRecord(ctx context.Context, t *testing.T, c *bkclient.Client, runID string) *controlapi.BuildHistoryRecord {
	t.Helper()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.ControlClient().ListenBuildHistory(hctx, &controlapi.BuildHistoryRequest{EarlyExit: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec *controlapi.BuildHistoryRecord
	for {
		ev, err := stream.Recv()
		if err != nil {
			return rec
		}
		if ev.Record != nil && strings.HasPrefix(ev.Record.Ref, runID+"-") {
			rec = ev.Record
		}
	}
}
