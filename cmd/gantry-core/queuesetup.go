//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	auditstream "github.com/gantry-dev/gantry/audit/stream"
	"github.com/gantry-dev/gantry/pipelines"
)

func init() { register(queueCmd) }

// queueCmd is `gantry queue`: operations on the run queue's NATS server.
func queueCmd(a *app) *cobra.Command {
	q := &cobra.Command{Use: "queue", Short: "Operate the run queue (NATS JetStream)"}
	setup := &cobra.Command{
		Use:   "setup",
		Short: "Create or update the queue's streams, consumer and buckets (and the audit stream) on queue.natsURL",
		Long: "Creates or updates what Gantry keeps on NATS JetStream: the run work queue and its worker\n" +
			"consumer, the dead-letter stream, the run, delivery and head buckets, the log object store\n" +
			"and, with audit.stream, the audit stream, each with queue.replicas replicas. Run it with an\n" +
			"admin NATS user (the chart runs it as a Job); serve and worker then open the queue with\n" +
			"queue.provisioned and users that cannot create, change or delete streams.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.cfg.Queue
			if c.NATSURL == "" {
				return &exitError{code: exitFailure, err: errors.New("queue setup needs queue.natsURL (the embedded server sets itself up)")}
			}
			conn := externalQueue(a)
			var extra func(context.Context, jetstream.JetStream) error
			if a.cfg.Audit.Stream {
				extra = func(ctx context.Context, js jetstream.JetStream) error {
					_, err := auditstream.New(ctx, js, c.Replicas, a.cfg.Audit.StreamMaxAge)
					return err
				}
			}
			err := pipelines.Setup(cmd.Context(), pipelines.Options{
				Connection: conn, Replicas: c.Replicas, DeliveryTTL: c.DeliveryTTL,
				RunRetention: c.RunRetention, AckWait: c.AckWait, MaxDeliver: c.MaxDeliver,
			}, extra)
			if err != nil {
				return err
			}
			a.log.Info("queue set up", "replicas", c.Replicas, "auditStream", a.cfg.Audit.Stream)
			return nil
		},
	}
	q.AddCommand(setup)
	return q
}
