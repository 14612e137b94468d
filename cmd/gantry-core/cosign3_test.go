package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// TestCosign3CLIInterop: `gantry verify` accepts what `cosign sign` and
// `cosign attest` v3 store with their defaults (Sigstore bundles as OCI
// referrers; this registry has no referrers API, so under the referrers
// tag), and `cosign verify` / `verify-attestation` v3 accept what `gantry
// sign --format bundle` and `gantry attest --format bundle` store.
func TestCosign3CLIInterop(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	bin := testenv.RequireCosign3(t, e)
	dir := t.TempDir()
	keyPath, pubPath := cosignKeyFiles(t, dir)
	strict := filepath.Join(dir, "strict.yaml")
	signerMust(t, os.WriteFile(strict, []byte("identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: vuln, denySeverities: [CRITICAL]}\n"), 0o600))
	pred := filepath.Join(dir, "vuln.json")
	signerMust(t, os.WriteFile(pred, []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.74.0","result":{"SchemaVersion":2,"Results":[]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`), 0o600))
	cosign3 := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"COSIGN_PASSWORD=pw", "HOME=" + dir, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	env := []string{"GANTRY_REGISTRY_INSECURE=" + e.Registry, "COSIGN_PASSWORD=pw"}
	repo := fmt.Sprintf("%s/cosign3-cli/%d", e.Registry, time.Now().UnixNano())

	t.Run("cosign v3 signs and attests, gantry verify accepts", func(t *testing.T) {
		img := pushRandom(t, repo+":v3")
		offline := []string{"--key", keyPath, "--tlog-upload=false", "--use-signing-config=false", "-y", "--allow-http-registry"}
		if code, out, stderr := gantry(t, env, "verify", img, "--policy", strict); code != exitPolicy || !strings.Contains(stderr+out, "NoSignature") {
			t.Fatalf("unsigned: exit %d: %s %s", code, out, stderr)
		}
		if out, err := cosign3(append(append([]string{"sign"}, offline...), img)...); err != nil {
			t.Fatalf("cosign sign: %v\n%s", err, out)
		}
		if code, out, stderr := gantry(t, env, "verify", img, "--policy", strict); code != exitPolicy || !strings.Contains(stderr+out, "AttestationMissing") {
			t.Fatalf("signed, not attested: exit %d: %s %s", code, out, stderr)
		}
		if out, err := cosign3(append(append([]string{"attest", "--type", "vuln", "--predicate", pred}, offline...), img)...); err != nil {
			t.Fatalf("cosign attest: %v\n%s", err, out)
		}
		if code, out, stderr := gantry(t, env, "verify", img, "--policy", strict); code != exitOK {
			t.Fatalf("verify: exit %d: %s %s", code, out, stderr)
		}
	})
	t.Run("gantry signs and attests in the bundle format, cosign v3 verifies", func(t *testing.T) {
		img := pushRandom(t, repo+":gantry")
		code, out, stderr := gantry(t, env, "sign", img, "--key", keyPath, "--format", "bundle")
		if code != exitOK || !strings.Contains(out, "Sigstore bundle") {
			t.Fatalf("sign: exit %d: %s %s", code, out, stderr)
		}
		if code, out, stderr := gantry(t, env, "attest", img, "--key", keyPath, "--format", "bundle", "--type", "vuln", "--predicate", pred); code != exitOK {
			t.Fatalf("attest: exit %d: %s %s", code, out, stderr)
		}
		if out, err := cosign3("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", img); err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
		if out, err := cosign3("verify-attestation", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "vuln", img); err != nil {
			t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
		}
		if code, out, stderr := gantry(t, env, "verify", img, "--policy", strict); code != exitOK {
			t.Fatalf("gantry verify: exit %d: %s %s", code, out, stderr)
		}
	})
}
