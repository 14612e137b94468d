package signer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePolicyErrors(t *testing.T) {
	dir := t.TempDir()
	newTestKey(t, dir, "a")
	newTestKey(t, dir, "b")
	cases := []struct{ name, doc, want string }{
		{"empty", "", "empty policy"},
		{"unknown key", "identities:\n  - {name: a, key: a.pub}\ntrehshold: 1\n", "trehshold"},
		{"no identities", "identities: []\n", "at least one trusted identity"},
		{"two sources", "identities:\n  - {name: a, key: a.pub, keyRef: 'k8s://x/y'}\n", "exactly one of key, keyRef, keyless"},
		{"duplicate name", "identities:\n  - {name: a, key: a.pub}\n  - {name: a, key: b.pub}\n", "duplicate name"},
		{"threshold too high", "identities:\n  - {name: a, key: a.pub}\nthreshold: 2\n", "threshold 2"},
		{"window reversed", "identities:\n  - {name: a, key: a.pub, notBefore: 2026-01-02T00:00:00Z, notAfter: 2026-01-01T00:00:00Z}\n", "notBefore must be before notAfter"},
		{"keyless without root", "identities:\n  - {name: ci, keyless: {issuer: x, subject: y}}\n", "trustedRoot.fulcioCerts"},
		{"keyless bad regexp", "identities:\n  - {name: ci, keyless: {issuer: x, subjectRegExp: '('}}\ntrustedRoot: {fulcioCerts: [a.pub]}\n", "missing closing )"},
		{"missing key file", "identities:\n  - {name: a, key: nope.pub}\n", "identity a: key file"},
		{"not a key", "identities:\n  - {name: a, key: policy.yaml}\n", "not a PEM public key"},
		{"bad severity", "identities:\n  - {name: a, key: a.pub}\nattestations:\n  - {type: vuln, denySeverities: [SEVERE]}\n", `severity "SEVERE"`},
		{"repo on vuln", "identities:\n  - {name: a, key: a.pub}\nattestations:\n  - {type: vuln, repo: x}\n", "slsaprovenance1 only"},
		{"unknown predicate", "identities:\n  - {name: a, key: a.pub}\nattestations:\n  - {type: spdx}\n", "unknown predicate type"},
		{"two documents", "identities:\n  - {name: a, key: a.pub}\n---\nthreshold: 1\n", "more than one YAML document"},
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("x: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.doc), dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestPolicyVersion: the version changes with the document and with the
// content of a key file the document names, and only then.
func TestPolicyVersion(t *testing.T) {
	dir := t.TempDir()
	newTestKey(t, dir, "a")
	doc := "identities:\n  - {name: a, key: a.pub}\n"
	p1, err := ParsePolicy([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParsePolicy([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Version() != p2.Version() || !strings.HasPrefix(p1.Version(), "sha256:") {
		t.Fatalf("same policy, versions %s and %s", p1.Version(), p2.Version())
	}
	p3, err := ParsePolicy([]byte(doc+"threshold: 1\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Version() == p1.Version() {
		t.Fatal("a changed document kept its version")
	}
	newTestKey(t, dir, "a") // rotate the key behind the same path
	p4, err := ParsePolicy([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	if p4.Version() == p1.Version() {
		t.Fatal("a changed key file kept the policy version")
	}
}

func TestPredicateChecks(t *testing.T) {
	cases := []struct {
		name    string
		req     AttestationRequirement
		pred    string
		wantErr string
	}{
		{"github workflow provenance", AttestationRequirement{Type: "slsaprovenance1", Repo: "https://github.com/Acme/Fn", Branch: "main"},
			`{"buildDefinition":{"externalParameters":{"workflow":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main","path":".github/workflows/x.yml"}}}}`, ""},
		{"tag is not a branch", AttestationRequirement{Type: "slsaprovenance1", Branch: "main"},
			`{"buildDefinition":{"externalParameters":{"source":{"repository":"r","ref":"refs/tags/main"}}}}`, "policy requires branch"},
		{"provenance without source", AttestationRequirement{Type: "slsaprovenance1", Repo: "https://github.com/a/b"},
			`{}`, "built from repository \"\""},
		{"vuln clean", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}},
			`{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"HIGH"}]}]}}}`, ""},
		{"vuln lowercase severity", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}},
			`{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"critical","VulnerabilityID":"CVE-1"}]}]}}}`, "CVE-1"},
		{"vuln not JSON object", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}}, `[1]`, "vuln predicate"},
		// Gantry's own scan document (what the pipeline attested before):
		// no Trivy Results, so nothing would ever be denied. Refused.
		{"vuln Gantry document, not a Trivy report", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}},
			`{"scanner":{"result":{"schemaVersion":1,"findings":[{"id":"CVE-2099-0002","severity":"CRITICAL"}]}}}`, "not a Trivy JSON report"},
		{"vuln result missing", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}}, `{"scanner":{}}`, "not a JSON object"},
		{"vuln empty result", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}}, `{"scanner":{"result":{}}}`, "SchemaVersion 2"},
		{"vuln clean image (no Results)", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}}, `{"scanner":{"result":{"SchemaVersion":2}}}`, ""},
		{"vuln severity missing counts as UNKNOWN", AttestationRequirement{Type: "vuln", DenySeverities: []string{"UNKNOWN"}},
			`{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"VulnerabilityID":"CVE-9"}]}]}}}`, "UNKNOWN CVE-9"},
		{"vuln ignored findings are not counted", AttestationRequirement{Type: "vuln", DenySeverities: []string{"CRITICAL"}},
			`{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"LOW"}],"ExperimentalModifiedFindings":[{"Type":"vulnerability","Status":"ignored","Finding":{"Severity":"CRITICAL"}}]}]}}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.check([]byte(tc.pred))
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
