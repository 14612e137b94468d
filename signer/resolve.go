package signer

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// ResolveDigest turns an image reference into a digest reference: a
// digest is returned as is (no request); a tag is resolved with one HEAD
// request. Signatures are always about digests: a tag can move.
func ResolveDigest(ctx context.Context, reg *goci.Client, ref string) (name.Digest, bool, error) {
	r, err := reg.ParseReference(ref)
	if err != nil {
		return name.Digest{}, false, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if d, ok := r.(name.Digest); ok {
		return d, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reg.Timeout())
	defer cancel()
	desc, err := remote.Head(r, reg.RemoteOptions(ctx)...)
	if err != nil {
		return name.Digest{}, false, fmt.Errorf("resolving tag %s to a digest: %w", r, err)
	}
	d, err := reg.ParseDigest(r.Context().String() + "@" + desc.Digest.String())
	if err != nil {
		return name.Digest{}, false, err
	}
	return d, true, nil
}
