package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gantry-dev/gantry/internal/files"
)

// MaxPolicySize bounds a policy file: a policy is a few kilobytes.
const MaxPolicySize = 1 << 20

// Policy says which signatures make an image trusted: a list of identities
// (public keys or keyless Fulcio identities), how many of them must have
// signed (threshold), and which signed attestations must be present.
//
// The YAML form (unknown keys are errors; relative paths are resolved
// against the policy file's directory):
//
//	identities:
//	  - name: release-2025
//	    key: keys/release-2025.pub          # PEM public key file
//	    notAfter: 2026-01-31T00:00:00Z     # optional validity window
//	  - name: ci
//	    keyless:
//	      issuer: https://token.actions.githubusercontent.com
//	      subjectRegExp: ^https://github\.com/acme/fn/
//	threshold: 1
//	trustedRoot:                            # only for keyless identities
//	  fulcioCerts: [fulcio-root.pem]
//	  rekorPublicKeys: [rekor.pub]
//	attestations:
//	  - type: slsaprovenance1
//	    repo: https://github.com/acme/fn
//	    branch: main
//	  - type: vuln
//	    denySeverities: [CRITICAL]
type Policy struct {
	// Identities are the trusted signers. Names must be unique.
	Identities []Identity `yaml:"identities"`
	// Threshold is how many distinct identities must have signed the
	// image (N of M). Zero means 1.
	Threshold int `yaml:"threshold"`
	// TrustedRoot holds the certificate authorities and log keys that
	// keyless identities are checked against, as local files (no TUF).
	TrustedRoot *TrustedRoot `yaml:"trustedRoot,omitempty"`
	// Attestations are requirements on signed in-toto predicates; each
	// must be met by an attestation signed by one of the identities.
	Attestations []AttestationRequirement `yaml:"attestations,omitempty"`

	dir     string // base for relative paths
	version string
	keys    []*trustedKey // one per identity, same order as Identities
	trust   *keylessTrust // nil unless a keyless identity is configured
}

// Identity is one trusted signer: exactly one of Key, KeyRef or Keyless.
type Identity struct {
	// Name appears in results and messages ("signed by release-2025").
	Name string `yaml:"name"`
	// Key is a PEM public key file (ECDSA, RSA or Ed25519).
	Key string `yaml:"key,omitempty"`
	// KeyRef is a key reference cosign understands: k8s://namespace/secret
	// (the Secret's cosign.pub) or a KMS URI when its provider is linked.
	KeyRef string `yaml:"keyRef,omitempty"`
	// Keyless is a Fulcio certificate identity.
	Keyless *KeylessIdentity `yaml:"keyless,omitempty"`
	// NotBefore and NotAfter bound when this identity is trusted (checked
	// against the verification time), so that a key rotation can overlap
	// the old and the new key and then retire the old one.
	NotBefore *time.Time `yaml:"notBefore,omitempty"`
	NotAfter  *time.Time `yaml:"notAfter,omitempty"`
}

// KeylessIdentity matches the OIDC issuer and subject (SAN) that Fulcio
// wrote into the signing certificate.
type KeylessIdentity struct {
	Issuer        string `yaml:"issuer,omitempty"`
	IssuerRegExp  string `yaml:"issuerRegExp,omitempty"`
	Subject       string `yaml:"subject,omitempty"`
	SubjectRegExp string `yaml:"subjectRegExp,omitempty"`
}

// TrustedRoot is the keyless trust material, as files.
type TrustedRoot struct {
	// FulcioCerts are PEM files with the Fulcio root and intermediate CA
	// certificates.
	FulcioCerts []string `yaml:"fulcioCerts"`
	// RekorPublicKeys are PEM files with transparency log keys. When set,
	// a keyless signature must carry a Rekor bundle signed by one of them;
	// its integrated time is when the short-lived certificate is checked.
	RekorPublicKeys []string `yaml:"rekorPublicKeys,omitempty"`
	// CTLogPublicKeys are PEM files with certificate transparency log keys.
	// When set, certificates must carry an SCT signed by one of them.
	CTLogPublicKeys []string `yaml:"ctLogPublicKeys,omitempty"`
}

// AttestationRequirement is one condition on a signed attestation.
type AttestationRequirement struct {
	// Type is the predicate: slsaprovenance1, vuln, cyclonedx, or a full
	// predicate type URI (presence only).
	Type string `yaml:"type"`
	// Repo and Branch (slsaprovenance1): the provenance must name this
	// source repository and branch.
	Repo   string `yaml:"repo,omitempty"`
	Branch string `yaml:"branch,omitempty"`
	// DenySeverities (vuln): the scan result must list no vulnerability
	// of these severities (ignored findings are not in the result).
	DenySeverities []string `yaml:"denySeverities,omitempty"`
}

