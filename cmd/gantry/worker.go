package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "worker",
			Short: "Execute queued runs (scale out beside gantry serve)",
			Long: `worker takes runs from the shared queue and executes them, like the workers
inside gantry serve. It needs --nats-url (queue.natsURL): the NATS JetStream
that gantry serve uses (its embedded server with queue.embeddedListen, or a
cluster). SIGTERM hands running runs back to the queue.`,
			Args: cobra.NoArgs,
		}
		keys := queueFlags(cmd)
		cmd.PreRunE = withConfigFlags(a, keys)
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			if a.cfg.Queue.NATSURL == "" {
				return errors.New("gantry worker needs --nats-url (queue.natsURL): the NATS that gantry serve queues runs on")
			}
			st, err := stages(cmd)
			if err != nil {
				return err
			}
			q, err := openQueue(cmd.Context(), a, nil)
			if err != nil {
				return err
			}
			defer q.Close()
			a.log.Info("worker started", "concurrency", a.cfg.Queue.Workers, "stages", len(st))
			err = q.Work(cmd.Context(), workerOptions(a, st))
			a.log.Info("worker stopped")
			return err
		}
		return cmd
	})
}
