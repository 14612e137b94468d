package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gantry-dev/gantry/config"
	goci "github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// rig is one test's registry client and helpers.
type rig struct {
	t   testing.TB
	env *testenv.Env
	reg *goci.Client
	ctx context.Context
}

func newRig(t testing.TB) *rig {
	env := testenv.Require(t)
	reg, err := goci.New(config.Registry{Insecure: []string{env.Registry}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, env: env, reg: reg, ctx: context.Background()}
}

var repoSeq atomic.Int64

// uniqueRepo names a repository no other test (or run) uses.
func (r *rig) uniqueRepo() string {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(r.t.Name()))
	return fmt.Sprintf("%s/signer-test/%s-%d-%d", r.env.Registry, name, time.Now().UnixNano(), repoSeq.Add(1))
}

// pushImage pushes a random image to repo:tag and returns its digest.
func (r *rig) pushImage(repo, tag string) name.Digest {
	r.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		r.t.Fatal(err)
	}
	ref, err := r.reg.ParseReference(repo + ":" + tag)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(ref, img, r.reg.RemoteOptions(r.ctx)...); err != nil {
		r.t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		r.t.Fatal(err)
	}
	d, err := r.reg.ParseDigest(repo + "@" + h.String())
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// testKey is a generated ECDSA P-256 key with its public half on disk.
type testKey struct {
	sv      signature.SignerVerifier
	pubPath string
	pubPEM  []byte
}

func newTestKey(t testing.TB, dir, name string) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return &testKey{sv: sv, pubPath: p, pubPEM: pem}
}

// signer returns a Signer that signs with k.
func (r *rig) signer(k *testKey) *Signer {
	id := &signingIdentity{source: "test key"}
	if k != nil {
		id.sv = k.sv
	}
	return &Signer{id: id, reg: r.reg,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
}

// policy writes a policy document and loads it.
func writePolicy(t testing.TB, dir, doc string) *Policy {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("policy-%d.yaml", repoSeq.Add(1)))
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := LoadPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
