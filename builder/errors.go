package builder

import (
	"errors"
	"fmt"
	"strings"

	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// StepError is a build that failed because of what it builds (a step that
// failed, a Dockerfile BuildKit refused): the user's error, told in the
// user's terms. The pipeline treats it as a verdict, not a malfunction to
// retry.
type StepError struct {
	// Step is BuildKit's name of the step, e.g. `[build 2/4] RUN make`;
	// empty when the Dockerfile itself was refused before any step ran.
	Step string
	// File and Line locate the instruction in the Dockerfile (Line 0 when
	// BuildKit gave no location).
	File string
	Line int
	// ExitCode of the step's process; -1 when the step was not a process
	// (e.g. a COPY of a missing file).
	ExitCode int
	// Output holds the last lines the step printed.
	Output []string
	// Daemon is the buildkitd address that ran the build.
	Daemon string
	// Err is BuildKit's error.
	Err error
}

func (e *StepError) Error() string {
	var b strings.Builder
	if e.Step != "" {
		fmt.Fprintf(&b, "build step %q ", e.Step)
	} else {
		b.WriteString("Dockerfile ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "(%s:%d) ", e.File, e.Line)
	}
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, "failed with exit code %d", e.ExitCode)
	} else {
		fmt.Fprintf(&b, "failed: %s", rootMessage(e.Err))
	}
	if len(e.Output) > 0 {
		fmt.Fprintf(&b, "; last %d line(s) of its output:", len(e.Output))
		for _, l := range e.Output {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// rootMessage is BuildKit's message without the gRPC wrapping.
func rootMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return msg
}

// IsBuildFailure says whether err is the build's own failure (a failing
// step or a refused Dockerfile), as opposed to a malfunction (no daemon,
// registry down, cancelled) that may succeed when retried.
func IsBuildFailure(err error) bool {
	var se *StepError
	return errors.As(err, &se)
}

// stepError extracts the failing vertex, exit code and Dockerfile location
// from a solve error; nil when the error is about neither a step nor a
// Dockerfile location.
func stepError(err error, t *tracker, file string) *StepError {
	se := &StepError{File: file, ExitCode: -1, Err: err}
	var ve *errdefs.VertexError
	if errors.As(err, &ve) {
		if d, perr := digest.Parse(ve.Digest); perr == nil {
			se.Step, se.Output = t.name(d), t.tail(d)
		}
	}
	var ee *gatewaypb.ExitError
	if errors.As(err, &ee) {
		se.ExitCode = int(ee.ExitCode)
	}
	for _, src := range errdefs.Sources(err) {
		if len(src.Ranges) > 0 && src.Ranges[0].Start != nil {
			se.Line = int(src.Ranges[0].Start.Line)
			break
		}
	}
	if ve == nil && se.Line == 0 {
		return nil
	}
	return se
}
