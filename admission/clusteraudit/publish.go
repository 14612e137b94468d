package clusteraudit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/admission"
)

// Publisher runs the audit every Interval and publishes the result as
// gauges: gantry_admission_audit_violations{namespace,rule} counts the
// workloads that would be denied for that rule (replaced whole each pass,
// so a fixed workload disappears), gantry_admission_audit_denied_workloads
// their total, gantry_admission_audit_last_run_timestamp_seconds and
// gantry_admission_audit_last_success_timestamp_seconds when it last ran
// and last succeeded. A failed pass keeps the previous result and logs why.
type Publisher struct {
	Eval     *admission.Evaluator
	Dyn      dynamic.Interface
	Options  Options
	Interval time.Duration
	// Timeout bounds one pass (default: Interval).
	Timeout time.Duration
	Log     *slog.Logger

	mu          sync.Mutex
	byRule      map[[2]string]int // namespace, rule → workloads
	denied      int
	lastRun     time.Time
	lastSuccess time.Time
}

var (
	descViolations = prometheus.NewDesc("gantry_admission_audit_violations",
		"Running workloads admission would deny, by namespace and rule, as of the last successful periodic audit (admission.audit.interval).",
		[]string{"namespace", "rule"}, nil)
	descDenied = prometheus.NewDesc("gantry_admission_audit_denied_workloads",
		"Running workloads admission would deny, as of the last successful periodic audit.", nil, nil)
	descLastRun = prometheus.NewDesc("gantry_admission_audit_last_run_timestamp_seconds",
		"Unix time the last periodic audit pass ended, successful or not (0: none yet).", nil, nil)
	descLastSuccess = prometheus.NewDesc("gantry_admission_audit_last_success_timestamp_seconds",
		"Unix time the last periodic audit pass succeeded (0: none yet).", nil, nil)
)

// Describe implements prometheus.Collector.
func (p *Publisher) Describe(ch chan<- *prometheus.Desc) {
	ch <- descViolations
	ch <- descDenied
	ch <- descLastRun
	ch <- descLastSuccess
}

// Collect implements prometheus.Collector: one consistent pass per scrape.
func (p *Publisher) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, n := range p.byRule {
		ch <- prometheus.MustNewConstMetric(descViolations, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descDenied, prometheus.GaugeValue, float64(p.denied))
	ch <- prometheus.MustNewConstMetric(descLastRun, prometheus.GaugeValue, unix(p.lastRun))
	ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unix(p.lastSuccess))
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Run audits now and then every Interval until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
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

// Pass runs one audit and replaces the published result.
func (p *Publisher) Pass(ctx context.Context) {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = p.Interval
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	rep, err := Run(pctx, p.Eval, p.Dyn, p.Options)
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastRun = end
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("admission audit failed; the gauges keep the last successful pass", "error", err)
		}
		return
	}
	p.byRule = map[[2]string]int{}
	for _, w := range rep.Workloads {
		if !w.Denied {
			continue
		}
		seen := map[string]bool{}
		for _, v := range w.Violations {
			if !seen[v.Rule] {
				seen[v.Rule] = true
				p.byRule[[2]string{w.Namespace, v.Rule}]++
			}
		}
	}
	p.denied = rep.Denied
	p.lastSuccess = end
	log.Info("admission audit", "scanned", rep.Scanned, "denied", rep.Denied, "duration", end.Sub(start).Round(time.Millisecond).String())
}
