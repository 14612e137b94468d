package signer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// FailureReason says why an image is not verified. The values are stable
// (admission logs, metrics and `gantry verify --output json` carry them).
type FailureReason string

// Reasons, most specific first.
const (
	// NoSignature: nothing is stored at the image's signature tag.
	NoSignature FailureReason = "NoSignature"
	// UntrustedKey: signatures exist, none by a trusted identity.
	UntrustedKey FailureReason = "UntrustedKey"
	// DigestMismatch: a trusted identity signed, but for another digest
	// (a signature copied from another image).
	DigestMismatch FailureReason = "DigestMismatch"
	// KeyExpired: only identities outside their validity window signed.
	KeyExpired FailureReason = "KeyExpired"
	// ThresholdNotMet: fewer trusted identities signed than the policy's
	// threshold.
	ThresholdNotMet FailureReason = "ThresholdNotMet"
	// CorruptSignature: the signature manifest or its layers are not
	// valid cosign content.
	CorruptSignature FailureReason = "CorruptSignature"
	// AttestationMissing: a required attestation, signed by a trusted
	// identity, is absent.
	AttestationMissing FailureReason = "AttestationMissing"
	// AttestationRejected: a required attestation is present and signed,
	// but its predicate does not meet the policy.
	AttestationRejected FailureReason = "AttestationRejected"
	// RegistryUnreachable: the registry could not be read (network,
	// timeout, credentials, 5xx). Returned as a Result, not an error, so
	// that callers deny with a message, but it is not a verdict on the
	// image: Result.Cacheable is false for it.
	RegistryUnreachable FailureReason = "RegistryUnreachable"
)

// Result is the outcome of verifying one image.
type Result struct {
	// Verified is true when the threshold is met and every attestation
	// requirement holds.
	Verified bool `json:"verified"`
	// Digest is the image verified (repo@sha256:…).
	Digest string `json:"digest"`
	// Matched names the identities whose signature verified (sorted).
	Matched []string `json:"matched"`
	// Reason is empty when Verified.
	Reason FailureReason `json:"reason,omitempty"`
	// Message says what was found and what to do, for people and for
	// admission deny messages.
	Message string `json:"message"`
	// PolicyVersion is the Version of the policy used.
	PolicyVersion string `json:"policyVersion"`
}

// Cacheable says whether the result is a verdict on the image under this
// policy version (safe to cache by digest + policy version), rather than
// a transient failure to read the registry.
func (r *Result) Cacheable() bool { return r.Reason != RegistryUnreachable }

// Verifier checks images against a Policy.
type Verifier struct {
	policy *Policy
	reg    *goci.Client
	pull   *pullers
	now    func() time.Time
	// bundles[i] verifies Sigstore bundles for policy.keys[i] (nil: not
	// accepted for that identity).
	bundles []*bundleVerifier

	// tagSigned holds the repositories whose last verification met the
	// threshold with tag-based signatures alone (at most maxTagSigned,
	// then forgotten): their next images are read the same way, the
	// referrers listed only when the tags fall short. Elsewhere the
	// listing goes out beside the tag read, so that an image signed only
	// with bundles (cosign v3) does not wait for the tag's 404 first.
	mu        sync.Mutex
	tagSigned map[string]bool
}

const maxTagSigned = 1024

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// WithClock sets the clock that validity windows are checked against.
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) { v.now = now }
}

// NewVerifier returns a verifier for p that reads signatures through reg.
// It is safe for concurrent use.
func NewVerifier(p *Policy, reg *goci.Client, opts ...VerifierOption) (*Verifier, error) {
	if p == nil || p.version == "" {
		return nil, errors.New("signer: NewVerifier needs a policy from LoadPolicy or ParsePolicy")
	}
	if reg == nil {
		return nil, errors.New("signer: NewVerifier needs a registry client")
	}
	v := &Verifier{policy: p, reg: reg, pull: newPullers(reg), now: time.Now, tagSigned: map[string]bool{}}
	for _, o := range opts {
		o(v)
	}
	for _, k := range p.keys {
		bv, err := newBundleVerifier(k, p.trust)
		if err != nil {
			return nil, fmt.Errorf("signer: %w", err)
		}
		v.bundles = append(v.bundles, bv)
	}
	return v, nil
}

// Policy returns the policy the verifier enforces.
func (v *Verifier) Policy() *Policy { return v.policy }

