// Command demo is the README's demo (make demo → hack/demo): the whole of
// Gantry on this machine, against the real test environment.
//
// It starts `gantry serve` (receiver, queue, workers with the real stages,
// runs API) and `gantry admission` (registered with the API server through
// the ValidatingWebhookConfiguration the Helm chart renders, scoped to the
// demo's function namespace), pushes a small test vulnerability DB, makes a
// git repository from examples/functions, and sends signed GitHub push
// deliveries: one that goes green and is deployed (the Deployment admitted
// with its digest), then three refusals: a planted CVE (the run fails at
// scan and a notification reaches a local sink), an unsigned image applied
// with kubectl, and a privileged pod. Every process it starts logs to
// .testenv/demo and is stopped when it ends.
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
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/chart"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/notify"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

func main() {
	gantryBin := flag.String("gantry", "bin/gantry", "the gantry binary")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{bin: *gantryBin}
	err := d.run(ctx)
	d.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n(logs of the processes it started: %s)\n", err, d.dir)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir, id, ns string
	env              *testenv.Env
	kube             *kubernetes.Clientset
	procs            []*exec.Cmd
	undo             []func()
	serveURL         string
	apiToken         string
	webhookSecret    []byte
	sink             *sink
	summary          []string
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
func say(format string, args ...any)  { fmt.Printf("    "+format+"\n", args...) }

func (d *demo) result(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	d.summary = append(d.summary, fmt.Sprintf("  [%s] %s", mark, fmt.Sprintf(format, args...)))
}

func (d *demo) run(ctx context.Context) error {
	var err error
	if d.env, err = testenv.Open(); err != nil {
		return err
	}
	root, _ := os.Getwd()
	d.dir = filepath.Join(d.env.Dir, "demo")
	// Idempotent: each demo starts from an empty directory, with names
	// of its own in the registry and the cluster.
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	d.id = randHex(3)
	d.ns = "demo-fn-" + d.id
	if d.bin, err = filepath.Abs(d.bin); err != nil {
		return err
	}

	step("Test environment: buildkitd %s, registry %s, kube-apiserver %s", d.env.BuildkitAddr, d.env.Registry, d.env.KubeAPIServer)
	rc, err := clientcmd.BuildConfigFromFlags("", d.env.Kubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout = 30 * time.Second
	if d.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if err := d.namespace(ctx); err != nil {
		return err
	}

	step("Signing key, verification policy and a test vulnerability DB")
	if err := d.keys(); err != nil {
		return err
	}
	dbRef := d.env.Registry + "/demo-" + d.id + "/trivy-db:2"
	archive, err := scantest.DBArchive(time.Now())
	if err != nil {
		return err
	}
	if _, err := scantest.PushDB(ctx, dbRef, archive, name.Insecure); err != nil {
		return fmt.Errorf("pushing the test DB: %w", err)
	}
	say("cosign key pair in %s; DB with planted advisories (CVE-2099-0001 openssl, …) at %s", d.dir, dbRef)

	d.sink = &sink{key: []byte(randHex(32))}
	sinkURL, err := d.sink.start(d)
	if err != nil {
		return err
	}
	say("notification sink (Slack-compatible and CloudEvents) listening on %s", sinkURL)

	repoDir := filepath.Join(d.dir, "hello-repo")
	commit, err := d.makeRepo(root, repoDir)
	if err != nil {
		return err
	}
	say("function repository %s (from examples/functions), commit %s", repoDir, commit[:12])

	cfgPath, admListen, err := d.writeConfig(dbRef, sinkURL, repoDir)
	if err != nil {
		return err
	}

	step("Starting gantry admission and registering it with the API server (the chart's webhook configuration)")
	tlsDir := filepath.Join(d.dir, "admission-tls")
	if err := d.start(ctx, "admission", "admission", "--config", cfgPath, "--tls-self-signed", tlsDir); err != nil {
		return err
	}
	if err := d.register(ctx, admListen, tlsDir); err != nil {
		return err
	}

	step("Starting gantry serve (webhook receiver, durable queue, workers with the real stages, runs API)")
	if err := d.start(ctx, "serve", "serve", "--config", cfgPath); err != nil {
		return err
	}
	if err := waitHTTP(ctx, d.serveURL+"/readyz", 60*time.Second); err != nil {
		return fmt.Errorf("gantry serve never became ready: %w", err)
	}
	say("ready at %s", d.serveURL)

	// 1. The green path.
	step("1. Push: a signed GitHub push delivery for demo/hello@%s", commit[:12])
	run, err := d.push(ctx, commit)
	if err != nil {
		return err
	}
	d.showRun(run)
	ok := run.State == "passed"
	image := run.Outputs["image.hello"]
	d.result(ok, "push %s: run %s %s; image %s", commit[:7], run.ID, run.State, image)
	if ok {
		dep, err := d.kube.AppsV1().Deployments(d.ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the deployment: %w", err)
		}
		c := dep.Spec.Template.Spec.Containers[0]
		say("Deployment %s/hello admitted; pod spec image %s", d.ns, c.Image)
		say("  runAsNonRoot=%v runAsUser=%d readOnlyRootFilesystem=%v allowPrivilegeEscalation=%v drop=%v",
			*dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot, *dep.Spec.Template.Spec.SecurityContext.RunAsUser,
			*c.SecurityContext.ReadOnlyRootFilesystem, *c.SecurityContext.AllowPrivilegeEscalation, c.SecurityContext.Capabilities.Drop)
		// Its pods would be admitted too: the same template as a Pod.
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hello-pod-check", Namespace: d.ns}, Spec: dep.Spec.Template.Spec}
		_, perr := d.kube.CoreV1().Pods(d.ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		say("a Pod from that template (server dry run): %s", verdict(perr))
		d.result(c.Image == image && perr == nil, "deployment %s/hello runs %s (admitted)", d.ns, c.Image)
	}

	// 2. A planted CVE.
	step("2. Push: a commit that vendors an old openssl (a planted CVE)")
	commit2, err := d.commitCVE(repoDir)
	if err != nil {
		return err
	}
	run2, err := d.push(ctx, commit2)
	if err != nil {
		return err
	}
	d.showRun(run2)
	body := d.sink.wait(ctx, "cloudevents", 20*time.Second)
	slack := d.sink.wait(ctx, "slack", 5*time.Second)
	if body != nil {
		say("CloudEvent received by the sink (signature verified):")
		fmt.Println("      " + compactEvent(body))
	}
	if slack != nil {
		var m struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(slack, &m)
		say("Slack message: %s", truncate(strings.ReplaceAll(m.Text, "\n", "\n      "), 600))
	}
	scan := stageState(run2, "scan")
	d.result(run2.State == "failed" && scan == "failed" && body != nil && bytes.Contains(body, []byte(scantest.FixableHigh)),
		"push %s: run %s %s at scan (%s); notification delivered", commit2[:7], run2.ID, run2.State, scantest.FixableHigh)

	// 3. An unsigned image, applied by hand.
	step("3. kubectl apply of an unsigned image into %s", d.ns)
	unsigned, err := scantest.BuildImage(ctx, d.env.BuildkitAddr, d.env.BaseImage, d.env.Registry+"/demo-"+d.id+"/unsigned", scantest.CleanFiles())
	if err != nil {
		return err
	}
	out, kerr := d.kubectl(ctx, hardenedPod("unsigned", unsigned, false))
	say("%s", indent(out))
	d.result(kerr != nil && strings.Contains(out, "signature"), "unsigned image %s: denied (signature)", short(unsigned))

	// 4. A privileged pod, with the signed image.
	step("4. kubectl apply of a privileged pod (with the signed image) into %s", d.ns)
	img := image
	if img == "" {
		img = unsigned
	}
	out, kerr = d.kubectl(ctx, hardenedPod("privileged", img, true))
	say("%s", indent(out))
	d.result(kerr != nil && strings.Contains(out, "privileged"), "privileged pod: denied (podSecurity)")

	step("Summary")
	fmt.Println(strings.Join(d.summary, "\n"))
	fmt.Printf("  logs: %s/{serve,admission}.log; runs API: %s/api/v1/runs (token in %s)\n", d.dir, d.serveURL, filepath.Join(d.dir, "api.token"))
	for _, s := range d.summary {
		if strings.Contains(s, "[FAIL]") {
			return errors.New("a step did not go as expected")
		}
	}
	return nil
}

func (d *demo) namespace(ctx context.Context) error {
	_, err := d.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns,
		Labels: map[string]string{"gantry.dev/demo": "true"}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", d.ns, err)
	}
	// No controller-manager runs here: create the default ServiceAccount.
	_, err = d.kube.CoreV1().ServiceAccounts(d.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	say("function namespace %s", d.ns)
	return nil
}

func (d *demo) keys() error {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("demo-password"), nil })
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"cosign.key": kb.PrivateBytes, "cosign.pub": kb.PublicBytes, "cosign.password": []byte("demo-password\n"),
		"policy.yaml": []byte("identities:\n  - name: gantry-demo\n    key: " + filepath.Join(d.dir, "cosign.pub") + "\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(d.dir, n), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// makeRepo copies examples/functions into a new git repository (branch
// main) with the test environment's registry and base image.
func (d *demo) makeRepo(root, dir string) (string, error) {
	src := filepath.Join(root, "examples", "functions")
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "gantry.yaml" {
			b = []byte(strings.NewReplacer("REGISTRY", d.env.Registry+"/demo-"+d.id, "BASE_IMAGE", d.env.BaseImage).Replace(string(b)))
		}
		out := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		return "", err
	}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		return "", err
	}
	return commitAll(repo, "hello: first version")
}

// commitCVE adds files that make the image list openssl 3.0.11 (planted
// advisory CVE-2099-0001, fixed in 3.0.99) and commits.
func (d *demo) commitCVE(dir string) (string, error) {
	for p, c := range scantest.VulnerableFiles() {
		full := filepath.Join(dir, "hello", "legacy", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	df := filepath.Join(dir, "hello", "Dockerfile")
	b, err := os.ReadFile(df)
	if err != nil {
		return "", err
	}
	b = bytes.Replace(b, []byte("USER 1000:1000"), []byte("COPY legacy/ /\nUSER 1000:1000"), 1)
	if err := os.WriteFile(df, b, 0o644); err != nil {
		return "", err
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return "", err
	}
	return commitAll(repo, "hello: vendor the legacy TLS stack")
}

func commitAll(repo *git.Repository, msg string) (string, error) {
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	if err := wt.AddGlob("."); err != nil {
		return "", err
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "Dee Veloper", Email: "dev@example.com", When: time.Now()}})
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

func (d *demo) writeConfig(dbRef, sinkURL, repoDir string) (cfgPath, admListen string, err error) {
	servePort, err := freePort()
	if err != nil {
		return "", "", err
	}
	admPort, err := freePort()
	if err != nil {
		return "", "", err
	}
	d.serveURL = "http://127.0.0.1:" + servePort
	admListen = "127.0.0.1:" + admPort
	d.webhookSecret = []byte(randHex(32))
	d.apiToken = randHex(32)
	sum := sha256.Sum256([]byte(d.apiToken))
	files := map[string]string{
		"webhook.secret": string(d.webhookSecret) + "\n",
		"api.token":      d.apiToken + "\n",
		"api.tokens":     "sha256:" + hex.EncodeToString(sum[:]) + " demo\n",
		"ce.key":         string(d.sink.key) + "\n",
		"slack.url":      sinkURL + "/slack\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(d.dir, n), []byte(c), 0o600); err != nil {
			return "", "", err
		}
	}
	p := func(n string) string { return filepath.Join(d.dir, n) }
	cfg := fmt.Sprintf(`# Written by the demo (hack/cmd/demo).
log: {level: info}
registry: {insecure: [%[1]q]}
builder: {addrs: [%[2]q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%[3]q], javaDbRepositories: [], cacheDir: %[4]q}
signer: {keySource: file, keyFile: %[5]q, passwordFile: %[6]q}
deploy: {kubeconfig: %[7]q, namespace: %[8]q, mode: kubernetes, waitForRollout: false}
notify:
  when: failure
  slack: {webhookURLFile: %[9]q}
  cloudEvents: {url: %[10]q, secretFile: %[11]q, source: "gantry-demo"}
admission: {listen: %[12]q, signerPolicy: %[13]q}
server: {listen: %[14]q, insecureHTTP: true}
webhooks:
  githubSecretFiles: [%[15]q]
  repos: [{name: demo/hello, branches: [main]}]
queue: {dataDir: %[16]q}
api: {tokensFile: %[17]q, publicURL: %[18]q}
pipeline:
  allowLocalRepos: true
  workDir: %[19]q
  mirrors: {demo/hello: %[20]q}
`, d.env.Registry, d.env.BuildkitAddr, dbRef, p("trivy-cache"), p("cosign.key"), p("cosign.password"),
		d.env.Kubeconfig, d.ns, p("slack.url"), sinkURL+"/cloudevents", p("ce.key"), admListen, p("policy.yaml"),
		"127.0.0.1:"+servePort, p("webhook.secret"), p("queue"), p("api.tokens"), d.serveURL, p("work"), repoDir)
	cfgPath = p("gantry.yaml")
	return cfgPath, admListen, os.WriteFile(cfgPath, []byte(cfg), 0o600)
}

// start runs `gantry ARGS…` in the background, logging to NAME.log.
func (d *demo) start(ctx context.Context, logName string, args ...string) error {
	logf, err := os.Create(filepath.Join(d.dir, logName+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting gantry %s: %w", args[0], err)
	}
	d.procs = append(d.procs, cmd)
	say("gantry %s: pid %d, log %s", args[0], cmd.Process.Pid, logf.Name())
	go func() { _ = cmd.Wait(); logf.Close() }()
	return nil
}

// register creates the chart's ValidatingWebhookConfiguration for the
// demo namespace, pointed at the local admission server, and waits until
// the API server calls it.
func (d *demo) register(ctx context.Context, listen, tlsDir string) error {
	var ca []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
		if err == nil && len(b) > 0 {
			ca = b
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gantry admission wrote no %s/ca.crt (see its log)", tlsDir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	root, err := chart.Root(".")
	if err != nil {
		return err
	}
	vwc, err := chart.WebhookAt(root, "gantry-demo-"+d.id, []string{d.ns}, "https://"+listen+"/validate", ca)
	if err != nil {
		return err
	}
	if _, err := d.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		return err
	}
	d.undo = append(d.undo, func() {
		_ = d.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
	})
	sel, _ := json.Marshal(vwc.Webhooks[0].NamespaceSelector)
	say("ValidatingWebhookConfiguration %s → https://%s/validate, failurePolicy %s, namespaceSelector %s",
		vwc.Name, listen, *vwc.Webhooks[0].FailurePolicy, sel)
	probe := hardenedPodObject("probe", d.env.BaseImage, false)
	for {
		_, err := d.kube.CoreV1().Pods(d.ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "gantry:") {
			say("the API server now asks gantry admission about every pod in %s", d.ns)
			return nil
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			return fmt.Errorf("the webhook never took effect; last answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type runRecord struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Message string `json:"message"`
	Stages  []struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Message string `json:"message"`
	} `json:"stages"`
	Outputs map[string]string `json:"outputs"`
}

// push sends a GitHub push delivery signed with the webhook secret and
// follows the run to its end.
func (d *demo) push(ctx context.Context, commit string) (*runRecord, error) {
	payload, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": commit,
		"repository":  map[string]any{"full_name": "demo/hello", "clone_url": "https://github.com/demo/hello.git"},
		"pusher":      map[string]any{"name": "dee"},
		"sender":      map[string]any{"login": "dee"},
		"head_commit": map[string]any{"id": commit, "message": "demo push"},
	})
	mac := hmac.New(sha256.New, d.webhookSecret)
	mac.Write(payload)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.serveURL+"/webhooks/github", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randUUID())
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	var ans struct {
		Status string `json:"status"`
		RunID  string `json:"runId"`
	}
	_ = json.Unmarshal(body, &ans)
	say("POST /webhooks/github (X-Hub-Signature-256 over the body) → %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusAccepted || ans.RunID == "" {
		return nil, fmt.Errorf("the delivery was not queued: %d %s", resp.StatusCode, body)
	}
	deadline := time.Now().Add(5 * time.Minute)
	last := ""
	for {
		r, err := d.getRun(ctx, ans.RunID)
		if err != nil {
			return nil, err
		}
		var parts []string
		for _, s := range r.Stages {
			parts = append(parts, s.Name+":"+s.State)
		}
		if line := r.State + "  " + strings.Join(parts, " "); line != last {
			say("run %s: %s", r.ID, line)
			last = line
		}
		if r.State == "passed" || r.State == "failed" || r.State == "error" || r.State == "cancelled" {
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("run %s did not finish in time (state %s)", r.ID, r.State)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) getRun(ctx context.Context, id string) (*runRecord, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.serveURL+"/api/v1/runs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+d.apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/runs/%s: %d %s", id, resp.StatusCode, b)
	}
	var r runRecord
	return &r, json.Unmarshal(b, &r)
}

func (d *demo) showRun(r *runRecord) {
	say("run %s %s %s", r.ID, strings.ToUpper(r.State), truncate(r.Message, 400))
	for _, s := range r.Stages {
		if s.Message != "" && s.State != "cancelled" {
			say("  %-8s %-9s %s", s.Name, s.State, truncate(s.Message, 300))
		}
	}
}

func (d *demo) kubectl(ctx context.Context, manifest string) (string, error) {
	cmd := exec.CommandContext(ctx, d.env.Kubectl, "--kubeconfig", d.env.Kubeconfig, "-n", d.ns, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	say("$ kubectl apply -f - (%s)", strings.SplitN(strings.SplitN(manifest, "name: ", 2)[1], "\n", 2)[0])
	return strings.TrimSpace(string(out)), err
}

func hardenedPodObject(name, image string, privileged bool) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "app", Image: image, SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(privileged), Privileged: ptr.To(privileged),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
	}}
}

