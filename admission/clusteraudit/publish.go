package clusteraudit

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/admission"
)

// Publisher runs the audit every Interval and publishes the result as
// gauges: gantry_admission_audit_violations{namespace,rule} counts the
// workloads that would be denied for that rule (reset each pass, so a fixed
// workload disappears), gantry_admission_audit_last_run_timestamp_seconds
// and gantry_admission_audit_last_success_timestamp_seconds say when it ran
// and when it last succeeded, gantry_admission_audit_denied_workloads the
// total. A failed pass keeps the previous gauges and logs why.
type Publisher struct {
	Eval     *admission.Evaluator
	Dyn      dynamic.Interface
	Options  Options
	Interval time.Duration
	// Timeout bounds one pass (default: Interval).
	Timeout time.Duration
	Log     *slog.Logger

	violations  *prometheus.GaugeVec
	denied      prometheus.Gauge
	lastRun     prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// Register creates the gauges in reg.
func (p *Publisher) Register(reg prometheus.Registerer) {
	p.violations = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gantry_admission_audit_violations",
		Help: "Running workloads admission would deny, by namespace and rule, as of the last successful periodic audit (admission.audit.interval).",
	}, []string{"namespace", "rule"})
	p.denied = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gantry_admission_audit_denied_workloads",
		Help: "Running workloads admission would deny, as of the last successful periodic audit.",
	})
	p.lastRun = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gantry_admission_audit_last_run_timestamp_seconds",
		Help: "Unix time the last periodic audit pass ended (successful or not).",
	})
	p.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gantry_admission_audit_last_success_timestamp_seconds",
		Help: "Unix time the last periodic audit pass succeeded.",
	})
	reg.MustRegister(p.violations, p.denied, p.lastRun, p.lastSuccess)
}

// Run audits now and then every Interval until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass runs one audit and updates the gauges.
func (p *Publisher) Pass(ctx context.Context) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = p.Interval
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	rep, err := Run(pctx, p.Eval, p.Dyn, p.Options)
	p.lastRun.Set(float64(time.Now().Unix()))
	if err != nil {
		if ctx.Err() == nil {
			p.Log.Warn("admission audit failed; the gauges keep the last successful pass", "error", err)
		}
		return
	}
	p.violations.Reset()
	for _, w := range rep.Workloads {
		if !w.Denied {
			continue
		}
		seen := map[string]bool{}
		for _, v := range w.Violations {
			if !seen[v.Rule] {
				seen[v.Rule] = true
				p.violations.WithLabelValues(w.Namespace, v.Rule).Inc()
			}
		}
	}
	p.denied.Set(float64(rep.Denied))
	p.lastSuccess.Set(float64(time.Now().Unix()))
	p.Log.Info("admission audit", "scanned", rep.Scanned, "denied", rep.Denied, "duration", time.Since(start).Round(time.Millisecond).String())
}
