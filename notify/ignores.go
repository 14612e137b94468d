package notify

import (
	"fmt"
	"strings"
)

// Ignore is an ignore entry the scan gate used: a finding that would have
// failed the gate and was waived, with whose file waived it.
type Ignore struct {
	ID      string `json:"id"` // CVE-…, or pkg:NAME for a whole package
	Package string `json:"package,omitempty"`
	Reason  string `json:"reason"`
	Expires string `json:"expires"` // YYYY-MM-DD
	// Source is "server (scanner.ignoreFile)" or "repository (FILE)".
	Source string `json:"source"`
	Line   int    `json:"line,omitempty"`
	// Findings are the waived findings ("CRITICAL CVE-… in openssl 3.0.11").
	Findings []string `json:"findings"`
}

// maxIgnoresListed bounds the ignores written into one chat message or
// check run summary (all of them are on the run record and in the
// CloudEvent).
const maxIgnoresListed = 50

// line renders one use in one line of plain text.
func (ig Ignore) line(function string) string {
	who := ig.ID
	if ig.Package != "" {
		who += " (package " + ig.Package + ")"
	}
	return fmt.Sprintf("%s waived %s in function %s by %s until %s: %s", who, truncate(strings.Join(ig.Findings, "; "), 300),
		function, ig.origin(), ig.Expires, truncate(ig.Reason, 300))
}

// origin names where the ignore entry stands: its file, and line if known.
func (ig Ignore) origin() string {
	if ig.Line > 0 {
		return fmt.Sprintf("%s line %d", ig.Source, ig.Line)
	}
	return ig.Source
}

type namedIgnore struct {
	Ignore
	Function string
}

func allIgnores(fns []Function) []namedIgnore {
	var out []namedIgnore
	for _, f := range fns {
		for _, ig := range f.Ignores {
			out = append(out, namedIgnore{ig, f.Name})
		}
	}
	return out
}

// slackIgnores is the ignores section of the Slack text.
func slackIgnores(fns []Function) string {
	igs := allIgnores(fns)
	if len(igs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*Ignored findings (%d ignore entries used)*\n", len(igs))
	for i, ig := range igs {
		if i == maxIgnoresListed {
			fmt.Fprintf(&b, "• … %d more on the run record\n", len(igs)-i)
			break
		}
		fmt.Fprintf(&b, "• %s\n", slackEscape(ig.line(ig.Function)))
	}
	return b.String()
}

// mdIgnores is the ignores section of the check run summary.
func mdIgnores(fns []Function) []string {
	igs := allIgnores(fns)
	if len(igs) == 0 {
		return nil
	}
	rows := []string{fmt.Sprintf("\n### Ignored findings (%d ignore entries used)\n\n| ignore | waived | function | source | until | reason |\n| --- | --- | --- | --- | --- | --- |\n", len(igs))}
	for i, ig := range igs {
		if i == maxIgnoresListed {
			rows = append(rows, fmt.Sprintf("\n… %d more on the run record.\n", len(igs)-i))
			break
		}
		who := ig.ID
		if ig.Package != "" {
			who += " (" + ig.Package + ")"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", mdCell(who), mdCell(truncate(strings.Join(ig.Findings, "; "), 500)),
			mdCell(ig.Function), mdCell(ig.origin()), mdCell(ig.Expires), mdCell(truncate(ig.Reason, 300))))
	}
	return rows
}
