package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// seamRig is a gantry serve (the real stages: build, scan, sign and attest)
// and a gantry admission registered with the API server for one namespace,
// sharing one signing key: what the pipeline attests is what admission
// reads, with nothing in between but the registry.
type seamRig struct {
	e        *testenv.Env
	ctx      context.Context
	dir      string
	uniq     string
	cs       *kubernetes.Clientset
	ns       string
	keyPath  string
	pubPath  string
	secret   string
	token    string
	srv      *gantryProc
	serveLog string
	ce       *ceSink
	repos    map[string]string // owner/name → local repository dir
	images   map[string]string // owner/name → image repository
}

// seamOptions shape the rig: the admission policy's attestation
// requirements and extra server configuration (scanner section keys).
type seamOptions struct {
	attestations string // YAML list items under attestations:
	scanner      string // extra keys of the scanner section, YAML flow
	repos        []string
}

func newSeamRig(t *testing.T, ctx context.Context, o seamOptions) *seamRig {
	t.Helper()
	e := testenv.Require(t)
	r := &seamRig{e: e, ctx: ctx, dir: t.TempDir(), uniq: randHex(t, 4), repos: map[string]string{}, images: map[string]string{},
		ce: &ceSink{key: []byte(randHex(t, 32))}}
	write := fileWriter(t, r.dir)
	dbRef := e.Registry + "/seam-" + r.uniq + "/trivy-db:2"
	pushTestDB(ctx, t, dbRef)
	r.keyPath, r.pubPath = cosignKeyFiles(t, r.dir)
	pwPath := write("cosign.pw", []byte("pw"))
	policy := write("policy.yaml", []byte("identities:\n  - {name: seam, key: "+r.pubPath+"}\nattestations:\n"+o.attestations))
	ceSrv := newHTTPServer(t, r.ce)

	rc, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	r.cs = kubernetes.NewForConfigOrDie(rc)
	r.ns = "gantry-seam-" + r.uniq
	if _, err := r.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cs.CoreV1().Namespaces().Delete(context.Background(), r.ns, metav1.DeleteOptions{}) })
	if _, err := r.cs.CoreV1().ServiceAccounts(r.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var repoKeys, mirrors []string
	for _, full := range o.repos {
		d := filepath.Join(r.dir, "repos", full)
		img := e.Registry + "/seam-" + r.uniq + "/" + strings.ReplaceAll(full, "/", "-")
		functionRepo(t, d, e.BaseImage, img, scantest.CleanFiles())
		r.repos[full], r.images[full] = d, img
		repoKeys = append(repoKeys, fmt.Sprintf("{name: %s, branches: [\"*\"]}", full))
		mirrors = append(mirrors, fmt.Sprintf("%s: %q", full, d))
	}
	r.secret = "seam webhook secret " + r.uniq
	r.token = "seam-token-" + r.uniq
	admPort := freePortT(t)
	cfg := write("gantry.yaml", fmt.Appendf(nil, `
registry: {insecure: [%[1]q]}
builder: {addrs: [%[2]q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%[3]q], javaDbRepositories: [], cacheDir: %[4]q%[5]s}
signer: {keySource: file, keyFile: %[6]q, passwordFile: %[7]q}
notify:
  backoff: 10ms
  when: always
  cloudEvents: {url: %[8]q, secretFile: %[9]q, source: seam}
admission: {listen: %[10]q, signerPolicy: %[11]q}
server: {listen: 127.0.0.1:0, insecureHTTP: true}
webhooks:
  githubSecretFiles: [%[12]q]
  repos: [%[13]s]
queue: {dataDir: %[14]q, ackWait: 2s, retryDelay: 100ms}
api: {tokensFile: %[15]q, publicURL: "http://gantry.example"}
pipeline: {allowLocalRepos: true, deploy: false, builderID: "https://gantry.example/seam", workDir: %[16]q, mirrors: {%[17]s}}
`, e.Registry, e.BuildkitAddr, dbRef, filepath.Join(r.dir, "trivy"), o.scanner, r.keyPath, pwPath,
		ceSrv, write("ce.key", r.ce.key), "127.0.0.1:"+admPort, policy,
		write("secret", []byte(r.secret)), strings.Join(repoKeys, ", "), filepath.Join(r.dir, "data"),
		write("tokens", []byte("sha256:"+sha256Hex(r.token)+"\n")), filepath.Join(r.dir, "work"), strings.Join(mirrors, ", ")))

	tlsDir := filepath.Join(r.dir, "adm-tls")
	startGantryUntil(t, regexp.MustCompile(`admission webhook listening`), filepath.Join(r.dir, "admission.log"),
		"admission", "--config", cfg, "--tls-self-signed", tlsDir)
	registerWebhook(t, ctx, r.cs, r.ns, "127.0.0.1:"+admPort, tlsDir, r.uniq)
	r.serveLog = filepath.Join(r.dir, "serve.log")
	r.srv = startGantry(t, r.serveLog, "serve", "--config", cfg)
	return r
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// commit commits rootfs (plus a marker, so that every commit builds its own
// digest) to repository full and returns the SHA.
func (r *seamRig) commit(t *testing.T, full string, rootfs map[string]string, extra map[string]string) string {
	t.Helper()
	files := map[string]string{}
	for p, c := range rootfs {
		files[p] = c
	}
	files["/etc/gantry-seam-marker"] = randHex(t, 8) + "\n"
	sha := commitFiles(t, r.repos[full], files)
	if len(extra) > 0 {
		sha = gitCommit(t, r.repos[full], extra, "extra")
	}
	return sha
}

// repoIgnores returns the files that make repository full use an ignore
// file with entries (and fail its gate on unfixed findings too).
func (r *seamRig) repoIgnores(t *testing.T, full, entries string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.repos[full], "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	if !strings.Contains(cfg, "ignoreFile:") {
		cfg += "scan:\n  includeUnfixable: true\n  ignoreFile: .gantry/ignore.yaml\n"
	}
	return map[string]string{"gantry.yaml": cfg, ".gantry/ignore.yaml": "ignores:\n" + entries}
}

