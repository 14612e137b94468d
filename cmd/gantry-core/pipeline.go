//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/builder"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/notify"
	"github.com/gantry-dev/gantry/pipelines/repoconfig"
	"github.com/gantry-dev/gantry/pipelines/source"
	pstages "github.com/gantry-dev/gantry/pipelines/stages"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/signer"
)

// pipelineOptions adjust the real stages for one command.
type pipelineOptions struct {
	noSign     bool
	runURL     func(string) string
	reports    pstages.ReportSink
	logReports bool // reports in the stage logs (stored with the run)
	trivyLog   bool // keep Trivy's own log (debug)
	repo       repoconfig.Override
	audit      bool         // rollbacks to the audit log file (serve, worker)
	gitAuth    *source.Auth // credentials from `gantry run --repo`'s URL
}

// newPipeline wires the configured builder, scanner, signer, deployer and
// notifier into the pipeline's stages. close releases them.
func newPipeline(ctx context.Context, a *app, o pipelineOptions) (p *pstages.Pipeline, closeFn func(), err error) {
	cfg := a.cfg
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	reg, err := oci.New(cfg.Registry)
	if err != nil {
		return nil, nil, err
	}
	b, err := builder.New(builder.FromConfig(cfg.Builder, reg, cfg.Registry))
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() { b.Close() })

	// Trivy logs through slog's default logger, freely at info: keep it
	// quiet unless debugging.
	level := slog.LevelWarn
	if cfg.Log.Level == "debug" || o.trivyLog {
		level = slog.LevelDebug
	}
	prev := slog.Default()
	slog.SetDefault(slog.New(scanLogHandler{newLogger(a.stderr, cfg.Log).Handler(), level}).With("component", "trivy"))
	closers = append(closers, func() { slog.SetDefault(prev) })
	sc := &lazyScanner{open: func() (*scanner.Scanner, error) {
		return scanner.New(cfg.Scanner, scanner.Options{Registry: reg, Log: a.log})
	}}
	closers = append(closers, sc.close)

	d := pstages.Deps{Config: cfg, Builder: b, Scanner: sc, Log: a.log, RunURL: o.runURL, Reports: o.reports, LogReports: o.logReports, Repo: o.repo, GitAuth: o.gitAuth,
		ResolveDigest: func(ctx context.Context, ref string) (name.Digest, error) {
			dg, _, err := signer.ResolveDigest(ctx, reg, ref)
			return dg, err
		}}
	if cfg.Signer.KeySource != "none" && !o.noSign {
		s, err := signer.New(ctx, cfg.Signer, reg, signer.WithLogger(a.log),
			signer.WithGetenv(func(k string) string { return lookupEnv(a.env, k) }))
		if err != nil {
			return nil, nil, err
		}
		d.Signer = s
	} else if !o.noSign {
		a.log.Warn("signing is off (signer.keySource: none): images are not signed, and admission refuses unsigned images")
	}
	if cfg.Pipeline.Deploy {
		d.Deployer = newDeployer(a)
	}
	if o.audit {
		sink, closeSink, err := openAuditSink(ctx, a, nil)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, closeSink)
		d.Audit = sink
	}
	n, err := notify.New(cfg.Notify)
	if err != nil {
		return nil, nil, err
	}
	d.Notifier = n
	p, err = pstages.New(d)
	if err != nil {
		return nil, nil, err
	}
	return p, closeAll, nil
}

// newDeployer connects to the cluster. When that fails, the process still
// starts (the other stages and the API work) and every deploy reports
// why, so the run record says what to fix.
func newDeployer(a *app) pstages.Deployer {
	rc, err := deploy.RESTConfig(a.cfg.Deploy.Kubeconfig)
	var dep *deploy.Deployer
	if err == nil {
		dep, err = deploy.New(a.cfg.Deploy, rc)
	}
	if err != nil {
		err = errors.New(strings.TrimSpace(err.Error()) + " (deploy.kubeconfig; or turn the deploy stage off: pipeline.deploy: false, gantry run --no-deploy)")
		a.log.Warn("deploy stage cannot reach the cluster; deploys will fail until this is fixed", "err", err)
		return brokenDeployer{err}
	}
	return dep
}

type brokenDeployer struct{ err error }

func (b brokenDeployer) Apply(context.Context, deploy.Function) (*deploy.Result, error) {
	return nil, b.err
}

func (b brokenDeployer) Current(context.Context, deploy.Function) (*deploy.Deployed, error) {
	return nil, b.err
}

// lazyScanner opens the embedded scanner (one per process: Trivy's DB
// handle is global) on the first scan, so that a process that fails
// its start-up checks, or never scans, never holds it.
type lazyScanner struct {
	mu   sync.Mutex
	open func() (*scanner.Scanner, error)
	s    *scanner.Scanner
}

func (l *lazyScanner) Scan(ctx context.Context, ref string) (*scanner.Result, error) {
	l.mu.Lock()
	if l.s == nil {
		s, err := l.open()
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.s = s
	}
	s := l.s
	l.mu.Unlock()
	return s.Scan(ctx, ref)
}

func (l *lazyScanner) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		_ = l.s.Close()
		l.s = nil
	}
}
