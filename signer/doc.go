// Package signer signs container images and attaches in-toto attestations
// with cosign (as a library, in cosign's tag-based .sig/.att layout, so the
// cosign CLI interoperates both ways), and verifies images against a
// Policy of trusted identities for `gantry verify` and admission.
//
// Verification reads only the registry when only keys are configured: one
// fetch of the signature manifest (and its layers) per image, checked
// locally against every key. See docs/signer.md.
package signer