// Verify checks the image at ref. A policy "no" is a Result with Verified
// false and an error of nil; an error is returned only for malfunctions
// (ctx canceled, an invalid reference). A registry that cannot be reached
// is a Result with Reason RegistryUnreachable (see Result.Cacheable).
//
// When only keys are configured, the registry is the only network peer.
// Signatures are read in both formats (see docs/signer.md): the tag-based
// one, one manifest request for the signature tag plus one per signature
// layer; and the Sigstore bundles that refer to the image, only when the
// tags do not meet the threshold: one request to the referrers API (none
// once the registry is known to have no such API), one for the referrers
// tag when it has none, and two per signature bundle. The referrers are
// listed beside the tag read unless the repository's last image verified
// with tags alone. The same again for attestations when the policy
// requires some, the referrers list being read at most once.
func (v *Verifier) Verify(ctx context.Context, ref name.Digest) (*Result, error) {
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("signer: %s: %w", ref, err)
	}
	res := &Result{Digest: ref.String(), PolicyVersion: v.policy.version, Matched: []string{}}
	bs := newBundleSource(v.reg, v.pull, ref)
	if v.acceptsBundles() && !v.lastTagSigned(ref.Context()) {
		bs.prefetch(ctx)
	}
	f, err := fetchAttachmentsWith(ctx, v.reg, v.pull, ref, sigSuffix)
	if r, err := v.fetchFailure(ctx, res, f, err, "signatures"); r != nil || err != nil {
		return r, err
	}

	now := v.now()
	outcomes := make([]outcome, len(v.policy.keys))
	claims := make([]string, len(v.policy.keys))
	for i, k := range v.policy.keys {
		outcomes[i], claims[i] = v.checkIdentity(ctx, k, f.sigs, h)
	}
	found := len(f.sigs)
	tagsEnough := v.thresholdMet(outcomes, now)
	v.noteTagSigned(ref.Context(), tagsEnough)
	if !tagsEnough {
		bundles, err := bs.signatures(ctx)
		if r, err := v.fetchFailure(ctx, res, nil, err, "Sigstore bundles"); r != nil || err != nil {
			return r, err
		}
		found += len(bundles)
		for i := range v.policy.keys {
			if outcomes[i] == outcomeVerified || v.bundles[i] == nil {
				continue
			}
			if o, c := v.checkIdentityBundles(v.bundles[i], bundles, h); o > outcomes[i] {
				outcomes[i], claims[i] = o, c
			}
		}
	}
	if found == 0 {
		res.Reason = NoSignature
		res.Message = fmt.Sprintf("no signature found (looked for the tag %s and for Sigstore bundles referring to %s, %s on registries without the referrers API): sign it with `gantry sign %s` or `cosign sign`, or deploy a digest that was signed",
			f.tag.TagStr(), ref.DigestStr(), referrersTag(ref), ref)
		return res, nil
	}

	var expired, mismatched []string
	var mismatchClaim string
	for i, k := range v.policy.keys {
		switch outcomes[i] {
		case outcomeVerified:
			if k.activeAt(now) {
				res.Matched = append(res.Matched, k.name)
			} else {
				expired = append(expired, k.name+" ("+windowString(k)+")")
			}
		case outcomeWrongDigest:
			mismatched = append(mismatched, k.name)
			mismatchClaim = claims[i]
		}
	}
	slices.Sort(res.Matched)
	need := v.policy.EffectiveThreshold()
	if len(res.Matched) < need {
		switch {
		case len(res.Matched) > 0:
			res.Reason = ThresholdNotMet
			res.Message = fmt.Sprintf("signed by %d of the %d trusted identities required (%s); also needs a signature by %s",
				len(res.Matched), need, strings.Join(res.Matched, ", "), strings.Join(v.unmatched(res.Matched), " or "))
		case len(expired) > 0:
			res.Reason = KeyExpired
			res.Message = fmt.Sprintf("signed only by identities outside their validity window at %s: %s; re-sign %s with a current key",
				now.UTC().Format(time.RFC3339), strings.Join(expired, ", "), ref)
		case len(mismatched) > 0:
			res.Reason = DigestMismatch
			res.Message = fmt.Sprintf("a signature by %s is for %s, not for %s: it was copied from another image (or the tag moved); sign this digest",
				strings.Join(mismatched, ", "), orUnknown(mismatchClaim), ref.DigestStr())
		default:
			res.Reason = UntrustedKey
			res.Message = fmt.Sprintf("%d signature(s) found on %s, none by a trusted identity (trusted: %s): sign it with a key the policy trusts",
				found, ref, strings.Join(v.allNames(), ", "))
		}
		return res, nil
	}
	if len(v.policy.Attestations) > 0 {
		reason, msg, r, err := v.checkAttestations(ctx, res, ref, h, now, bs)
		if r != nil || err != nil {
			return r, err
		}
		if reason != "" {
			res.Reason, res.Message = reason, msg
			return res, nil
		}
	}
	res.Verified = true
	res.Message = fmt.Sprintf("%s verified: signed by %s", ref, strings.Join(res.Matched, ", "))
	return res, nil
}

// acceptsBundles says whether any identity may sign with a bundle.
func (v *Verifier) acceptsBundles() bool {
	return slices.ContainsFunc(v.bundles, func(b *bundleVerifier) bool { return b != nil })
}

func (v *Verifier) lastTagSigned(repo name.Repository) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tagSigned[repo.String()]
}

func (v *Verifier) noteTagSigned(repo name.Repository, tagSigned bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !tagSigned {
		delete(v.tagSigned, repo.String())
		return
	}
	if len(v.tagSigned) >= maxTagSigned {
		clear(v.tagSigned)
	}
	v.tagSigned[repo.String()] = true
}