// push sends a signed push delivery of full@sha to ref and returns the run.
func (r *seamRig) push(t *testing.T, full, ref, sha string) string {
	t.Helper()
	a, code := postPush(t, r.srv.addr, r.secret, pushDelivery{Repo: full, Ref: ref, After: sha, ID: "seam-" + randHex(t, 8)})
	if code != http.StatusAccepted || a.RunID == "" {
		t.Fatalf("push %s %s@%s: %d %+v", full, ref, sha, code, a)
	}
	return a.RunID
}

func (r *seamRig) wait(t *testing.T, id string) pipelines.Run {
	t.Helper()
	finished := false
	defer func() {
		if !finished {
			t.Logf("serve log:\n%s", readFile(t, r.serveLog))
		}
	}()
	run := wait.For(t, 4*time.Minute, "run "+id+" to finish", func() (pipelines.Run, error) {
		var run pipelines.Run
		if code := apiGet(t, r.srv.addr, r.token, "/api/v1/runs/"+id, &run); code != 200 || !run.State.Final() {
			return run, fmt.Errorf("HTTP %d, state %q", code, run.State)
		}
		return run, nil
	})
	finished = true
	return run
}

// passed waits for a run that must pass and returns its image.
func (r *seamRig) passed(t *testing.T, id string) string {
	t.Helper()
	run := r.wait(t, id)
	if run.State != pipelines.StatePassed {
		var logs string
		apiGet(t, r.srv.addr, r.token, "/api/v1/runs/"+id+"/logs?stage=scan", &logs)
		t.Fatalf("run %s: %s %q\nscan log:\n%s", id, run.State, run.Message, logs)
	}
	img := run.Outputs["image.hello"]
	if img == "" {
		t.Fatalf("run %s has no image output: %v", id, run.Outputs)
	}
	return img
}

