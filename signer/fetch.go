package signer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// Limits on what is read from a registry: signature manifests come from
// whoever can push to the repository, so every size is bounded.
const (
	maxManifestSize     = 4 << 20  // one signature or attestation manifest
	maxLayers           = 64       // signatures or attestations per image
	maxSignaturePayload = 64 << 10 // a simple-signing payload is ~300 bytes
	maxAttestationSize  = 16 << 20 // a DSSE envelope with an SBOM inside
	maxTotalBlobBytes   = 64 << 20 // everything fetched for one image
	blobFetchWorkers    = 4
)

// Cosign's tag-based layout: signatures of sha256:abc… live at tag
// sha256-abc….sig in the same repository, attestations at ….att.
const (
	sigSuffix = "sig"
	attSuffix = "att"
)

// attachmentTag is the tag cosign stores attachments of digest d under.
// COSIGN_REPOSITORY is deliberately not honoured: where signatures are
// read from is decided by the reference alone, not by the environment.
func attachmentTag(d name.Digest, suffix string) (name.Tag, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return name.Tag{}, err
	}
	return d.Context().Tag(h.Algorithm + "-" + h.Hex + "." + suffix), nil
}

// layerRef is one layer of a signature manifest, as declared.
type layerRef struct {
	Digest      v1.Hash
	Size        int64
	MediaType   types.MediaType
	Annotations map[string]string
}

// errCorrupt marks registry content that is not a valid cosign manifest.
var errCorrupt = errors.New("corrupt signature manifest")

// parseAttachmentManifest parses a cosign signature or attestation
// manifest, checking the bounds that make fetching its layers safe. Its
// input is untrusted registry content.
func parseAttachmentManifest(raw []byte, maxBlob int64) ([]layerRef, error) {
	if len(raw) > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest is %d bytes (limit %d)", errCorrupt, len(raw), maxManifestSize)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion %d, want 2", errCorrupt, m.SchemaVersion)
	}
	if m.MediaType != "" && !m.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: media type %q is not an image manifest", errCorrupt, m.MediaType)
	}
	if len(m.Layers) > maxLayers {
		return nil, fmt.Errorf("%w: %d layers (limit %d)", errCorrupt, len(m.Layers), maxLayers)
	}
	out := make([]layerRef, 0, len(m.Layers))
	var total int64
	for i, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
			return nil, fmt.Errorf("%w: layer %d: digest %q is not sha256", errCorrupt, i, l.Digest)
		}
		if _, err := hex.DecodeString(l.Digest.Hex); err != nil {
			return nil, fmt.Errorf("%w: layer %d: digest %q is not hex", errCorrupt, i, l.Digest)
		}
		if l.Size < 0 || l.Size > maxBlob {
			return nil, fmt.Errorf("%w: layer %d: size %d outside 0..%d", errCorrupt, i, l.Size, maxBlob)
		}
		total += l.Size
		if total > maxTotalBlobBytes {
			return nil, fmt.Errorf("%w: layers total more than %d bytes", errCorrupt, maxTotalBlobBytes)
		}
		out = append(out, layerRef{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, Annotations: l.Annotations})
	}
	return out, nil
}

// toSignature builds cosign's in-memory signature from a fetched layer. It
// validates the annotations it will rely on; the cryptography is cosign's.
func toSignature(l layerRef, payload []byte, attestation bool) (oci.Signature, error) {
	var opts []static.Option
	if cert := l.Annotations[static.CertificateAnnotationKey]; cert != "" {
		opts = append(opts, static.WithCertChain([]byte(cert), []byte(l.Annotations[static.ChainAnnotationKey])))
	}
	if b := l.Annotations[static.BundleAnnotationKey]; b != "" {
		var rb bundle.RekorBundle
		if err := json.Unmarshal([]byte(b), &rb); err != nil {
			return nil, fmt.Errorf("%w: layer %s: bundle annotation: %v", errCorrupt, l.Digest, err)
		}
		opts = append(opts, static.WithBundle(&rb))
	}
	if ts := l.Annotations[static.RFC3161TimestampAnnotationKey]; ts != "" {
		var t bundle.RFC3161Timestamp
		if err := json.Unmarshal([]byte(ts), &t); err != nil {
			return nil, fmt.Errorf("%w: layer %s: timestamp annotation: %v", errCorrupt, l.Digest, err)
		}
		opts = append(opts, static.WithRFC3161Timestamp(&t))
	}
	if attestation {
		opts = append(opts, static.WithLayerMediaType(ctypes.DssePayloadType))
		return static.NewAttestation(payload, opts...)
	}
	b64 := l.Annotations[static.SignatureAnnotationKey]
	if b64 == "" {
		return nil, fmt.Errorf("%w: layer %s has no %s annotation", errCorrupt, l.Digest, static.SignatureAnnotationKey)
	}
	if _, err := base64.StdEncoding.DecodeString(b64); err != nil {
		return nil, fmt.Errorf("%w: layer %s: signature annotation is not base64", errCorrupt, l.Digest)
	}
	return static.NewSignature(payload, b64, opts...)
}

