// Package gate decides whether a scan passes: findings of the configured
// severities fail it, only when a fix is available unless told otherwise,
// and an ignore entry (id, reason, expiry) accepts a finding until it
// expires. Expired entries stop applying and the verdict says so.
package gate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/scanner/report"
)

// DefaultSeverities fail the gate when a policy lists none.
var DefaultSeverities = []string{"CRITICAL", "HIGH"}

// Policy is what the gate enforces.
type Policy struct {
	// Severities fail the gate (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN).
	// Empty means DefaultSeverities: the gate never fails open.
	Severities []string
	// OnlyFixed fails only findings that have a fixed version.
	OnlyFixed bool
	// Ignores accept findings until they expire.
	Ignores []Ignore
	// Now is the time expiries are judged at; zero means time.Now().
	Now time.Time
}

// Validate checks the severities are known.
func (p Policy) Validate() error {
	for _, s := range p.Severities {
		if !slices.Contains(report.Severities, strings.ToUpper(s)) {
			return fmt.Errorf("severity %q: allowed: %s", s, strings.Join(report.Severities, ", "))
		}
	}
	return nil
}

// ParseSeverities splits a comma-separated list, checking each.
func ParseSeverities(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.ToUpper(strings.TrimSpace(part))
		if part == "" {
			continue
		}
		if !slices.Contains(report.Severities, part) {
			return nil, fmt.Errorf("severity %q: allowed: %s", part, strings.Join(report.Severities, ", "))
		}
		if !slices.Contains(out, part) {
			out = append(out, part)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no severity given: list at least one of %s", strings.Join(report.Severities, ", "))
	}
	return out, nil
}

// Evaluate judges every finding of r and returns the verdict.
func Evaluate(r *report.Report, p Policy) *report.Verdict {
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	sev := normalise(p.Severities)
	if len(sev) == 0 {
		sev = slices.Clone(DefaultSeverities)
	}
	v := &report.Verdict{
		Policy:    report.PolicySummary{Severities: sev, OnlyFixed: p.OnlyFixed, Ignores: len(p.Ignores)},
		Decisions: make([]report.Decision, len(r.Findings)),
	}
	used := make([]bool, len(p.Ignores))
	expiredSeen := make([]bool, len(p.Ignores))
	for i, f := range r.Findings {
		active, expired := -1, -1
		for j, ig := range p.Ignores {
			if !matches(ig, f) {
				continue
			}
			used[j] = true
			if ig.Expired(now) {
				if expired < 0 {
					expired = j
				}
				continue
			}
			if active < 0 {
				active = j
			}
		}
		d := decide(f, sev, p.OnlyFixed)
		if d.Outcome == report.Fail {
			switch {
			case active >= 0:
				ig := p.Ignores[active]
				d = report.Decision{Outcome: report.Ignored,
					Reason: fmt.Sprintf("ignored until %s: %s", ig.ExpiresString(), ig.Reason),
					Ignore: ref(ig)}
			case expired >= 0:
				ig := p.Ignores[expired]
				d.Reason += fmt.Sprintf("; the ignore entry (line %d) expired on %s and no longer applies", ig.Line, ig.ExpiresString())
				d.Ignore = ref(ig)
				if !expiredSeen[expired] {
					expiredSeen[expired] = true
					v.ExpiredIgnores = append(v.ExpiredIgnores, *ref(ig))
				}
			}
		}
		v.Decisions[i] = d
		switch d.Outcome {
		case report.Fail:
			v.Failed++
		case report.Ignored:
			v.Ignored++
		default:
			v.Allowed++
		}
	}
	for j, ig := range p.Ignores {
		if !used[j] {
			v.UnusedIgnores = append(v.UnusedIgnores, *ref(ig))
		}
	}
	v.Pass = v.Failed == 0
	v.Summary = summary(v)
	return v
}

func decide(f report.Finding, sev []string, onlyFixed bool) report.Decision {
	s := strings.ToUpper(f.Severity)
	if !slices.Contains(sev, s) {
		return report.Decision{Outcome: report.Allowed,
			Reason: fmt.Sprintf("%s is not a failing severity (%s)", s, strings.Join(sev, ","))}
	}
	if f.Fixable() {
		return report.Decision{Outcome: report.Fail,
			Reason: fmt.Sprintf("%s with a fix available (%s)", s, f.FixedVersion)}
	}
	if onlyFixed {
		return report.Decision{Outcome: report.Allowed,
			Reason: fmt.Sprintf("%s but no fix is available (only fixable findings fail)", s)}
	}
	return report.Decision{Outcome: report.Fail,
		Reason: fmt.Sprintf("%s with no fix available (unfixed findings fail too)", s)}
}

func matches(ig Ignore, f report.Finding) bool {
	if name, ok := ig.PackageOnly(); ok {
		return name == f.Package
	}
	if !strings.EqualFold(ig.ID, f.ID) {
		return false
	}
	return ig.Package == "" || ig.Package == f.Package
}

func ref(ig Ignore) *report.IgnoreRef {
	return &report.IgnoreRef{ID: ig.ID, Package: ig.Package, Reason: ig.Reason, Expires: ig.ExpiresString(), Source: ig.Source, Line: ig.Line}
}

func normalise(in []string) []string {
	var out []string
	for _, s := range in {
		s = strings.ToUpper(strings.TrimSpace(s))
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func summary(v *report.Verdict) string {
	what := strings.Join(v.Policy.Severities, ",")
	if v.Policy.OnlyFixed {
		what += " with a fix available"
	}
	var b strings.Builder
	switch v.Failed {
	case 0:
		fmt.Fprintf(&b, "no finding fails the gate (%s)", what)
	case 1:
		fmt.Fprintf(&b, "1 finding fails the gate (%s)", what)
	default:
		fmt.Fprintf(&b, "%d findings fail the gate (%s)", v.Failed, what)
	}
	fmt.Fprintf(&b, "; %d ignored, %d allowed", v.Ignored, v.Allowed)
	if n := len(v.ExpiredIgnores); n > 0 {
		fmt.Fprintf(&b, "; %d expired ignore entries no longer apply", n)
	}
	return b.String()
}
