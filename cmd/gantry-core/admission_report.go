//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/admission/clusteraudit"
	"github.com/gantry-dev/gantry/admission/online"
)

// startAdmissionAudit runs `gantry policy audit` every
// admission.audit.interval inside `gantry admission` and publishes the
// gauges in reg. Its evaluator is a second one built from the same
// configuration, with no metrics, audit sink or decision logs of its own:
// judging what already runs is not an admission request, so it must not
// count as one.
func startAdmissionAudit(ctx context.Context, a *app, reg prometheus.Registerer) error {
	ac := a.cfg.Admission.Audit
	dyn, err := auditClient(ac)
	if err != nil {
		return err
	}
	eval, err := online.Build(a.cfg, online.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	p := &clusteraudit.Publisher{Eval: eval, Dyn: dyn, Options: auditOptions(a.cfg, ac), Interval: ac.Interval,
		Log: a.log.With("component", "admission-audit")}
	reg.MustRegister(p)
	a.log.Info("admission audit enabled", "interval", ac.Interval.String(), "namespaces", p.Options.Namespaces, "selector", ac.Selector)
	go p.Run(ctx)
	return nil
}
