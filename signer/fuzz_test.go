package signer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const seedManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:` +
	`aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":250,"digest":"sha256:` +
	`bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","annotations":{"dev.cosignproject.cosign/signature":"MEUCIQ=="}}]}`

// FuzzParseAttachmentManifest: registry content never panics the parser,
// and what it accepts stays inside the limits.
func FuzzParseAttachmentManifest(f *testing.F) {
	f.Add([]byte(seedManifest))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"size":-1,"digest":"sha256:x"}]}`))
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		layers, err := parseAttachmentManifest(raw, maxSignaturePayload)
		if err != nil {
			return
		}
		if len(layers) > maxLayers {
			t.Fatalf("%d layers accepted", len(layers))
		}
		var total int64
		for _, l := range layers {
			if l.Size < 0 || l.Size > maxSignaturePayload || l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
				t.Fatalf("accepted layer %+v", l)
			}
			total += l.Size
			// Building cosign's signature from any annotations is safe too.
			_, _ = toSignature(l, []byte("{}"), false)
			_, _ = toSignature(l, []byte("{}"), true)
		}
		if total > maxTotalBlobBytes {
			t.Fatalf("total %d accepted", total)
		}
	})
}

func envelopeFor(statement string) []byte {
	b, _ := json.Marshal(map[string]any{
		"payloadType": intotoPayloadType,
		"payload":     base64.StdEncoding.EncodeToString([]byte(statement)),
		"signatures":  []any{},
	})
	return b
}

// FuzzParseStatement covers the DSSE envelope and in-toto statement parser
// and the predicate checks that read attacker-supplied JSON.
func FuzzParseStatement(f *testing.F) {
	f.Add(envelopeFor(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"x","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicate":{"buildDefinition":{"externalParameters":{"source":{"repository":"https://github.com/a/b","ref":"refs/heads/main"}}}}}`))
	f.Add(envelopeFor(`{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1","predicate":{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"CRITICAL"}]}]}}}}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"!!"}`))
	f.Add([]byte(`[]`))
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := parseStatement(raw)
		if err != nil {
			return
		}
		_ = st.covers(h)
		_ = checkProvenance(st.Predicate, "https://github.com/a/b", "main")
		_ = checkVuln(st.Predicate, []string{"CRITICAL", "HIGH"})
	})
}

// FuzzParsePolicy: a policy document never panics the loader.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("identities:\n  - {name: a, keyless: {issuer: x, subject: y}}\ntrustedRoot: {fulcioCerts: [nope.pem]}\n"))
	f.Add([]byte("identities: []\nthreshold: -1\n"))
	f.Add([]byte("identities:\n  - {name: a, key: a.pub, notBefore: 2026-01-01T00:00:00Z, notAfter: 2025-01-01T00:00:00Z}\n"))
	f.Add([]byte("attestations:\n  - {type: vuln, denySeverities: [NOPE]}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, _ = ParsePolicy(doc, dir)
	})
}

// FuzzParseTrivyReport: the vuln check's reader of scanner.result never
// panics, and accepts only objects that carry SchemaVersion 2.
func FuzzParseTrivyReport(f *testing.F) {
	for _, s := range []string{`{"SchemaVersion":2}`, `{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"CRITICAL"}]}]}`,
		`{"schemaVersion":1,"findings":[]}`, `{}`, `null`, `[]`, `{"SchemaVersion":"2"}`, `{"SchemaVersion":2,"Results":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseTrivyReport(b)
		if err != nil {
			return
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(b, &top) != nil || string(bytes.TrimSpace(top["SchemaVersion"])) == "" {
			t.Fatalf("accepted %q without a SchemaVersion", b)
		}
		_ = r
	})
}

// FuzzParseBundle: a bundle layer from the registry never panics the
// parser; what it accepts has a DSSE in-toto statement.
func FuzzParseBundle(f *testing.F) {
	stmt := base64.StdEncoding.EncodeToString([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":{"payload":"` + stmt + `","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEUCIQ=="}]}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := parseBundle(raw)
		if err != nil || e == nil {
			return
		}
		if e.st == nil || e.b.GetDsseEnvelope() == nil || e.b.GetDsseEnvelope().GetPayloadType() != intotoPayloadType {
			t.Fatalf("accepted %s", raw)
		}
	})
}
