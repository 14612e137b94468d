package signer

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-dev/gantry/config"
	goci "github.com/gantry-dev/gantry/internal/oci"
)

// TestVerifyOutcomes covers each verdict against the real registry: every
// rejection has its own reason and a message that names what to do.
func TestVerifyOutcomes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	a, b, c := newTestKey(t, dir, "a"), newTestKey(t, dir, "b"), newTestKey(t, dir, "c")
	stranger := newTestKey(t, dir, "stranger")

	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	onlyA := "identities:\n  - {name: a, key: a.pub}\n"
	twoOfThree := "identities:\n  - {name: a, key: a.pub}\n  - {name: b, key: b.pub}\n  - {name: c, key: c.pub}\nthreshold: 2\n"

	type tc struct {
		name        string
		policy      string
		setup       func(repo string) name.Digest
		wantOK      bool
		wantReason  FailureReason
		wantMatched []string
		wantMsg     string
	}
	cases := []tc{
		{name: "signed by trusted key", policy: onlyA, wantOK: true, wantMatched: []string{"a"},
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				return d
			}},
		{name: "no signature", policy: onlyA, wantReason: NoSignature, wantMsg: "no signature found",
			setup: func(repo string) name.Digest { return r.pushImage(repo, "v1") }},
		{name: "wrong key", policy: onlyA, wantReason: UntrustedKey, wantMsg: "none by a trusted identity",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, stranger, d)
				return d
			}},
		{name: "signature over another digest", policy: onlyA, wantReason: DigestMismatch, wantMsg: "copied from another image",
			setup: func(repo string) name.Digest {
				signed := r.pushImage(repo, "signed")
				mustSign(t, r, a, signed)
				other := r.pushImage(repo, "other")
				copyTag(t, r, mustTag(t, signed, sigSuffix), mustTag(t, other, sigSuffix))
				return other
			}},
		{name: "key outside its window", wantReason: KeyExpired, wantMsg: "outside their validity window",
			policy: "identities:\n  - {name: a, key: a.pub, notAfter: " + past + "}\n",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				return d
			}},
		{name: "key not yet valid", wantReason: KeyExpired, wantMsg: "notBefore",
			policy: "identities:\n  - {name: a, key: a.pub, notBefore: " + future + "}\n",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				return d
			}},
		{name: "rotation overlap: old key retired, new key signs", wantOK: true, wantMatched: []string{"new"},
			policy: "identities:\n  - {name: old, key: a.pub, notAfter: " + past + "}\n  - {name: new, key: b.pub, notBefore: " + past + "}\n",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				mustSign(t, r, b, d)
				return d
			}},
		{name: "threshold 2 of 3 with 1 valid", policy: twoOfThree, wantReason: ThresholdNotMet,
			wantMatched: []string{"a"}, wantMsg: "1 of the 2",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				mustSign(t, r, stranger, d)
				return d
			}},
		{name: "threshold 2 of 3 with 2 valid", policy: twoOfThree, wantOK: true, wantMatched: []string{"a", "c"},
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, c, d)
				mustSign(t, r, a, d)
				return d
			}},
		{name: "corrupt signature manifest: layer without signature", policy: onlyA, wantReason: CorruptSignature,
			wantMsg: "not valid cosign content",
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				pushSigManifest(t, r, d, []byte(`{"critical":{}}`), map[string]string{})
				return d
			}},
		{name: "corrupt signature manifest: not a manifest", policy: onlyA, wantReason: CorruptSignature,
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				pushIndexAtTag(t, r, mustTag(t, d, sigSuffix))
				return d
			}},
		{name: "tampered payload under a valid signature", policy: onlyA, wantReason: UntrustedKey,
			setup: func(repo string) name.Digest {
				d := r.pushImage(repo, "v1")
				mustSign(t, r, a, d)
				tamperPayload(t, r, d)
				return d
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := writePolicy(t, dir, tc.policy)
			v, err := NewVerifier(pol, r.reg)
			if err != nil {
				t.Fatal(err)
			}
			d := tc.setup(r.uniqueRepo())
			res, err := v.Verify(context.Background(), d)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Verified != tc.wantOK || res.Reason != tc.wantReason {
				t.Fatalf("got verified=%v reason=%q (%s), want verified=%v reason=%q", res.Verified, res.Reason, res.Message, tc.wantOK, tc.wantReason)
			}
			if tc.wantMatched != nil && strings.Join(res.Matched, ",") != strings.Join(tc.wantMatched, ",") {
				t.Errorf("matched %v, want %v", res.Matched, tc.wantMatched)
			}
			if !strings.Contains(res.Message, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", res.Message, tc.wantMsg)
			}
			if res.PolicyVersion != pol.Version() || !res.Cacheable() {
				t.Errorf("policy version %q / cacheable %v", res.PolicyVersion, res.Cacheable())
			}
		})
	}
}

func TestVerifyRegistryUnreachable(t *testing.T) {
	dir := t.TempDir()
	newTestKey(t, dir, "a")
	pol := writePolicy(t, dir, "identities:\n  - {name: a, key: a.pub}\n")
	// A port nothing listens on: the listener is closed before use.
	reg, err := goci.New(config.Registry{Insecure: []string{"127.0.0.1:1"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(pol, reg)
	d, _ := reg.ParseDigest("127.0.0.1:1/x@sha256:" + strings.Repeat("a", 64))
	res, err := v.Verify(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified || res.Reason != RegistryUnreachable || res.Cacheable() {
		t.Fatalf("got %+v", res)
	}
	if !strings.Contains(res.Message, "cannot read signatures") {
		t.Errorf("message: %s", res.Message)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, d); err == nil {
		t.Fatal("a canceled context gave a verdict instead of an error")
	}
}

func mustSign(t *testing.T, r *rig, k *testKey, d name.Digest) {
	t.Helper()
	if _, err := r.signer(k).Sign(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func mustTag(t *testing.T, d name.Digest, suffix string) name.Tag {
	t.Helper()
	tag, err := attachmentTag(d, suffix)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// copyTag copies the manifest at from (and, being in the same repository,
// its blobs) to the tag to.
func copyTag(t *testing.T, r *rig, from, to name.Tag) {
	t.Helper()
	img, err := remote.Image(from, r.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(to, img, r.reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// pushSigManifest writes a one-layer signature manifest for d by hand.
func pushSigManifest(t *testing.T, r *rig, d name.Digest, payload []byte, ann map[string]string) {
	t.Helper()
	layer := static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json")
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: layer, Annotations: ann})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustTag(t, d, sigSuffix), img, r.reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// pushIndexAtTag puts an image index where a signature manifest belongs.
func pushIndexAtTag(t *testing.T, r *rig, tag name.Tag) {
	t.Helper()
	if err := remote.WriteIndex(tag, mutate.IndexMediaType(empty.Index, types.OCIImageIndex), r.reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// tamperPayload rewrites the signature manifest of d with the same
// signature annotation over a changed payload.
func tamperPayload(t *testing.T, r *rig, d name.Digest) {
	t.Helper()
	tag := mustTag(t, d, sigSuffix)
	desc, err := remote.Get(tag, r.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	ann := m.Layers[0].Annotations
	payload := []byte(`{"critical":{"identity":{"docker-reference":"evil"},"image":{"docker-manifest-digest":"` + d.DigestStr() + `"},"type":"cosign container image signature"},"optional":null}`)
	pushSigManifest(t, r, d, payload, ann)
}
