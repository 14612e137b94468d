package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/audit"
)

// WorkerOptions configure Work.
type WorkerOptions struct {
	// Concurrency is how many runs this process executes at once.
	Concurrency int
	// Stages run in order for every run.
	Stages []Stage
	// RetryDelay is the pause before a run whose stage hit a transient
	// error is handed out again.
	RetryDelay time.Duration
	// Origin is checked on every delivery before any stage runs; a run
	// that fails it is not executed (required).
	Origin *OriginPolicy
	// Audit receives a record of every run the worker rejects; nil: none.
	Audit *audit.Recorder
}

// errRunCancelled is the cancel cause when the run was cancelled, as
// opposed to the worker shutting down.
var errRunCancelled = errors.New("run cancelled")

// errShutdown is the cancel cause when the worker stops.
var errShutdown = errors.New("worker shutting down")

// Work executes queued runs until ctx is cancelled. On return, runs it was
// executing have been handed back to the queue (negative ack) so another
// worker resumes them; nothing is lost.
func (q *Queue) Work(ctx context.Context, opts WorkerOptions) error {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 10 * time.Second
	}
	if err := opts.Origin.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range opts.Stages {
		if seen[s.Name()] || s.Name() == "" || !ValidStageName(s.Name()) {
			return fmt.Errorf("pipelines: stage name %q is empty, invalid or used twice", s.Name())
		}
		seen[s.Name()] = true
	}
	// Stopping is a cancel with a cause, so that stages and records can
	// tell "the worker stops" (resume later) from "the run was cancelled".
	wctx, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	go func() {
		select {
		case <-ctx.Done():
			stop(errShutdown)
		case <-wctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(func() { q.workLoop(wctx, opts) })
	}
	wg.Wait()
	return nil
}

// ValidStageName reports whether s can name a stage: lower-case letters,
// digits and dashes (stage names appear in URLs and store keys).
func ValidStageName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (q *Queue) workLoop(ctx context.Context, opts WorkerOptions) {
	for ctx.Err() == nil {
		// A bounded pull: the server expires the request, so a worker that
		// stops does not leave a pull open that would swallow a message.
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := q.consumer.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				continue
			}
			q.log.Warn("worker: fetching a run failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if ctx.Err() != nil {
			_ = msg.Nak() // fetched while stopping: hand it straight back
			return
		}
		q.handle(ctx, msg, opts)
	}
}

