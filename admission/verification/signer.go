package verification

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/signer"
)

// ErrRegistry wraps a registry failure the signer reported: not a verdict
// on the image, so it is never cached.
var ErrRegistry = errors.New("registry unreachable")

// Signer adapts the signer package's verifier.
type Signer struct{ V *signer.Verifier }

// FromSigner wraps v.
func FromSigner(v *signer.Verifier) Signer { return Signer{V: v} }

// PolicyVersion is the verify policy's content hash.
func (s Signer) PolicyVersion() string { return s.V.Policy().Version() }

// Verify maps the signer's result onto this package's.
func (s Signer) Verify(ctx context.Context, ref name.Digest) (Result, error) {
	r, err := s.V.Verify(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	if !r.Cacheable() {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrRegistry, ctx.Err())
		}
		return Result{}, fmt.Errorf("%w: %s", ErrRegistry, r.Message)
	}
	out := Result{Verified: r.Verified, Matched: r.Matched, Message: r.Message}
	switch r.Reason {
	case "":
	case signer.NoSignature:
		out.Reason = ReasonNoSignature
	case signer.UntrustedKey, signer.KeyExpired, signer.ThresholdNotMet:
		out.Reason = ReasonUntrusted
	case signer.DigestMismatch, signer.CorruptSignature:
		out.Reason = ReasonInvalid
	default:
		out.Reason = Reason(r.Reason)
	}
	return out, nil
}
