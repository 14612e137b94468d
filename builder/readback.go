package builder

import (
	"bytes"
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Annotations BuildKit puts on attestation manifests in an index.
const (
	refTypeAnnotation   = "vnd.docker.reference.type"
	refDigestAnnotation = "vnd.docker.reference.digest"
	attestationManifest = "attestation-manifest"
)

// readBack fetches what was pushed, by digest, from the registry: it proves
// the digest resolves there (go-containerregistry checks the content hash),
// and fills in per-platform digests, sizes and the provenance manifest.
func (b *Builder) readBack(ctx context.Context, res *Result) error {
	ref, err := b.opts.Registry.ParseDigest(res.Ref)
	if err != nil {
		return fmt.Errorf("build pushed %s, but it is not a valid digest reference: %w", res.Ref, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("build pushed %s, but reading it back from the registry failed: %w", res.Ref, err)
	}
	desc, err := remote.Get(ref, b.opts.Registry.RemoteOptions(ctx)...)
	if err != nil {
		return fail(err)
	}
	res.MediaType = string(desc.MediaType)
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return fail(err)
		}
		size, platform, err := imageSize(img)
		if err != nil {
			return fail(err)
		}
		res.Size = size
		res.Images = []PlatformImage{{Platform: platform, Digest: res.Digest}}
		return nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return fail(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fail(err)
	}
	attest := map[string]string{} // image digest → attestation manifest digest
	for _, m := range im.Manifests {
		if m.Annotations[refTypeAnnotation] == attestationManifest {
			attest[m.Annotations[refDigestAnnotation]] = m.Digest.String()
		}
	}
	for _, m := range im.Manifests {
		if m.Annotations[refTypeAnnotation] == attestationManifest {
			continue
		}
		// The manifest alone gives the size; the platform is in the index,
		// so the config blob need not be fetched.
		md, err := remote.Get(ref.Context().Digest(m.Digest.String()), b.opts.Registry.RemoteOptions(ctx)...)
		if err != nil {
			return fail(err)
		}
		mf, err := v1.ParseManifest(bytes.NewReader(md.Manifest))
		if err != nil {
			return fail(err)
		}
		platform := ""
		if m.Platform != nil {
			platform = m.Platform.String()
		}
		res.Size += manifestSize(mf)
		res.Images = append(res.Images, PlatformImage{Platform: platform, Digest: m.Digest.String(), ProvenanceDigest: attest[m.Digest.String()]})
	}
	if len(res.Images) > 0 {
		res.ProvenanceDigest = res.Images[0].ProvenanceDigest
	}
	return nil
}

// imageSize is the compressed size of an image: config plus layers.
func imageSize(img v1.Image) (int64, string, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, "", err
	}
	size := manifestSize(m)
	cf, err := img.ConfigFile()
	if err != nil {
		return 0, "", err
	}
	p := cf.Platform()
	platform := ""
	if p != nil {
		platform = p.String()
	}
	return size, platform, nil
}

// manifestSize is the compressed size of an image manifest's config and
// layers.
func manifestSize(m *v1.Manifest) int64 {
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size
}
