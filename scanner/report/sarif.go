package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/owenrumney/go-sarif/v2/sarif"
)

// securitySeverity maps severities to the numeric "security-severity" rule
// property GitHub code scanning uses to rank alerts (its documented bands:
// over 9.0 critical, 7.0–8.9 high, 4.0–6.9 medium, 0.1–3.9 low).
var securitySeverity = map[string]string{
	"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "2.0", "UNKNOWN": "0.0",
}

// sarifLevel maps a finding to a SARIF level: what fails the gate is an
// error, the rest are warnings (HIGH and CRITICAL) or notes.
func sarifLevel(f Finding, d *Decision) string {
	if d != nil && d.Outcome == Fail {
		return "error"
	}
	switch strings.ToUpper(f.Severity) {
	case "CRITICAL", "HIGH":
		return "warning"
	default:
		return "note"
	}
}

// WriteSARIF writes a SARIF 2.1.0 log for GitHub code scanning: one rule per
// vulnerability id, one result per finding, ignored findings carried as
// suppressed results with the ignore's reason as the justification.
func WriteSARIF(w io.Writer, r *Report, v *Verdict, toolVersion string) error {
	log, err := sarif.New(sarif.Version210)
	if err != nil {
		return fmt.Errorf("sarif: %w", err)
	}
	run := sarif.NewRunWithInformationURI("Gantry", "https://github.com/gantry-dev/gantry")
	run.Tool.Driver.WithVersion(toolVersion)
	run.Tool.Driver.WithFullName(fmt.Sprintf("Gantry vulnerability scan (%s %s)", r.Scanner.Name, r.Scanner.Version))
	run.Properties = sarif.Properties{"imageRef": r.Image.Ref, "imageDigest": r.Image.Digest}
	if v != nil {
		run.Properties["gatePass"] = v.Pass
		run.Properties["gateSummary"] = v.Summary
	}
	// Code scanning needs a location for every result. Container findings
	// have no source line, so they point at the image (OS packages) or at
	// the file inside it that declared the package (language packages).
	imageURI := imageRepoURI(r.Image.Ref)
	rules := map[string]int{}
	for i, f := range r.Findings {
		d := decisionAt(v, i, len(r.Findings))
		idx, ok := rules[f.ID]
		if !ok {
			idx = len(rules)
			rules[f.ID] = idx
			rule := run.AddRule(f.ID).
				WithName("vulnerability").
				WithShortDescription(sarif.NewMultiformatMessageString(cleanOr(f.Title, f.ID))).
				WithFullDescription(sarif.NewMultiformatMessageString(cleanOr(f.Title, f.ID))).
				WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(sarifLevel(f, nil))).
				WithProperties(sarif.Properties{
					"tags":              []string{"vulnerability", "security", strings.ToUpper(f.Severity)},
					"precision":         "very-high",
					"security-severity": securitySeverity[strings.ToUpper(f.Severity)],
				})
			if strings.HasPrefix(f.URL, "https://") {
				rule.WithHelpURI(f.URL)
			}
			rule.WithHelp(sarif.NewMultiformatMessageString(fmt.Sprintf("Vulnerability %s\nSeverity: %s\nPackage: %s\nFixed version: %s\nLink: %s",
				f.ID, f.Severity, clean(f.Package, 200), orNone(f.FixedVersion), f.URL)))
		}
		uri := imageURI
		if f.Class == "lang-pkgs" && f.Target != "" {
			uri = strings.TrimPrefix(f.Target, "/")
		}
		msg := fmt.Sprintf("Package: %s\nInstalled version: %s\nVulnerability: %s\nSeverity: %s\nFixed version: %s",
			clean(f.Package, 200), clean(f.InstalledVersion, 100), clean(f.ID, 100), f.Severity, orNone(clean(f.FixedVersion, 100)))
		if d != nil {
			msg += fmt.Sprintf("\nGate: %s (%s)", d.Outcome, clean(d.Reason, 300))
		}
		res := sarif.NewRuleResult(f.ID).
			WithRuleIndex(idx).
			WithLevel(sarifLevel(f, d)).
			WithMessage(sarif.NewTextMessage(msg)).
			WithLocations([]*sarif.Location{
				sarif.NewLocationWithPhysicalLocation(sarif.NewPhysicalLocation().
					WithArtifactLocation(sarif.NewSimpleArtifactLocation(uri)).
					WithRegion(sarif.NewSimpleRegion(1, 1))).
					WithMessage(sarif.NewTextMessage(fmt.Sprintf("%s: %s@%s", uri, clean(f.Package, 200), clean(f.InstalledVersion, 100)))),
			}).
			WithPartialFingerPrints(map[string]interface{}{
				"gantry/v1": f.ID + "/" + f.PackageType + "/" + f.Package + "/" + f.Target,
			})
		if d != nil && d.Outcome == Ignored && d.Ignore != nil {
			res.AddSuppression(sarif.NewSuppression("external").
				WithJustifcation(fmt.Sprintf("%s (expires %s)", clean(d.Ignore.Reason, 500), d.Ignore.Expires)))
		}
		run.AddResult(res)
	}
	log.AddRun(run)
	return log.PrettyWrite(w)
}

// imageRepoURI is the image repository without the registry host and
// digest: a stable, relative URI for code scanning.
func imageRepoURI(ref string) string {
	repo, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if host, rest, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		repo = rest
	}
	if repo == "" {
		return "image"
	}
	return repo
}

func cleanOr(s, fallback string) string {
	if c := clean(s, 300); c != "" {
		return c
	}
	return fallback
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
