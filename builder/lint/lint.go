// Package lint checks Dockerfiles before they are built. Three sources are
// merged into one list of findings:
//
//   - Gantry's own supply-chain rules (this package, always on);
//   - BuildKit's Dockerfile checks, run in process through the BuildKit
//     library (always on, no daemon needed);
//   - hadolint, run as a subprocess when a binary is configured or on PATH
//     (absent: noted once, the other sources carry on).
//
// Severities can be overridden per rule, findings can be ignored in the
// configuration or inline (`# gantry:ignore=RULE reason` on the line above an
// instruction; the reason is mandatory), and a threshold decides failure.
package lint

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Severity orders findings; a higher value is worse.
type Severity int

// Severities, lowest first.
const (
	Info Severity = iota + 1
	Warning
	Error
)

// Never is a threshold no finding reaches: lint reports but never fails.
const Never Severity = 100

// String is the lower-case name used in config, output and SARIF mapping.
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	case Never:
		return "never"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText writes the name, so JSON output says "error", not 3.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSeverity reads "error", "warning", "info" or "never" (a threshold
// that never fails). hadolint's "style" reads as info.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "error":
		return Error, nil
	case "warning", "warn":
		return Warning, nil
	case "info", "style":
		return Info, nil
	case "never", "none":
		return Never, nil
	}
	return 0, fmt.Errorf("unknown severity %q (allowed: error, warning, info, never)", s)
}

// Sources of findings.
const (
	SourceGantry   = "gantry"
	SourceBuildKit = "buildkit"
	SourceHadolint = "hadolint"
)

// Finding is one problem at one place.
type Finding struct {
	Rule     string   `json:"rule"`
	Source   string   `json:"source"`
	Severity Severity `json:"severity"`
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Message  string   `json:"message"`
	DocURL   string   `json:"docURL,omitempty"`
	// Suppression is the reason given when the finding was ignored; set
	// only on Report.Ignored entries.
	Suppression string `json:"suppression,omitempty"`
}

// File is one Dockerfile to check. Path is how findings name it.
type File struct {
	Path string
	Data []byte
}

// Ignore drops findings of one rule, for a stated reason, optionally only
// in one file.
type Ignore struct {
	Rule   string
	Reason string
	// File, when set, limits the ignore to findings in that path.
	File string
}

// Options tune one Lint call. The zero value runs every source with default
// severities.
type Options struct {
	// Hadolint is the hadolint binary: empty looks "hadolint" up on PATH,
	// "off" disables it.
	Hadolint string
	// Severity overrides a rule's severity by rule id (case-insensitive);
	// the value "off" drops the rule.
	Severity map[string]string
	// Ignores drop findings by rule, with a reason.
	Ignores []Ignore
	// BuildArgs resolve ARGs used in FROM lines, as the build would.
	BuildArgs map[string]string
	// Target is the stage that will be built; empty means the last stage.
	// Rules about the final image (USER) check this stage.
	Target string
}

// Report is the merged outcome for every file.
type Report struct {
	Findings []Finding `json:"findings"`
	// Ignored are findings dropped by an ignore, with its reason (kept for
	// audit and for SARIF suppressions).
	Ignored []Finding `json:"ignored,omitempty"`
	// Notes are one-line remarks about the run itself (e.g. hadolint absent).
	Notes []string `json:"notes,omitempty"`
}

// Max is the highest severity among the findings (0 when there are none).
func (r *Report) Max() Severity {
	var m Severity
	for _, f := range r.Findings {
		m = max(m, f.Severity)
	}
	return m
}

// Fails says whether some finding is at or above threshold.
func (r *Report) Fails(threshold Severity) bool {
	return threshold != Never && r.Max() >= threshold
}

