package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/pipelines"
)

// RunOnce executes stages in order for run without a queue (gantry run),
// with the worker's semantics: a passed stage's outputs are merged into the
// record, a verdict (pipelines.ErrStageFailed) ends the run failed, any
// other error ends it in state error (no retry: the caller reruns), a
// cancelled ctx ends it cancelled. Each stage's log is streamed to progress
// as it is written, each line prefixed with the stage name. It returns the
// final record; err is the deciding stage's error.
func RunOnce(ctx context.Context, run *pipelines.Run, stages []pipelines.Stage, progress io.Writer) (*pipelines.Run, error) {
	if run.Outputs == nil {
		run.Outputs = map[string]string{}
	}
	now := time.Now().UTC()
	run.State, run.StartedAt, run.Attempts = pipelines.StateRunning, &now, 1
	run.Stages = run.Stages[:0]
	for _, s := range stages {
		run.Stages = append(run.Stages, pipelines.StageStatus{Name: s.Name(), State: pipelines.StateQueued})
	}
	lw := &lockedWriter{w: progress}
	var final error
	for i, s := range stages {
		ss := &run.Stages[i]
		start := time.Now().UTC()
		ss.State, ss.StartedAt, ss.Attempts = pipelines.StateRunning, &start, 1
		fmt.Fprintf(lw, "==> %s\n", s.Name())
		var buf countingWriter
		pw := &prefixWriter{w: lw, prefix: "    " + s.Name() + " | "}
		out, err := func() (out map[string]string, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("stage %s panicked: %v", s.Name(), r)
				}
			}()
			return s.Run(ctx, *run, io.MultiWriter(&buf, pw))
		}()
		pw.Flush()
		end := time.Now().UTC()
		ss.FinishedAt, ss.LogBytes = &end, buf.n
		switch {
		case err == nil:
			ss.State = pipelines.StatePassed
			for k, v := range out {
				run.Outputs[k] = v
			}
			fmt.Fprintf(lw, "    %s passed (%s)\n", s.Name(), end.Sub(start).Round(time.Millisecond))
			continue
		case ctx.Err() != nil:
			ss.State, ss.Message = pipelines.StateCancelled, context.Cause(ctx).Error()
			run.State = pipelines.StateCancelled
		case errors.Is(err, pipelines.ErrStageFailed):
			ss.State, ss.Message = pipelines.StateFailed, err.Error()
			run.State = pipelines.StateFailed
		default:
			ss.State, ss.Message = pipelines.StateError, err.Error()
			run.State = pipelines.StateError
		}
		reason := strings.TrimPrefix(err.Error(), pipelines.ErrStageFailed.Error()+": ")
		fmt.Fprintf(lw, "    %s %s: %s\n", s.Name(), ss.State, reason)
		run.Message = fmt.Sprintf("stage %s %s: %s", s.Name(), ss.State, reason)
		final = err
		for j := i + 1; j < len(run.Stages); j++ {
			run.Stages[j].State, run.Stages[j].Message = pipelines.StateCancelled, "not run: "+run.Message
		}
		break
	}
	if final == nil {
		run.State = pipelines.StatePassed
	}
	end := time.Now().UTC()
	run.FinishedAt = &end
	return run, final
}

// lockedWriter serialises writes from the goroutines of one stage.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter writes whole lines, each with a prefix, so the output of
// functions built in parallel stays readable. Flush writes a last partial
// line.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(p.prefix)+i+1)
		line = append(append(line, p.prefix...), p.buf[:i+1]...)
		if _, err := p.w.Write(line); err != nil {
			return len(b), nil // a log sink failing must not fail the stage
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes what is left without a newline.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		_, _ = p.w.Write(append(append([]byte(p.prefix), p.buf...), '\n'))
		p.buf = nil
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }
