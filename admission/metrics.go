package admission

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
)

// Metrics count what the evaluator finds. They are plain counters, not a
// metrics library's, so that what evaluates a manifest offline (`gantry
// policy check --offline`) links none; package online exports them to
// Prometheus for the webhook.
type Metrics struct {
	mu         sync.Mutex
	violations map[ViolationKey]uint64

	exemptions, breakGlass, breakGlassRefused, auditFailures atomic.Uint64
}

// ViolationKey labels a violation count.
type ViolationKey struct {
	Rule string
	// Mode is the namespace's mode: enforce, warn or audit.
	Mode string
}

// ViolationCount is one labelled count.
type ViolationCount struct {
	ViolationKey
	N uint64
}

// NewMetrics returns zeroed counters.
func NewMetrics() *Metrics { return &Metrics{violations: map[ViolationKey]uint64{}} }

func (m *Metrics) violation(rule, mode string) {
	m.mu.Lock()
	m.violations[ViolationKey{rule, mode}]++
	m.mu.Unlock()
}

// Violations are the violation counts so far, by rule and mode, sorted.
func (m *Metrics) Violations() []ViolationCount {
	m.mu.Lock()
	out := make([]ViolationCount, 0, len(m.violations))
	for k, n := range m.violations {
		out = append(out, ViolationCount{k, n})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b ViolationCount) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Mode, b.Mode))
	})
	return out
}

// Exemptions counts exemptions applied to requests.
func (m *Metrics) Exemptions() uint64 { return m.exemptions.Load() }

// BreakGlass counts requests admitted by a valid break-glass annotation
// despite violations.
func (m *Metrics) BreakGlass() uint64 { return m.breakGlass.Load() }

// BreakGlassRefused counts break-glass annotations refused.
func (m *Metrics) BreakGlassRefused() uint64 { return m.breakGlassRefused.Load() }

// AuditFailures counts audit records that could not be written.
func (m *Metrics) AuditFailures() uint64 { return m.auditFailures.Load() }
