// Package report holds the scan result as Gantry documents it (a stable
// schema, independent of Trivy's own types), the gate's verdict on it, and
// the writers for every output format: table, JSON, SARIF 2.1.0 and a short
// markdown summary. It does not import Trivy, so the pipeline, notifiers and
// the dashboard can read reports without linking the scanner.
package report

import (
	"slices"
	"strings"
	"time"
)

// SchemaVersion is the version of the JSON document. It changes only when a
// field is removed or changes meaning; new fields may appear within a version.
const SchemaVersion = 1

// Severities from the most to the least severe, as Trivy names them.
var Severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}

// SeverityRank orders severities: 0 for CRITICAL up to 4 for UNKNOWN, and
// anything unrecognised after UNKNOWN.
func SeverityRank(s string) int {
	if i := slices.Index(Severities, strings.ToUpper(s)); i >= 0 {
		return i
	}
	return len(Severities)
}

// Report is what one scan of one image found.
type Report struct {
	Image     Image       `json:"image"`
	ScannedAt time.Time   `json:"scannedAt"`
	Scanner   ScannerInfo `json:"scanner"`
	DB        DBInfo      `json:"db"`
	// Findings are sorted by severity (most severe first), then package,
	// then id. One finding is one vulnerability in one package instance.
	Findings []Finding `json:"findings"`
	// Packages is how many packages (OS and language) the scan found.
	Packages int `json:"packages"`
}

// Image identifies what was scanned.
type Image struct {
	// Ref is the reference as given (repository@digest).
	Ref string `json:"ref"`
	// Digest is the manifest digest that was read.
	Digest string `json:"digest"`
	// ConfigDigest is the image ID (digest of the image config).
	ConfigDigest string `json:"configDigest,omitempty"`
	// OS is the detected distribution, if any.
	OS *OS `json:"os,omitempty"`
}

// OS is a detected operating system distribution.
type OS struct {
	Family string `json:"family"`
	Name   string `json:"name"`
	// EOSL is true when the distribution is past its end of support: its
	// packages no longer get fixes, and findings may be missing.
	EOSL bool `json:"eosl,omitempty"`
}

// ScannerInfo names the engine.
type ScannerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Mode is "embedded" (Trivy in-process) or "server" (a Trivy server).
	Mode string `json:"mode"`
}

// DBInfo describes the vulnerability DB used (embedded mode only).
type DBInfo struct {
	Repository   string    `json:"repository,omitempty"`
	UpdatedAt    time.Time `json:"updatedAt,omitzero"`
	DownloadedAt time.Time `json:"downloadedAt,omitzero"`
}

// Finding is one vulnerability in one installed package.
type Finding struct {
	// ID is the vulnerability id (CVE-…, GHSA-…, …).
	ID string `json:"id"`
	// Package is the package name as installed.
	Package string `json:"package"`
	// PackageType is the ecosystem: debian, alpine, npm, gobinary, …
	PackageType string `json:"packageType"`
	// PURL is the package URL, when known.
	PURL             string `json:"purl,omitempty"`
	InstalledVersion string `json:"installedVersion"`
	// FixedVersion lists the versions that fix it; empty when no fix exists.
	FixedVersion string `json:"fixedVersion,omitempty"`
	// Status is Trivy's status: fixed, affected, will_not_fix, …
	Status   string `json:"status,omitempty"`
	Severity string `json:"severity"`
	Title    string `json:"title,omitempty"`
	URL      string `json:"url,omitempty"`
	// Target is where the package was found: the OS ("debian 12") or a
	// file path inside the image for language packages.
	Target string `json:"target"`
	// Class is "os-pkgs" or "lang-pkgs".
	Class string `json:"class"`
}

// Fixable says whether a fixed version exists.
func (f Finding) Fixable() bool { return f.FixedVersion != "" }

// SortFindings puts findings in the documented order.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if d := SeverityRank(a.Severity) - SeverityRank(b.Severity); d != 0 {
			return d
		}
		if c := strings.Compare(a.Package, b.Package); c != 0 {
			return c
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
}

// Outcome is the gate's decision on one finding.
type Outcome string

const (
	// Fail: the finding fails the gate.
	Fail Outcome = "fail"
	// Ignored: it would fail, but an unexpired ignore entry accepts it.
	Ignored Outcome = "ignored"
	// Allowed: the policy does not fail on it (severity below the
	// threshold, or no fix while only fixable findings fail).
	Allowed Outcome = "allowed"
)

// Verdict is the gate's decision on a report.
type Verdict struct {
	Pass   bool          `json:"pass"`
	Policy PolicySummary `json:"policy"`
	// Decisions has one entry per report finding, in the same order.
	Decisions []Decision `json:"-"`
	// Counts by outcome.
	Failed  int `json:"failed"`
	Ignored int `json:"ignored"`
	Allowed int `json:"allowed"`
	// ExpiredIgnores are ignore entries past their expiry that matched a
	// finding: they no longer apply, and the finding was judged as usual.
	ExpiredIgnores []IgnoreRef `json:"expiredIgnores,omitempty"`
	// UnusedIgnores matched nothing: candidates for removal.
	UnusedIgnores []IgnoreRef `json:"unusedIgnores,omitempty"`
	// Summary is one line for people.
	Summary string `json:"summary"`
}

// PolicySummary is the policy a verdict was made under.
type PolicySummary struct {
	Severities []string `json:"severities"`
	OnlyFixed  bool     `json:"onlyFixed"`
	Ignores    int      `json:"ignores"`
}

// Decision is the gate's decision on one finding, with the reason.
type Decision struct {
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason"`
	// Ignore is the entry that accepted (or, expired, no longer accepts)
	// the finding.
	Ignore *IgnoreRef `json:"ignore,omitempty"`
}

// IgnoreRef describes one ignore entry in a verdict.
type IgnoreRef struct {
	ID      string `json:"id"`
	Package string `json:"package,omitempty"`
	Reason  string `json:"reason"`
	Expires string `json:"expires"`
	// Source says whose file the entry is in: "server" (scanner.ignoreFile)
	// or "repository" (the repository's scan.ignoreFile), with its path.
	Source string `json:"source,omitempty"`
	// Line is where the entry starts in its file.
	Line int `json:"line,omitempty"`
}
