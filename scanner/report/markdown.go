package report

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultMarkdownLimit keeps a summary within what chat webhooks and GitHub
// check-run summaries accept comfortably.
const DefaultMarkdownLimit = 4000

// Markdown returns a short summary for notifications: the verdict, then the
// findings that matter most (failing first, then by severity), cut to at most
// limit bytes (DefaultMarkdownLimit when limit <= 0) with a note of how many
// were left out.
func Markdown(r *Report, v *Verdict, limit int) string {
	if limit <= 0 {
		limit = DefaultMarkdownLimit
	}
	var head strings.Builder
	switch {
	case v == nil:
		head.WriteString("**Scan**")
	case v.Pass:
		head.WriteString("**Scan gate: passed** ✅")
	default:
		head.WriteString("**Scan gate: failed** ❌")
	}
	fmt.Fprintf(&head, " `%s`\n\n", mdCode(r.Image.Ref))
	if v != nil {
		fmt.Fprintf(&head, "%s\n", mdText(v.Summary, 300))
		for _, e := range v.ExpiredIgnores {
			fmt.Fprintf(&head, "\n⚠️ ignore for `%s` expired on %s and no longer applies", mdCode(ignoreName(e)), mdText(e.Expires, 20))
		}
		if len(v.ExpiredIgnores) > 0 {
			head.WriteString("\n")
		}
	}
	if len(r.Findings) == 0 {
		head.WriteString("\nNo vulnerabilities found.\n")
		return capBytes(head.String(), limit)
	}
	order := make([]int, len(r.Findings))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := SeverityRank(r.Findings[a].Severity), SeverityRank(r.Findings[b].Severity)
		if da, db := decisionAt(v, a, len(r.Findings)), decisionAt(v, b, len(r.Findings)); da != nil && db != nil {
			ra += 10 * outcomeRank(da.Outcome)
			rb += 10 * outcomeRank(db.Outcome)
		}
		return ra - rb
	})
	const tableHead = "\n| gate | severity | id | package | installed | fixed |\n| --- | --- | --- | --- | --- | --- |\n"
	out := head.String() + tableHead
	if len(out) > limit {
		return capBytes(head.String(), limit)
	}
	shown := 0
	for _, i := range order {
		f := r.Findings[i]
		gate := "-"
		if d := decisionAt(v, i, len(r.Findings)); d != nil {
			gate = string(d.Outcome)
		}
		fixed := mdText(f.FixedVersion, 60)
		if fixed == "" {
			fixed = "no fix"
		}
		id := mdText(f.ID, 60)
		if strings.HasPrefix(f.URL, "https://") {
			id = fmt.Sprintf("[%s](%s)", id, mdURL(f.URL))
		}
		row := fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", gate, mdText(f.Severity, 10), id,
			mdText(f.Package, 60), mdText(f.InstalledVersion, 60), fixed)
		more := fmt.Sprintf("\n…and %d more findings (see the full report).\n", len(r.Findings)-shown)
		if len(out)+len(row)+len(more) > limit {
			return capBytes(out+more, limit)
		}
		out += row
		shown++
	}
	return out
}

// mdText escapes text for a markdown table cell.
func mdText(s string, max int) string {
	s = clean(s, max)
	r := strings.NewReplacer("|", `\|`, "`", "'", "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`, "*", `\*`, "_", `\_`)
	return r.Replace(s)
}

// mdCode makes text safe inside a code span.
func mdCode(s string) string { return strings.ReplaceAll(clean(s, 300), "`", "'") }

// mdURL keeps a link target from closing the link early.
func mdURL(s string) string {
	return strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(clean(s, 300))
}

func capBytes(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := max(limit-len("…\n"), 0)
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…\n"
}
