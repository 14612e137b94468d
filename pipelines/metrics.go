package pipelines

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	enqueued      prometheus.Counter
	finished      *prometheus.CounterVec
	stageDuration *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	rejected      *prometheus.CounterVec
}

func newMetrics(q *Queue, reg prometheus.Registerer) *metrics {
	m := &metrics{
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_runs_enqueued_total", Help: "Runs durably queued.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_runs_finished_total", Help: "Runs that reached a final state, by state.",
		}, []string{"state"}),
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_stage_duration_seconds",
			Help:    "Duration of stage executions, by stage and resulting state.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"stage", "state"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_runs_in_flight", Help: "Runs this process's workers are executing.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_runs_rejected_total", Help: "Run records workers refused to execute (bad or missing seal, not allowed, foreign clone URL), by check.",
		}, []string{"reason"}),
	}
	if reg != nil {
		depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gantry_queue_depth",
			Help: "Runs in the work queue (waiting or being worked on); -1 when the queue does not answer.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := q.Depth(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
		reg.MustRegister(m.enqueued, m.finished, m.stageDuration, m.inFlight, m.rejected, depth)
	}
	return m
}
