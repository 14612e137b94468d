package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// pushRandom pushes a random image to ref (a tag) and returns repo@digest.
func pushRandom(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	return tag.Context().String() + "@" + h.String()
}

// TestSignAttestVerifyCLI drives gantry sign, attest and verify end to end
// against the test registry, and checks the exit codes of each verdict.
func TestSignAttestVerifyCLI(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	dir := t.TempDir()
	keyPath, _ := cosignKeyFiles(t, dir)
	policy := filepath.Join(dir, "policy.yaml")
	signerMust(t, os.WriteFile(policy, []byte("identities:\n  - {name: release, key: cosign.pub}\n"), 0o600))
	strict := filepath.Join(dir, "strict.yaml")
	signerMust(t, os.WriteFile(strict, []byte("identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: vuln, denySeverities: [CRITICAL]}\n"), 0o600))
	pred := filepath.Join(dir, "vuln.json")
	signerMust(t, os.WriteFile(pred, []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.74.0","result":{"SchemaVersion":2,"Results":[]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`), 0o600))

	env := []string{"GANTRY_REGISTRY_INSECURE=" + e.Registry, "COSIGN_PASSWORD=pw"}
	repo := fmt.Sprintf("%s/signer-cli/%d", e.Registry, time.Now().UnixNano())
	signed := pushRandom(t, repo+":v1")

	code, out, stderr := gantry(t, env, "sign", signed, "--key", keyPath, "--output", "json")
	if code != exitOK {
		t.Fatalf("sign: exit %d: %s", code, stderr)
	}
	if strings.Contains(stderr, "pw") && strings.Contains(stderr, "password") {
		t.Fatalf("stderr mentions the password: %s", stderr)
	}
	var sr struct{ AlreadySigned bool }
	signerMust(t, json.Unmarshal([]byte(out), &sr))
	if code, out, _ := gantry(t, env, "sign", signed, "--key", keyPath); code != exitOK || !strings.Contains(out, "already signed") {
		t.Fatalf("re-sign: exit %d: %s", code, out)
	}

	t.Run("verified", func(t *testing.T) {
		code, out, stderr := gantry(t, env, "verify", repo+":v1", "--policy", policy, "--output", "json")
		if code != exitOK {
			t.Fatalf("exit %d: %s %s", code, out, stderr)
		}
		var res struct {
			Verified bool
			Matched  []string
		}
		signerMust(t, json.Unmarshal([]byte(out), &res))
		if !res.Verified || len(res.Matched) != 1 || res.Matched[0] != "release" {
			t.Fatalf("result %s", out)
		}
	})
	t.Run("attestation required, then attested", func(t *testing.T) {
		code, _, stderr := gantry(t, env, "verify", signed, "--policy", strict)
		if code != exitPolicy || !strings.Contains(stderr, "AttestationMissing") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if code, out, stderr := gantry(t, env, "attest", signed, "--key", keyPath, "--type", "vuln", "--predicate", pred); code != exitOK {
			t.Fatalf("attest: exit %d: %s %s", code, out, stderr)
		}
		if code, out, stderr := gantry(t, env, "verify", signed, "--policy", strict); code != exitOK {
			t.Fatalf("verify after attest: exit %d: %s %s", code, out, stderr)
		}
	})
	t.Run("re-tagged image is not verified", func(t *testing.T) {
		pushRandom(t, repo+":v1") // the tag now names an unsigned image
		code, out, stderr := gantry(t, env, "verify", repo+":v1", "--policy", policy, "--output", "json")
		if code != exitPolicy || !strings.Contains(out, `"NoSignature"`) {
			t.Fatalf("exit %d: %s %s", code, out, stderr)
		}
		// The digest that was signed still verifies.
		if code, _, stderr := gantry(t, env, "verify", signed, "--policy", policy); code != exitOK {
			t.Fatalf("signed digest: exit %d: %s", code, stderr)
		}
	})
	t.Run("errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"verify", signed},                      // no policy
			{"verify", signed, "--policy", keyPath}, // not a policy
			{"verify", "127.0.0.1:1/x@sha256:" + strings.Repeat("a", 64), "--policy", policy}, // registry down
			{"sign", signed}, // signing not configured
			{"attest", signed, "--key", keyPath, "--type", "nope", "--predicate", pred},
			{"attest", signed, "--key", keyPath, "--type", "vuln"},
		} {
			if code, _, stderr := gantry(t, env, args...); code != exitFailure || !strings.HasPrefix(stderr, "gantry: ") {
				t.Errorf("%v: exit %d: %s", args, code, stderr)
			}
		}
	})
}

func signerMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
