package lint

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/owenrumney/go-sarif/v2/sarif"
)

// WriteTable prints one line per finding: file:line, rule, severity,
// message; then a summary line.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s:%d\t%s\t%s\t%s\n", f.File, f.Line, f.Rule, f.Severity, oneLine(f.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d error(s), %d warning(s), %d info, %d ignored\n",
		r.Count(Error), r.Count(Warning), r.Count(Info), len(r.Ignored))
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// WriteJSON writes the report as one indented JSON object.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SARIF levels: SARIF has no "info" level, its "note" is the closest.
func sarifLevel(s Severity) string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "note"
}

// WriteSARIF writes the report as SARIF 2.1.0, the format GitHub code
// scanning uploads. Each source is one run (one tool); ignored findings are
// included with an in-source suppression carrying the reason, so that the
// code-scanning UI shows them as dismissed rather than losing them.
func WriteSARIF(w io.Writer, r *Report) error {
	rep, err := sarif.New(sarif.Version210)
	if err != nil {
		return err
	}
	runs := map[string]*sarif.Run{}
	order := []string{SourceGantry, SourceBuildKit, SourceHadolint}
	info := map[string]string{
		SourceGantry:   "https://github.com/gantry-dev/gantry",
		SourceBuildKit: "https://docs.docker.com/reference/build-checks/",
		SourceHadolint: "https://github.com/hadolint/hadolint",
	}
	run := func(source string) *sarif.Run {
		if r, ok := runs[source]; ok {
			return r
		}
		name := source
		if source == SourceBuildKit {
			name = "buildkit-checks"
		}
		nr := sarif.NewRunWithInformationURI(name, info[source])
		if source == SourceGantry {
			// Every Gantry rule is described, also those that did not fire,
			// so the code-scanning UI can explain any of them.
			for _, rule := range Rules() {
				nr.AddRule(rule.ID).WithShortDescription(sarif.NewMultiformatMessageString(rule.Summary)).
					WithHelpURI(rule.DocURL()).
					WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(sarifLevel(rule.Severity)))
			}
		}
		runs[source] = nr
		return nr
	}
	add := func(f Finding, suppressed bool) {
		rn := run(f.Source)
		if _, err := rn.GetRuleById(f.Rule); err != nil {
			rule := rn.AddRule(f.Rule).WithShortDescription(sarif.NewMultiformatMessageString(f.Rule))
			if f.DocURL != "" {
				rule.WithHelpURI(f.DocURL)
			}
		}
		pl := sarif.NewPhysicalLocation().WithArtifactLocation(sarif.NewSimpleArtifactLocation(filepath.ToSlash(f.File)))
		if f.Line > 0 {
			pl.WithRegion(sarif.NewRegion().WithStartLine(f.Line))
		}
		res := rn.CreateResultForRule(f.Rule).WithLevel(sarifLevel(f.Severity)).
			WithMessage(sarif.NewTextMessage(f.Message)).
			WithLocations([]*sarif.Location{sarif.NewLocationWithPhysicalLocation(pl)})
		if suppressed {
			res.AddSuppression(sarif.NewSuppression("inSource").WithJustifcation(f.Suppression))
		}
	}
	for _, f := range r.Findings {
		add(f, false)
	}
	for _, f := range r.Ignored {
		add(f, true)
	}
	run(SourceGantry) // always at least one run, even when clean
	for _, s := range order {
		if rn, ok := runs[s]; ok {
			rep.AddRun(rn)
		}
	}
	return rep.PrettyWrite(w)
}
