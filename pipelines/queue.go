package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// JetStream names. They are part of Gantry's storage format: an upgrade
// that changes one must migrate.
const (
	streamRuns       = "GANTRY_RUNS"
	subjectRuns      = "gantry.runs.queued"
	consumerWorkers  = "gantry-workers"
	streamDeadLetter = "GANTRY_DEADLETTER"
	subjectDead      = "gantry.runs.deadletter"
	bucketRuns       = "gantry_runs"
	bucketDeliveries = "gantry_deliveries"
	bucketHeads      = "gantry_heads"
	bucketPushes     = "gantry_pushes"
	bucketLogs       = "gantry_logs"
)

// ErrNotFound is returned for a run id that has no record.
var ErrNotFound = errors.New("run not found")

// Options configure the queue and run store.
type Options struct {
	Connection
	// Replicas is the JetStream replica count of every stream and bucket
	// (1 for the embedded server; 3 on a cluster).
	Replicas int
	// DeliveryTTL is how long a delivery id is remembered by the replay
	// guard. GitHub lets users redeliver a delivery for 3 days.
	DeliveryTTL time.Duration
	// RunRetention is how long run records, logs and dead letters are kept
	// after their last update.
	RunRetention time.Duration
	// AckWait is how long a worker may stay silent before its run is given
	// to another worker. Workers send in-progress heartbeats at a third of it.
	AckWait time.Duration
	// MaxDeliver is how many times a run is handed to workers before it is
	// dead-lettered (state error).
	MaxDeliver int
	// CancelSuperseded lets Supersede (called by the checkout stage) cancel
	// a queued or running run of the same repo and ref whose commit is in
	// the history of the run's commit; arrival order decides nothing.
	CancelSuperseded bool
	// Registerer receives the queue's Prometheus metrics; nil: none.
	Registerer prometheus.Registerer
	// Sealer seals every run Enqueue stores (the receiver's key). Without
	// it runs are stored unsealed, and no worker executes them.
	Sealer *Sealer
	// Provisioned: the streams, consumer and buckets were created by
	// Setup (`gantry queue setup`, with an admin NATS user); Open only
	// looks them up, so the process's NATS user needs no permission to
	// create, change or delete them.
	Provisioned bool
}

// Queue is the durable run queue and the run store.
type Queue struct {
	opts       Options
	log        *slog.Logger
	conn       *conn
	js         jetstream.JetStream
	stream     jetstream.Stream
	consumer   jetstream.Consumer
	runs       jetstream.KeyValue
	deliveries jetstream.KeyValue
	heads      jetstream.KeyValue
	pushes     jetstream.KeyValue
	logs       jetstream.ObjectStore
	metrics    *metrics
}

// Open connects to JetStream (starting the embedded server if no URL is
// set) and creates or updates the streams and buckets Gantry uses.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.DeliveryTTL <= 0 {
		opts.DeliveryTTL = 7 * 24 * time.Hour
	}
	if opts.RunRetention <= 0 {
		opts.RunRetention = 30 * 24 * time.Hour
	}
	if opts.AckWait <= 0 {
		opts.AckWait = time.Minute
	}
	if opts.MaxDeliver <= 0 {
		opts.MaxDeliver = 5
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := dial(ctx, opts.Connection)
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: opts, log: log, conn: c}
	if err := q.setup(ctx); err != nil {
		c.close()
		return nil, err
	}
	q.metrics = newMetrics(q, opts.Registerer)
	return q, nil
}

func (q *Queue) setup(ctx context.Context) error {
	js, err := jetstream.New(q.conn.nc, jetstream.WithDefaultTimeout(q.opts.Timeout))
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	q.js = js
	ctx, cancel := context.WithTimeout(ctx, 4*q.opts.Timeout)
	defer cancel()
	if q.opts.Provisioned {
		return q.bind(ctx)
	}
	r := q.opts.Replicas
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        streamRuns,
		Description: "Gantry runs waiting for a worker (work queue)",
		Subjects:    []string{subjectRuns},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		Duplicates:  2 * time.Minute,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w (is JetStream enabled on the NATS server?)", streamRuns, err)
	}
	q.consumer, err = q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerWorkers,
		Description:   "Gantry workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.opts.AckWait,
		MaxDeliver:    -1, // Gantry counts deliveries itself and dead-letters (see worker)
		MaxAckPending: 10000,
		FilterSubject: subjectRuns,
	})
	if err != nil {
		return fmt.Errorf("queue: consumer %s: %w", consumerWorkers, err)
	}
	if _, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        streamDeadLetter,
		Description: "Gantry runs that kept failing (final run records)",
		Subjects:    []string{subjectDead},
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		MaxAge:      q.opts.RunRetention,
	}); err != nil {
		return fmt.Errorf("queue: stream %s: %w", streamDeadLetter, err)
	}
	kv := func(name, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: r,
		})
		if err != nil {
			return nil, fmt.Errorf("queue: bucket %s: %w", name, err)
		}
		return b, nil
	}
	if q.runs, err = kv(bucketRuns, "Gantry run records", q.opts.RunRetention); err != nil {
		return err
	}
	if q.deliveries, err = kv(bucketDeliveries, "GitHub delivery ids seen (replay guard)", q.opts.DeliveryTTL); err != nil {
		return err
	}
	if q.heads, err = kv(bucketHeads, "Recent runs per repo and ref", q.opts.RunRetention); err != nil {
		return err
	}
	if q.pushes, err = kv(bucketPushes, "Pushes seen, by repo, ref, before and after (replay guard)", q.opts.DeliveryTTL); err != nil {
		return err
	}
	q.logs, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bucketLogs, Description: "Gantry stage logs",
		TTL: q.opts.RunRetention, Storage: jetstream.FileStorage, Replicas: r,
	})
	if err != nil {
		return fmt.Errorf("queue: object store %s: %w", bucketLogs, err)
	}
	return nil
}

