package signer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
)

// Signature formats (signer.format).
const (
	FormatLegacy = "legacy" // tag-based .sig/.att (cosign v2's default)
	FormatBundle = "bundle" // Sigstore bundles as OCI referrers (cosign v3's default)
	FormatBoth   = "both"
)

// formats says which formats the signer writes. An empty format (a
// Signer built in memory) is the tag-based one.
func (s *Signer) formats() (legacy, bundle bool) {
	switch s.format {
	case FormatBundle:
		return false, true
	case FormatBoth:
		return true, true
	}
	return true, false
}

// signStatement is the in-toto statement cosign v3 signs to sign an
// image: the digest as subject, an empty predicate.
func signStatement(h v1.Hash) ([]byte, error) {
	return json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"digest": map[string]string{h.Algorithm: h.Hex}}},
		"predicateType": SignPredicateType,
		"predicate":     map[string]any{},
	})
}

// ownBundleVerifier checks bundles against this signer's own key (to
// find what it signed before). Keyless identities have a new key per
// process: nothing is ever "its own" then.
func (s *Signer) ownBundleVerifier() (*bundleVerifier, error) {
	if s.id.cert != nil {
		return nil, nil
	}
	return newBundleVerifier(&trustedKey{name: s.id.source, verifier: s.id.sv}, nil)
}

// signBundle signs d in the bundle format unless this identity already
// did; it reports whether it had.
func (s *Signer) signBundle(ctx context.Context, d name.Digest, h v1.Hash) (bool, error) {
	own, err := s.ownBundleVerifier()
	if err != nil {
		return false, err
	}
	existing, err := newBundleSource(s.reg, newPullers(s.reg), d).signatures(ctx)
	if err != nil {
		return false, fmt.Errorf("reading existing Sigstore bundles: %w", err)
	}
	if own != nil {
		for _, e := range existing {
			if own.verify(e, h) == nil && e.st.covers(h) {
				return true, nil
			}
		}
	}
	stmt, err := signStatement(h)
	if err != nil {
		return false, err
	}
	return false, s.writeBundle(ctx, d, stmt, SignPredicateType)
}

// attestBundle attaches the statement stmt (JSON) with predicate type uri
// as a bundle, unless this identity already attested the same predicate;
// its earlier bundles of that type are then removed, so that a newer scan
// replaces an older one (as in the tag-based format).
func (s *Signer) attestBundle(ctx context.Context, d name.Digest, h v1.Hash, uri string, stmt, wantPred []byte) (bool, error) {
	own, err := s.ownBundleVerifier()
	if err != nil {
		return false, err
	}
	existing, err := newBundleSource(s.reg, newPullers(s.reg), d).attestations(ctx)
	if err != nil {
		return false, fmt.Errorf("reading existing Sigstore bundles: %w", err)
	}
	var stale []v1.Hash
	if own != nil {
		for _, e := range existing {
			if e.st.PredicateType != uri || !e.st.covers(h) || own.verify(e, h) != nil {
				continue
			}
			if jsonEqual(e.st.Predicate, wantPred) {
				return true, nil
			}
			stale = append(stale, e.manifest)
		}
	}
	if err := s.writeBundle(ctx, d, stmt, uri); err != nil {
		return false, err
	}
	return false, s.removeReferrers(ctx, d, stale)
}

// writeBundle signs stmt as a DSSE bundle with sigstore-go and stores it
// as a referrer of d with cosign's writer (the layout cosign v3 writes).
func (s *Signer) writeBundle(ctx context.Context, d name.Digest, stmt []byte, predicateType string) error {
	kp, err := newKeypair(s.id.sv)
	if err != nil {
		return err
	}
	opts := sign.BundleOptions{Context: ctx}
	if s.id.cert != nil {
		der, err := leafDER(s.id.cert)
		if err != nil {
			return err
		}
		opts.CertificateProvider = fixedCertificate(der)
	}
	if s.rekorURL != "" {
		opts.TransparencyLogs = []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: s.rekorURL, Timeout: s.timeout, Retries: 2})}
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: intotoPayloadType}, kp, opts)
	if err != nil {
		return fmt.Errorf("signing the bundle with %s: %w", s.id.source, err)
	}
	raw, err := (&sgbundle.Bundle{Bundle: pb}).MarshalJSON()
	if err != nil {
		return err
	}
	if err := ociremote.WriteAttestationNewBundleFormat(d, raw, predicateType,
		ociremote.WithRemoteOptions(s.reg.RemoteOptions(ctx)...),
		ociremote.WithNameOptions(s.reg.NameOptions(d.String())...)); err != nil {
		return fmt.Errorf("storing the bundle as a referrer of %s: %w", d, err)
	}
	return nil
}