// handle executes one delivery of a run and settles the message.
func (q *Queue) handle(ctx context.Context, msg jetstream.Msg, opts WorkerOptions) {
	var m queueMsg
	if err := json.Unmarshal(msg.Data(), &m); err != nil || !ValidRunID(m.RunID) {
		q.log.Error("worker: dropping a malformed queue message", "err", err)
		_ = msg.TermWithReason("malformed")
		return
	}
	log := q.log.With("run", m.RunID)
	md, err := msg.Metadata()
	if err != nil {
		log.Error("worker: message without metadata", "err", err)
		_ = msg.Nak()
		return
	}
	// attempt counts executions (leases taken), not deliveries: a
	// delivery that finds the store unavailable (a NATS failover) or the
	// run leased by another worker costs the run none of its attempts.
	attempt := 0
	now := time.Now().UTC()
	holder := NewRunID(now) // unique per delivery handled
	var leasedUntil time.Time
	var rejected *rejection
	var rejectedRun Run
	lctx, lcancel := context.WithTimeout(ctx, q.opts.Timeout)
	defer lcancel()
	run, err := q.update(lctx, m.RunID, func(r *Run) error {
		if r.State.Final() {
			return errNoChange
		}
		// The record leased is the record checked (compare-and-set).
		if rejected = opts.Origin.check(r); rejected != nil {
			rejectedRun = *r
			return errRejected
		}
		if r.Lease != nil && now.Before(r.Lease.Until) {
			leasedUntil = r.Lease.Until
			return errLeased
		}
		r.Lease = &Lease{Holder: holder, Until: now.Add(q.opts.AckWait)}
		r.State = StateRunning
		r.Message = ""
		r.Attempts++
		attempt = r.Attempts
		if r.StartedAt == nil {
			r.StartedAt = &now
		}
		for _, s := range opts.Stages {
			if r.Stage(s.Name()) == nil {
				r.Stages = append(r.Stages, StageStatus{Name: s.Name(), State: StateQueued})
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errRejected):
		q.reject(ctx, m.RunID, &rejectedRun, rejected, opts.Audit)
		q.deadLetter(ctx, msg, m.RunID, "rejected, not executed: "+rejected.detail)
		return
	case errors.Is(err, errLeased):
		// Another delivery of this run is being executed (or its worker
		// died moments ago): come back when the lease ends.
		log.Info("run is leased by another worker; retrying later", "until", leasedUntil)
		_ = msg.NakWithDelay(time.Until(leasedUntil) + 100*time.Millisecond)
		return
	case errors.Is(err, ErrNotFound):
		log.Error("worker: queued run has no record (expired?); dropping it")
		_ = msg.TermWithReason("no record")
		return
	case err != nil:
		log.Warn("worker: cannot start run; handing it back once the run store answers", "err", err)
		q.awaitStore(ctx, msg, m.RunID)
		_ = msg.NakWithDelay(time.Second)
		return
	case run.State.Final():
		// Cancelled while queued, or finished by an earlier delivery whose
		// ack was lost: nothing to do.
		q.ack(ctx, msg, log)
		return
	}
	if attempt > q.opts.MaxDeliver {
		// Earlier deliveries never settled (the worker died each time):
		// stop here rather than crash-loop.
		q.deadLetter(ctx, msg, m.RunID, fmt.Sprintf("gave up: executed %d times without finishing (queue.maxDeliver %d)", attempt-1, q.opts.MaxDeliver))
		return
	}
	log.Info("run started", "repo", run.Repo, "ref", run.Ref, "commit", run.Commit, "attempt", attempt, "delivery", md.NumDelivered)
	q.metrics.inFlight.Inc()
	defer q.metrics.inFlight.Dec()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopWatch := q.watchCancel(runCtx, m.RunID, cancel)
	defer stopWatch()
	stopBeat := q.heartbeat(runCtx, msg, m.RunID, holder, cancel)
	defer stopBeat()

	outcome, stageName, stageErr := q.runStages(withQueue(runCtx, q), run, holder, opts.Stages, log)
	stopBeat()
	if errors.Is(stageErr, errLeaseLost) || errors.Is(context.Cause(runCtx), errLeaseLost) {
		log.Warn("worker: lost the run's lease (this worker was too slow to renew it); leaving the run to its new holder")
		_ = msg.NakWithDelay(q.opts.AckWait)
		return
	}
	switch outcome {
	case StatePassed, StateFailed:
		msgText := ""
		if outcome == StateFailed {
			msgText = fmt.Sprintf("stage %s failed: %v", stageName, stageErr)
		}
		if err := q.finishRun(ctx, m.RunID, holder, outcome, msgText, log); err != nil {
			// Not acked: the run is not final yet. The next delivery
			// finds its stages done and records the end.
			log.Warn("worker: cannot record the end of the run; handing it back once the run store answers", "err", err)
			q.awaitStore(ctx, msg, m.RunID)
			_ = msg.Nak()
			return
		}
		q.ack(ctx, msg, log)
	case StateCancelled:
		if errors.Is(context.Cause(runCtx), errShutdown) {
			q.requeue(m.RunID, holder, "interrupted: the worker stopped; another worker resumes it", log)
			_ = msg.Nak()
			return
		}
		q.ack(ctx, msg, log) // the record was made final by whoever cancelled
	case StateError:
		if errors.Is(stageErr, errStoreUnavailable) {
			// The queue failed (a NATS outage or failover), not the run:
			// hand it back once the store answers, so that an outage costs
			// the run one delivery rather than all of its attempts.
			log.Warn("worker: cannot record the run; handing it back once the run store answers", "stage", stageName, "err", stageErr)
			q.awaitStore(ctx, msg, m.RunID)
			_ = msg.Nak()
			return
		}
		reason := fmt.Sprintf("stage %s error: %v", stageName, stageErr)
		if attempt >= q.opts.MaxDeliver {
			q.deadLetter(ctx, msg, m.RunID, fmt.Sprintf("gave up after %d attempts; last: %s", attempt, reason))
			return
		}
		q.requeue(m.RunID, holder, fmt.Sprintf("%s; retry %d of %d in %s", reason, attempt+1, q.opts.MaxDeliver, opts.RetryDelay), log)
		_ = msg.NakWithDelay(opts.RetryDelay)
	}
}

// runStages runs every stage not yet passed. It returns the run's outcome:
// passed, failed (a verdict), cancelled, or error (retry), with the stage
// that decided it.
func (q *Queue) runStages(ctx context.Context, run *Run, holder string, stages []Stage, log *slog.Logger) (State, string, error) {
	checked := *run // its origin passed the worker's check
	for _, st := range stages {
		name := st.Name()
		if s := run.Stage(name); s != nil && s.State == StatePassed {
			continue // done by an earlier delivery
		}
		if ctx.Err() != nil {
			return StateCancelled, name, context.Cause(ctx)
		}
		start := time.Now().UTC()
		r, err := q.updateHeld(ctx, run.ID, "recording the stage start", log, func(r *Run) error {
			if r.State.Final() {
				return errRunCancelled
			}
			if !r.heldBy(holder) {
				return errLeaseLost
			}
			s := r.Stage(name)
			s.State, s.StartedAt, s.FinishedAt, s.Message = StateRunning, &start, nil, ""
			s.Attempts++
			return nil
		})
		if errors.Is(err, errRunCancelled) || errors.Is(err, errLeaseLost) {
			return StateCancelled, name, err
		}
		if err != nil {
			if ctx.Err() != nil {
				return StateCancelled, name, context.Cause(ctx)
			}
			return StateError, name, fmt.Errorf("recording the stage start: %w (%w)", err, errStoreUnavailable)
		}
		if !sameOrigin(r, &checked) {
			// Rewritten since it was checked: the next delivery checks
			// the seal again (and rejects the record).
			return StateError, name, errOriginChanged
		}
		run = r
		var buf boundedBuffer
		outputs, err := runStage(ctx, st, *run, &buf)
		end := time.Now().UTC()
		state := StatePassed
		msg := ""
		switch {
		case err == nil:
		case ctx.Err() != nil:
			state, msg = StateCancelled, context.Cause(ctx).Error()
		case errors.Is(err, ErrStageFailed):
			state, msg = StateFailed, err.Error()
		default:
			state, msg = StateError, err.Error()
		}
		q.metrics.stageDuration.WithLabelValues(name, string(state)).Observe(end.Sub(start).Seconds())
		logBytes := buf.bytes()
		// Store the log even when cancelled: it explains what happened.
		// Use a fresh context: ctx may be cancelled already. The log has
		// its own time limit, so a slow log store cannot use up the time
		// the result write needs.
		execution := run.Stage(name).Attempts // this execution's number
		logObject := logName(run.ID, name, execution)
		if err := q.saveLogHeld(context.WithoutCancel(ctx), logObject, logBytes, log); err != nil {
			log.Warn("worker: stage log not stored", "stage", name, "err", err)
		}
		recordState := state
		if state == StateCancelled && errors.Is(context.Cause(ctx), errShutdown) {
			recordState = StateQueued // resumed by the next delivery
		}
		r, uerr := q.updateHeld(context.WithoutCancel(ctx), run.ID, "recording the stage result", log, func(r *Run) error {
			s := r.Stage(name)
			// Without the lease, only a run made final meanwhile (a
			// cancel) takes the result, and only if no later execution
			// of the stage began: a stale execution does not overwrite
			// the record of the one that finished the run.
			if !r.heldBy(holder) && (!r.State.Final() || s.Attempts != execution) {
				return errLeaseLost
			}
			s.State, s.FinishedAt, s.Message, s.LogBytes, s.Log = recordState, &end, msg, len(logBytes), logObject
			if recordState == StateQueued {
				s.FinishedAt = nil
			}
			if state == StatePassed && len(outputs) > 0 {
				if r.Outputs == nil {
					r.Outputs = map[string]string{}
				}
				for k, v := range outputs {
					r.Outputs[k] = v
				}
			}
			return nil
		})
		if errors.Is(uerr, errLeaseLost) {
			return StateCancelled, name, uerr
		}
		if uerr != nil {
			return StateError, name, fmt.Errorf("recording the stage result: %w (%w)", uerr, errStoreUnavailable)
		}
		run = r
		log.Info("stage finished", "stage", name, "state", state, "duration", end.Sub(start).Round(time.Millisecond))
		if state != StatePassed {
			return state, name, err
		}
	}
	return StatePassed, "", nil
}

// runStage calls st, turning a panic into an error so that one bad stage
// cannot take the worker (and every other run in it) down.
func runStage(ctx context.Context, st Stage, run Run, buf *boundedBuffer) (out map[string]string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("stage %s panicked: %v", st.Name(), p)
		}
	}()
	return st.Run(ctx, run, buf)
}

