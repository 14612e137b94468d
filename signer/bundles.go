package signer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// Sigstore bundles, the format cosign v3 signs and attests in by default:
// each signature or attestation is one bundle (a DSSE envelope around an
// in-toto statement about the image digest, plus the key hint or Fulcio
// certificate), stored as an OCI 1.1 referrer of the image: a manifest
// whose subject is the image, artifactType the bundle media type, and one
// layer, the bundle JSON. Registries with the referrers API list them at
// /v2/<repo>/referrers/<digest>; on the others (the registry of the test
// environment is one) the writer keeps the list in an image index at the
// referrers tag schema, repo:sha256-<hex>. go-containerregistry reads and
// writes both; Gantry uses its Referrers and cosign's writer, and parses
// and verifies bundles with sigstore-go.
const (
	// bundleMediaType is what cosign v3 writes (bundle v0.3).
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// bundleMediaPrefix matches every bundle media type spelling.
	bundleMediaPrefix = "application/vnd.dev.sigstore.bundle"
	// SignPredicateType is the predicate of the statement cosign v3 (and
	// Gantry in bundle format) signs to sign an image: a statement with
	// the image digest as subject and an empty predicate.
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// annPredicateType is the referrer annotation cosign sets to the
	// statement's predicate type. It is unsigned: used only to skip
	// fetching bundles of the wrong kind, never to trust one.
	annPredicateType = "dev.sigstore.bundle.predicateType"
	// emptyArtifactType is the artifactType cosign v2.6's writer leaves
	// in the referrers list (its empty config's media type): such a
	// referrer may be a bundle, which only its manifest tells.
	emptyArtifactType = "application/vnd.oci.empty.v1+json"
	// maxBundles bounds the bundle referrers read per image.
	maxBundles = maxLayers
)

// bundleEntry is one bundle read from the registry.
type bundleEntry struct {
	manifest v1.Hash // the referrer manifest that holds it
	b        *sgbundle.Bundle
	// st is the statement in the bundle's DSSE envelope, parsed but not
	// yet trusted: a verifier must accept b first.
	st *statement
}

// bundleSource reads the bundle referrers of one image, once: the
// referrers list is fetched on first use, and each bundle at most once,
// whether signatures or attestations asked for it.
type bundleSource struct {
	reg *goci.Client
	pl  *pullers
	d   name.Digest

	listed  bool
	pending chan struct{}   // closed when a prefetched listing has ended
	listErr error           // its error
	descs   []v1.Descriptor // bundle referrers, in listing order
	fetched map[v1.Hash]*bundleEntry
	skipped map[v1.Hash]bool // fetched, not a DSSE bundle: ignored
	total   int64            // bundle bytes fetched
}

func newBundleSource(reg *goci.Client, pl *pullers, d name.Digest) *bundleSource {
	return &bundleSource{reg: reg, pl: pl, d: d, fetched: map[v1.Hash]*bundleEntry{}, skipped: map[v1.Hash]bool{}}
}

// referrersTag is where registries without the referrers API keep the
// list (the OCI referrers tag schema), for messages.
func referrersTag(d name.Digest) string {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1)).String()
}

// prefetch starts listing the referrers in the background, beside other
// reads, so that an image signed only with bundles does not pay the
// listing's round trip after the signature tag's. The next list waits for
// it; until then the source must not be used otherwise.
func (s *bundleSource) prefetch(ctx context.Context) {
	if s.listed || s.pending != nil {
		return
	}
	s.pending = make(chan struct{})
	go func() {
		defer close(s.pending)
		s.listErr = s.listNow(ctx)
	}()
}

// list fetches the referrers of the image (one request to the referrers
// API and, when the registry has none, one for the referrers tag) and
// keeps the bundle ones; or waits for the prefetch.
func (s *bundleSource) list(ctx context.Context) error {
	if s.pending != nil {
		// Waits even when ctx is done: the listing runs under the same
		// ctx, so it ends soon, and it must not write while list returns.
		<-s.pending
		s.pending = nil
		if s.listErr != nil {
			return s.listErr
		}
	}
	return s.listNow(ctx)
}

func (s *bundleSource) listNow(ctx context.Context) error {
	if s.listed {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.reg.Timeout())
	defer cancel()
	p, err := s.pl.get(s.d.Context())
	if err != nil {
		return err
	}
	idx, err := remote.Referrers(s.d, remote.Reuse(p), remote.WithContext(ctx))
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			s.listed = true
			return nil
		}
		return &registryError{what: "listing the referrers of " + s.d.String(), err: err}
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return &registryError{what: "listing the referrers of " + s.d.String(), err: err}
	}
	if len(raw) > maxManifestSize {
		return fmt.Errorf("%w: the referrers list of %s is %d bytes (limit %d)", errCorrupt, s.d, len(raw), maxManifestSize)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("%w: the referrers list of %s: %v", errCorrupt, s.d, err)
	}
	for _, desc := range im.Manifests {
		if !strings.HasPrefix(desc.ArtifactType, bundleMediaPrefix) && desc.ArtifactType != emptyArtifactType {
			continue // other referrers (SBOMs pushed by other tools, …)
		}
		if len(s.descs) == maxBundles {
			return fmt.Errorf("%w: more than %d Sigstore bundles refer to %s", errCorrupt, maxBundles, s.d)
		}
		s.descs = append(s.descs, desc)
	}
	s.listed = true
	return nil
}

