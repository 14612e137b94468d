package online

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/admission"
)

// metricsCollector exports the evaluator's counters to Prometheus, read
// at each scrape.
type metricsCollector struct {
	m                                                             *admission.Metrics
	violations, exemptions, breakGlass, breakGlassRefused, failed *prometheus.Desc
}

func newMetricsCollector(m *admission.Metrics) *metricsCollector {
	return &metricsCollector{m: m,
		violations: prometheus.NewDesc("gantry_admission_violations_total",
			"Rule violations found, by rule and namespace mode (enforce, warn, audit).", []string{"rule", "mode"}, nil),
		exemptions: prometheus.NewDesc("gantry_admission_exemptions_total",
			"Exemptions applied to admission requests.", nil, nil),
		breakGlass: prometheus.NewDesc("gantry_admission_break_glass_total",
			"Requests admitted by a valid break-glass annotation despite violations.", nil, nil),
		breakGlassRefused: prometheus.NewDesc("gantry_admission_break_glass_refused_total",
			"Break-glass annotations refused (set, extended or carried into a changed pod spec by a user not in a break-glass group, or not a valid expiry).", nil, nil),
		failed: prometheus.NewDesc("gantry_admission_audit_failures_total",
			"Audit records (exemptions, break-glass) that could not be written; the decision stands, the record is missing.", nil, nil),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.violations, c.exemptions, c.breakGlass, c.breakGlassRefused, c.failed} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.m.Violations() {
		ch <- prometheus.MustNewConstMetric(c.violations, prometheus.CounterValue, float64(v.N), v.Rule, v.Mode)
	}
	for d, n := range map[*prometheus.Desc]uint64{c.exemptions: c.m.Exemptions(), c.breakGlass: c.m.BreakGlass(),
		c.breakGlassRefused: c.m.BreakGlassRefused(), c.failed: c.m.AuditFailures()} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n))
	}
}
