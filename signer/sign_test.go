package signer

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/config"
)

// cosignKeyPair writes an encrypted cosign key pair (the format `cosign
// generate-key-pair` writes) to dir.
func cosignKeyPair(t *testing.T, dir, password string) (keyPEM, pubPEM []byte, keyPath, pubPath string) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(keyPath, kb.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, kb.PublicBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return kb.PrivateBytes, kb.PublicBytes, keyPath, pubPath
}

func signerConfig(mod func(*config.Signer)) config.Signer {
	c := config.DefaultSigner()
	mod(&c)
	return c
}

// TestKeySources signs with a key from each source and checks the
// signature verifies with the matching public key; failures name the
// source, never the secret.
func TestKeySources(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	const password = "correct horse battery staple"
	keyPEM, _, keyPath, _ := cosignKeyPair(t, dir, password)
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretRef := createKeySecret(t, r, keyPEM, password)
	env := map[string]string{"MY_COSIGN_KEY": string(keyPEM), "COSIGN_PASSWORD": password, "WRONG_PW": "nope"}
	getenv := func(k string) string { return env[k] }
	pol := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\n")
	v, _ := NewVerifier(pol, r.reg)

	cases := []struct {
		name    string
		cfg     config.Signer
		wantErr string // "" means it must sign and verify
	}{
		{name: "file, password from env", cfg: signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile = "file", keyPath })},
		{name: "file, password file", cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeyFile, c.PasswordFile, c.PasswordEnv = "file", keyPath, pwFile, "WRONG_PW"
		})},
		{name: "env", cfg: signerConfig(func(c *config.Signer) { c.KeySource, c.KeyEnv = "env", "MY_COSIGN_KEY" })},
		{name: "kubernetes secret with its own password", cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeySecret, c.Kubeconfig, c.PasswordEnv = "kubernetes", secretRef, r.env.Kubeconfig, "UNSET"
		})},
		{name: "wrong password", wantErr: "key file " + keyPath, cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeyFile, c.PasswordEnv = "file", keyPath, "WRONG_PW"
		})},
		{name: "missing file", wantErr: "file does not exist", cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeyFile = "file", filepath.Join(dir, "nope.key")
		})},
		{name: "unset env", wantErr: "environment variable NOPE is empty", cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeyEnv = "env", "NOPE"
		})},
		{name: "missing secret", wantErr: "Kubernetes Secret default/gantry-no-such-secret", cfg: signerConfig(func(c *config.Signer) {
			c.KeySource, c.KeySecret, c.Kubeconfig = "kubernetes", "default/gantry-no-such-secret", r.env.Kubeconfig
		})},
		{name: "disabled", wantErr: "signing is disabled", cfg: config.DefaultSigner()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(context.Background(), tc.cfg, r.reg, WithGetenv(getenv))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				for _, secret := range []string{password, string(keyPEM[40:80])} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error leaks secret material: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := r.pushImage(r.uniqueRepo(), "v1")
			if _, err := s.Sign(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), d)
			if err != nil || !res.Verified {
				t.Fatalf("verify: %+v %v", res, err)
			}
		})
	}
}

// createKeySecret stores a cosign key in a Secret in a fresh namespace of
// the real API server, in the layout `cosign generate-key-pair k8s://`
// writes.
func createKeySecret(t *testing.T, r *rig, keyPEM []byte, password string, pubPEM ...[]byte) string {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", r.env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signer-test-"}}
	ns, err = cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "signing-key", Namespace: ns.Name},
		Data:       map[string][]byte{"cosign.key": keyPEM, "cosign.password": []byte(password)},
	}
	if len(pubPEM) > 0 {
		sec.Data["cosign.pub"] = pubPEM[0]
	}
	if _, err := cs.CoreV1().Secrets(ns.Name).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns.Name + "/signing-key"
}

