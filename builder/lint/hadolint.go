package lint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// HadolintTimeout bounds one hadolint run.
const HadolintTimeout = 30 * time.Second

// maxHadolintOutput bounds what is read from hadolint: its JSON for even a
// huge Dockerfile is far smaller.
const maxHadolintOutput = 4 << 20

type hadolint struct {
	path    string // resolved binary; empty when absent or off
	missing string // what was looked for, when absent
	off     bool
}

// newHadolint finds the binary. Looked up on PATH by default, its absence
// is only noted; a binary the user named explicitly must exist (fail closed:
// a configured check that silently does not run is worse than an error).
func newHadolint(configured string) (*hadolint, error) {
	if strings.EqualFold(configured, "off") {
		return &hadolint{off: true}, nil
	}
	if configured == "" {
		p, err := exec.LookPath("hadolint")
		if err != nil {
			return &hadolint{missing: "hadolint"}, nil
		}
		return &hadolint{path: p}, nil
	}
	p, err := exec.LookPath(configured)
	if err != nil {
		return nil, fmt.Errorf("hadolint %q (lint.hadolint) cannot be run: %v; fix the path, or set it to \"\" (use PATH) or \"off\"", configured, err)
	}
	return &hadolint{path: p}, nil
}

// note is the one remark about hadolint for the whole run.
func (h *hadolint) note() string {
	if h.missing == "" {
		return ""
	}
	return `hadolint: not found on PATH, its rules were skipped (install hadolint or set lint.hadolint to its path; "off" silences this)`
}

func (h *hadolint) run(ctx context.Context, f File) ([]Finding, error) {
	if h.path == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, HadolintTimeout)
	defer cancel()
	// The Dockerfile goes on stdin so that what hadolint checks is exactly
	// what the other sources checked (the file may not even be on disk).
	cmd := exec.CommandContext(ctx, h.path, "--no-color", "--format", "json", "-")
	cmd.Stdin = bytes.NewReader(f.Data)
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxHadolintOutput, 4096
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("hadolint (%s) on %s: %w", h.path, f.Path, ctx.Err())
	}
	if stdout.overflow {
		return nil, fmt.Errorf("hadolint (%s) on %s: output larger than %d bytes", h.path, f.Path, maxHadolintOutput)
	}
	// hadolint exits 1 when it found something; its JSON is still complete.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1 && stdout.Len() > 0) {
		return nil, fmt.Errorf("hadolint (%s) on %s failed: %v: %s", h.path, f.Path, err, strings.TrimSpace(stderr.String()))
	}
	found, err := ParseHadolintJSON(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("hadolint (%s) on %s: %w", h.path, f.Path, err)
	}
	return found, nil
}

// hadolintResult is one entry of `hadolint --format json`, as documented in
// hadolint's README (Formatter/Json.hs): code, column, file, level, line,
// message; level is error, warning, info or style.
type hadolintResult struct {
	Code    string `json:"code"`
	Column  int    `json:"column"`
	File    string `json:"file"`
	Level   string `json:"level"`
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// ParseHadolintJSON reads hadolint's JSON output into findings (File left
// empty: the caller knows which file it gave hadolint).
func ParseHadolintJSON(b []byte) ([]Finding, error) {
	var rs []hadolintResult
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("hadolint output is not the JSON array `hadolint --format json` writes: %w", err)
	}
	out := make([]Finding, 0, len(rs))
	for i, r := range rs {
		if r.Code == "" {
			return nil, fmt.Errorf("hadolint result %d has no code", i)
		}
		sev, err := ParseSeverity(r.Level)
		if err != nil || sev == Never {
			return nil, fmt.Errorf("hadolint result %d (%s): unknown level %q", i, r.Code, r.Level)
		}
		if r.Line < 0 {
			r.Line = 0
		}
		out = append(out, Finding{Rule: r.Code, Source: SourceHadolint, Severity: sev,
			Line: r.Line, Message: r.Message, DocURL: hadolintDocURL(r.Code)})
	}
	return out, nil
}

func hadolintDocURL(code string) string {
	switch {
	case strings.HasPrefix(code, "DL"):
		return "https://github.com/hadolint/hadolint/wiki/" + code
	case strings.HasPrefix(code, "SC"):
		return "https://www.shellcheck.net/wiki/" + code
	}
	return ""
}

// limitedBuffer keeps at most limit bytes and remembers that it dropped some.
type limitedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.overflow = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

var _ io.Writer = (*limitedBuffer)(nil)
