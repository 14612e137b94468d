package signer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// GantryBuildType is the SLSA buildType of Gantry's own builds; its
// externalParameters.source is what policy repo/branch checks read.
const GantryBuildType = "https://gantry.dev/build/v1"

// Provenance describes one build, for a SLSA v1 provenance predicate.
type Provenance struct {
	Repository string // source repository URL (https://github.com/acme/fn)
	Commit     string // full commit SHA
	Ref        string // git ref (refs/heads/main)
	DeliveryID string // GitHub delivery that triggered the build
	BuilderID  string // URI naming the builder (e.g. https://gantry.example/worker)
	RunID      string // Gantry run id (invocation id)
	Started    time.Time
	Finished   time.Time
	// Materials are further inputs (base images, …) as URI → digests
	// (algorithm → hex), e.g. {"pkg:oci/base@sha256:…": {"sha256": "…"}}.
	Materials map[string]map[string]string
}

// Predicate renders the SLSA v1 provenance predicate for `Attest(ctx, d,
// "slsaprovenance1", p)`.
func (p Provenance) Predicate() ([]byte, error) {
	if p.Repository == "" || p.Commit == "" || p.BuilderID == "" {
		return nil, errors.New("provenance needs repository, commit and builder id")
	}
	// A clone URL can carry a token (https://user:token@host/…): the
	// provenance is public, it names the repository without it.
	p.Repository = WithoutUserinfo(p.Repository)
	type dep struct {
		URI    string            `json:"uri"`
		Digest map[string]string `json:"digest"`
	}
	deps := []dep{{URI: "git+" + p.Repository + "@" + p.Ref, Digest: map[string]string{"gitCommit": p.Commit}}}
	for uri, d := range p.Materials {
		deps = append(deps, dep{URI: uri, Digest: d})
	}
	// Map order is random: sort materials so the predicate is stable and
	// re-attesting the same build is a no-op.
	slices.SortFunc(deps[1:], func(a, b dep) int { return strings.Compare(a.URI, b.URI) })
	meta := map[string]string{}
	if p.RunID != "" {
		meta["invocationId"] = p.RunID
	}
	if !p.Started.IsZero() {
		meta["startedOn"] = p.Started.UTC().Format(time.RFC3339)
	}
	if !p.Finished.IsZero() {
		meta["finishedOn"] = p.Finished.UTC().Format(time.RFC3339)
	}
	pred := map[string]any{
		"buildDefinition": map[string]any{
			"buildType": GantryBuildType,
			"externalParameters": map[string]any{
				"source": map[string]string{"repository": p.Repository, "ref": p.Ref, "commit": p.Commit},
			},
			"internalParameters":   map[string]string{"deliveryId": p.DeliveryID},
			"resolvedDependencies": deps,
		},
		"runDetails": map[string]any{
			"builder":  map[string]string{"id": p.BuilderID},
			"metadata": meta,
		},
	}
	return json.Marshal(pred)
}

// VulnScan is what a vuln/v1 predicate records about one scan.
type VulnScan struct {
	// Report is the scanner's report in Trivy's JSON shape
	// (scanner.TrivyReport): scanner.result, what denySeverities reads.
	Report []byte
	// ScannerVersion is the Trivy version (scanner.uri and version).
	ScannerVersion string
	// DBURI and DBVersion name the vulnerability DB (scanner.db).
	DBURI, DBVersion string
	// Started and Finished bound the scan (metadata).
	Started, Finished time.Time
	// InvocationURI, EventID and BuilderID are cosign's invocation fields:
	// Gantry puts the run's link, the run id and the builder id there.
	InvocationURI, EventID, BuilderID string
	// Parameters is invocation.parameters: Gantry records the gate's
	// policy and verdict and every ignore entry used (see docs/signer.md).
	Parameters any
}

// VulnPredicate renders cosign's vuln/v1 predicate
// (https://cosign.sigstore.dev/attestation/vuln/v1) for `Attest(ctx, d,
// "vuln", p)`: {invocation, scanner: {uri, version, db, result}, metadata:
// {scanStartedOn, scanFinishedOn}}, with the Trivy report as
// scanner.result. A policy's denySeverities, and cosign's
// `verify-attestation --type vuln` policies, read
// scanner.result.Results[].Vulnerabilities[].Severity. The report must be
// Trivy-shaped (a SchemaVersion): a report of another shape would be
// attested but never checked.
func VulnPredicate(s VulnScan) ([]byte, error) {
	if _, err := parseTrivyReport(s.Report); err != nil {
		return nil, fmt.Errorf("vuln predicate: %w", err)
	}
	if s.Started.IsZero() || s.Finished.IsZero() {
		return nil, errors.New("vuln predicate: the scan's start and finish times are required")
	}
	return json.Marshal(map[string]any{
		"invocation": map[string]any{"parameters": s.Parameters, "uri": s.InvocationURI, "event_id": s.EventID, "builder.id": s.BuilderID},
		"scanner": map[string]any{
			"uri":     "pkg:github/aquasecurity/trivy@" + s.ScannerVersion,
			"version": s.ScannerVersion,
			"db":      map[string]string{"uri": s.DBURI, "version": s.DBVersion},
			"result":  json.RawMessage(s.Report),
		},
		"metadata": map[string]string{
			"scanStartedOn":  s.Started.UTC().Format(time.RFC3339),
			"scanFinishedOn": s.Finished.UTC().Format(time.RFC3339),
		},
	})
}

// WithoutUserinfo returns a URL without its user name and password
// (https://user:token@host/r → https://host/r). Strings that are not
// URLs with a scheme and host (local paths, scp-like git@host:path, whose
// user is no secret) come back unchanged.
func WithoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Host == "" {
		return raw
	}
	u.User = nil
	return u.String()
}
