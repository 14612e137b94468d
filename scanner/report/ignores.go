package report

import (
	"fmt"
	"strings"
)

// IgnoreUse is one ignore entry that accepted findings in a verdict, with
// the findings it accepted ("CVE-2099-0001 in openssl 3.0.11-1").
type IgnoreUse struct {
	IgnoreRef
	Findings []string `json:"findings"`
}

// UsedIgnores lists every ignore entry that made a finding of r pass the
// gate under v (Outcome Ignored), in the order of first use. Nil when none
// was used, or when v is not a verdict on r.
func UsedIgnores(r *Report, v *Verdict) []IgnoreUse {
	if r == nil || v == nil || len(v.Decisions) != len(r.Findings) {
		return nil
	}
	var out []IgnoreUse
	at := map[IgnoreRef]int{}
	for i, d := range v.Decisions {
		if d.Outcome != Ignored || d.Ignore == nil {
			continue
		}
		j, ok := at[*d.Ignore]
		if !ok {
			j = len(out)
			at[*d.Ignore] = j
			out = append(out, IgnoreUse{IgnoreRef: *d.Ignore})
		}
		f := r.Findings[i]
		out[j].Findings = append(out[j].Findings, fmt.Sprintf("%s %s in %s %s", f.Severity, f.ID, f.Package, f.InstalledVersion))
	}
	return out
}

// String is the use in one line, for logs and messages.
func (u IgnoreUse) String() string {
	who := u.ID
	if u.Package != "" {
		who += " (package " + u.Package + ")"
	}
	src := u.Source
	if src == "" {
		src = "ignore file"
	}
	if u.Line > 0 {
		src += fmt.Sprintf(" line %d", u.Line)
	}
	return fmt.Sprintf("%s, %s, until %s (%s): accepted %s", who, src, u.Expires, u.Reason, strings.Join(u.Findings, "; "))
}
