package pipelines

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Setup creates or updates the streams, the worker consumer and the
// buckets of the queue (opts.Provisioned is ignored) and closes the
// connection: the provisioning step of `gantry queue setup`, run with an
// admin NATS user, after which the receiver and the workers open the
// queue with Provisioned and NATS users that may not create, change or
// delete any of them. extra runs on the same JetStream before closing
// (the audit stream); nil: nothing.
func Setup(ctx context.Context, opts Options, extra func(context.Context, jetstream.JetStream) error) error {
	opts.Provisioned = false
	q, err := Open(ctx, opts)
	if err != nil {
		return err
	}
	defer q.Close()
	if extra != nil {
		return extra(ctx, q.js)
	}
	return nil
}

// bind looks up what Setup created. Each lookup is a read-only
// JetStream API request ($JS.API.STREAM.INFO, $JS.API.CONSUMER.INFO).
func (q *Queue) bind(ctx context.Context) error {
	notSetUp := func(what string, err error) error {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("queue: %s does not exist: run `gantry queue setup` with an admin NATS user first (queue.provisioned is set): %w", what, err)
		}
		return fmt.Errorf("queue: %s: %w", what, err)
	}
	var err error
	if q.stream, err = q.js.Stream(ctx, streamRuns); err != nil {
		return notSetUp("stream "+streamRuns, err)
	}
	if q.consumer, err = q.stream.Consumer(ctx, consumerWorkers); err != nil {
		return notSetUp("consumer "+consumerWorkers, err)
	}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{bucketRuns, &q.runs}, {bucketDeliveries, &q.deliveries}, {bucketHeads, &q.heads}, {bucketPushes, &q.pushes}} {
		if *b.kv, err = q.js.KeyValue(ctx, b.name); err != nil {
			return notSetUp("bucket "+b.name, err)
		}
	}
	if q.logs, err = q.js.ObjectStore(ctx, bucketLogs); err != nil {
		return notSetUp("object store "+bucketLogs, err)
	}
	return nil
}
