package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	sigs "github.com/sigstore/cosign/v2/pkg/signature"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/tuf"

	"github.com/gantry-dev/gantry/internal/files"
)

// maxKeyFile bounds key and certificate files.
const maxKeyFile = 256 << 10

// trustedKey is one identity of the policy, ready to verify with.
type trustedKey struct {
	name      string
	verifier  signature.Verifier // nil for keyless identities
	der       []byte             // public key (PKIX DER) for Version
	keyless   *cosign.Identity
	notBefore *time.Time
	notAfter  *time.Time
}

// activeAt says whether the identity is inside its validity window.
func (k *trustedKey) activeAt(t time.Time) bool {
	if k.notBefore != nil && t.Before(*k.notBefore) {
		return false
	}
	if k.notAfter != nil && !t.Before(*k.notAfter) {
		return false
	}
	return true
}

// keylessTrust is the Fulcio CA and log keys, loaded from files.
type keylessTrust struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	rekorKeys     *cosign.TrustedTransparencyLogPubKeys
	ctKeys        *cosign.TrustedTransparencyLogPubKeys
	digest        []byte
	// The same certificates as lists, for sigstore-go (bundles).
	rootCerts, intermediateCerts []*x509.Certificate
}

func (p *Policy) loadKeys() error {
	p.keys = make([]*trustedKey, len(p.Identities))
	for i, id := range p.Identities {
		k := &trustedKey{name: id.Name, notBefore: id.NotBefore, notAfter: id.NotAfter}
		switch {
		case id.Key != "":
			b, err := files.ReadBounded(p.path(id.Key), maxKeyFile)
			if err != nil {
				return fmt.Errorf("identity %s: key file: %w", id.Name, err)
			}
			v, der, err := verifierFromPEM(b)
			if err != nil {
				return fmt.Errorf("identity %s: key file %s: %w", id.Name, id.Key, err)
			}
			k.verifier, k.der = v, der
		case id.KeyRef != "":
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			v, err := sigs.PublicKeyFromKeyRef(ctx, id.KeyRef)
			cancel()
			if err != nil {
				return fmt.Errorf("identity %s: keyRef %s: %w", id.Name, id.KeyRef, err)
			}
			pub, err := v.PublicKey()
			if err != nil {
				return fmt.Errorf("identity %s: keyRef %s: %w", id.Name, id.KeyRef, err)
			}
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				return fmt.Errorf("identity %s: keyRef %s: %w", id.Name, id.KeyRef, err)
			}
			k.verifier, k.der = v, der
		case id.Keyless != nil:
			kl := id.Keyless
			k.keyless = &cosign.Identity{Issuer: kl.Issuer, IssuerRegExp: kl.IssuerRegExp,
				Subject: kl.Subject, SubjectRegExp: kl.SubjectRegExp}
		}
		p.keys[i] = k
	}
	if p.TrustedRoot != nil && len(p.TrustedRoot.FulcioCerts) > 0 {
		t, err := p.loadTrust()
		if err != nil {
			return fmt.Errorf("trustedRoot: %w", err)
		}
		p.trust = t
	}
	return nil
}

// verifierFromPEM loads a PEM public key the way cosign does (SHA-256).
func verifierFromPEM(b []byte) (signature.Verifier, []byte, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, nil, errors.New("not a PEM public key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	return v, der, nil
}

func (p *Policy) loadTrust() (*keylessTrust, error) {
	tr := p.TrustedRoot
	t := &keylessTrust{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	h := sha256.New()
	for _, f := range tr.FulcioCerts {
		b, err := files.ReadBounded(p.path(f), maxKeyFile)
		if err != nil {
			return nil, fmt.Errorf("fulcioCerts: %w", err)
		}
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM(b)
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("fulcioCerts: %s holds no PEM certificate", f)
		}
		for _, c := range certs {
			h.Write(c.Raw)
			// Self-signed certificates are roots; the rest intermediates.
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				t.roots.AddCert(c)
				t.rootCerts = append(t.rootCerts, c)
			} else {
				t.intermediates.AddCert(c)
				t.intermediateCerts = append(t.intermediateCerts, c)
			}
		}
	}
	load := func(paths []string, what string) (*cosign.TrustedTransparencyLogPubKeys, error) {
		if len(paths) == 0 {
			return nil, nil
		}
		keys := cosign.NewTrustedTransparencyLogPubKeys()
		for _, f := range paths {
			b, err := files.ReadBounded(p.path(f), maxKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			if err := keys.AddTransparencyLogPubKey(b, tuf.Active); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", what, f, err)
			}
			h.Write(b)
		}
		return &keys, nil
	}
	var err error
	if t.rekorKeys, err = load(tr.RekorPublicKeys, "rekorPublicKeys"); err != nil {
		return nil, err
	}
	if t.ctKeys, err = load(tr.CTLogPublicKeys, "ctLogPublicKeys"); err != nil {
		return nil, err
	}
	t.digest = h.Sum(nil)
	return t, nil
}