// fetched is the outcome of reading one attachment tag.
type fetched struct {
	tag    name.Tag
	sigs   []oci.Signature
	absent bool // the tag does not exist
}

// registryError is a failure to talk to the registry (as opposed to
// content that is wrong): network, timeout, auth, 5xx.
type registryError struct {
	what string
	err  error
}

func (e *registryError) Error() string { return e.what + ": " + e.err.Error() }
func (e *registryError) Unwrap() error { return e.err }

// fetchAttachments reads the manifest at the attachment tag of d and all
// its layers: one manifest request plus one request per layer, whatever the
// number of keys the caller will check them against.
func fetchAttachments(ctx context.Context, reg *goci.Client, d name.Digest, suffix string) (*fetched, error) {
	return fetchAttachmentsWith(ctx, reg, nil, d, suffix)
}

// fetchAttachmentsWith is fetchAttachments through a shared puller (nil:
// a fresh one for this call).
func fetchAttachmentsWith(ctx context.Context, reg *goci.Client, pl *pullers, d name.Digest, suffix string) (*fetched, error) {
	tag, err := attachmentTag(d, suffix)
	if err != nil {
		return nil, err
	}
	out := &fetched{tag: tag}
	ctx, cancel := context.WithTimeout(ctx, reg.Timeout())
	defer cancel()
	if pl == nil {
		pl = newPullers(reg)
	}
	p, err := pl.get(d.Context())
	if err != nil {
		return nil, err
	}
	desc, err := p.Get(ctx, tag)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			out.absent = true
			return out, nil
		}
		return nil, &registryError{what: "reading " + tag.String(), err: err}
	}
	maxBlob := int64(maxSignaturePayload)
	if suffix == attSuffix {
		maxBlob = maxAttestationSize
	}
	layers, err := parseAttachmentManifest(desc.Manifest, maxBlob)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	payloads := make([][]byte, len(layers))
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, blobFetchWorkers)
	for i, l := range layers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			payloads[i], errs[i] = fetchBlob(ctx, p, d.Context(), l)
		}()
	}
	wg.Wait()
	for i, l := range layers {
		if errs[i] != nil {
			return nil, errs[i]
		}
		s, err := toSignature(l, payloads[i], suffix == attSuffix)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		out.sigs = append(out.sigs, s)
	}
	return out, nil
}

// fetchBlob reads one layer, bounded by its declared size, and checks its
// digest.
func fetchBlob(ctx context.Context, p *remote.Puller, repo name.Repository, l layerRef) ([]byte, error) {
	layer, err := p.Layer(ctx, repo.Digest(l.Digest.String()))
	if err != nil {
		return nil, &registryError{what: "reading layer " + l.Digest.String(), err: err}
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, classifyBlobErr(l, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, classifyBlobErr(l, err)
	}
	if int64(len(b)) != l.Size {
		return nil, fmt.Errorf("%w: layer %s is %d bytes, manifest says %d", errCorrupt, l.Digest, len(b), l.Size)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != l.Digest.Hex {
		return nil, fmt.Errorf("%w: layer %s content does not match its digest", errCorrupt, l.Digest)
	}
	return b, nil
}

func classifyBlobErr(l layerRef, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: layer %s is missing from the registry", errCorrupt, l.Digest)
		}
		return &registryError{what: "reading layer " + l.Digest.String(), err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return &registryError{what: "reading layer " + l.Digest.String(), err: err}
	}
	// What is left is the content failing go-containerregistry's own
	// digest or size check: the registry served bytes that are not the
	// layer the manifest names.
	return fmt.Errorf("%w: layer %s: %v", errCorrupt, l.Digest, err)
}
