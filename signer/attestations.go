package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
)

// statement is the part of an in-toto statement that policies read.
type statement struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Subject       []subject       `json:"subject"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

const intotoPayloadType = "application/vnd.in-toto+json"

// parseStatement decodes the in-toto statement inside a DSSE envelope.
// The envelope's signature has been verified before this is called, but
// the parser still treats its input as untrusted.
func parseStatement(envelope []byte) (*statement, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	raw, err := decodeB64(env.Payload)
	if err != nil {
		return nil, errors.New("DSSE payload is not base64")
	}
	return parseStatementPayload(env.PayloadType, raw)
}

// parseStatementPayload decodes the in-toto statement that is a DSSE
// envelope's payload (decoded).
func parseStatementPayload(payloadType string, raw []byte) (*statement, error) {
	if payloadType != intotoPayloadType {
		return nil, fmt.Errorf("DSSE payload type %q, want %s", payloadType, intotoPayloadType)
	}
	var st statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") {
		return nil, fmt.Errorf("in-toto statement type %q", st.Type)
	}
	return &st, nil
}

// covers says whether the statement's subjects include digest h.
func (s *statement) covers(h v1.Hash) bool {
	for _, sub := range s.Subject {
		if sub.Digest[h.Algorithm] == h.Hex {
			return true
		}
	}
	return false
}

// checkAttestations enforces the policy's attestation requirements. It
// returns a failure reason and message, or a result/error from the fetch.
// The tag-based attestations are read first; the attestation bundles that
// refer to the image only when those do not meet every requirement.
func (v *Verifier) checkAttestations(ctx context.Context, res *Result, ref name.Digest, h v1.Hash, now time.Time, bs *bundleSource) (FailureReason, string, *Result, error) {
	f, err := fetchAttachmentsWith(ctx, v.reg, v.pull, ref, attSuffix)
	if r, err := v.fetchFailure(ctx, res, f, err, "attestations"); r != nil || err != nil {
		return "", "", r, err
	}
	byType := map[string][]*statement{}
	for _, att := range f.sigs {
		if !v.attestationTrusted(ctx, att, h, now) {
			continue
		}
		p, err := att.Payload()
		if err != nil {
			continue
		}
		st, err := parseStatement(p)
		if err != nil || !st.covers(h) {
			continue
		}
		byType[st.PredicateType] = append(byType[st.PredicateType], st)
	}
	reason, msg := v.meetRequirements(ref, byType)
	if reason == "" {
		return "", "", nil, nil
	}
	bundles, err := bs.attestations(ctx)
	if r, err := v.fetchFailure(ctx, res, nil, err, "Sigstore bundles"); r != nil || err != nil {
		return "", "", r, err
	}
	if len(bundles) == 0 {
		return reason, msg, nil, nil
	}
	for _, e := range bundles {
		if v.bundleTrusted(e, h, now) && e.st.covers(h) {
			byType[e.st.PredicateType] = append(byType[e.st.PredicateType], e.st)
		}
	}
	reason, msg = v.meetRequirements(ref, byType)
	return reason, msg, nil, nil
}

// meetRequirements checks the trusted statements against each
// requirement of the policy.
func (v *Verifier) meetRequirements(ref name.Digest, byType map[string][]*statement) (FailureReason, string) {
	for _, req := range v.policy.Attestations {
		uri, _ := PredicateTypeURI(req.Type) // validated at load
		cands := byType[uri]
		if len(cands) == 0 {
			return AttestationMissing, fmt.Sprintf("no %s attestation for %s signed by a trusted identity: attest it with `gantry attest %s --type %s --predicate FILE`",
				req.Type, ref.DigestStr(), ref, req.Type)
		}
		var firstErr error
		ok := false
		for _, st := range cands {
			if err := req.check(st.Predicate); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			ok = true
			break
		}
		if !ok {
			return AttestationRejected, fmt.Sprintf("the signed %s attestation of %s does not meet the policy: %v", req.Type, ref.DigestStr(), firstErr)
		}
	}
	return "", ""
}

// bundleTrusted says whether an active identity signed the bundle e about
// digest h.
func (v *Verifier) bundleTrusted(e *bundleEntry, h v1.Hash, now time.Time) bool {
	for i, k := range v.policy.keys {
		if !k.activeAt(now) || v.bundles[i] == nil {
			continue
		}
		if v.bundles[i].verify(e, h) == nil {
			return true
		}
	}
	return false
}

// attestationTrusted says whether an active identity signed att.
func (v *Verifier) attestationTrusted(ctx context.Context, att oci.Signature, h v1.Hash, now time.Time) bool {
	for _, k := range v.policy.keys {
		if !k.activeAt(now) {
			continue
		}
		co := v.checkOpts(k)
		if co == nil {
			continue
		}
		if k.keyless != nil {
			if c, err := att.Cert(); err != nil || c == nil {
				continue
			}
		}
		if _, err := cosign.VerifyBlobAttestation(ctx, att, h, co); err == nil {
			return true
		}
	}
	return false
}

// check applies one requirement to a predicate.
func (r AttestationRequirement) check(pred json.RawMessage) error {
	switch r.Type {
	case "slsaprovenance1":
		return checkProvenance(pred, r.Repo, r.Branch)
	case "vuln":
		return checkVuln(pred, r.DenySeverities)
	}
	return nil // presence only
}

// provenanceSource is where SLSA v1 provenance names its source, in
// Gantry's build type and in GitHub Actions' (externalParameters.workflow).
type provenanceSource struct {
	BuildDefinition struct {
		ExternalParameters struct {
			Source struct {
				Repository string `json:"repository"`
				Ref        string `json:"ref"`
			} `json:"source"`
			Workflow struct {
				Repository string `json:"repository"`
				Ref        string `json:"ref"`
			} `json:"workflow"`
		} `json:"externalParameters"`
	} `json:"buildDefinition"`
}

func checkProvenance(pred json.RawMessage, repo, branch string) error {
	var p provenanceSource
	if err := json.Unmarshal(pred, &p); err != nil {
		return fmt.Errorf("provenance predicate: %w", err)
	}
	ext := p.BuildDefinition.ExternalParameters
	gotRepo, gotRef := ext.Source.Repository, ext.Source.Ref
	if gotRepo == "" {
		gotRepo, gotRef = ext.Workflow.Repository, ext.Workflow.Ref
	}
	if repo != "" && normalizeRepo(gotRepo) != normalizeRepo(repo) {
		return fmt.Errorf("built from repository %q, policy requires %q", gotRepo, repo)
	}
	if branch != "" && gotRef != "refs/heads/"+branch {
		return fmt.Errorf("built from ref %q, policy requires branch %q (refs/heads/%s)", gotRef, branch, branch)
	}
	return nil
}

// normalizeRepo lets https://github.com/a/b, https://github.com/a/b.git and
// git+https://github.com/a/b compare equal (case-insensitively, as GitHub
// treats owner and name).
func normalizeRepo(s string) string {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "git+")
	s = strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
	return s
}

// vulnPredicate is cosign's vuln/v1 predicate with a Trivy JSON report as
// scanner.result. Ignored findings are not in Results[].Vulnerabilities
// (Trivy and Gantry move them to ExperimentalModifiedFindings).
type vulnPredicate struct {
	Scanner struct {
		URI    string          `json:"uri"`
		Result json.RawMessage `json:"result"`
	} `json:"scanner"`
}

// trivyReport is the part of Trivy's JSON report a vuln check reads.
type trivyReport struct {
	Results []struct {
		Target          string `json:"Target"`
		Vulnerabilities []struct {
			VulnerabilityID string `json:"VulnerabilityID"`
			PkgName         string `json:"PkgName"`
			Severity        string `json:"Severity"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

