package online

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/config"
	goci "github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/signer"
)

// TestAdmissionReadsCosign3Bundles: the verifier admission uses (the
// cache over the signer's verifier) admits an image signed with `cosign
// sign` v3 defaults (a Sigstore bundle as an OCI referrer, under the
// referrers tag on this registry) and refuses one signed by another key.
// Before bundles were read, both were "no signature".
func TestAdmissionReadsCosign3Bundles(t *testing.T) {
	e := testenv.Require(t)
	bin := testenv.RequireCosign3(t, e)
	dir := t.TempDir()
	keys := map[string]string{}
	for _, n := range []string{"trusted", "stranger"} {
		kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
		if err != nil {
			t.Fatal(err)
		}
		keys[n] = filepath.Join(dir, n+".key")
		for p, b := range map[string][]byte{keys[n]: kb.PrivateBytes, filepath.Join(dir, n+".pub"): kb.PublicBytes} {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte("identities:\n  - {name: release, key: trusted.pub}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := signer.LoadPolicy(polPath)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := goci.New(config.Registry{Insecure: []string{e.Registry}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signer.NewVerifier(pol, reg)
	if err != nil {
		t.Fatal(err)
	}
	c := verification.NewCache(signerVerifier{sv}, verification.Options{PositiveTTL: time.Minute, NegativeTTL: time.Second})
	ctx := context.Background()

	for _, tc := range []struct {
		key        string
		wantOK     bool
		wantReason verification.Reason
	}{{"trusted", true, ""}, {"stranger", false, verification.ReasonUntrusted}} {
		t.Run(tc.key, func(t *testing.T) {
			img, err := random.Image(256, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := reg.ParseReference(fmt.Sprintf("%s/admission-bundle/%d:v1", e.Registry, time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img, reg.RemoteOptions(ctx)...); err != nil {
				t.Fatal(err)
			}
			h, _ := img.Digest()
			d, err := reg.ParseDigest(ref.Context().String() + "@" + h.String())
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(cctx, bin, "sign", "--key", keys[tc.key], "--tlog-upload=false", "--use-signing-config=false", "-y", "--allow-http-registry", d.String())
			cmd.Env = []string{"COSIGN_PASSWORD=pw", "HOME=" + dir, "PATH=" + os.Getenv("PATH")}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("cosign v3 sign: %v\n%s", err, out)
			}
			res, err := c.Verify(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != tc.wantOK || res.Reason != tc.wantReason {
				t.Fatalf("got %+v, want verified=%v reason=%q", res, tc.wantOK, tc.wantReason)
			}
		})
	}
}