// fetchFailure turns a fetch error into a result or an error.
func (v *Verifier) fetchFailure(ctx context.Context, res *Result, f *fetched, err error, what string) (*Result, error) {
	if err == nil {
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("signer: verifying %s: %w", res.Digest, ctx.Err())
	}
	var re *registryError
	switch {
	case errors.As(err, &re):
		res.Reason = RegistryUnreachable
		res.Message = fmt.Sprintf("cannot read %s of %s from the registry: %v; check that the registry is up and reachable, and the credentials in registry.authDir", what, res.Digest, re.err)
		return res, nil
	case errors.Is(err, errCorrupt):
		res.Reason = CorruptSignature
		res.Message = fmt.Sprintf("the %s stored for %s are not valid cosign content (%v): delete the tag and sign again", what, res.Digest, err)
		return res, nil
	}
	return nil, fmt.Errorf("signer: verifying %s: %w", res.Digest, err)
}

type outcome int

const (
	outcomeNone        outcome = iota // no signature by this identity
	outcomeWrongDigest                // signed by it, for another digest
	outcomeVerified
)

// checkIdentity looks for a signature of h by identity k among sigs.
func (v *Verifier) checkIdentity(ctx context.Context, k *trustedKey, sigs []oci.Signature, h v1.Hash) (outcome, string) {
	co := v.checkOpts(k)
	if co == nil {
		return outcomeNone, ""
	}
	best, claim := outcomeNone, ""
	for _, s := range sigs {
		if k.keyless != nil {
			if c, err := s.Cert(); err != nil || c == nil {
				continue
			}
		}
		if _, err := cosign.VerifyImageSignature(ctx, s, h, co); err != nil {
			continue
		}
		got, err := signedDigest(s)
		if err == nil && got == h.String() {
			return outcomeVerified, ""
		}
		best, claim = outcomeWrongDigest, got
	}
	return best, claim
}

// thresholdMet says whether enough identities, active at now, verified.
func (v *Verifier) thresholdMet(outcomes []outcome, now time.Time) bool {
	n := 0
	for i, k := range v.policy.keys {
		if outcomes[i] == outcomeVerified && k.activeAt(now) {
			n++
		}
	}
	return n >= v.policy.EffectiveThreshold()
}

// checkIdentityBundles looks for a signature bundle of h by one identity.
func (v *Verifier) checkIdentityBundles(bv *bundleVerifier, bundles []*bundleEntry, h v1.Hash) (outcome, string) {
	best, claim := outcomeNone, ""
	for _, e := range bundles {
		if bv.verify(e, h) == nil && e.st.covers(h) {
			return outcomeVerified, ""
		}
		if best == outcomeNone && bv.signedByIdentity(e) {
			best, claim = outcomeWrongDigest, e.st.firstSubject()
		}
	}
	return best, claim
}

// signedDigest is the image digest a simple-signing payload claims.
func signedDigest(s oci.Signature) (string, error) {
	p, err := s.Payload()
	if err != nil {
		return "", err
	}
	var ss payload.SimpleContainerImage
	if err := json.Unmarshal(p, &ss); err != nil {
		return "", err
	}
	if ss.Critical.Type != payload.CosignSignatureType {
		return "", fmt.Errorf("payload type %q", ss.Critical.Type)
	}
	return ss.Critical.Image.DockerManifestDigest, nil
}

// checkOpts are cosign's options for one identity. Claims are checked by
// the caller, so that a digest mismatch can be told apart from a bad key.
func (v *Verifier) checkOpts(k *trustedKey) *cosign.CheckOpts {
	if k.verifier != nil {
		// Key identities: no transparency log, no network.
		return &cosign.CheckOpts{SigVerifier: k.verifier, IgnoreTlog: true, IgnoreSCT: true}
	}
	t := v.policy.trust
	if t == nil || k.keyless == nil {
		return nil
	}
	return &cosign.CheckOpts{
		RootCerts:         t.roots,
		IntermediateCerts: t.intermediates,
		Identities:        []cosign.Identity{*k.keyless},
		IgnoreSCT:         t.ctKeys == nil,
		CTLogPubKeys:      t.ctKeys,
		IgnoreTlog:        t.rekorKeys == nil,
		RekorPubKeys:      t.rekorKeys,
		Offline:           true, // Rekor bundles only; never an online lookup
	}
}

func (v *Verifier) allNames() []string {
	out := make([]string, len(v.policy.keys))
	for i, k := range v.policy.keys {
		out[i] = k.name
	}
	return out
}

func (v *Verifier) unmatched(matched []string) []string {
	var out []string
	for _, n := range v.allNames() {
		if !slices.Contains(matched, n) {
			out = append(out, n)
		}
	}
	return out
}

func windowString(k *trustedKey) string {
	var parts []string
	if k.notBefore != nil {
		parts = append(parts, "notBefore "+k.notBefore.UTC().Format(time.RFC3339))
	}
	if k.notAfter != nil {
		parts = append(parts, "notAfter "+k.notAfter.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "an unreadable digest"
	}
	return s
}

// decodeB64 is strict standard base64.
func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
