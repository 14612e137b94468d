package clusteraudit

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report for people: one row per violation
// (NAMESPACE, MODE, KIND/NAME, RULE, REASON, FIX), then a summary line.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Workloads) > 0 {
		fmt.Fprintln(tw, "NAMESPACE\tMODE\tKIND/NAME\tRULE\tREASON\tFIX")
	}
	for _, wl := range r.Workloads {
		mode := wl.Mode
		if !wl.Denied {
			mode = "break-glass until " + wl.BreakGlass
		}
		kn := wl.Kind + "/" + wl.Name
		if len(wl.Covers) > 0 {
			kn += fmt.Sprintf(" (+%d owned)", len(wl.Covers))
		}
		for _, v := range wl.Violations {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", wl.Namespace, mode, kn, v.Rule, cell(reason(v.Container, v.Image, v.Message)), cell(v.Fix))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d scanned in %s, %d would be denied\n", r.Scanned, strings.Join(r.Namespaces, ","), r.Denied)
	return err
}

func reason(container, image, msg string) string {
	var b strings.Builder
	if container != "" {
		fmt.Fprintf(&b, "container %q ", container)
	}
	if image != "" {
		fmt.Fprintf(&b, "image %q ", image)
	}
	if b.Len() > 0 {
		b.WriteString("— ")
	}
	b.WriteString(msg)
	return b.String()
}

// cell keeps a value on one line and out of the column separators.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}