// LoadPolicy reads a policy file and the key files it names.
func LoadPolicy(path string) (*Policy, error) {
	b, err := files.ReadBounded(path, MaxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	p, err := ParsePolicy(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses a policy document; relative file paths in it are
// resolved against dir. Key files are read now, so that Version covers
// their content and a bad key is reported at load, not at the first
// admission request.
func ParsePolicy(b []byte, dir string) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	p := &Policy{}
	if err := dec.Decode(p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty policy: list at least one identity")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	p.dir = dir
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := p.loadKeys(); err != nil {
		return nil, err
	}
	p.version = p.computeVersion(b)
	return p, nil
}

// Version is a stable hash of the policy and the content of every file it
// names: two policies with the same Version make the same decisions, so a
// cache keyed by digest + Version is safe across reloads.
func (p *Policy) Version() string { return p.version }

// EffectiveThreshold is the number of identities that must have signed.
func (p *Policy) EffectiveThreshold() int {
	if p.Threshold <= 0 {
		return 1
	}
	return p.Threshold
}

// Attestation predicate short names, as `cosign attest --type` spells them.
var predicateTypes = map[string]string{
	"slsaprovenance1": "https://slsa.dev/provenance/v1",
	"vuln":            "https://cosign.sigstore.dev/attestation/vuln/v1",
	"cyclonedx":       "https://cyclonedx.org/bom",
}

// PredicateTypeURI maps a short name (slsaprovenance1, vuln, cyclonedx) to
// its predicate type URI; a URI is returned unchanged.
func PredicateTypeURI(t string) (string, error) {
	if u, ok := predicateTypes[t]; ok {
		return u, nil
	}
	if strings.Contains(t, "://") {
		return t, nil
	}
	return "", fmt.Errorf("unknown predicate type %q (use slsaprovenance1, vuln, cyclonedx or a URI)", t)
}

var severities = []string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

func (p *Policy) validate() error {
	if len(p.Identities) == 0 {
		return errors.New("identities: list at least one trusted identity")
	}
	seen := map[string]bool{}
	keyless := false
	for i, id := range p.Identities {
		where := fmt.Sprintf("identities[%d]", i)
		if id.Name == "" {
			return fmt.Errorf("%s: name is required", where)
		}
		if seen[id.Name] {
			return fmt.Errorf("%s: duplicate name %q", where, id.Name)
		}
		seen[id.Name] = true
		n := 0
		for _, set := range []bool{id.Key != "", id.KeyRef != "", id.Keyless != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s (%s): set exactly one of key, keyRef, keyless", where, id.Name)
		}
		if id.NotBefore != nil && id.NotAfter != nil && !id.NotBefore.Before(*id.NotAfter) {
			return fmt.Errorf("%s (%s): notBefore must be before notAfter", where, id.Name)
		}
		if k := id.Keyless; k != nil {
			keyless = true
			if (k.Issuer == "") == (k.IssuerRegExp == "") {
				return fmt.Errorf("%s (%s): keyless needs exactly one of issuer, issuerRegExp", where, id.Name)
			}
			if (k.Subject == "") == (k.SubjectRegExp == "") {
				return fmt.Errorf("%s (%s): keyless needs exactly one of subject, subjectRegExp", where, id.Name)
			}
			for _, re := range []string{k.IssuerRegExp, k.SubjectRegExp} {
				if _, err := regexp.Compile(re); err != nil {
					return fmt.Errorf("%s (%s): %w", where, id.Name, err)
				}
			}
		}
	}
	if keyless && (p.TrustedRoot == nil || len(p.TrustedRoot.FulcioCerts) == 0) {
		return errors.New("trustedRoot.fulcioCerts: keyless identities need the Fulcio CA certificates as files")
	}
	if p.Threshold < 0 || p.Threshold > len(p.Identities) {
		return fmt.Errorf("threshold %d: must be between 1 and the number of identities (%d)", p.Threshold, len(p.Identities))
	}
	for i, a := range p.Attestations {
		where := fmt.Sprintf("attestations[%d]", i)
		if _, err := PredicateTypeURI(a.Type); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if (a.Repo != "" || a.Branch != "") && a.Type != "slsaprovenance1" {
			return fmt.Errorf("%s: repo and branch apply to type slsaprovenance1 only", where)
		}
		if len(a.DenySeverities) > 0 && a.Type != "vuln" {
			return fmt.Errorf("%s: denySeverities applies to type vuln only", where)
		}
		for _, s := range a.DenySeverities {
			if !slices.Contains(severities, s) {
				return fmt.Errorf("%s: severity %q not one of %s", where, s, strings.Join(severities, ", "))
			}
		}
	}
	return nil
}

func (p *Policy) path(f string) string {
	if filepath.IsAbs(f) || p.dir == "" {
		return f
	}
	return filepath.Join(p.dir, f)
}

// computeVersion hashes the document and every key's public bytes.
func (p *Policy) computeVersion(doc []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "gantry-policy-v1\x00%d\x00", len(doc))
	h.Write(doc)
	for _, k := range p.keys {
		if k == nil {
			continue
		}
		fmt.Fprintf(h, "\x00key\x00%s\x00%d\x00", k.name, len(k.der))
		h.Write(k.der)
	}
	if p.trust != nil {
		h.Write(p.trust.digest)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
