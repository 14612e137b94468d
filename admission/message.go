package admission

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits that keep a response within what the API server passes on: it
// truncates warnings past 4096 runes in total and 256 runes each, and a
// deny message is shown whole to the user, so keep it readable.
const (
	MaxMessageRunes  = 4000
	MaxWarningRunes  = 256
	MaxWarningsRunes = 4000
)

// Message is the deny (or, in warn mode, warning) text: the object, then
// every violation on its own line, in the style of Pod Security Admission's
// own messages.
func (d Decision) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gantry: %s refused (%s):", d.Object, plural(len(d.Violations), "violation"))
	for i, v := range d.Violations {
		line := "\n- " + v.String()
		if utf8.RuneCountInString(b.String())+utf8.RuneCountInString(line) > MaxMessageRunes-40 {
			fmt.Fprintf(&b, "\n- … and %d more", len(d.Violations)-i)
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

// Warnings are the response's warnings: one per violation in warn mode or
// under break-glass, plus notes; each and all of them bounded.
func (d Decision) Warnings() []string {
	var items []string
	if d.Allowed && len(d.Violations) > 0 && d.Mode != ModeAudit || d.BreakGlass != "" {
		for _, v := range d.Violations {
			items = append(items, d.Object+": "+v.String())
		}
	}
	items = append(items, d.Notes...)
	var out []string
	total := 0
	for i, w := range items {
		w = shorten(w, MaxWarningRunes-1)
		n := utf8.RuneCountInString(w)
		if total+n > MaxWarningsRunes-40 {
			out = append(out, fmt.Sprintf("… and %d more warnings", len(items)-i))
			break
		}
		total += n
		out = append(out, w)
	}
	return out
}
