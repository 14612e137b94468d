//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/pipelines"
)

// fileList is a repeatable flag whose String() is the comma-joined list,
// the form config.Load parses for list keys.
type fileList []string

func (f *fileList) String() string { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error {
	*f = append(*f, v)
	return nil
}
func (f *fileList) Type() string { return "file" }

// queueFlags adds the flags that reach the queue and returns their
// config keys.
func queueFlags(cmd *cobra.Command) map[string]string {
	fl := cmd.Flags()
	fl.String("data-dir", "", "directory of the embedded NATS JetStream store (queue.dataDir; default /var/lib/gantry)")
	fl.String("nats-url", "", "external NATS JetStream server(s) instead of the embedded one (queue.natsURL)")
	fl.Int("workers", 0, "runs executed at once by this process (queue.workers; default 2)")
	if testStagesHook != nil {
		testStagesHook.flags(cmd)
	}
	return map[string]string{"queue.dataDir": "data-dir", "queue.natsURL": "nats-url", "queue.workers": "workers"}
}

// withConfigFlags makes a command's own flags override config keys, then
// reloads the configuration (the root loaded it with global flags only).
func withConfigFlags(a *app, keys map[string]string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		for k, name := range keys {
			a.configFlags[k] = name
		}
		// stages(cmd) builds the real stages from this app's config.
		cmd.SetContext(context.WithValue(cmd.Context(), appKey{}, a))
		return a.load(cmd)
	}
}

// appKey carries the *app in a command's context, for stages(cmd).
type appKey struct{}

// openQueue opens the run queue as configured.
func openQueue(ctx context.Context, a *app, reg prometheus.Registerer, sealer *pipelines.Sealer) (*pipelines.Queue, error) {
	c := a.cfg.Queue
	return pipelines.Open(ctx, pipelines.Options{
		Connection: pipelines.Connection{
			URL: c.NATSURL, CredsFile: c.CredsFile, TokenFile: c.TokenFile,
			TLSCAFile: c.TLSCAFile, TLSCertFile: c.TLSCertFile, TLSKeyFile: c.TLSKeyFile,
			DataDir: c.DataDir, EmbeddedListen: c.EmbeddedListen, SyncAlways: c.SyncAlways,
			Timeout: c.Timeout, Logger: a.log, InboxPrefix: c.InboxPrefix,
		},
		Replicas: c.Replicas, DeliveryTTL: c.DeliveryTTL, RunRetention: c.RunRetention,
		AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, CancelSuperseded: c.CancelSuperseded,
		Registerer: reg, Sealer: sealer, Provisioned: c.Provisioned,
	})
}

// testStagesHook is nil in the gantry binary. Only this package's test
// binary sets it (testhooks_test.go), to give serve and worker the
// recording stages of pipelines/pipelinestest that the process-level
// tests (kill -9, restart) need; the production binary has neither the
// flag nor that package (TestProductionBinaryHasNoTestStages).
var testStagesHook *stagesHook

type stagesHook struct {
	flags  func(*cobra.Command)
	stages func(*cobra.Command) (st []pipelines.Stage, ok bool, err error)
}

// stages returns the pipeline's stage list: the real stages (checkout,
// lint, build, scan, sign, deploy, notify; see pipelines/stages) wired to
// the configured builder, scanner, signer, deployer and notifier. They live
// as long as the process.
func stages(cmd *cobra.Command) ([]pipelines.Stage, error) {
	if testStagesHook != nil {
		if st, ok, err := testStagesHook.stages(cmd); ok {
			return st, err
		}
	}
	a, _ := cmd.Context().Value(appKey{}).(*app)
	if a == nil {
		return nil, errors.New("internal: no configuration for the pipeline stages")
	}
	base := strings.TrimRight(a.cfg.API.PublicURL, "/")
	p, closeFn, err := newPipeline(cmd.Context(), a, pipelineOptions{
		runURL:     func(id string) string { return base + "/api/v1/runs/" + id },
		logReports: true,
		audit:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline stages: %w", err)
	}
	// Released when the command ends (its context is cancelled then).
	context.AfterFunc(cmd.Context(), closeFn)
	return p.Stages(), nil
}

func workerOptions(a *app, st []pipelines.Stage, origin *pipelines.OriginPolicy, rec *audit.Recorder) pipelines.WorkerOptions {
	return pipelines.WorkerOptions{Concurrency: a.cfg.Queue.Workers, Stages: st, RetryDelay: a.cfg.Queue.RetryDelay,
		Origin: origin, Audit: rec}
}
