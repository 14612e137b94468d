package signer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// Identity is what signs: a key, and for keyless signing the Fulcio
// certificate (and chain) issued for it.
type signingIdentity struct {
	sv     signature.SignerVerifier
	cert   []byte // PEM, keyless only
	chain  []byte // PEM, keyless only
	source string // "key file /path", "env COSIGN_KEY", … (never content)
}

// tlog uploads a signature or attestation to a transparency log and returns
// the bundle to attach. nil when uploads are off.
type tlog interface {
	uploadSignature(ctx context.Context, sig, payload, pubOrCert []byte) (*cbundle.RekorBundle, error)
	uploadDSSE(ctx context.Context, envelope, pubOrCert []byte) (*cbundle.RekorBundle, error)
}

// Signer signs images and attaches attestations, cosign-compatible (the
// tag-based .sig/.att layout that `cosign verify` reads).
type Signer struct {
	id  *signingIdentity
	reg *goci.Client
	log *slog.Logger
	tl  tlog
	now func() time.Time
	// format is signer.format: legacy, bundle or both ("" is legacy).
	format string
	// rekorURL and timeout are for bundles' transparency log entries
	// (empty rekorURL: none).
	rekorURL string
	timeout  time.Duration
}

// SignResult reports one Sign call.
type SignResult struct {
	Digest string `json:"digest"`
	// Tag is where the signature is stored (repo:sha256-….sig).
	Tag string `json:"signatureTag"`
	// AlreadySigned is true when this identity had signed the digest
	// before: Sign then writes nothing.
	AlreadySigned bool `json:"alreadySigned"`
	// TransparencyLog is true when a Rekor entry was recorded.
	TransparencyLog bool `json:"transparencyLog"`
	// Format is what was written or found: legacy, bundle or both.
	Format string `json:"format"`
}

// AttestResult reports one Attest call.
type AttestResult struct {
	Digest        string `json:"digest"`
	Tag           string `json:"attestationTag"`
	PredicateType string `json:"predicateType"`
	// AlreadyAttested is true when this identity had attested the same
	// predicate before: Attest then writes nothing.
	AlreadyAttested bool   `json:"alreadyAttested"`
	TransparencyLog bool   `json:"transparencyLog"`
	Format          string `json:"format"`
}

// writeOpts are cosign's remote options for a digest's repository. The
// target repository is pinned so COSIGN_REPOSITORY cannot redirect it.
func (s *Signer) writeOpts(ctx context.Context, d name.Digest) []ociremote.Option {
	return []ociremote.Option{
		ociremote.WithRemoteOptions(s.reg.RemoteOptions(ctx)...),
		ociremote.WithTargetRepository(d.Context()),
	}
}

// Sign signs the image digest d. Signing a digest this identity already
// signed is a no-op, so pipelines can retry freely.
func (s *Signer) Sign(ctx context.Context, d name.Digest) (*SignResult, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", d, err)
	}
	tag, _ := attachmentTag(d, sigSuffix)
	res := &SignResult{Digest: d.String(), Tag: tag.String(), Format: s.formatName(), AlreadySigned: true}
	legacy, bundle := s.formats()
	if legacy {
		if err := s.signLegacy(ctx, d, h, res); err != nil {
			return nil, err
		}
	}
	if bundle {
		already, err := s.signBundle(ctx, d, h)
		if err != nil {
			return nil, fmt.Errorf("sign %s: %w", d, err)
		}
		if already {
			s.log.Info("image already signed by this identity (Sigstore bundle); nothing to do", "digest", d.String(), "signer", s.id.source)
		} else {
			res.AlreadySigned = false
			s.log.Info("signed image (Sigstore bundle)", "digest", d.String(), "signer", s.id.source, "referrersOf", d.DigestStr())
		}
	}
	return res, nil
}

// formatName is the format written, for results.
func (s *Signer) formatName() string {
	if s.format == "" {
		return FormatLegacy
	}
	return s.format
}

