package signer

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	rekorclient "github.com/sigstore/rekor/pkg/client"
	"github.com/sigstore/rekor/pkg/generated/client"
)

// rekor uploads entries to a Rekor transparency log.
type rekor struct {
	c       *client.Rekor
	timeout time.Duration
}

func newRekor(url string, timeout time.Duration) (*rekor, error) {
	c, err := rekorclient.GetRekorClient(url, rekorclient.WithRetryCount(2))
	if err != nil {
		return nil, err
	}
	return &rekor{c: c, timeout: timeout}, nil
}

func (r *rekor) uploadSignature(ctx context.Context, sig, payload, pubOrCert []byte) (*cbundle.RekorBundle, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	h := sha256.New()
	h.Write(payload)
	e, err := cosign.TLogUpload(ctx, r.c, sig, h, pubOrCert)
	if err != nil {
		return nil, err
	}
	return cbundle.EntryToBundle(e), nil
}

func (r *rekor) uploadDSSE(ctx context.Context, envelope, pubOrCert []byte) (*cbundle.RekorBundle, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	e, err := cosign.TLogUploadDSSEEnvelope(ctx, r.c, envelope, pubOrCert)
	if err != nil {
		return nil, err
	}
	return cbundle.EntryToBundle(e), nil
}
