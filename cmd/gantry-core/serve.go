//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/server"
	"github.com/gantry-dev/gantry/webhooks"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "serve",
			Short: "Run the webhook receiver, the runs API and workers in one process",
			Long: `serve receives GitHub push webhooks (POST /webhooks/github), queues runs durably
(NATS JetStream, embedded on --data-dir unless --nats-url is set), executes
them with workers, and serves the runs API (/api/v1/runs), the dashboard
(/ui/), /healthz and /readyz. /metrics is served only on its own listener
(--metrics-listen, server.metricsListen), never on the public one. SIGTERM drains in-flight requests and hands running runs back
to the queue.`,
			Args: cobra.NoArgs,
		}
		keys := queueFlags(cmd)
		fl := cmd.Flags()
		fl.String("listen", "", "host:port to listen on (server.listen; default 127.0.0.1:8080)")
		secretFiles := &fileList{}
		fl.Var(secretFiles, "github-webhook-secret-file", "file holding a GitHub webhook secret; repeat to accept several during rotation (webhooks.githubSecretFiles)")
		fl.String("api-tokens-file", "", "file of sha256:<hex> bearer token digests for the API (api.tokensFile)")
		fl.String("metrics-listen", "", "host:port of the /metrics listener, never the public one (server.metricsListen; default none)")
		keys["server.metricsListen"] = "metrics-listen"
		keys["server.listen"] = "listen"
		keys["webhooks.githubSecretFiles"] = "github-webhook-secret-file"
		keys["api.tokensFile"] = "api-tokens-file"
		for k, name := range serverSecurityFlags(cmd) {
			keys[k] = name
		}
		cmd.PreRunE = withConfigFlags(a, keys)
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return serve(cmd, a) }
		return cmd
	})
}

func serve(cmd *cobra.Command, a *app) error {
	ctx := cmd.Context()
	cfg := a.cfg
	// A receiver-only server (server.runWorkers: false) builds no stages:
	// it needs no builder, scanner, signing key or cluster credentials.
	var st []pipelines.Stage
	if cfg.Server.RunWorkers {
		var err error
		if st, err = stages(cmd); err != nil {
			return err
		}
	}
	secrets, err := webhooks.LoadSecrets(cfg.Webhooks.GitHubSecretFiles, cfg.Webhooks.GitHubSecretEnv,
		func(name string) string { return lookupEnv(a.env, name) })
	if err != nil {
		return err
	}
	tokens, err := api.LoadTokens(cfg.API.TokensFile)
	if err != nil {
		return err
	}
	if len(cfg.Webhooks.Repos) == 0 {
		a.log.Warn("no repositories configured (webhooks.repos): every push is ignored")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hard, err := newHardening(a, reg)
	if err != nil {
		return err
	}

	sealer, err := runSealer(a)
	if err != nil {
		return err
	}
	var origin *pipelines.OriginPolicy
	if cfg.Server.RunWorkers {
		if origin, err = originPolicy(a, sealer); err != nil {
			return err
		}
	}
	q, err := openQueue(ctx, a, reg, sealer)
	if err != nil {
		return err
	}
	defer q.Close()
	queued, stopBacklog, err := backlog(ctx, a, q)
	if err != nil {
		return err
	}
	defer stopBacklog()

	repos := make([]webhooks.Repo, 0, len(cfg.Webhooks.Repos))
	for _, r := range cfg.Webhooks.Repos {
		repos = append(repos, webhooks.Repo{Name: r.Name, Branches: r.Branches, Tags: r.Tags})
	}
	base := strings.TrimRight(cfg.API.PublicURL, "/")
	hook, err := webhooks.New(webhooks.Options{
		Secrets: secrets, Repos: repos, Queue: q, EnqueueTimeout: cfg.Webhooks.EnqueueTimeout,
		RunURL: func(id string) string { return base + "/api/v1/runs/" + id },
		Logger: a.log, Registerer: reg,
		RepoLimit: hard.repoLimit, Backlog: queued, MaxQueuedPerRepo: cfg.Webhooks.MaxQueuedPerRepo,
	})
	if err != nil {
		return err
	}
	acc, err := openAccess(ctx, a, q)
	if err != nil {
		return err
	}
	defer acc.close()
	auditCertRotation(hard.certs, acc.audit, "serve")
	authn := auth.Chain{acc.tokens, tokens, hard.oidc}
	apiHandler, err := api.New(api.Options{Store: q, Auth: authn, Audit: acc.audit, Timeout: cfg.Queue.Timeout, Logger: a.log, AfterAuth: hard.perPrincipal})
	if err != nil {
		return err
	}
	ui, err := acc.dashboardHandler(a, q, authn)
	if err != nil {
		return err
	}
	if ui != nil {
		ui = hard.api(ui) // the API's failed-auth budget and per-source limits
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (server.listen / --listen)", cfg.Server.Listen, err)
	}
	stopMetrics, err := serveMetrics(ctx, a, hard.tls, reg, q.Ready)
	if err != nil {
		ln.Close()
		return err
	}

	// Workers stop after the HTTP server drained, so that a run queued by
	// the last request is either picked up or left safely in the queue.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	workersDone := make(chan error, 1)
	if cfg.Server.RunWorkers {
		go func() { workersDone <- q.Work(wctx, workerOptions(a, st, origin, acc.audit)) }()
	} else {
		// Receiver only (least privilege): `gantry worker` runs the stages.
		a.log.Info("no workers in this process (server.runWorkers: false)")
		workersDone <- nil
	}

	opts := listenerOptions(a, hard.tls)
	// No Gatherer: this listener faces the internet (serveMetrics).
	opts.Webhook, opts.API, opts.UI, opts.Ready = hard.webhook(hook), hard.api(apiHandler), ui, q.Ready
	err = server.Serve(ctx, ln, opts)
	stopWorkers()
	if werr := <-workersDone; werr != nil && err == nil {
		err = werr
	}
	if merr := stopMetrics(); merr != nil && err == nil {
		err = merr
	}
	a.log.Info("stopped")
	return err
}