// JetStream is the queue's JetStream handle, for records that belong on
// the same server (the audit stream); streams and buckets of the queue
// are not to be touched through it.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Close drains the connection (acks in flight are sent) and stops the
// embedded server. Unacknowledged runs stay queued for redelivery.
func (q *Queue) Close() {
	q.conn.close()
}

// Ready reports whether JetStream answers.
func (q *Queue) Ready(ctx context.Context) error {
	if q.conn.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("queue: not connected (%s)", q.conn.nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, q.opts.Timeout)
	defer cancel()
	if _, err := q.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	return nil
}

// Depth returns how many runs wait in the queue (not yet acknowledged,
// including those being worked on).
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	ctx, cancel := q.bounded(ctx, q.opts.Timeout)
	defer cancel()
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// Enqueued is the outcome of Enqueue.
type Enqueued struct {
	RunID string
	// Duplicate: the delivery id was seen before; RunID is the earlier run.
	Duplicate bool
	// SamePush: a duplicate because the push itself (repo, ref, before,
	// after) was queued before under another delivery id.
	SamePush bool
	// State of the run (queued, or later for a duplicate).
	State State
}

// queueMsg is the work-queue message; the run record holds the rest.
type queueMsg struct {
	RunID string `json:"runId"`
}

// Enqueue records a run for req and queues it, unless req.DeliveryID was
// seen before. When it returns without error the run is durably stored and
// queued (JetStream acknowledged both writes).
//
// Every step is idempotent, so a crash between steps is repaired by the
// redelivery GitHub makes when it got no 2xx: the delivery id maps to the
// same run id, and a run left without its record or queue message gets them.
func (q *Queue) Enqueue(ctx context.Context, req Request) (Enqueued, error) {
	if req.DeliveryID == "" || req.Repo == "" || req.Ref == "" {
		return Enqueued{}, errors.New("queue: a run needs a delivery id, a repo and a ref")
	}
	now := time.Now().UTC()
	id := NewRunID(now)
	dkey := hashKey(req.DeliveryID)
	_, err := q.deliveries.Create(ctx, dkey, []byte(id))
	duplicate := false
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		e, gerr := q.deliveries.Get(ctx, dkey)
		if gerr != nil {
			return Enqueued{}, fmt.Errorf("queue: delivery guard: %w", gerr)
		}
		id, duplicate = string(e.Value()), true
		if !ValidRunID(id) {
			return Enqueued{}, fmt.Errorf("queue: delivery guard holds a bad run id for this delivery")
		}
		run, gerr := q.Get(ctx, id)
		if gerr == nil {
			if run.State == StateQueued {
				// A crash may have come between record and message: queue
				// again; JetStream drops the copy if the first one landed
				// (message id), the worker skips runs already final.
				if err := q.publish(ctx, id); err != nil {
					return Enqueued{}, err
				}
			}
			return Enqueued{RunID: id, Duplicate: true, State: run.State}, nil
		}
		if !errors.Is(gerr, ErrNotFound) {
			return Enqueued{}, gerr
		}
		// The first attempt died before writing the record: finish it.
	case err != nil:
		return Enqueued{}, fmt.Errorf("queue: delivery guard: %w", err)
	}
	if dup, ok, err := q.pushGuard(ctx, req, id, dkey); err != nil {
		return Enqueued{}, err
	} else if ok {
		return dup, nil
	}
	run := Run{
		ID: id, Repo: req.Repo, CloneURL: req.CloneURL, Ref: req.Ref, Commit: req.Commit,
		Pusher: req.Pusher, Title: req.Title, DeliveryID: req.DeliveryID,
		State: StateQueued, CreatedAt: now, Stages: []StageStatus{},
	}
	if q.opts.Sealer != nil {
		q.opts.Sealer.seal(&run)
	}
	b, err := json.Marshal(run)
	if err != nil {
		return Enqueued{}, err
	}
	if _, err := q.runs.Create(ctx, id, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return Enqueued{}, fmt.Errorf("queue: store run: %w", err)
	}
	if err := q.publish(ctx, id); err != nil {
		return Enqueued{}, err
	}
	q.metrics.enqueued.Inc()
	if err := q.recordHead(ctx, run); err != nil {
		// The run is queued; a run missing from the ref's list is only
		// not superseded (nor superseding) before its deploy step.
		q.log.Warn("could not record the run among its ref's runs", "run", id, "repo", run.Repo, "ref", run.Ref, "err", err)
	}
	return Enqueued{RunID: id, Duplicate: duplicate, State: StateQueued}, nil
}