// signLegacy signs d in the tag-based format, unless this identity
// already did (res.AlreadySigned stays true then).
func (s *Signer) signLegacy(ctx context.Context, d name.Digest, h v1.Hash, res *SignResult) error {
	tag, _ := attachmentTag(d, sigSuffix)
	existing, err := fetchAttachments(ctx, s.reg, d, sigSuffix)
	if err != nil {
		return fmt.Errorf("sign %s: reading existing signatures: %w", d, err)
	}
	co := &cosign.CheckOpts{SigVerifier: s.id.sv, IgnoreTlog: true, IgnoreSCT: true}
	for _, sig := range existing.sigs {
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, co); err != nil {
			continue
		}
		if got, err := signedDigest(sig); err == nil && got == h.String() {
			s.log.Info("image already signed by this identity; nothing to do", "digest", d.String(), "signer", s.id.source)
			return nil
		}
	}

	pl, err := (&payload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("sign %s: payload: %w", d, err)
	}
	raw, err := s.id.sv.SignMessage(bytes.NewReader(pl), sigopts.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("sign %s: signing with %s: %w", d, s.id.source, err)
	}
	var opts []static.Option
	if s.id.cert != nil {
		opts = append(opts, static.WithCertChain(s.id.cert, s.id.chain))
	}
	if s.tl != nil {
		b, err := s.tl.uploadSignature(ctx, raw, pl, s.pubOrCert())
		if err != nil {
			return fmt.Errorf("sign %s: transparency log: %w", d, err)
		}
		opts = append(opts, static.WithBundle(b))
		res.TransparencyLog = true
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw), opts...)
	if err != nil {
		return fmt.Errorf("sign %s: %w", d, err)
	}
	wopts := s.writeOpts(ctx, d)
	se := ociremote.SignedUnknown(d, wopts...)
	newSE, err := mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(cremote.NewDupeDetector(s.id.sv)))
	if err != nil {
		return fmt.Errorf("sign %s: %w", d, err)
	}
	if err := ociremote.WriteSignatures(d.Repository, newSE, wopts...); err != nil {
		return fmt.Errorf("sign %s: writing signature to %s: %w", d, tag, err)
	}
	res.AlreadySigned = false
	s.log.Info("signed image", "digest", d.String(), "signer", s.id.source, "tag", tag.String())
	return nil
}

// Attest signs an in-toto statement with predicate (JSON) about digest d
// and attaches it. predicateType is slsaprovenance1, vuln, cyclonedx or a
// URI. An earlier attestation of the same type by this identity is
// replaced, so there is one per type; if its predicate is the same, Attest
// is a no-op.
func (s *Signer) Attest(ctx context.Context, d name.Digest, predicateType string, predicate []byte) (*AttestResult, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("attest %s: %w", d, err)
	}
	uri, err := PredicateTypeURI(predicateType)
	if err != nil {
		return nil, fmt.Errorf("attest %s: %w", d, err)
	}
	if !json.Valid(predicate) {
		return nil, fmt.Errorf("attest %s: the %s predicate is not valid JSON", d, predicateType)
	}
	tag, _ := attachmentTag(d, attSuffix)
	res := &AttestResult{Digest: d.String(), Tag: tag.String(), PredicateType: uri}

	// Short names select cosign's typed statements; any other type is a
	// URI, which cosign's default branch uses as the predicate type with
	// the JSON predicate as is.
	kind := predicateType
	if _, short := predicateTypes[predicateType]; !short {
		kind = uri
	}
	stmt, err := attestation.GenerateStatement(attestation.GenerateOpts{
		Predicate: bytes.NewReader(predicate),
		Type:      kind,
		Digest:    h.Hex,
		Repo:      d.Context().String(),
		Time:      s.now,
	})
	if err != nil {
		return nil, fmt.Errorf("attest %s: %s predicate: %w", d, predicateType, err)
	}
	wantPred, err := statementPredicate(stmt)
	if err != nil {
		return nil, fmt.Errorf("attest %s: %w", d, err)
	}
	res.Format, res.AlreadyAttested = s.formatName(), true
	legacy, bundle := s.formats()
	if legacy {
		if err := s.attestLegacy(ctx, d, h, uri, stmt, wantPred, res); err != nil {
			return nil, err
		}
	}
	if bundle {
		pl, err := json.Marshal(stmt)
		if err != nil {
			return nil, fmt.Errorf("attest %s: %w", d, err)
		}
		already, err := s.attestBundle(ctx, d, h, uri, pl, wantPred)
		if err != nil {
			return nil, fmt.Errorf("attest %s: %w", d, err)
		}
		if already {
			s.log.Info("attestation already present (Sigstore bundle); nothing to do", "digest", d.String(), "predicateType", uri)
		} else {
			res.AlreadyAttested = false
			s.log.Info("attested image (Sigstore bundle)", "digest", d.String(), "predicateType", uri, "signer", s.id.source)
		}
	}
	return res, nil
}

