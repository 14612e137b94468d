package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// group is the findings of one package instance.
type group struct {
	key      string
	header   string
	findings []int // indexes into Report.Findings
	worst    int   // rank: failing groups first, then by severity
}

// outcomeRank orders outcomes for display: what fails the gate first.
func outcomeRank(o Outcome) int {
	switch o {
	case Fail:
		return 0
	case Ignored:
		return 1
	default:
		return 2
	}
}

func groupByPackage(r *Report, v *Verdict) []*group {
	byKey := map[string]*group{}
	var groups []*group
	for i, f := range r.Findings {
		key := f.PackageType + "\x00" + f.Package + "\x00" + f.InstalledVersion + "\x00" + f.Target
		g, ok := byKey[key]
		if !ok {
			h := fmt.Sprintf("%s %s (%s)", clean(f.Package, 120), clean(f.InstalledVersion, 80), clean(f.PackageType, 40))
			if f.Class == "lang-pkgs" && f.Target != "" {
				h += " in " + clean(f.Target, 200)
			}
			g = &group{key: key, header: h, worst: 1 << 30}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.findings = append(g.findings, i)
		rank := SeverityRank(f.Severity)
		if d := decisionAt(v, i, len(r.Findings)); d != nil {
			rank += 10 * outcomeRank(d.Outcome)
		}
		g.worst = min(g.worst, rank)
	}
	slices.SortStableFunc(groups, func(a, b *group) int {
		if a.worst != b.worst {
			return a.worst - b.worst
		}
		return strings.Compare(a.header, b.header)
	})
	return groups
}

// WriteTable writes the human report: the verdict first, then the findings
// grouped by package, the packages that fail the gate first.
func WriteTable(w io.Writer, r *Report, v *Verdict) error {
	var b strings.Builder
	if v != nil {
		status := "PASS"
		if !v.Pass {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "Gate: %s — %s\n", status, v.Summary)
		for _, e := range v.ExpiredIgnores {
			fmt.Fprintf(&b, "  expired ignore no longer applies: %s (expired %s; reason was: %s)\n",
				ignoreName(e), e.Expires, clean(e.Reason, 200))
		}
		for _, e := range v.UnusedIgnores {
			fmt.Fprintf(&b, "  unused ignore (matches nothing): %s\n", ignoreName(e))
		}
	}
	fmt.Fprintf(&b, "Image: %s", clean(r.Image.Ref, 300))
	if r.Image.OS != nil {
		fmt.Fprintf(&b, " (%s %s", clean(r.Image.OS.Family, 40), clean(r.Image.OS.Name, 40))
		if r.Image.OS.EOSL {
			b.WriteString(", end of support: fixes no longer published")
		}
		b.WriteString(")")
	}
	b.WriteString("\n")
	if !r.DB.UpdatedAt.IsZero() {
		fmt.Fprintf(&b, "Vulnerability DB: built %s", r.DB.UpdatedAt.UTC().Format("2006-01-02 15:04 MST"))
		if r.DB.Repository != "" {
			fmt.Fprintf(&b, " from %s", clean(r.DB.Repository, 200))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%d packages, %d findings\n", r.Packages, len(r.Findings))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	for _, g := range groupByPackage(r, v) {
		if _, err := fmt.Fprintf(w, "\n%s\n", g.header); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, i := range g.findings {
			f := r.Findings[i]
			gate := "-"
			reason := ""
			if d := decisionAt(v, i, len(r.Findings)); d != nil {
				gate = strings.ToUpper(string(d.Outcome))
				reason = d.Reason
			}
			fix := "no fix"
			if f.Fixable() {
				fix = "fixed in " + clean(f.FixedVersion, 80)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", gate, clean(f.Severity, 10), clean(f.ID, 60), fix,
				clean(f.Title, 80), clean(reason, 120))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func ignoreName(e IgnoreRef) string {
	if e.Package != "" {
		return clean(e.ID, 80) + " in " + clean(e.Package, 80)
	}
	return clean(e.ID, 80)
}