func hardenedPod(name, image string, privileged bool) string {
	p := hardenedPodObject(name, image, privileged)
	p.APIVersion, p.Kind = "v1", "Pod"
	b, _ := yaml.Marshal(p)
	return string(b)
}

func (d *demo) cleanup() {
	for _, c := range d.procs {
		if c.Process != nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, c := range d.procs {
		done := make(chan struct{})
		go func() {
			for c.ProcessState == nil && syscall.Kill(c.Process.Pid, 0) == nil {
				time.Sleep(50 * time.Millisecond)
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
	if d.sink != nil && d.sink.srv != nil {
		_ = d.sink.srv.Close()
	}
}

// sink receives notifications: Slack-compatible JSON and signed
// CloudEvents (the signature is checked before anything is kept).
type sink struct {
	key  []byte
	srv  *http.Server
	mu   sync.Mutex
	got  map[string][]byte
	logf *os.File
}

func (s *sink) start(d *demo) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	s.got = map[string][]byte{}
	if s.logf, err = os.Create(filepath.Join(d.dir, "sink.log")); err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	handle := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
			if err != nil {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
			if kind == "cloudevents" {
				if err := notify.VerifySignature(s.key, body, r.Header.Get(notify.SignatureHeader)); err != nil {
					fmt.Fprintf(s.logf, "%s refused: %v\n", kind, err)
					http.Error(w, "bad signature", http.StatusUnauthorized)
					return
				}
			}
			s.mu.Lock()
			s.got[kind] = body
			s.mu.Unlock()
			fmt.Fprintf(s.logf, "%s %s\n", kind, body)
			w.WriteHeader(http.StatusOK)
		}
	}
	mux.Handle("/slack", handle("slack"))
	mux.Handle("/cloudevents", handle("cloudevents"))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

func (s *sink) wait(ctx context.Context, kind string, d time.Duration) []byte {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s.mu.Lock()
		b := s.got[kind]
		s.mu.Unlock()
		if b != nil {
			return b
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func waitHTTP(ctx context.Context, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func stageState(r *runRecord, name string) string {
	for _, s := range r.Stages {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

func verdict(err error) string {
	if err == nil {
		return "admitted"
	}
	return "denied: " + err.Error()
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUUID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func short(ref string) string {
	if i := strings.Index(ref, "@sha256:"); i > 0 && len(ref) > i+20 {
		return ref[:i+20] + "…"
	}
	return ref
}

// compactEvent shows a CloudEvent without the per-stage timings, indented.
func compactEvent(body []byte) string {
	var ev map[string]any
	if json.Unmarshal(body, &ev) != nil {
		return truncate(string(body), 1200)
	}
	if data, ok := ev["data"].(map[string]any); ok {
		if fns, ok := data["functions"].([]any); ok {
			for _, f := range fns {
				if m, ok := f.(map[string]any); ok {
					delete(m, "stages")
				}
			}
		}
	}
	b, _ := json.MarshalIndent(ev, "      ", "  ")
	return truncate(string(b), 2000)
}
