package builder

import (
	"bytes"
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// Annotations BuildKit puts on attestation manifests in an index.
const (
	refTypeAnnotation   = "vnd.docker.reference.type"
	refDigestAnnotation = "vnd.docker.reference.digest"
	attestationManifest = "attestation-manifest"
)

// readBack fetches what was pushed, by digest, from the registry: it proves
// the digest resolves there (go-containerregistry checks the content hash
// of every manifest it reads by digest), and fills in per-platform digests,
// sizes and the provenance manifest from the verified index.
//
// It reads through one Puller, so every request shares one connection and
// one handshake, and with the registry's scheme and auth known from the
// configuration (oci.Client.ReadOptions: a registry.insecure host, or no
// credentials) without go-containerregistry's /v2/ ping: a pushed index is
// two round trips, its manifest then the platforms' manifests at once.
func (b *Builder) readBack(ctx context.Context, res *Result) error {
	ref, err := b.opts.Registry.ParseDigest(res.Ref)
	if err != nil {
		return fmt.Errorf("build pushed %s, but it is not a valid digest reference: %w", res.Ref, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("build pushed %s, but reading it back from the registry failed: %w", res.Ref, err)
	}
	puller, err := remote.NewPuller(b.opts.Registry.ReadOptions(ctx, ref.Context().Registry)...)
	if err != nil {
		return fail(err)
	}
	desc, err := puller.Get(ctx, ref)
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
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return fail(err)
	}
	attest := map[string]string{} // image digest → attestation manifest digest
	var images []v1.Descriptor
	for _, m := range im.Manifests {
		if m.Annotations[refTypeAnnotation] == attestationManifest {
			attest[m.Annotations[refDigestAnnotation]] = m.Digest.String()
		} else {
			images = append(images, m)
		}
	}
	// The manifests alone give the sizes; the platforms are in the index,
	// so no config blob need be fetched. All platforms at once.
	sizes := make([]int64, len(images))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, m := range images {
		g.Go(func() error {
			md, err := puller.Get(gctx, ref.Context().Digest(m.Digest.String()))
			if err != nil {
				return err
			}
			mf, err := v1.ParseManifest(bytes.NewReader(md.Manifest))
			if err != nil {
				return err
			}
			sizes[i] = manifestSize(mf)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err)
	}
	for i, m := range images {
		platform := ""
		if m.Platform != nil {
			platform = m.Platform.String()
		}
		res.Size += sizes[i]
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