// attestLegacy attaches the statement in the tag-based format, replacing
// this identity's earlier attestation of the same type, unless it
// attested the same predicate (res.AlreadyAttested stays true then).
func (s *Signer) attestLegacy(ctx context.Context, d name.Digest, h v1.Hash, uri string, stmt any, wantPred []byte, res *AttestResult) error {
	tag, _ := attachmentTag(d, attSuffix)
	existing, err := fetchAttachments(ctx, s.reg, d, attSuffix)
	if err != nil {
		return fmt.Errorf("attest %s: reading existing attestations: %w", d, err)
	}
	co := &cosign.CheckOpts{SigVerifier: s.id.sv, IgnoreTlog: true, IgnoreSCT: true}
	for _, att := range existing.sigs {
		if _, err := cosign.VerifyBlobAttestation(ctx, att, h, co); err != nil {
			continue
		}
		p, _ := att.Payload()
		st, err := parseStatement(p)
		if err != nil || st.PredicateType != uri || !st.covers(h) {
			continue
		}
		if jsonEqual(st.Predicate, wantPred) {
			s.log.Info("attestation already present; nothing to do", "digest", d.String(), "predicateType", uri)
			return nil
		}
	}

	pl, err := json.Marshal(stmt)
	if err != nil {
		return fmt.Errorf("attest %s: %w", d, err)
	}
	envelope, err := dsse.WrapSigner(s.id.sv, ctypes.IntotoPayloadType).SignMessage(bytes.NewReader(pl), sigopts.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("attest %s: signing with %s: %w", d, s.id.source, err)
	}
	opts := []static.Option{
		static.WithLayerMediaType(ctypes.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": uri}),
	}
	if s.id.cert != nil {
		opts = append(opts, static.WithCertChain(s.id.cert, s.id.chain))
	}
	if s.tl != nil {
		b, err := s.tl.uploadDSSE(ctx, envelope, s.pubOrCert())
		if err != nil {
			return fmt.Errorf("attest %s: transparency log: %w", d, err)
		}
		opts = append(opts, static.WithBundle(b))
		res.TransparencyLog = true
	}
	att, err := static.NewAttestation(envelope, opts...)
	if err != nil {
		return fmt.Errorf("attest %s: %w", d, err)
	}
	wopts := s.writeOpts(ctx, d)
	se := ociremote.SignedUnknown(d, wopts...)
	newSE, err := mutate.AttachAttestationToEntity(se, att,
		mutate.WithDupeDetector(cremote.NewDupeDetector(s.id.sv)),
		mutate.WithReplaceOp(&replaceOwn{ctx: ctx, uri: uri, h: h, co: co}))
	if err != nil {
		return fmt.Errorf("attest %s: %w", d, err)
	}
	if err := ociremote.WriteAttestations(d.Repository, newSE, wopts...); err != nil {
		return fmt.Errorf("attest %s: writing attestation to %s: %w", d, tag, err)
	}
	res.AlreadyAttested = false
	s.log.Info("attested image", "digest", d.String(), "predicateType", uri, "signer", s.id.source)
	return nil
}

// pubOrCert is what a transparency log entry names as the signer.
func (s *Signer) pubOrCert() []byte {
	if s.id.cert != nil {
		return s.id.cert
	}
	pub, err := s.id.sv.PublicKey()
	if err != nil {
		return nil
	}
	b, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	return b
}

// statementPredicate is the predicate of a statement cosign generated, as
// it will be stored.
func statementPredicate(stmt any) ([]byte, error) {
	b, err := json.Marshal(stmt)
	if err != nil {
		return nil, err
	}
	var st struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return st.Predicate, nil
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