// finishRun records the end of the run. An error means the record could
// not be written: the run is not final, and its message must not be acked.
func (q *Queue) finishRun(ctx context.Context, id, holder string, state State, msg string, log *slog.Logger) error {
	var changed bool
	_, err := q.updateHeld(context.WithoutCancel(ctx), id, "recording the end of the run", log, func(r *Run) error {
		changed = false
		if r.State.Final() || !r.heldBy(holder) {
			return errNoChange
		}
		r.finish(state, msg, time.Now().UTC())
		changed = true
		return nil
	})
	if err != nil {
		return err
	}
	if changed {
		q.metrics.finished.WithLabelValues(string(state)).Inc()
		log.Info("run finished", "state", state, "message", msg)
	}
	return nil
}

// requeue puts a run back to queued (with a message saying why) before its
// message is handed back.
func (q *Queue) requeue(id, holder, msg string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), q.opts.Timeout)
	defer cancel()
	_, err := q.update(ctx, id, func(r *Run) error {
		if r.State.Final() || !r.heldBy(holder) {
			return errNoChange
		}
		r.State, r.Message, r.Lease = StateQueued, msg, nil
		return nil
	})
	if err != nil {
		log.Warn("worker: cannot record the retry", "err", err)
	}
	log.Info("run handed back to the queue", "reason", msg)
}

