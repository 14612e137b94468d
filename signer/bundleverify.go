package signer

import (
	"encoding/hex"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// bundleVerifier checks Sigstore bundles for one identity of the policy
// with sigstore-go.
type bundleVerifier struct {
	v      *verify.Verifier
	policy verify.PolicyOption // the key, or the certificate identity
}

// newBundleVerifier returns the bundle verifier of identity k, or nil when
// bundles are not accepted for it.
func newBundleVerifier(k *trustedKey) (*bundleVerifier, error) {
	if k.verifier == nil {
		return nil, nil
	}
	// Key identities: the bundle's key hint is ignored, every bundle is
	// checked against this key; no transparency log and no timestamp
	// (as for the tag-based format: the validity window is checked
	// against the verification time, by the caller).
	key := root.NewExpiringKey(k.verifier, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", k.name, err)
	}
	return &bundleVerifier{v: v, policy: verify.WithKey()}, nil
}

// verify checks that e is signed by the identity and is about digest h.
func (bv *bundleVerifier) verify(e *bundleEntry, h v1.Hash) error {
	dig, err := hex.DecodeString(h.Hex)
	if err != nil {
		return err
	}
	_, err = bv.v.Verify(e.b, verify.NewPolicy(verify.WithArtifactDigest(h.Algorithm, dig), bv.policy))
	return err
}

// signedByIdentity checks only that e is signed by the identity, whatever
// it is about: to tell a bundle copied from another image apart from one
// by an untrusted key.
func (bv *bundleVerifier) signedByIdentity(e *bundleEntry) bool {
	_, err := bv.v.Verify(e.b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), bv.policy))
	return err == nil
}