// TestPolicyKeyRefFromSecret: a policy identity can name a Kubernetes
// Secret's cosign.pub (cosign's k8s:// reference, via $KUBECONFIG).
func TestPolicyKeyRefFromSecret(t *testing.T) {
	r := newRig(t)
	t.Setenv("KUBECONFIG", r.env.Kubeconfig)
	dir := t.TempDir()
	keyPEM, pubPEM, keyPath, _ := cosignKeyPair(t, dir, "pw")
	ref := createKeySecret(t, r, keyPEM, "pw", pubPEM)
	pol := writePolicy(t, dir, "identities:\n  - {name: cluster, keyRef: 'k8s://"+ref+"'}\n")
	v, _ := NewVerifier(pol, r.reg)
	s, err := New(context.Background(), signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile, c.PasswordEnv = "file", keyPath, "PW" }),
		r.reg, WithGetenv(func(k string) string { return map[string]string{"PW": "pw"}[k] }))
	if err != nil {
		t.Fatal(err)
	}
	d := r.pushImage(r.uniqueRepo(), "v1")
	if _, err := s.Sign(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if res, err := v.Verify(context.Background(), d); err != nil || !res.Verified {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := ParsePolicy([]byte("identities:\n  - {name: x, keyRef: 'k8s://default/gantry-no-such-secret'}\n"), dir); err == nil {
		t.Fatal("a missing Secret loaded as a key")
	}
}

// TestSignIsIdempotent: signing a signed digest writes nothing.
func TestSignIsIdempotent(t *testing.T) {
	r := newRig(t)
	k := newTestKey(t, t.TempDir(), "k")
	d := r.pushImage(r.uniqueRepo(), "v1")
	s := r.signer(k)
	first, err := s.Sign(context.Background(), d)
	if err != nil || first.AlreadySigned {
		t.Fatalf("first sign: %+v %v", first, err)
	}
	tag := mustTag(t, d, sigSuffix)
	before, err := remote.Head(tag, r.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Sign(context.Background(), d)
	if err != nil || !again.AlreadySigned {
		t.Fatalf("second sign: %+v %v", again, err)
	}
	after, err := remote.Head(tag, r.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	if before.Digest != after.Digest {
		t.Fatalf("re-sign changed the signature manifest: %s -> %s", before.Digest, after.Digest)
	}
}

// cosignCLI runs the upstream cosign binary of the test environment with a
// private HOME (it may warn that TUF is unreachable; that is ignored).
type cosignCLI struct {
	t        *testing.T
	bin, dir string
	password string
}

func newCosignCLI(t *testing.T, r *rig, password string) *cosignCLI {
	if r.env.Cosign == "" {
		t.Fatal("test environment has no cosign binary (GANTRY_COSIGN): run hack/testenv up")
	}
	return &cosignCLI{t: t, bin: r.env.Cosign, dir: t.TempDir(), password: password}
}

func (c *cosignCLI) run(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"HOME=" + c.dir, "TUF_ROOT=" + filepath.Join(c.dir, "tuf"), "COSIGN_PASSWORD=" + c.password,
		"PATH=" + os.Getenv("PATH"), "SIGSTORE_NO_CACHE=true"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCosignInterop: what Gantry signs and attests, cosign verifies; what
// cosign signs and attests, Gantry verifies.
func TestCosignInterop(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	const password = "interop"
	cli := newCosignCLI(t, r, password)
	_, _, keyPath, pubPath := cosignKeyPair(t, dir, password)
	s, err := New(context.Background(), signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile = "file", keyPath }),
		r.reg, WithGetenv(func(k string) string { return map[string]string{"COSIGN_PASSWORD": password}[k] }))
	if err != nil {
		t.Fatal(err)
	}
	provenance := []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main"}}},"runDetails":{"builder":{"id":"https://gantry.dev/builder"}}}`)
	predFile := filepath.Join(dir, "provenance.json")
	if err := os.WriteFile(predFile, provenance, 0o600); err != nil {
		t.Fatal(err)
	}
	pol := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn, branch: main}\n")
	v, _ := NewVerifier(pol, r.reg)
	ctx := context.Background()

	t.Run("gantry signs and attests, cosign verifies", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		if _, err := s.Sign(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Attest(ctx, d, "slsaprovenance1", provenance); err != nil {
			t.Fatal(err)
		}
		if out, err := cli.run("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
		out, err := cli.run("verify-attestation", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", d.String())
		if err != nil {
			t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
		}
		if !strings.Contains(predicateTypesIn(out), "https://slsa.dev/provenance/v1") {
			t.Fatalf("cosign verify-attestation output lacks the predicate type:\n%s", out)
		}
		// The wrong key is refused by cosign too (the test can fail).
		other := newTestKey(t, dir, "other")
		if out, err := cli.run("verify", "--key", other.pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err == nil {
			t.Fatalf("cosign verified with an unrelated key:\n%s", out)
		}
	})

	t.Run("cosign signs and attests, gantry verifies", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		if out, err := cli.run("sign", "--key", keyPath, "--tlog-upload=false", "-y", "--allow-http-registry", d.String()); err != nil {
			t.Fatalf("cosign sign: %v\n%s", err, out)
		}
		// Signed, but the required provenance is not there yet.
		res, err := v.Verify(ctx, d)
		if err != nil || res.Reason != AttestationMissing {
			t.Fatalf("before attest: %+v %v", res, err)
		}
		if out, err := cli.run("attest", "--key", keyPath, "--tlog-upload=false", "-y", "--allow-http-registry",
			"--type", "slsaprovenance1", "--predicate", predFile, d.String()); err != nil {
			t.Fatalf("cosign attest: %v\n%s", err, out)
		}
		res, err = v.Verify(ctx, d)
		if err != nil || !res.Verified || strings.Join(res.Matched, ",") != "release" {
			t.Fatalf("after attest: %+v %v", res, err)
		}
	})
}

// TestAttestationRequirements checks predicates against the policy.
func TestAttestationRequirements(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	k := newTestKey(t, dir, "k")
	stranger := newTestKey(t, dir, "stranger")
	s := r.signer(k)
	prov := func(repo, ref string) []byte {
		return []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"` + repo + `","ref":"` + ref + `"}}},"runDetails":{"builder":{"id":"x"}}}`)
	}
	vuln := func(sev string) []byte {
		return []byte(`{"invocation":{},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","version":"0.74.0","result":{"SchemaVersion":2,"Results":[{"Target":"img","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-0001","PkgName":"openssl","Severity":"` + sev + `"}]}]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`)
	}
	sbom := []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}`)
	policy := "identities:\n  - {name: k, key: k.pub}\nattestations:\n" +
		"  - {type: slsaprovenance1, repo: https://github.com/acme/fn, branch: main}\n" +
		"  - {type: vuln, denySeverities: [CRITICAL]}\n" +
		"  - {type: cyclonedx}\n"
	pol := writePolicy(t, dir, policy)
	v, _ := NewVerifier(pol, r.reg)

	type att struct {
		typ  string
		pred []byte
		by   *testKey
	}
	cases := []struct {
		name       string
		atts       []att
		wantReason FailureReason
		wantMsg    string
	}{
		{name: "all present and good", atts: []att{
			{"slsaprovenance1", prov("https://github.com/acme/fn.git", "refs/heads/main"), k},
			{"vuln", vuln("HIGH"), k}, {"cyclonedx", sbom, k}}},
		{name: "sbom missing", wantReason: AttestationMissing, wantMsg: "no cyclonedx attestation",
			atts: []att{{"slsaprovenance1", prov("https://github.com/acme/fn", "refs/heads/main"), k}, {"vuln", vuln("LOW"), k}}},
		{name: "provenance from another branch", wantReason: AttestationRejected, wantMsg: `built from ref "refs/heads/dev"`,
			atts: []att{{"slsaprovenance1", prov("https://github.com/acme/fn", "refs/heads/dev"), k}, {"vuln", vuln("LOW"), k}, {"cyclonedx", sbom, k}}},
		{name: "provenance from another repo", wantReason: AttestationRejected, wantMsg: "built from repository",
			atts: []att{{"slsaprovenance1", prov("https://github.com/evil/fn", "refs/heads/main"), k}, {"vuln", vuln("LOW"), k}, {"cyclonedx", sbom, k}}},
		{name: "critical finding", wantReason: AttestationRejected, wantMsg: "CRITICAL CVE-2099-0001 in openssl",
			atts: []att{{"slsaprovenance1", prov("https://github.com/acme/fn", "refs/heads/main"), k}, {"vuln", vuln("CRITICAL"), k}, {"cyclonedx", sbom, k}}},
		{name: "attestation by an untrusted key", wantReason: AttestationMissing, wantMsg: "no slsaprovenance1 attestation",
			atts: []att{{"slsaprovenance1", prov("https://github.com/acme/fn", "refs/heads/main"), stranger}, {"vuln", vuln("LOW"), k}, {"cyclonedx", sbom, k}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := r.pushImage(r.uniqueRepo(), "v1")
			mustSign(t, r, k, d)
			for _, a := range tc.atts {
				if _, err := r.signer(a.by).Attest(context.Background(), d, a.typ, a.pred); err != nil {
					t.Fatal(err)
				}
			}
			res, err := v.Verify(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != (tc.wantReason == "") || res.Reason != tc.wantReason || !strings.Contains(res.Message, tc.wantMsg) {
				t.Fatalf("got %+v, want reason %q with %q", res, tc.wantReason, tc.wantMsg)
			}
		})
	}

	t.Run("re-attest same predicate is a no-op, new predicate replaces", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		first, err := s.Attest(context.Background(), d, "vuln", vuln("CRITICAL"))
		if err != nil || first.AlreadyAttested {
			t.Fatalf("%+v %v", first, err)
		}
		again, err := s.Attest(context.Background(), d, "vuln", vuln("CRITICAL"))
		if err != nil || !again.AlreadyAttested {
			t.Fatalf("%+v %v", again, err)
		}
		if _, err := s.Attest(context.Background(), d, "vuln", vuln("LOW")); err != nil {
			t.Fatal(err)
		}
		f, err := fetchAttachments(context.Background(), r.reg, d, attSuffix)
		if err != nil || len(f.sigs) != 1 {
			t.Fatalf("want exactly one vuln attestation after the rescan, got %d (%v)", len(f.sigs), err)
		}
	})
}

// predicateTypesIn decodes the DSSE envelopes cosign prints, one a line.
func predicateTypesIn(out string) string {
	var types []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if st, err := parseStatement([]byte(line)); err == nil {
			types = append(types, st.PredicateType)
		}
	}
	return strings.Join(types, ",")
}

// TestPredicateHelpers: what the pipeline builds with Provenance and
// VulnPredicate is what the policy checks read, after a real attest.
func TestPredicateHelpers(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	k := newTestKey(t, dir, "k")
	prov, err := Provenance{Repository: "https://github.com/acme/fn", Commit: strings.Repeat("c", 40), Ref: "refs/heads/main",
		DeliveryID: "d-1", BuilderID: "https://gantry.example/worker", RunID: "run-1",
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
		Materials: map[string]map[string]string{"pkg:oci/base": {"sha256": strings.Repeat("b", 64)}, "pkg:oci/a": {"sha256": strings.Repeat("a", 64)}}}.Predicate()
	if err != nil {
		t.Fatal(err)
	}
	vuln, err := VulnPredicate(VulnScan{Report: []byte(`{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-0001","PkgName":"openssl","Severity":"CRITICAL"}]}]}`),
		ScannerVersion: "0.74.0", Started: time.Now(), Finished: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	d := r.pushImage(r.uniqueRepo(), "v1")
	mustSign(t, r, k, d)
	s := r.signer(k)
	for typ, pred := range map[string][]byte{"slsaprovenance1": prov, "vuln": vuln} {
		if _, err := s.Attest(context.Background(), d, typ, pred); err != nil {
			t.Fatal(err)
		}
	}
	ok := writePolicy(t, dir, "identities:\n  - {name: k, key: k.pub}\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn, branch: main}\n  - {type: vuln, denySeverities: [HIGH]}\n")
	bad := writePolicy(t, dir, "identities:\n  - {name: k, key: k.pub}\nattestations:\n  - {type: vuln, denySeverities: [CRITICAL]}\n")
	for _, tc := range []struct {
		pol    *Policy
		wantOK bool
	}{{ok, true}, {bad, false}} {
		v, _ := NewVerifier(tc.pol, r.reg)
		res, err := v.Verify(context.Background(), d)
		if err != nil || res.Verified != tc.wantOK {
			t.Fatalf("%+v %v, want verified=%v", res, err, tc.wantOK)
		}
	}
}