// deadLetter ends a run in state error, keeps its final record in the
// dead-letter stream, and removes it from the queue.
func (q *Queue) deadLetter(ctx context.Context, msg jetstream.Msg, id, reason string) {
	log := q.log.With("run", id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.opts.Timeout)
	defer cancel()
	r, err := q.update(ctx, id, func(r *Run) error {
		if r.State.Final() {
			return errNoChange
		}
		r.finish(StateError, reason, time.Now().UTC())
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		log.Error("worker: cannot dead-letter the run; handing it back", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if r != nil {
		b, _ := json.Marshal(r)
		if _, err := q.js.Publish(ctx, subjectDead, b); err != nil {
			log.Error("worker: dead-letter record not stored", "err", err)
		}
		q.metrics.finished.WithLabelValues(string(StateError)).Inc()
	}
	log.Error("run dead-lettered", "reason", reason)
	_ = msg.TermWithReason("dead-lettered")
}

func (q *Queue) ack(ctx context.Context, msg jetstream.Msg, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.opts.Timeout)
	defer cancel()
	// A confirmed ack: if it is lost anyway, the redelivery finds the run
	// final and only acks again.
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("worker: ack not confirmed; the run may be delivered again (harmless: it is final)", "err", err)
	}
}

// watchCancel cancels the run's context when its record becomes final
// (cancelled by the API or by a newer push). It polls the record (one
// read every cancelPoll) rather than watching it: a KV watch needs a
// consumer, and a NATS user allowed to create consumers can point one's
// deliveries at any subject, the work queue's included; the worker's user
// gets no such permission (docs/queue.md).
func (q *Queue) watchCancel(ctx context.Context, id string, cancel context.CancelCauseFunc) (stop func()) {
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cancelPoll)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			gctx, gcancel := context.WithTimeout(wctx, q.opts.Timeout)
			r, err := q.Get(gctx, id)
			gcancel()
			if err == nil && r.State.Final() {
				cancel(errRunCancelled)
				return
			}
		}
	}()
	return func() {
		wcancel()
		<-done
	}
}

// errStoreUnavailable marks a run that stopped because its record could
// not be written: a fault of the queue, not of the run.
var errStoreUnavailable = errors.New("run store unavailable")

// awaitStore waits until run id's record can be read again (the store
// answers after a NATS outage or leader election), telling JetStream the
// message is still being worked on, or until ctx ends.
func (q *Queue) awaitStore(ctx context.Context, msg jetstream.Msg, id string) {
	for ctx.Err() == nil {
		_ = msg.InProgress()
		rctx, cancel := context.WithTimeout(ctx, q.opts.Timeout)
		_, _, err := q.get(rctx, id)
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cancelPoll is how often a worker reads the record of a run it executes,
// to notice a cancel.
const cancelPoll = time.Second

// heartbeat tells JetStream the run is still being worked on (so AckWait
// can stay short: fast redelivery after a crash, while stages run long)
// and renews the run's lease. If the lease was taken over, the run's
// context is cancelled with errLeaseLost. Once the run's context is done
// (cancelled, lease lost, worker stopping) it renews for one more lease
// period, for the stage to wind down and its result to be written, then
// stops: a stage that ignores its cancellation does not keep the run
// from another worker.
func (q *Queue) heartbeat(ctx context.Context, msg jetstream.Msg, id, holder string, cancel context.CancelCauseFunc) (stop func()) {
	every := q.opts.AckWait / 3
	done := make(chan struct{})
	finished := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		var windDown time.Time
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if ctx.Err() != nil {
				if windDown.IsZero() {
					windDown = time.Now().Add(q.opts.AckWait)
				} else if time.Now().After(windDown) {
					q.log.Warn("worker: the run's stage did not stop after its cancellation; no longer renewing its lease", "run", id, "cause", context.Cause(ctx))
					return
				}
			}
			_ = msg.InProgress()
			uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			_, err := q.update(uctx, id, func(r *Run) error {
				if r.State.Final() {
					return errNoChange
				}
				if !r.heldBy(holder) {
					return errLeaseLost
				}
				r.Lease.Until = time.Now().UTC().Add(q.opts.AckWait)
				return nil
			})
			ucancel()
			if errors.Is(err, errLeaseLost) {
				cancel(errLeaseLost)
				return
			}
		}
	}()
	return func() { once.Do(func() { close(done); <-finished }) }
}

var (
	errLeased    = errors.New("run leased by another worker")
	errLeaseLost = errors.New("run lease lost")
	errRejected  = errors.New("run rejected")
)

func (r *Run) heldBy(holder string) bool { return r.Lease != nil && r.Lease.Holder == holder }
