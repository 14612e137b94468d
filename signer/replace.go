package signer

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
)

// replaceOwn drops the attestations of one predicate type that this
// signer made, and keeps everything else. cosign's own ReplaceOp drops
// that type whoever signed it (a second identity's attestation would be
// lost) and prints to stderr.
type replaceOwn struct {
	ctx context.Context
	uri string
	h   v1.Hash
	co  *cosign.CheckOpts
}

var _ mutate.ReplaceOp = (*replaceOwn)(nil)

func (r *replaceOwn) Replace(existing oci.Signatures, add oci.Signature) (oci.Signatures, error) {
	sigs, err := existing.Get()
	if err != nil {
		return nil, err
	}
	keep := []oci.Signature{add}
	for _, s := range sigs {
		if r.ownSameType(s) {
			continue
		}
		keep = append(keep, s)
	}
	return &replacedSignatures{Signatures: existing, sigs: keep}, nil
}

func (r *replaceOwn) ownSameType(s oci.Signature) bool {
	p, err := s.Payload()
	if err != nil {
		return false
	}
	st, err := parseStatement(p)
	if err != nil || st.PredicateType != r.uri {
		return false
	}
	_, err = cosign.VerifyBlobAttestation(r.ctx, s, r.h, r.co)
	return err == nil
}

type replacedSignatures struct {
	oci.Signatures
	sigs []oci.Signature
}

func (r *replacedSignatures) Get() ([]oci.Signature, error) { return r.sigs, nil }
