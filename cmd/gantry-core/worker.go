//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/server"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "worker",
			Short: "Execute queued runs (scale out beside gantry serve)",
			Long: `worker takes runs from the shared queue and executes them, like the workers
inside gantry serve. It needs --nats-url (queue.natsURL): the NATS JetStream
that gantry serve uses (its embedded server with queue.embeddedListen, or a
cluster). SIGTERM hands running runs back to the queue.

With --listen (worker.listen) it also serves /healthz, /readyz (200 only when
the queue answers) and /metrics, over TLS from server.tls (plain HTTP only
with server.insecureHTTP). Without it the worker accepts no connection.`,
			Args: cobra.NoArgs,
		}
		keys := queueFlags(cmd)
		cmd.Flags().String("listen", "", "host:port for /healthz, /readyz and /metrics (worker.listen; default none: no listener)")
		keys["worker.listen"] = "listen"
		for k, name := range serverSecurityFlags(cmd) {
			keys[k] = name
		}
		cmd.PreRunE = withConfigFlags(a, keys)
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return worker(cmd, a) }
		return cmd
	})
}

func worker(cmd *cobra.Command, a *app) error {
	ctx := cmd.Context()
	if a.cfg.Queue.NATSURL == "" {
		return errors.New("gantry worker needs --nats-url (queue.natsURL): the NATS that gantry serve queues runs on")
	}
	listen := a.cfg.Worker.Listen
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var opts server.Options
	if listen != "" {
		// Checked before anything starts: no certificate and no explicit
		// insecureHTTP is a usage error, as for gantry serve.
		tlsConf, _, err := servingTLS(a, "worker")
		if err != nil {
			return err
		}
		opts = listenerOptions(a, tlsConf)
		opts.Gatherer = reg
	}
	origin, err := originPolicy(a, nil)
	if err != nil {
		return err
	}
	st, err := stages(cmd)
	if err != nil {
		return err
	}
	q, err := openQueue(ctx, a, reg, nil)
	if err != nil {
		return err
	}
	defer q.Close()
	sink, closeSink, err := openAuditSink(ctx, a, q.JetStream())
	if err != nil {
		return err
	}
	defer closeSink()
	rec := &audit.Recorder{Sink: sink, Log: a.log}

	// The listener outlives the workers: it keeps answering /healthz while
	// SIGTERM hands running runs back, so a liveness probe does not kill a
	// worker that is shutting down cleanly.
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	serverDone := make(chan error, 1)
	stopServer := func() {}
	if listen == "" {
		serverDone <- nil
	} else {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w (worker.listen / --listen)", listen, err)
		}
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopServer = cancel
		opts.Ready = q.Ready
		go func() {
			err := server.Serve(sctx, ln, opts)
			if err != nil {
				stopWorkers() // a worker without its probes would be restarted anyway
			}
			serverDone <- err
		}()
	}
	a.log.Info("worker started", "concurrency", a.cfg.Queue.Workers, "stages", len(st), "listen", listen)
	err = q.Work(wctx, workerOptions(a, st, origin, rec))
	stopServer()
	if serr := <-serverDone; serr != nil && err == nil {
		err = serr
	}
	a.log.Info("worker stopped")
	return err
}