// Count returns how many findings have severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// ParseError is a Dockerfile that does not parse: nothing else can be said
// about it, and it cannot be built.
type ParseError struct {
	File string
	Line int // 0 when the parser gave no location
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: Dockerfile does not parse: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: Dockerfile does not parse: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// MaxDockerfileSize bounds one Dockerfile: BuildKit's own frontend refuses
// larger ones, and a bigger file is a mistake or an attack.
const MaxDockerfileSize = 2 << 20

// Lint checks files and returns the merged report. A file that does not
// parse returns a *ParseError; other errors are runtime failures (e.g.
// hadolint crashed). Severity overrides and ignores are applied before the
// report is returned.
func Lint(ctx context.Context, files []File, opts Options) (*Report, error) {
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	rep := &Report{}
	hl, err := newHadolint(opts.Hadolint)
	if err != nil {
		return nil, err
	}
	if note := hl.note(); note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	for _, f := range files {
		if len(f.Data) > MaxDockerfileSize {
			return nil, fmt.Errorf("%s: Dockerfile is %d bytes, larger than the %d-byte limit", f.Path, len(f.Data), MaxDockerfileSize)
		}
		df, err := parse(f)
		if err != nil {
			return nil, err
		}
		var found []Finding
		found = append(found, gantryRules(df, opts)...)
		bk, err := buildkitChecks(ctx, f, opts)
		if err != nil {
			return nil, err
		}
		found = append(found, bk...)
		hf, err := hl.run(ctx, f)
		if err != nil {
			return nil, err
		}
		found = append(found, hf...)
		inline, bad := inlineIgnores(df)
		found = append(found, bad...)
		for _, fd := range found {
			fd.File = f.Path
			if reason, ok := ignored(fd, inline, opts.Ignores); ok {
				fd.Suppression = reason
				rep.Ignored = append(rep.Ignored, fd)
				continue
			}
			if s, ok := override(fd.Rule, opts.Severity); ok {
				if s == 0 {
					continue // "off"
				}
				fd.Severity = s
			}
			rep.Findings = append(rep.Findings, fd)
		}
	}
	sortFindings(rep.Findings)
	sortFindings(rep.Ignored)
	return rep, nil
}

func validateOptions(o Options) error {
	var errs []error
	for rule, s := range o.Severity {
		if strings.EqualFold(s, "off") {
			continue
		}
		v, err := ParseSeverity(s)
		if err != nil || v == Never {
			errs = append(errs, fmt.Errorf("severity override for rule %s: %q (allowed: error, warning, info, off)", rule, s))
		}
	}
	for _, ig := range o.Ignores {
		if strings.TrimSpace(ig.Rule) == "" {
			errs = append(errs, errors.New("ignore without a rule id"))
		} else if strings.TrimSpace(ig.Reason) == "" {
			errs = append(errs, fmt.Errorf("ignore of rule %s has no reason: every ignore must say why", ig.Rule))
		}
	}
	return errors.Join(errs...)
}

// override returns the configured severity for rule; 0 with ok means off.
func override(rule string, m map[string]string) (Severity, bool) {
	for k, v := range m {
		if strings.EqualFold(k, rule) {
			if strings.EqualFold(v, "off") {
				return 0, true
			}
			s, err := ParseSeverity(v)
			return s, err == nil
		}
	}
	return 0, false
}

func ignored(f Finding, inline []inlineIgnore, cfg []Ignore) (string, bool) {
	for _, ig := range inline {
		if f.Line >= ig.from && f.Line <= ig.to && slices.ContainsFunc(ig.rules, func(r string) bool { return strings.EqualFold(r, f.Rule) }) {
			return ig.reason, true
		}
	}
	for _, ig := range cfg {
		if strings.EqualFold(ig.Rule, f.Rule) && (ig.File == "" || ig.File == f.File) {
			return ig.Reason, true
		}
	}
	return "", false
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line),
			cmp.Compare(b.Severity, a.Severity), cmp.Compare(a.Rule, b.Rule))
	})
}

// dockerfile is one parsed file.
type dockerfile struct {
	file     File
	ast      *parser.Node
	escape   rune
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
}

func parse(f File) (*dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(f.Data))
	if err != nil {
		return nil, parseError(f.Path, err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, parseError(f.Path, err)
	}
	if len(stages) == 0 {
		return nil, &ParseError{File: f.Path, Err: errors.New("no FROM instruction: nothing to build")}
	}
	return &dockerfile{file: f, ast: res.AST, escape: res.EscapeToken, stages: stages, metaArgs: metaArgs}, nil
}

func parseError(path string, err error) error {
	pe := &ParseError{File: path, Err: err}
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		pe.Line = le.Locations[0][0].Start.Line
		// The location is already in our message; keep the parser's words.
		pe.Err = errors.New(strings.TrimSpace(stripLocation(err.Error())))
	}
	return pe
}

// stripLocation removes BuildKit's "dockerfile parse error on line N: "
// prefix, since ParseError prints the line itself.
func stripLocation(msg string) string {
	if i := strings.Index(msg, "parse error on line "); i >= 0 {
		if j := strings.Index(msg[i:], ": "); j >= 0 {
			return msg[:i] + msg[i+j+2:]
		}
	}
	return msg
}

// inlineIgnore is a `# gantry:ignore=RULES reason` comment and the lines of
// the instruction it precedes.
type inlineIgnore struct {
	rules    []string
	reason   string
	from, to int
}

const ignorePrefix = "gantry:ignore="

// inlineIgnores reads ignore comments from the comments directly above each
// instruction. An ignore without a reason is not applied (fail closed) and
// is itself reported.
func inlineIgnores(df *dockerfile) ([]inlineIgnore, []Finding) {
	var out []inlineIgnore
	var bad []Finding
	for _, n := range df.ast.Children {
		for _, c := range n.PrevComment {
			rest, ok := strings.CutPrefix(strings.TrimSpace(c), ignorePrefix)
			if !ok {
				continue
			}
			ids, reason, _ := strings.Cut(rest, " ")
			reason = strings.TrimSpace(reason)
			var rules []string
			for id := range strings.SplitSeq(ids, ",") {
				if id = strings.TrimSpace(id); id != "" {
					rules = append(rules, id)
				}
			}
			if len(rules) == 0 || reason == "" {
				bad = append(bad, newFinding(RuleIgnoreReason, n.StartLine,
					fmt.Sprintf("inline ignore %q is not applied: write `# gantry:ignore=RULE[,RULE] reason`, the reason is required", "# "+c)))
				continue
			}
			out = append(out, inlineIgnore{rules: rules, reason: reason, from: n.StartLine, to: n.EndLine})
		}
	}
	return out, bad
}
