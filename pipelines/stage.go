package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Stage is one step of a pipeline (lint, build, scan, sign, deploy, notify).
//
// Run gets a copy of the run record (with the outputs of earlier stages)
// and a log writer whose content is stored beside the record. It returns
// outputs to merge into the record, and an error:
//   - nil: the stage passed;
//   - an error wrapping ErrStageFailed (see Fail): a verdict, the run fails
//     and is not retried (a lint threshold, a scan gate);
//   - any other error: a malfunction (registry down, buildkitd gone); the
//     run is retried from this stage until the queue's maxDeliver, then it
//     ends in state error and is dead-lettered.
//
// ctx is cancelled when the run is cancelled (by a user or a newer push) or
// the worker shuts down; a stage must return promptly then. Stages may run
// more than once for one run (at-least-once delivery), so they must be
// idempotent.
type Stage interface {
	Name() string
	Run(ctx context.Context, run Run, log io.Writer) (outputs map[string]string, err error)
}

// ErrStageFailed marks a stage error as a verdict rather than a malfunction.
var ErrStageFailed = errors.New("stage failed")

// Fail returns an error that makes a stage end in state failed, with the
// message shown to users.
func Fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrStageFailed, fmt.Sprintf(format, args...))
}
