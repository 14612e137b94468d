package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxLogBytes bounds the stored log of one stage; the rest is dropped with
// a note, so a runaway build cannot fill the store.
const MaxLogBytes = 4 << 20

func logName(runID, stage string) string { return runID + "/" + stage }

func (q *Queue) saveLog(ctx context.Context, runID, stage string, b []byte) error {
	// Bounded: an object put waits for the acks of its chunks, which a
	// NATS failover can lose; unbounded, the worker would hang while its
	// heartbeat kept the run leased.
	ctx, cancel := context.WithTimeout(ctx, 2*q.opts.Timeout)
	defer cancel()
	if _, err := q.logs.PutBytes(ctx, logName(runID, stage), b); err != nil {
		return fmt.Errorf("queue: store log of %s/%s: %w", runID, stage, err)
	}
	return nil
}

// StageLog returns the stored log of one stage of a run (nil if the stage
// wrote none).
func (q *Queue) StageLog(ctx context.Context, runID, stage string) ([]byte, error) {
	if !ValidRunID(runID) {
		return nil, ErrNotFound
	}
	b, err := q.logs.GetBytes(ctx, logName(runID, stage))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: read log of %s/%s: %w", runID, stage, err)
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
		b, err := q.StageLog(ctx, run.ID, s.Name)
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