// admit asks the API server (and so gantry admission) to create a
// hardened pod running image, as a dry run, and returns its answer.
func (r *seamRig) admit(t *testing.T, image string) error {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "seam-" + randHex(t, 4)}, Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "fn", Image: image, SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
	}}
	_, err := r.cs.CoreV1().Pods(r.ns).Create(r.ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// cosignCLI runs the upstream cosign binary.
func (r *seamRig) cosign(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if r.e.Cosign == "" {
		t.Fatal("test environment has no cosign binary (GANTRY_COSIGN): run hack/testenv up")
	}
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.e.Cosign, args...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw", "HOME="+r.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// predicates downloads image's attestations with cosign and returns the
// predicates by predicate type.
func (r *seamRig) predicates(t *testing.T, image string) map[string][]byte {
	t.Helper()
	out, err := r.cosign(t, "download", "attestation", "--allow-http-registry", image)
	if err != nil {
		t.Fatalf("cosign download attestation %s: %v\n%s", image, err, out)
	}
	preds := map[string][]byte{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var env struct{ PayloadType, Payload string }
		if json.Unmarshal(sc.Bytes(), &env) != nil || env.Payload == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			PredicateType string          `json:"predicateType"`
			Predicate     json.RawMessage `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		preds[st.PredicateType] = st.Predicate
	}
	return preds
}

// denyCriticalRego is a policy written for cosign (not for Gantry): it
// reads the vuln/v1 predicate as cosign documents it.
const denyCriticalRego = `package signature

default allow = false

allow {
	count(critical) == 0
}

critical[v] {
	v := input.predicate.scanner.result.Results[_].Vulnerabilities[_]
	v.Severity == "CRITICAL"
}
`

// TestAttestationSeams: every attestation the pipeline writes, checked by
// the consumer that reads it, through the real processes: gantry serve's
// stages produce (build, scan, sign, attest), gantry admission registered
// with kube-apiserver consumes, and the upstream cosign CLI reads the same
// attestations with a policy written for cosign.
//
// Before the vuln predicate carried Trivy's report, the image with a
// planted CRITICAL (let through by the gate: no fix exists) was admitted
// under denySeverities: [CRITICAL]: the pipeline attested Gantry's own
// document, and the check read Trivy's Results, of which there were none.
func TestAttestationSeams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := newSeamRig(t, ctx, seamOptions{
		attestations: "  - {type: slsaprovenance1, repo: https://github.com/acme/hello, branch: main}\n" +
			"  - {type: vuln, denySeverities: [CRITICAL]}\n" +
			"  - {type: cyclonedx}\n",
		// The gate fails only on fixable CRITICAL findings: the planted
		// CRITICAL has no fix, so the pipeline passes and attests it.
		scanner: ", severities: [CRITICAL], onlyFixed: true",
		repos:   []string{"acme/hello", "acme/other"},
	})

	// Three runs at once (different repositories or refs: none supersedes
	// another), then the vulnerable one on acme/hello main.
	clean := r.push(t, "acme/hello", "refs/heads/main", r.commit(t, "acme/hello", scantest.CleanFiles(), nil))
	dev := r.push(t, "acme/hello", "refs/heads/dev", r.commit(t, "acme/hello", scantest.CleanFiles(), nil))
	other := r.push(t, "acme/other", "refs/heads/main", r.commit(t, "acme/other", scantest.CleanFiles(), nil))
	// The attack on the ignore bound: a repository waives the whole of
	// openssl until 2999 in its own ignore file. Before scanner.repoIgnores
	// this passed the gate (and admission, the CRITICAL being ignored).
	waive := r.push(t, "acme/other", "refs/heads/waive", r.commit(t, "acme/other", scantest.VulnerableFiles(),
		r.repoIgnores(t, "acme/other", "  - {id: pkg:openssl, reason: we accept openssl, expires: 2999-01-01}\n")))
	images := map[string]string{}
	for k, id := range map[string]string{"clean": clean, "dev": dev, "other": other} {
		images[k] = r.passed(t, id)
	}
	images["vuln"] = r.passed(t, r.push(t, "acme/hello", "refs/heads/main", r.commit(t, "acme/hello", scantest.VulnerableFiles(), nil)))

	t.Run("repository ignore file beyond the server's bound: refused at scan", func(t *testing.T) {
		run := r.wait(t, waive)
		if run.State != pipelines.StateFailed || run.Stage("scan").State != pipelines.StateFailed || run.Stage("sign").State == pipelines.StatePassed {
			t.Fatalf("run %s: %s %q, stages %+v", run.ID, run.State, run.Message, run.Stages)
		}
		for _, w := range []string{".gantry/ignore.yaml line 2", "pkg:openssl", "scanner.repoIgnores.allowPackageWildcards: false",
			"expires 2999-01-01", "scanner.repoIgnores.maxExpiryDays"} {
			if !strings.Contains(run.Message, w) {
				t.Errorf("verdict %q does not name %q", run.Message, w)
			}
		}
	})

	// A bounded ignore (one id, 30 days) of the planted CRITICAL, which the
	// repository makes fail its gate (includeUnfixable): used, and listed
	// in the stage log, the run outputs, the notification and the vuln
	// attestation.
	expires := time.Now().UTC().AddDate(0, 0, 30).Format(time.DateOnly)
	ignored := r.wait(t, r.push(t, "acme/hello", "refs/heads/main", r.commit(t, "acme/hello", scantest.VulnerableFiles(),
		r.repoIgnores(t, "acme/hello", "  - {id: "+scantest.UnfixedCritical+", package: openssl, reason: no TLS in this function, expires: "+expires+"}\n"))))
	t.Run("ignore used: listed in the run, the notification and the vuln attestation", func(t *testing.T) {
		if ignored.State != pipelines.StatePassed {
			t.Fatalf("run %s: %s %q", ignored.ID, ignored.State, ignored.Message)
		}
		if o := ignored.Outputs["ignores.hello"]; !strings.Contains(o, scantest.UnfixedCritical) || !strings.Contains(o, "repository (.gantry/ignore.yaml)") {
			t.Errorf("run output ignores.hello = %q", o)
		}
		var logs string
		apiGet(t, r.srv.addr, r.token, "/api/v1/runs/"+ignored.ID+"/logs?stage=scan", &logs)
		if !strings.Contains(logs, "ignore used: "+scantest.UnfixedCritical+" (package openssl), repository (.gantry/ignore.yaml) line 2, until "+expires) {
			t.Errorf("scan log lacks the ignore:\n%s", logs)
		}
		evs := r.ce.forRun(ignored.ID)
		if len(evs) == 0 || !strings.Contains(string(evs[len(evs)-1]), `"ignores":[{"id":"`+scantest.UnfixedCritical+`"`) {
			t.Errorf("CloudEvents %s", evs)
		}
		pred := r.predicates(t, ignored.Outputs["image.hello"])["https://cosign.sigstore.dev/attestation/vuln/v1"]
		var vp struct {
			Invocation struct {
				Parameters struct {
					Ignores []struct{ ID, Source, Expires string } `json:"ignores"`
				} `json:"parameters"`
			} `json:"invocation"`
			Scanner struct {
				Result struct {
					Results []struct {
						Vulnerabilities []struct{ VulnerabilityID string }
						Modified        []struct {
							Status  string
							Finding struct{ VulnerabilityID string }
						} `json:"ExperimentalModifiedFindings"`
					}
				} `json:"result"`
			} `json:"scanner"`
		}
		if err := json.Unmarshal(pred, &vp); err != nil {
			t.Fatalf("vuln predicate: %v\n%s", err, pred)
		}
		if igs := vp.Invocation.Parameters.Ignores; len(igs) != 1 || igs[0].ID != scantest.UnfixedCritical || igs[0].Expires != expires ||
			igs[0].Source != "repository (.gantry/ignore.yaml)" {
			t.Errorf("invocation.parameters.ignores %+v", igs)
		}
		var listed, modified bool
		for _, res := range vp.Scanner.Result.Results {
			for _, v := range res.Vulnerabilities {
				listed = listed || v.VulnerabilityID == scantest.UnfixedCritical
			}
			for _, m := range res.Modified {
				modified = modified || (m.Status == "ignored" && m.Finding.VulnerabilityID == scantest.UnfixedCritical)
			}
		}
		if listed || !modified {
			t.Errorf("the ignored finding: in Vulnerabilities %v, in ExperimentalModifiedFindings as ignored %v", listed, modified)
		}
	})

	t.Run("admission", func(t *testing.T) {
		for _, c := range []struct {
			name, image string
			want        []string // empty: admitted
		}{
			{"clean image from acme/hello main: admitted", images["clean"], nil},
			{"vuln: planted CRITICAL the gate let through: denied by denySeverities", images["vuln"],
				[]string{"vuln", scantest.UnfixedCritical, "CRITICAL"}},
			{"slsaprovenance1: built from branch dev: denied", images["dev"], []string{"slsaprovenance1", "refs/heads/dev", "branch \"main\""}},
			{"slsaprovenance1: built from acme/other: denied", images["other"], []string{"slsaprovenance1", "https://github.com/acme/other.git", "policy requires \"https://github.com/acme/hello\""}},
		} {
			t.Run(c.name, func(t *testing.T) {
				err := r.admit(t, c.image)
				if len(c.want) == 0 {
					if err != nil {
						t.Fatalf("denied: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), "gantry:") {
					t.Fatalf("%v, want a gantry denial", err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("denial %q does not name %q", err, w)
					}
				}
			})
		}
	})

	t.Run("cyclonedx: the same image without its SBOM attestation is denied", func(t *testing.T) {
		// A copy of the clean image in another repository, signed and
		// attested with the pipeline's provenance and vuln predicates only.
		src, err := name.ParseReference(images["clean"], name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(src, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := name.ParseReference(r.e.Registry+"/seam-"+r.uniq+"/nosbom:1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(dst, img, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		copied := dst.Context().Name() + "@" + src.(name.Digest).DigestStr()
		preds := r.predicates(t, images["clean"])
		env := []string{"GANTRY_REGISTRY_INSECURE=" + r.e.Registry, "COSIGN_PASSWORD=pw"}
		if code, _, stderr := gantry(t, env, "sign", copied, "--key", r.keyPath); code != exitOK {
			t.Fatalf("sign: %d %s", code, stderr)
		}
		for typ, uri := range map[string]string{"slsaprovenance1": "https://slsa.dev/provenance/v1", "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1"} {
			if preds[uri] == nil {
				t.Fatalf("the pipeline's image has no %s attestation (have %d)", uri, len(preds))
			}
			f := filepath.Join(r.dir, typ+".json")
			if err := os.WriteFile(f, preds[uri], 0o600); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := gantry(t, env, "attest", copied, "--key", r.keyPath, "--type", typ, "--predicate", f); code != exitOK {
				t.Fatalf("attest %s: %d %s", typ, code, stderr)
			}
		}
		err = r.admit(t, copied)
		if err == nil || !strings.Contains(err.Error(), "no cyclonedx attestation") {
			t.Fatalf("%v, want a denial for the missing cyclonedx attestation", err)
		}
		// The pipeline's SBOM attestation is a CycloneDX document.
		var bom struct{ BOMFormat, SpecVersion string }
		if err := json.Unmarshal(preds["https://cyclonedx.org/bom"], &bom); err != nil || bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
			t.Errorf("cyclonedx predicate %+v, %v", bom, err)
		}
	})

	t.Run("cosign verify-attestation reads what the pipeline attests", func(t *testing.T) {
		rego := filepath.Join(r.dir, "deny-critical.rego")
		if err := os.WriteFile(rego, []byte(denyCriticalRego), 0o600); err != nil {
			t.Fatal(err)
		}
		base := []string{"verify-attestation", "--key", r.pubPath, "--insecure-ignore-tlog", "--allow-http-registry"}
		for _, typ := range []string{"slsaprovenance1", "vuln", "cyclonedx"} {
			if out, err := r.cosign(t, append(base, "--type", typ, images["clean"])...); err != nil {
				t.Errorf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
			}
		}
		if out, err := r.cosign(t, append(base, "--type", "vuln", "--policy", rego, images["clean"])...); err != nil {
			t.Errorf("cosign's deny-CRITICAL policy refused the clean image: %v\n%s", err, out)
		}
		if out, err := r.cosign(t, append(base, "--type", "vuln", "--policy", rego, images["vuln"])...); err == nil {
			t.Errorf("cosign's deny-CRITICAL policy accepted the image with the planted CRITICAL:\n%s", out)
		}
	})
}
