package dispatch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the running dispatcher's counters, registered on the
// Registerer the caller passes (never the global one).
type metrics struct {
	tasks      *prometheus.CounterVec // by outcome, site
	records    *prometheus.CounterVec // by outcome, site
	exhausted  *prometheus.CounterVec // by site
	missed     *prometheus.CounterVec // by site
	reloads    *prometheus.CounterVec // by result
	duplicates prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_tasks_total",
			Help: "Poll tasks by outcome and site: published, overrun (the host's previous task still queued or running), queue_full, retried, failed.",
		}, []string{"outcome", "site"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_records_total",
			Help: "HostRecords collected and written to the sinks (each task once), by outcome (ok or the record's error kind; refused: records of an unknown schema or unreadable, not collected) and site (other: not a site of the inventory).",
		}, []string{"outcome", "site"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_tasks_exhausted_total",
			Help: "Tasks that reached max_deliver unanswered and were answered with an undelivered record, by site.",
		}, []string{"site"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_slots_missed_total",
			Help: "Poll slots that got no record, by site: tasks with no record by their deadline (their site's pollers gone or cut off, say), and slots whose task was refused (overrun, queue_full, failed).",
		}, []string{"site"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flock_dispatcher_records_possible_duplicates_total",
			Help: "Records written to the sinks that a dispatcher had been given before and had not acknowledged: if it wrote them before it died, the sinks hold them twice (sinks are at-least-once; the task id is the key).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flock_dispatcher_reloads_total",
			Help: "Inventory reloads by result: applied or rejected.",
		}, []string{"result"}),
	}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(m.tasks, m.records, m.exhausted, m.missed, m.reloads, m.duplicates)
	}
	return m
}

// zeros exports zeros for the sites' counters, so rates work from the start.
func (m *metrics) zeros(sites []string) {
	for _, site := range sites {
		for _, o := range []string{"published", "overrun", "queue_full", "retried", "failed"} {
			m.tasks.WithLabelValues(o, site)
		}
		m.records.WithLabelValues("ok", site)
		m.exhausted.WithLabelValues(site)
		m.missed.WithLabelValues(site)
	}
}

// stateCollector exports how many hosts are in each state, counted at scrape time.
type stateCollector struct {
	r    *Runner
	desc *prometheus.Desc
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	bySite := map[string][]StatusRow{}
	for _, row := range c.r.Status() {
		bySite[row.Site] = append(bySite[row.Site], row)
	}
	for site, rows := range bySite {
		for _, sc := range CountStates(rows) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(sc.N), site, sc.State)
		}
	}
}

// sitePollersCollector exports how many live pollers each site has.
type sitePollersCollector struct {
	r    *Runner
	desc *prometheus.Desc
}

func (c sitePollersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c sitePollersCollector) Collect(ch chan<- prometheus.Metric) {
	live := c.r.o.Pollers()
	for _, site := range c.r.Sites() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(live[site])), site)
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

// queueCollector exports each site's task queue depth, its pollers' lag
// and the oldest outstanding task, asked of JetStream at scrape time.
type queueCollector struct {
	sites                                            func() []string
	queue                                            func(ctx context.Context, site string) (QueueStats, error)
	queued, pending, ackPending, redelivered, oldest *prometheus.Desc
	up                                               *prometheus.Desc
}

func newQueueCollector(sites func() []string, queue func(ctx context.Context, site string) (QueueStats, error)) *queueCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, []string{"site"}, nil) }
	return &queueCollector{sites: sites, queue: queue,
		queued:      d("flock_dispatcher_queue_tasks", "Tasks of the site in the work queue: waiting or being polled."),
		pending:     d("flock_dispatcher_queue_pending_tasks", "Tasks of the site no poller has taken yet (the site's pollers' consumer lag)."),
		ackPending:  d("flock_dispatcher_queue_unacked_tasks", "Tasks of the site taken by a poller and not yet answered."),
		redelivered: d("flock_dispatcher_queue_redelivered_tasks", "Tasks of the site being delivered again after a poller failed to answer."),
		oldest: prometheus.NewDesc("flock_dispatcher_queue_oldest_task_age_seconds",
			"Age of the oldest task in the work queue (every site); 0 when it is empty.", nil, nil),
		up: d("flock_dispatcher_queue_up", "1 if the site's queue figures could be read from JetStream at this scrape."),
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
	oldest := false
	for _, site := range c.sites() {
		q, err := c.queue(ctx, site)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0, site)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1, site)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(q.Pending)+float64(q.AckPending), site)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(q.Pending), site)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(q.AckPending), site)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(q.Redelivered), site)
		if !oldest {
			oldest = true
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, q.OldestAge.Seconds())
		}
	}
}
