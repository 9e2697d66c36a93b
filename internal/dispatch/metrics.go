package dispatch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the running dispatcher's counters, registered on the
// Registerer the caller passes (never the global one).
type metrics struct {
	tasks     *prometheus.CounterVec // by outcome
	records   *prometheus.CounterVec // by outcome
	exhausted prometheus.Counter
	reloads   *prometheus.CounterVec // by result
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_tasks_total",
			Help: "Poll tasks by outcome: published, overrun (the host's previous task still queued or running), queue_full, retried, failed.",
		}, []string{"outcome"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_records_total",
			Help: "HostRecords collected and written to the sinks (each task once), by outcome: ok or the record's error kind; refused: records of an unknown schema or unreadable, not collected.",
		}, []string{"outcome"}),
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
	m.records.WithLabelValues("ok")
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(m.tasks, m.records, m.exhausted, m.reloads)
	}
	return m
}

// stateCollector exports how many hosts are in each state, counted at scrape time.
type stateCollector struct {
	r    *Runner
	desc *prometheus.Desc
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, sc := range CountStates(c.r.Status()) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(sc.N), sc.State)
	}
}

// QueueStats is the state of a site's task queue.
type QueueStats struct {
	Queued      uint64        // tasks in the work queue (waiting or being polled)
	Pending     uint64        // tasks no poller has taken yet: the consumer's lag
	AckPending  int           // tasks taken and not yet answered
	Redelivered int           // tasks being redelivered
	OldestAge   time.Duration // age of the oldest task still in the queue; 0 when it is empty
}

// queueCollector exports the task queue's depth, the pollers' lag and the
// oldest outstanding task, asked of JetStream at scrape time.
type queueCollector struct {
	queue                                            func(ctx context.Context) (QueueStats, error)
	queued, pending, ackPending, redelivered, oldest *prometheus.Desc
	up                                               *prometheus.Desc
}

func newQueueCollector(queue func(ctx context.Context) (QueueStats, error)) *queueCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &queueCollector{queue: queue,
		queued:      d("flock_dispatcher_queue_tasks", "Tasks in the work queue: waiting or being polled."),
		pending:     d("flock_dispatcher_queue_pending_tasks", "Tasks no poller has taken yet (the pollers' consumer lag)."),
		ackPending:  d("flock_dispatcher_queue_unacked_tasks", "Tasks taken by a poller and not yet answered."),
		redelivered: d("flock_dispatcher_queue_redelivered_tasks", "Tasks being delivered again after a poller failed to answer."),
		oldest:      d("flock_dispatcher_queue_oldest_task_age_seconds", "Age of the oldest task still in the work queue; 0 when it is empty."),
		up:          d("flock_dispatcher_queue_up", "1 if the queue figures could be read from JetStream at this scrape."),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.pending, c.ackPending, c.redelivered, c.oldest, c.up} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	q, err := c.queue(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(q.Queued))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(q.Pending))
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(q.AckPending))
	ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(q.Redelivered))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, q.OldestAge.Seconds())
}
