package gate

import (
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/scanner/report"
)

var now = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	highFixed     = report.Finding{ID: "CVE-2099-0001", Package: "openssl", Severity: "HIGH", FixedVersion: "3.0.99-1"}
	criticalNoFix = report.Finding{ID: "CVE-2099-0002", Package: "openssl", Severity: "CRITICAL"}
	mediumFixed   = report.Finding{ID: "CVE-2099-0003", Package: "zlib", Severity: "MEDIUM", FixedVersion: "1.3"}
	lowNoFix      = report.Finding{ID: "CVE-2099-0004", Package: "zlib", Severity: "LOW"}
	npmHigh       = report.Finding{ID: "GHSA-aaaa-bbbb-cccc", Package: "left-pad", Severity: "HIGH", FixedVersion: "1.3.0"}
)

func TestEvaluate(t *testing.T) {
	cases := []struct {
		name         string
		findings     []report.Finding
		policy       Policy
		wantPass     bool
		wantOutcomes []report.Outcome
		wantExpired  int
		wantUnused   int
		reasonHas    []string // substrings of the decisions' reasons, in order
	}{
		{
			name:     "no findings passes",
			policy:   Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true},
			wantPass: true,
		},
		{
			name:         "fixable HIGH fails by default",
			findings:     []report.Finding{highFixed},
			policy:       Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true},
			wantOutcomes: []report.Outcome{report.Fail},
			reasonHas:    []string{"HIGH with a fix available (3.0.99-1)"},
		},
		{
			name:         "unfixable CRITICAL allowed when only fixable fail",
			findings:     []report.Finding{criticalNoFix},
			policy:       Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true},
			wantPass:     true,
			wantOutcomes: []report.Outcome{report.Allowed},
			reasonHas:    []string{"no fix is available"},
		},
		{
			name:         "unfixable CRITICAL fails when all fail",
			findings:     []report.Finding{criticalNoFix},
			policy:       Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: false},
			wantOutcomes: []report.Outcome{report.Fail},
			reasonHas:    []string{"no fix available (unfixed findings fail too)"},
		},
		{
			name:         "MEDIUM below the threshold is allowed",
			findings:     []report.Finding{mediumFixed, lowNoFix},
			policy:       Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: false},
			wantPass:     true,
			wantOutcomes: []report.Outcome{report.Allowed, report.Allowed},
			reasonHas:    []string{"MEDIUM is not a failing severity", "LOW is not"},
		},
		{
			name:         "MEDIUM in the list fails; lowercase severities accepted",
			findings:     []report.Finding{mediumFixed, highFixed},
			policy:       Policy{Severities: []string{"medium"}, OnlyFixed: true},
			wantOutcomes: []report.Outcome{report.Fail, report.Allowed},
		},
		{
			name:         "empty severities fail closed on the defaults",
			findings:     []report.Finding{highFixed},
			policy:       Policy{OnlyFixed: true},
			wantOutcomes: []report.Outcome{report.Fail},
		},
		{
			name:     "unexpired ignore accepts the finding",
			findings: []report.Finding{highFixed},
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "cve-2099-0001", Reason: "not reachable", Expires: day("2026-06-15")}}},
			wantPass:     true,
			wantOutcomes: []report.Outcome{report.Ignored},
			reasonHas:    []string{"ignored until 2026-06-15: not reachable"},
		},
		{
			name:     "expired ignore stops ignoring and says so",
			findings: []report.Finding{highFixed},
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "CVE-2099-0001", Reason: "not reachable", Expires: day("2026-06-14"), Line: 3}}},
			wantOutcomes: []report.Outcome{report.Fail},
			wantExpired:  1,
			reasonHas:    []string{"ignore entry (line 3) expired on 2026-06-14"},
		},
		{
			name:     "expired and active entries: the active one wins",
			findings: []report.Finding{highFixed},
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "CVE-2099-0001", Reason: "old", Expires: day("2025-01-01")},
				{ID: "CVE-2099-0001", Package: "openssl", Reason: "renewed", Expires: day("2027-01-01")}}},
			wantPass:     true,
			wantOutcomes: []report.Outcome{report.Ignored},
			reasonHas:    []string{"renewed"},
		},
		{
			name:     "package-scoped ignore does not cover another package",
			findings: []report.Finding{highFixed},
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "CVE-2099-0001", Package: "libssl3", Reason: "x", Expires: day("2027-01-01")}}},
			wantOutcomes: []report.Outcome{report.Fail},
			wantUnused:   1,
		},
		{
			name:     "pkg: ignore covers every finding in the package",
			findings: []report.Finding{highFixed, criticalNoFix, npmHigh},
			policy: Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: false, Ignores: []Ignore{
				{ID: "pkg:openssl", Reason: "replaced next sprint", Expires: day("2026-07-01")}}},
			wantOutcomes: []report.Outcome{report.Ignored, report.Ignored, report.Fail},
		},
		{
			name:     "ignore on an allowed finding changes nothing and counts as used",
			findings: []report.Finding{mediumFixed},
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "CVE-2099-0003", Reason: "x", Expires: day("2027-01-01")}}},
			wantPass:     true,
			wantOutcomes: []report.Outcome{report.Allowed},
		},
		{
			name:     "unused ignore is reported",
			findings: nil,
			policy: Policy{Severities: []string{"HIGH"}, OnlyFixed: true, Ignores: []Ignore{
				{ID: "CVE-2000-0001", Reason: "x", Expires: day("2027-01-01")}}},
			wantPass:   true,
			wantUnused: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.policy.Now = now
			v := Evaluate(&report.Report{Findings: c.findings}, c.policy)
			if v.Pass != c.wantPass {
				t.Errorf("pass = %v, want %v (%s)", v.Pass, c.wantPass, v.Summary)
			}
			if len(v.Decisions) != len(c.findings) {
				t.Fatalf("%d decisions for %d findings", len(v.Decisions), len(c.findings))
			}
			var fails int
			for i, want := range c.wantOutcomes {
				if got := v.Decisions[i].Outcome; got != want {
					t.Errorf("finding %d (%s): outcome %s, want %s (%s)", i, c.findings[i].ID, got, want, v.Decisions[i].Reason)
				}
				if want == report.Fail {
					fails++
				}
			}
			if v.Failed != fails || v.Failed+v.Ignored+v.Allowed != len(c.findings) {
				t.Errorf("counts failed=%d ignored=%d allowed=%d for %d findings", v.Failed, v.Ignored, v.Allowed, len(c.findings))
			}
			for i, sub := range c.reasonHas {
				if !strings.Contains(v.Decisions[i].Reason, sub) {
					t.Errorf("decision %d reason %q lacks %q", i, v.Decisions[i].Reason, sub)
				}
			}
			if len(v.ExpiredIgnores) != c.wantExpired {
				t.Errorf("expired ignores %v, want %d", v.ExpiredIgnores, c.wantExpired)
			}
			if len(v.UnusedIgnores) != c.wantUnused {
				t.Errorf("unused ignores %v, want %d", v.UnusedIgnores, c.wantUnused)
			}
			if c.wantExpired > 0 && !strings.Contains(v.Summary, "expired") {
				t.Errorf("summary %q does not mention the expired ignore", v.Summary)
			}
		})
	}
}

func TestExpiryBoundary(t *testing.T) {
	ig := Ignore{ID: "CVE-1", Reason: "r", Expires: day("2026-06-15")}
	cases := []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC), false},
		{time.Date(2026, 6, 15, 23, 59, 59, 0, time.UTC), false},
		{time.Date(2026, 6, 16, 0, 0, 0, 0, time.UTC), true},
		// 2026-06-16 01:00 in UTC+2 is still 06-15 23:00 UTC: not expired.
		{time.Date(2026, 6, 16, 1, 0, 0, 0, time.FixedZone("x", 2*3600)), false},
	}
	for _, c := range cases {
		if got := ig.Expired(c.at); got != c.want {
			t.Errorf("Expired(%s) = %v, want %v", c.at, got, c.want)
		}
	}
}

func TestParseSeverities(t *testing.T) {
	got, err := ParseSeverities(" critical, HIGH ,high,")
	if err != nil || strings.Join(got, ",") != "CRITICAL,HIGH" {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "SEVERE", "HIGH,NOPE"} {
		if _, err := ParseSeverities(bad); err == nil {
			t.Errorf("ParseSeverities(%q) accepted", bad)
		}
	}
}