func (q *Queue) publish(ctx context.Context, id string) error {
	b, _ := json.Marshal(queueMsg{RunID: id})
	if _, err := q.js.Publish(ctx, subjectRuns, b, jetstream.WithMsgID(id), jetstream.WithExpectStream(streamRuns)); err != nil {
		return fmt.Errorf("queue: publish run %s: %w", id, err)
	}
	return nil
}

// Get returns the record of run id.
func (q *Queue) Get(ctx context.Context, id string) (*Run, error) {
	r, _, err := q.get(ctx, id)
	return r, err
}

func (q *Queue) get(ctx context.Context, id string) (*Run, uint64, error) {
	if !ValidRunID(id) {
		return nil, 0, ErrNotFound
	}
	ctx, cancel := q.bounded(ctx, q.opts.Timeout)
	defer cancel()
	e, err := q.runs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("queue: read run %s: %w", id, err)
	}
	var r Run
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("queue: run %s: corrupt record: %w", id, err)
	}
	return &r, e.Revision(), nil
}

// bounded limits one request to the store to d, also when ctx allows
// more: the JetStream client applies its own timeout only to a context
// without a deadline, and a request in flight when its server dies (a
// NATS failover) is never answered, so it would wait out the caller's
// deadline however long that is.
func (q *Queue) bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// errNoChange lets an update function leave the record as it is.
var errNoChange = errors.New("no change")

// update applies fn to the current record of run id and stores it with
// compare-and-set, retrying when someone else wrote in between.
func (q *Queue) update(ctx context.Context, id string, fn func(*Run) error) (*Run, error) {
	for range 50 {
		r, rev, err := q.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(r); err != nil {
			if errors.Is(err, errNoChange) {
				return r, nil
			}
			return r, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		uctx, cancel := q.bounded(ctx, q.opts.Timeout)
		_, err = q.runs.Update(uctx, id, b, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queue: update run %s: %w", id, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("queue: update run %s: too many concurrent updates", id)
}

// ErrFinal is returned when cancelling a run that already ended.
var ErrFinal = errors.New("run already finished")

// Cancel cancels run id if it is queued or running. A running stage sees
// its context cancelled within moments (the worker watches the record).
func (q *Queue) Cancel(ctx context.Context, id, reason string) (*Run, error) {
	if reason == "" {
		reason = "cancelled"
	}
	return q.cancel(ctx, id, reason, "")
}

func (q *Queue) cancel(ctx context.Context, id, reason, by string) (*Run, error) {
	var final bool
	r, err := q.update(ctx, id, func(r *Run) error {
		if r.State.Final() {
			final = true
			return errNoChange
		}
		r.finish(StateCancelled, reason, time.Now().UTC())
		r.SupersededBy = by
		return nil
	})
	if err != nil {
		return r, err
	}
	if final {
		return r, ErrFinal
	}
	q.metrics.finished.WithLabelValues(string(StateCancelled)).Inc()
	return r, nil
}

// Filter selects runs for List.
type Filter struct {
	// Repo ("owner/name", case-insensitive) and State: empty matches all.
	Repo  string
	State State
	// Before is a run id: only older runs are listed (the cursor of the
	// previous page).
	Before string
	// Limit is the page size (1..500; 0 means 50).
	Limit int
}

// Page is one page of List, newest first. Next is the cursor for the
// following page ("" on the last one).
type Page struct {
	Runs []Run  `json:"runs"`
	Next string `json:"next,omitempty"`
}

// List returns runs, newest first. It reads every key of the run bucket
// (bounded by RunRetention) and the records of one page; filters cost one
// read per record examined.
func (q *Queue) List(ctx context.Context, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.Limit > 500 {
		f.Limit = 500
	}
	lister, err := q.runs.ListKeys(ctx)
	if err != nil {
		return Page{}, fmt.Errorf("queue: list runs: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		if ValidRunID(k) && (f.Before == "" || k < f.Before) {
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	slices.Reverse(keys)
	page := Page{Runs: []Run{}}
	for i, k := range keys {
		r, err := q.Get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue // expired between listing and reading
		}
		if err != nil {
			return Page{}, err
		}
		if f.Repo != "" && !strings.EqualFold(r.Repo, f.Repo) || f.State != "" && r.State != f.State {
			continue
		}
		page.Runs = append(page.Runs, *r)
		if len(page.Runs) == f.Limit {
			if i+1 < len(keys) {
				page.Next = k
			}
			break
		}
	}
	return page, nil
}

// hashKey maps untrusted text (delivery ids, repo names, refs) to a KV key.
func hashKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
