package online

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/signer"
)

// ErrRegistry wraps a registry failure the signer reported: not a verdict
// on the image, so it is never cached.
var ErrRegistry = errors.New("registry unreachable")

// signerVerifier adapts the signer package's verifier to
// verification.Verifier.
type signerVerifier struct{ v *signer.Verifier }

// PolicyVersion is the verify policy's content hash.
func (s signerVerifier) PolicyVersion() string { return s.v.Policy().Version() }

// Verify maps the signer's result onto this package's.
func (s signerVerifier) Verify(ctx context.Context, ref name.Digest) (verification.Result, error) {
	r, err := s.v.Verify(ctx, ref)
	if err != nil {
		return verification.Result{}, err
	}
	if !r.Cacheable() {
		if ctx.Err() != nil {
			return verification.Result{}, fmt.Errorf("%w: %w", ErrRegistry, ctx.Err())
		}
		return verification.Result{}, fmt.Errorf("%w: %s", ErrRegistry, r.Message)
	}
	out := verification.Result{Verified: r.Verified, Matched: r.Matched, Message: r.Message}
	switch r.Reason {
	case "":
	case signer.NoSignature:
		out.Reason = verification.ReasonNoSignature
	case signer.UntrustedKey, signer.KeyExpired, signer.ThresholdNotMet:
		out.Reason = verification.ReasonUntrusted
	case signer.DigestMismatch, signer.CorruptSignature:
		out.Reason = verification.ReasonInvalid
	default:
		out.Reason = verification.Reason(r.Reason)
	}
	return out, nil
}
