package telemetry

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flock-snmp/flock/internal/task"
)

// PollerMetrics are the poller's: polls by outcome, their duration, polls in
// flight, redeliveries, and (through CounterFuncs) SNMP packets, retries and
// NATS reconnects. No per-host label: a fleet would explode the series.
type PollerMetrics struct {
	polls       *prometheus.CounterVec
	outcomes    map[string]prometheus.Counter // pre-resolved: no label hashing per poll
	duration    prometheus.Histogram
	inFlight    atomic.Int64
	done        atomic.Uint64
	redelivered prometheus.Counter
}

// Outcomes a poll is counted under: ok, every record error kind, and
// handed_back (not polled to the end: shutdown, or the record could not be stored).
var Outcomes = []string{"ok", task.KindTimeout, task.KindUnreachable, task.KindResolve, task.KindAuth, task.KindProtocol,
	task.KindBadTask, task.KindInternal, task.KindUndelivered, task.KindTooLarge, "handed_back"}

// PollerSources are the counters the poller's metrics read at scrape time.
type PollerSources struct {
	PacketsSent, Retries, StrayAnswers, NATSReconnects func() uint64
}

// NewPollerMetrics registers the poller's metrics on reg.
func NewPollerMetrics(reg prometheus.Registerer, src PollerSources) *PollerMetrics {
	m := &PollerMetrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_poller_polls_total",
			Help: "Polls by outcome: ok, an error kind of the HostRecord (timeout, unreachable, resolve, auth, protocol, bad_task, ...), or handed_back.",
		}, []string{"outcome"}),
		outcomes: map[string]prometheus.Counter{},
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flock_poller_poll_duration_seconds",
			Help:    "Time from a poll's start to its record, per poll.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flock_poller_tasks_redelivered_total",
			Help: "Tasks taken on a second or later delivery (a poller died or handed them back).",
		}),
	}
	for _, o := range Outcomes {
		m.outcomes[o] = m.polls.WithLabelValues(o)
	}
	reg.MustRegister(m.polls, m.duration, m.redelivered,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flock_poller_polls_in_flight",
			Help: "Polls running now.",
		}, func() float64 { return float64(m.inFlight.Load()) }),
		counterFunc("flock_poller_snmp_packets_sent_total", "SNMP requests sent, retries included.", src.PacketsSent),
		counterFunc("flock_poller_snmp_retries_total", "SNMP requests sent again after a timeout.", src.Retries),
		counterFunc("flock_poller_snmp_stray_answers_total",
			"Datagrams that answered no request in flight: late or duplicate answers, answers from another address than the agent asked, garbage.", src.StrayAnswers),
		counterFunc("flock_poller_nats_reconnects_total", "Times the connection to NATS was re-established.", src.NATSReconnects),
	)
	return m
}

func counterFunc(name, help string, f func() uint64) prometheus.CounterFunc {
	if f == nil {
		f = func() uint64 { return 0 }
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
}

// PollStarted implements poller.Hooks.
func (m *PollerMetrics) PollStarted() { m.inFlight.Add(1) }

// PollDone implements poller.Hooks.
func (m *PollerMetrics) PollDone(rec *task.HostRecord, attempt int) {
	m.inFlight.Add(-1)
	if attempt > 1 {
		m.redelivered.Inc()
	}
	outcome := "handed_back"
	if rec != nil {
		m.done.Add(1)
		m.duration.Observe(rec.DurationMS / 1000)
		outcome = "ok"
		if rec.Error != nil {
			outcome = rec.Error.Kind
		}
	}
	c, ok := m.outcomes[outcome]
	if !ok {
		c = m.polls.WithLabelValues(outcome) // a kind added later than this list
	}
	c.Inc()
}

// InFlight is the number of polls running now.
func (m *PollerMetrics) InFlight() int64 { return m.inFlight.Load() }

// Polls is the number of polls that ended with a published record.
func (m *PollerMetrics) Polls() uint64 { return m.done.Load() }
