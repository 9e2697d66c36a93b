package dispatch

import "github.com/prometheus/client_golang/prometheus"

// metrics are the running dispatcher's counters, registered on the
// Registerer the caller passes (never the global one).
type metrics struct {
	tasks     *prometheus.CounterVec // by outcome
	records   prometheus.Counter
	exhausted prometheus.Counter
	reloads   *prometheus.CounterVec // by result
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_tasks_total",
			Help: "Poll tasks by outcome: published, overrun (the host's previous task still queued or running), queue_full, retried, failed.",
		}, []string{"outcome"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flock_dispatcher_records_total",
			Help: "HostRecords written to the sinks (each task once).",
		}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flock_dispatcher_tasks_exhausted_total",
			Help: "Tasks that reached max_deliver unanswered and were answered with an undelivered record.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_reloads_total",
			Help: "Inventory reloads by result: applied or rejected.",
		}, []string{"result"}),
	}
	for _, o := range []string{"published", "overrun", "queue_full", "retried", "failed"} {
		m.tasks.WithLabelValues(o) // export zeros, so rates work from the start
	}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(m.tasks, m.records, m.exhausted, m.reloads)
	}
	return m
}
