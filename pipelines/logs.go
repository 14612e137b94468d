package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxLogBytes bounds the stored log of one stage; the rest is dropped with
// a note, so a runaway build cannot fill the store.
const MaxLogBytes = 4 << 20

// logName is the object holding the log of the attempt-th execution of
// a stage: RUN/STAGE for the first, RUN/STAGE/N after. Every execution
// writes an object of its own, never over an earlier one: replacing an
// object makes the object store purge the old chunks, which the worker's
// NATS user may not do (a purge could wipe every log in the bucket). The
// server refuses that request without an answer, and the put waited for
// one until its deadline, the result write sharing that deadline failed,
// and the run was handed back to execute the stage again, overwriting
// its log again: the run never finished (TestChartNATSCluster).
func logName(runID, stage string, attempt int) string {
	if attempt <= 1 {
		return runID + "/" + stage
	}
	return fmt.Sprintf("%s/%s/%d", runID, stage, attempt)
}

// logObject is the object holding the log s records. Log is only trusted
// to name a log of this run and stage.
func (s *StageStatus) logObject(runID string) string {
	if strings.HasPrefix(s.Log, runID+"/"+s.Name+"/") {
		return s.Log
	}
	return logName(runID, s.Name, 1)
}

// saveLog stores the log of one execution of a stage under name, in a
// bounded time of its own.
func (q *Queue) saveLog(ctx context.Context, name string, b []byte) error {
	// Bounded: an object put waits for the acks of its chunks, which a
	// NATS failover can lose; unbounded, the worker would hang while its
	// heartbeat kept the run leased.
	ctx, cancel := context.WithTimeout(ctx, 2*q.opts.Timeout)
	defer cancel()
	if _, err := q.logs.PutBytes(ctx, name, b); err != nil {
		return fmt.Errorf("queue: store log %s: %w", name, err)
	}
	return nil
}

// StageLog returns the stored log of one stage of a run (nil if the stage
// wrote none): that of the execution its record holds.
func (q *Queue) StageLog(ctx context.Context, runID, stage string) ([]byte, error) {
	if !ValidRunID(runID) {
		return nil, ErrNotFound
	}
	name := logName(runID, stage, 1)
	r, err := q.Get(ctx, runID)
	switch {
	case err == nil:
		if s := r.Stage(stage); s != nil {
			name = s.logObject(runID)
		}
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	return q.readLog(ctx, name)
}

func (q *Queue) readLog(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := q.bounded(ctx, 2*q.opts.Timeout)
	defer cancel()
	b, err := q.logs.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: read log %s: %w", name, err)
	}
	return b, nil
}

// WriteLogs writes the logs of every stage of run (or only of stage, if
// not empty), each under a "==> stage NAME (STATE)" header.
func (q *Queue) WriteLogs(ctx context.Context, w io.Writer, run *Run, stage string) error {
	for _, s := range run.Stages {
		if stage != "" && s.Name != stage {
			continue
		}
		b, err := q.readLog(ctx, s.logObject(run.ID))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "==> stage %s (%s)\n", s.Name, s.State); err != nil {
			return err
		}
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			b = append(b, '\n')
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// boundedBuffer keeps the first MaxLogBytes written and counts the rest.
type boundedBuffer struct {
	buf     bytes.Buffer
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := MaxLogBytes - b.buf.Len()
	if room >= len(p) {
		return b.buf.Write(p)
	}
	if room > 0 {
		b.buf.Write(p[:room])
	}
	b.dropped += len(p) - max(room, 0)
	return len(p), nil
}

func (b *boundedBuffer) bytes() []byte {
	if b.dropped == 0 {
		return b.buf.Bytes()
	}
	return fmt.Appendf(bytes.Clone(b.buf.Bytes()), "\n[gantry: log truncated, %d more bytes dropped]\n", b.dropped)
}
