package export

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the metric sinks' counters, by sink, registered on the
// Registerer the caller passes (never the global one).
type Metrics struct {
	records, samples, errors, rejected, refused *prometheus.CounterVec
	pending                                     *prometheus.GaugeVec
}

// NewMetrics registers the sinks' metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"sink"})
	}
	m := &Metrics{
		records:  vec("flock_sink_records_total", "HostRecords a metric sink wrote (its output accepted them)."),
		samples:  vec("flock_sink_samples_total", "Samples a metric sink wrote."),
		errors:   vec("flock_sink_errors_total", "Failed writes of a metric sink: each attempt that the output refused or could not take (no connection, timeout, 5xx, 429, 4xx)."),
		rejected: vec("flock_sink_rejected_records_total", "HostRecords whose batch the output refused for good (4xx): acknowledged, not written."),
		refused:  vec("flock_sink_refused_records_total", "Records a metric sink could not read (corrupt, unknown schema): not written."),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flock_sink_pending",
			Help: "HostRecords a metric sink has yet to write: stored in the results stream and not yet acknowledged by it (held while its output is down).",
		}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.samples, m.errors, m.rejected, m.refused, m.pending)
	}
	return m
}

type sinkMetrics struct {
	records, samples, errors, rejected, refused prometheus.Counter
	pending                                     prometheus.Gauge
}

func (m *Metrics) sink(name string) *sinkMetrics {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &sinkMetrics{m.records.WithLabelValues(name), m.samples.WithLabelValues(name), m.errors.WithLabelValues(name),
		m.rejected.WithLabelValues(name), m.refused.WithLabelValues(name), m.pending.WithLabelValues(name)}
}