// removeReferrers drops the referrer manifests gone from the list of d's
// referrers: from the referrers tag (registries without the referrers
// API), and by deleting them (the only way on registries with it; there
// a failed delete is an error, since the stale bundle would still count).
func (s *Signer) removeReferrers(ctx context.Context, d name.Digest, gone []v1.Hash) error {
	if len(gone) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.reg.Timeout())
	defer cancel()
	ropts := s.reg.RemoteOptions(ctx)
	tag, err := name.NewTag(referrersTag(d), s.reg.NameOptions(d.String())...)
	if err != nil {
		return err
	}
	inTag := map[v1.Hash]bool{}
	desc, err := remote.Get(tag, ropts...)
	var te *transport.Error
	switch {
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
	case err != nil:
		return fmt.Errorf("reading the referrers tag %s: %w", tag, err)
	default:
		var im v1.IndexManifest
		if err := json.Unmarshal(desc.Manifest, &im); err != nil {
			return fmt.Errorf("the referrers tag %s is not an image index: %w", tag, err)
		}
		kept := im.Manifests[:0]
		for _, m := range im.Manifests {
			if slices.Contains(gone, m.Digest) {
				inTag[m.Digest] = true
				continue
			}
			kept = append(kept, m)
		}
		im.Manifests = kept
		b, err := json.Marshal(im)
		if err != nil {
			return err
		}
		if err := remote.Put(tag, rawManifest{raw: b, mediaType: types.OCIImageIndex}, ropts...); err != nil {
			return fmt.Errorf("rewriting the referrers tag %s: %w", tag, err)
		}
	}
	for _, h := range gone {
		err := remote.Delete(d.Context().Digest(h.String()), ropts...)
		if err != nil && !inTag[h] {
			return fmt.Errorf("removing the replaced bundle %s: %w (the registry must allow deleting manifests)", h, err)
		}
	}
	return nil
}

// rawManifest is a manifest to put as is.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// fixedCertificate hands sigstore-go the Fulcio certificate the identity
// already holds.
type fixedCertificate []byte

func (c fixedCertificate) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	return c, nil
}

// leafDER is the first certificate of a PEM chain.
func leafDER(pemCerts []byte) ([]byte, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(pemCerts)
	if err != nil || len(certs) == 0 {
		return nil, errors.New("the signing certificate is not PEM")
	}
	return certs[0].Raw, nil
}

// keypair adapts a SignerVerifier to sigstore-go's Keypair.
type keypair struct {
	sv   signature.SignerVerifier
	pub  crypto.PublicKey
	alg  signature.AlgorithmDetails
	hint []byte
}

func newKeypair(sv signature.SignerVerifier) (*keypair, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	alg, err := signature.GetDefaultAlgorithmDetails(pub)
	if err != nil {
		return nil, fmt.Errorf("the signing key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &keypair{sv: sv, pub: pub, alg: alg, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.pub }

func (k *keypair) GetKeyAlgorithm() string {
	switch k.alg.GetKeyType() {
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return "ECDSA"
}

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.pub)
	return string(b), err
}

// SignData signs data, returning the signature and the digest signed
// (nil for Ed25519, which signs the data itself).
func (k *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	opts := []signature.SignOption{sigopts.WithContext(ctx)}
	var digest []byte
	if hf := k.alg.GetHashType(); hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		digest = h.Sum(nil)
		opts = append(opts, sigopts.WithDigest(digest))
	}
	sig, err := k.sv.SignMessage(bytes.NewReader(data), opts...)
	if err != nil {
		return nil, nil, err
	}
	return sig, digest, nil
}
