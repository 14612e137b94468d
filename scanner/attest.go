package scanner

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aquasecurity/trivy/pkg/types"

	"github.com/gantry-dev/gantry/scanner/report"
)

// TrivyReport renders the scan as Trivy's own JSON report (the shape of
// `trivy image --format json`, SchemaVersion 2): the report that cosign's
// vuln/v1 predicate carries as scanner.result, and that policies written
// for cosign read (scanner.result.Results[].Vulnerabilities[].Severity).
//
// Every vulnerability the scan found is in Results[].Vulnerabilities,
// whatever the gate decided (below the threshold, no fix, …), except the
// ones v marks Ignored: those are moved to the result's
// ExperimentalModifiedFindings with status "ignored", the ignore's reason
// as statement and its file as source, as Trivy itself reports findings an
// ignore file suppressed. Packages are left out (the SBOM lists them).
//
// v must be the gate's verdict on this result's Report (nil: no gate, no
// finding ignored); a verdict for another report is an error.
func (r *Result) TrivyReport(v *report.Verdict) ([]byte, error) {
	if r == nil || r.Report == nil {
		return nil, errors.New("trivy report: no scan result")
	}
	ignored := map[vulnKey][]report.Decision{}
	if v != nil {
		if len(v.Decisions) != len(r.Report.Findings) {
			return nil, fmt.Errorf("trivy report: the verdict has %d decisions for %d findings (a verdict on another scan)", len(v.Decisions), len(r.Report.Findings))
		}
		for i, d := range v.Decisions {
			if d.Outcome == report.Ignored {
				f := r.Report.Findings[i]
				k := vulnKey{f.ID, f.Package, f.InstalledVersion, f.Target}
				ignored[k] = append(ignored[k], d)
			}
		}
	}
	tr := r.trivy
	tr.SchemaVersion = cmp.Or(tr.SchemaVersion, 2)
	tr.Results = make(types.Results, 0, len(r.trivy.Results))
	moved := 0
	for _, res := range r.trivy.Results {
		res.Packages = nil
		vulns := make([]types.DetectedVulnerability, 0, len(res.Vulnerabilities))
		for _, vu := range res.Vulnerabilities {
			k := vulnKey{vu.VulnerabilityID, vu.PkgName, vu.InstalledVersion, cmp.Or(vu.PkgPath, res.Target)}
			if ds := ignored[k]; len(ds) > 0 {
				d := ds[0]
				ignored[k] = ds[1:]
				src := "gantry ignore file"
				if d.Ignore != nil && d.Ignore.Source != "" {
					src = d.Ignore.Source
					if d.Ignore.Line > 0 {
						src += fmt.Sprintf(" line %d", d.Ignore.Line)
					}
				}
				res.ModifiedFindings = append(res.ModifiedFindings,
					types.NewModifiedFinding(vu, types.FindingStatusIgnored, d.Reason, src))
				moved++
				continue
			}
			vulns = append(vulns, vu)
		}
		res.Vulnerabilities = vulns
		tr.Results = append(tr.Results, res)
	}
	want := 0
	if v != nil {
		want = v.Ignored
	}
	if moved != want {
		// Fail closed: an ignored finding that cannot be found in Trivy's
		// report would be attested neither as found nor as ignored.
		return nil, fmt.Errorf("trivy report: %d ignored findings, %d matched in Trivy's report", want, moved)
	}
	b, err := json.Marshal(tr)
	if err != nil {
		return nil, fmt.Errorf("trivy report: %w", err)
	}
	return b, nil
}

// vulnKey identifies one finding in both Gantry's and Trivy's reports (see
// convert: Target is the package path when Trivy has one).
type vulnKey struct{ id, pkg, installed, target string }