// parseTrivyReport reads a Trivy JSON report, refusing anything that is not
// one: a JSON object with SchemaVersion 2, spelt as Trivy spells it. A
// report of another shape (Gantry's own scan document, an empty object)
// would list no vulnerability and pass every severity check.
func parseTrivyReport(b []byte) (*trivyReport, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return nil, errors.New("scanner.result is not a JSON object (want a Trivy JSON report)")
	}
	var schema int
	if raw, ok := top["SchemaVersion"]; !ok || json.Unmarshal(raw, &schema) != nil || schema != 2 {
		return nil, errors.New("scanner.result is not a Trivy JSON report (SchemaVersion 2): scan and attest again with `trivy image --format cosign-vuln` or Gantry's pipeline")
	}
	var r trivyReport
	if raw, ok := top["Results"]; ok {
		if err := json.Unmarshal(raw, &r.Results); err != nil {
			return nil, fmt.Errorf("scanner.result.Results: %w", err)
		}
	}
	return &r, nil
}

func checkVuln(pred json.RawMessage, deny []string) error {
	var p vulnPredicate
	if err := json.Unmarshal(pred, &p); err != nil {
		return fmt.Errorf("vuln predicate: %w", err)
	}
	rep, err := parseTrivyReport(p.Scanner.Result)
	if err != nil {
		return fmt.Errorf("vuln predicate: %w", err)
	}
	var found []string
	n := 0
	for _, r := range rep.Results {
		for _, vu := range r.Vulnerabilities {
			sev := strings.ToUpper(vu.Severity)
			if sev == "" {
				sev = "UNKNOWN"
			}
			if slices.Contains(deny, sev) {
				n++
				if len(found) < 5 {
					found = append(found, fmt.Sprintf("%s %s in %s", sev, vu.VulnerabilityID, vu.PkgName))
				}
			}
		}
	}
	if n > 0 {
		more := ""
		if n > len(found) {
			more = fmt.Sprintf(" and %d more", n-len(found))
		}
		return fmt.Errorf("the scan lists %d finding(s) of denied severity (%s): %s%s; fix them or add a reviewed ignore, then rescan",
			n, strings.Join(deny, ", "), strings.Join(found, "; "), more)
	}
	return nil
}
