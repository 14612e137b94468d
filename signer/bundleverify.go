package signer

import (
	"encoding/hex"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
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
// bundles are not accepted for it. t is the policy's keyless trust (nil
// when it has none).
func newBundleVerifier(k *trustedKey, t *keylessTrust) (*bundleVerifier, error) {
	if k.keyless != nil {
		return newKeylessBundleVerifier(k, t)
	}
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

// caMaterial is the policy's Fulcio CA files as sigstore-go trusted
// material: one certificate authority per root, with every intermediate.
type caMaterial struct {
	root.BaseTrustedMaterial
	cas []root.CertificateAuthority
}

func (m *caMaterial) FulcioCertificateAuthorities() []root.CertificateAuthority { return m.cas }

// newKeylessBundleVerifier verifies bundles that carry a certificate
// issued by the policy's CA for the identity, checked at the current time
// (as for the tag-based format without Rekor keys). With Rekor or CT log
// keys in the policy, bundles are not accepted for keyless identities (nil).
func newKeylessBundleVerifier(k *trustedKey, t *keylessTrust) (*bundleVerifier, error) {
	if t == nil || len(t.rootCerts) == 0 || t.rekorKeys != nil || t.ctKeys != nil {
		return nil, nil
	}
	m := &caMaterial{}
	for _, r := range t.rootCerts {
		m.cas = append(m.cas, &root.FulcioCertificateAuthority{Root: r, Intermediates: t.intermediateCerts})
	}
	v, err := verify.NewVerifier(m, verify.WithCurrentTime())
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", k.name, err)
	}
	san, err := verify.NewSANMatcher(k.keyless.Subject, k.keyless.SubjectRegExp)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", k.name, err)
	}
	iss, err := verify.NewIssuerMatcher(k.keyless.Issuer, k.keyless.IssuerRegExp)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", k.name, err)
	}
	id, err := verify.NewCertificateIdentity(san, iss, certificate.Extensions{})
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", k.name, err)
	}
	return &bundleVerifier{v: v, policy: verify.WithCertificateIdentity(id)}, nil
}
