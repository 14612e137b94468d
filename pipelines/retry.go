package pipelines

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// retryStore calls try, each call bounded by limit, until it succeeds,
// fails for good (try reports final: the error is not the store's), ctx
// ends, or storeRetryWindow has passed; between calls it waits with
// backoff (250 ms, doubling up to 2 s). It is for the writes of the
// worker executing a run: one the store did not take (a NATS leader
// election, a lost connection) is tried again while the heartbeat keeps
// the run's lease, rather than handing the run back at the first failure
// and executing its stage again.
func (q *Queue) retryStore(ctx context.Context, what string, log *slog.Logger, limit time.Duration, try func(context.Context) (final bool, err error)) error {
	giveUp := time.Now().Add(q.storeRetryWindow())
	wait := 250 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, limit)
		final, err := try(tctx)
		cancel()
		if err == nil || final || ctx.Err() != nil || time.Now().Add(wait).After(giveUp) {
			return err
		}
		log.Warn("worker: "+what+" failed; trying again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// storeRetryWindow is how long retryStore tries: a lease period, and at
// least four request timeouts (a leader election, and a request cut off
// by it that waits out its timeout, fit in it).
func (q *Queue) storeRetryWindow() time.Duration {
	return max(q.opts.AckWait, 4*q.opts.Timeout)
}

// updateHeld is update for the writes of the worker executing a run,
// tried again (retryStore) while the store does not answer. That is safe:
// fn is applied by compare-and-set to the record read anew, and checks
// the lease. An error of fn (lease lost, run cancelled) ends it at once.
func (q *Queue) updateHeld(ctx context.Context, id, what string, log *slog.Logger, fn func(*Run) error) (*Run, error) {
	var r *Run
	err := q.retryStore(ctx, what, log, q.opts.Timeout, func(ctx context.Context) (bool, error) {
		var decided, err error
		r, err = q.update(ctx, id, func(r *Run) error {
			decided = fn(r)
			return decided
		})
		return decided != nil && errors.Is(err, decided) || errors.Is(err, ErrNotFound), err
	})
	return r, err
}

// saveLogHeld stores the log of one execution of a stage under name,
// tried again (retryStore) while the store does not answer. A try after
// a failed one first reads the object back: if the failed put landed
// after all, it is not put again (replacing an object needs a purge the
// worker may not make; see logName).
func (q *Queue) saveLogHeld(ctx context.Context, name string, b []byte, log *slog.Logger) error {
	first := true
	return q.retryStore(ctx, "storing the stage log", log, q.opts.Timeout, func(ctx context.Context) (bool, error) {
		if !first {
			stored, err := q.logs.GetBytes(ctx, name)
			switch {
			case err == nil && bytes.Equal(stored, b):
				return true, nil
			case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) && !errors.Is(err, jetstream.ErrDigestMismatch):
				return false, err // the store does not answer yet
			}
		}
		first = false
		return false, q.saveLog(ctx, name, b)
	})
}