// signatures returns the bundles whose statement is a cosign signature
// (SignPredicateType); attestations the others. Only bundles whose
// annotation says they may be of the kind asked for are fetched; what
// they are is then decided by their (signed) content.
func (s *bundleSource) signatures(ctx context.Context) ([]*bundleEntry, error) {
	return s.kind(ctx, true)
}

func (s *bundleSource) attestations(ctx context.Context) ([]*bundleEntry, error) {
	return s.kind(ctx, false)
}

func (s *bundleSource) kind(ctx context.Context, sigs bool) ([]*bundleEntry, error) {
	if err := s.list(ctx); err != nil {
		return nil, err
	}
	var want []v1.Descriptor
	for _, desc := range s.descs {
		if _, done := s.fetched[desc.Digest]; done || s.skipped[desc.Digest] {
			continue
		}
		pt, annotated := desc.Annotations[annPredicateType]
		if annotated && (pt == SignPredicateType) != sigs {
			continue
		}
		want = append(want, desc)
	}
	if err := s.fetch(ctx, want); err != nil {
		return nil, err
	}
	var out []*bundleEntry
	for _, desc := range s.descs {
		e := s.fetched[desc.Digest]
		if e == nil || (e.st.PredicateType == SignPredicateType) != sigs {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// fetch reads the referrer manifests and their bundle layers, four at a
// time: two requests per bundle.
func (s *bundleSource) fetch(ctx context.Context, descs []v1.Descriptor) error {
	if len(descs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.reg.Timeout())
	defer cancel()
	p, err := s.pl.get(s.d.Context())
	if err != nil {
		return err
	}
	entries := make([]*bundleEntry, len(descs))
	sizes := make([]int64, len(descs))
	errs := make([]error, len(descs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, blobFetchWorkers)
	for i, desc := range descs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			entries[i], sizes[i], errs[i] = s.fetchOne(ctx, p, desc)
		}()
	}
	wg.Wait()
	for i, desc := range descs {
		if errs[i] != nil {
			return errs[i]
		}
		s.total += sizes[i]
		if s.total > maxTotalBlobBytes {
			return fmt.Errorf("%w: the Sigstore bundles of %s total more than %d bytes", errCorrupt, s.d, maxTotalBlobBytes)
		}
		if entries[i] == nil {
			s.skipped[desc.Digest] = true
			continue
		}
		s.fetched[desc.Digest] = entries[i]
	}
	return nil
}

// fetchOne reads one referrer manifest and its bundle. A bundle that is
// not a DSSE envelope (a plain message signature, which says nothing about
// what was signed), and a referrer listed with the empty artifactType that
// holds no bundle, are returned as nil: ignored, not an error.
func (s *bundleSource) fetchOne(ctx context.Context, p *remote.Puller, desc v1.Descriptor) (*bundleEntry, int64, error) {
	ref := s.d.Context().Digest(desc.Digest.String())
	if desc.Size > maxManifestSize {
		return nil, 0, fmt.Errorf("%w: bundle referrer %s is %d bytes (limit %d)", errCorrupt, desc.Digest, desc.Size, maxManifestSize)
	}
	got, err := p.Get(ctx, ref)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, 0, fmt.Errorf("%w: bundle referrer %s is listed but missing from the registry", errCorrupt, desc.Digest)
		}
		return nil, 0, &registryError{what: "reading bundle referrer " + desc.Digest.String(), err: err}
	}
	layers, err := parseAttachmentManifest(got.Manifest, maxAttestationSize)
	if err != nil {
		return nil, 0, fmt.Errorf("bundle referrer %s: %w", desc.Digest, err)
	}
	if len(layers) != 1 || !strings.HasPrefix(string(layers[0].MediaType), bundleMediaPrefix) {
		if desc.ArtifactType == emptyArtifactType {
			return nil, 0, nil // another kind of artifact: skipped
		}
		return nil, 0, fmt.Errorf("%w: bundle referrer %s must hold exactly one layer of type %s", errCorrupt, desc.Digest, bundleMediaType)
	}
	raw, err := fetchBlob(ctx, p, s.d.Context(), layers[0])
	if err != nil {
		return nil, 0, err
	}
	e, err := parseBundle(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: bundle referrer %s: %v", errCorrupt, desc.Digest, err)
	}
	if e != nil {
		e.manifest = desc.Digest
	}
	return e, int64(len(raw)), nil
}

// parseBundle decodes a Sigstore bundle (sigstore-go validates its
// structure) and the in-toto statement in its DSSE envelope. A bundle
// without an envelope is returned as nil. Its input is untrusted registry
// content.
func parseBundle(raw []byte) (*bundleEntry, error) {
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	if !b.MinVersion("v0.3") {
		return nil, fmt.Errorf("bundle media type %q: need v0.3 or later", b.GetMediaType())
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, nil
	}
	st, err := parseStatementPayload(env.GetPayloadType(), env.GetPayload())
	if err != nil {
		return nil, err
	}
	return &bundleEntry{b: &b, st: st}, nil
}

// firstSubject is the digest a statement names first, for messages.
func (s *statement) firstSubject() string {
	for _, sub := range s.Subject {
		if v, ok := sub.Digest["sha256"]; ok {
			return "sha256:" + v
		}
	}
	return ""
}
