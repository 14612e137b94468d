package admission

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the evaluator's Prometheus collectors.
type Metrics struct {
	violations        *prometheus.CounterVec
	exemptions        prometheus.Counter
	breakGlass        prometheus.Counter
	breakGlassRefused prometheus.Counter
	auditFailures     prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests and `gantry policy check`).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_admission_violations_total",
			Help: "Rule violations found, by rule and namespace mode (enforce, warn, audit).",
		}, []string{"rule", "mode"}),
		exemptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_admission_exemptions_total",
			Help: "Exemptions applied to admission requests.",
		}),
		breakGlass: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_admission_break_glass_total",
			Help: "Requests admitted by a valid break-glass annotation despite violations.",
		}),
		breakGlassRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_admission_break_glass_refused_total",
			Help: "Break-glass annotations refused (set, extended or carried into a changed pod spec by a user not in a break-glass group, or not a valid expiry).",
		}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_admission_audit_failures_total",
			Help: "Audit records (exemptions, break-glass) that could not be written; the decision stands, the record is missing.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.violations, m.exemptions, m.breakGlass, m.breakGlassRefused, m.auditFailures)
	}
	return m
}
