package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/fleet"
	"github.com/flock-snmp/flock/internal/lease"
	"github.com/flock-snmp/flock/internal/task"
)

// RunBus is what continuous dispatching needs from the message bus.
type RunBus interface {
	// PublishTasks queues tasks, one error per task (task.ErrHostBusy, task.ErrQueueFull, ...).
	PublishTasks(ctx context.Context, tasks []task.PollTask) []error
	// ConsumeRecords delivers every site's records through a durable consumer until ctx ends; fn's error redelivers.
	// redelivered says a dispatcher had the record before and did not acknowledge it.
	ConsumeRecords(ctx context.Context, durable string, ackWait time.Duration, fn func(subject string, data []byte, redelivered bool) error) error
	// WatchExhausted hands over tasks of any site that reached max_deliver unanswered, removed from the queue.
	WatchExhausted(ctx context.Context, fn func(subject string, data []byte, deliveries int)) (stop func(), err error)
	// PublishRecord stores a record with its task id as message id.
	PublishRecord(ctx context.Context, subject, id string, data []byte) error
	// RequestPoll hands a poll-now task to one of the site's pollers and returns its record.
	RequestPoll(ctx context.Context, site string, data []byte) ([]byte, error)
}

// RecordsDurable is the durable consumer every dispatcher collects records
// through: whichever leads continues where the last one acknowledged.
const RecordsDurable = "dispatcher"

// RunOptions configure Run.
type RunOptions struct {
	Sinks []Sink
	State StateStore
	// Reload signals (SIGHUP) that LoadConfig should be called and the new
	// inventory applied; a configuration that fails to load is rejected and
	// the running inventory kept.
	Reload     <-chan struct{}
	LoadConfig func() (*config.Config, error)
	Log        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer receives the dispatcher's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Queue, if set, reads a site's task queue's state for the metrics.
	Queue func(ctx context.Context, site string) (QueueStats, error)
	// AddSite makes sure a site's pollers can take its tasks (creates its
	// consumer); RemoveSite removes a site dropped from the inventory once
	// nothing of it is queued, reporting false while something is. Nil: no-op.
	AddSite    func(ctx context.Context, site string) error
	RemoveSite func(ctx context.Context, site string) (bool, error)
	// ListSites, if set, lists the sites that have a consumer, so that a
	// leader retires those of sites its inventory does not have.
	ListSites func(ctx context.Context) ([]string, error)
	// RecordsAckWait is how long a record taken by a dispatcher may go
	// unacknowledged before it goes to whichever leads (30 s when 0): after
	// a leader dies, its records come back this long after.
	RecordsAckWait time.Duration
	// Leading reports whether this dispatcher holds the lease; nil: always.
	// Nothing is published or written to the sinks while it is false.
	Leading func() bool
	// Pollers, if set, is the live pollers by site, for the status view and
	// the flock_dispatcher_site_pollers metric.
	Pollers func() map[string][]fleet.Poller
	// Members, if set, lists the dispatchers (leader and standbys) for the
	// status view.
	Members func(ctx context.Context) ([]lease.Member, error)
}

// Stats counts what a run did.
type Stats struct {
	Published int // tasks queued
	Overruns  int // slots skipped because the host's previous task was still queued or in flight
	QueueFull int // tasks refused because the task queue was full
	Failed    int // tasks that could not be published for another reason
	// Interrupted counts tasks whose publication a shutdown cut short.
	Interrupted int
	Records     int // records written to the sinks
	Reloads     int // inventories applied by reload
	Rejected    int // reloads rejected
	Exhausted   int // tasks that reached max_deliver unanswered, removed and answered with an error record
	// Missed counts slots that got no record: published tasks with none
	// by their deadline (plus MissedGrace), and slots refused (overrun,
	// queue full, failed).
	Missed int
	// PossibleDuplicates counts records written that a dispatcher had had
	// before without acknowledging them: if it wrote them before it died,
	// the sinks hold them twice.
	PossibleDuplicates int
	Terms              int // times this dispatcher began leading
}

// Runner is a running dispatcher.
type Runner struct {
	bus    RunBus
	o      RunOptions
	sched  *Scheduler
	states *States
	m      *metrics

	mu      sync.Mutex
	stats   Stats
	overrun map[string]bool // hosts with a logged overrun and no record since
	retry   []task.PollTask // tasks whose publication failed for want of the server
	// awaiting holds the published tasks of this term with no record yet,
	// by task id; missed, the slots missed by site since the last report.
	awaiting  map[string]awaited
	missed    map[string]int
	lastSweep time.Time
	hosts     []config.Host // the inventory in force

	records  *collector
	pollNow  chan struct{}   // one token per poll-now request being served
	sites    []string        // the sites in force
	retiring map[string]bool // sites dropped from the inventory whose consumers remain
	adding   map[string]bool // sites of the inventory whose consumers could not be made yet
	running  bool            // leading: the states in memory are current
	cache    statesCache     // a standby's view of the states in the store
	fence    sync.RWMutex    // held (read) by a record's lease check and sink writes
}

// Fence returns once no record is being written to the sinks: after the
// lease is lost (Leading false), nothing more is written from then on.
func (r *Runner) Fence() {
	r.fence.Lock()
	r.fence.Unlock() //nolint:staticcheck // SA2001: the empty section is the point, a barrier
}

// NewRunner prepares continuous dispatching of cfg's hosts. Host state is
// read from o.State when a term of leading begins (Run); until then the
// status view reads it from the store.
func NewRunner(bus RunBus, cfg *config.Config, o RunOptions) *Runner {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Leading == nil {
		o.Leading = func() bool { return true }
	}
	states := newStates()
	r := &Runner{bus: bus, o: o, states: states, overrun: map[string]bool{}, awaiting: map[string]awaited{}, missed: map[string]int{}, m: newMetrics(o.Registerer),
		hosts: cfg.Hosts, sites: cfg.Sites(), retiring: map[string]bool{}, adding: map[string]bool{}, pollNow: make(chan struct{}, pollNowLimit)}
	r.m.zeros(r.sites)
	r.records = &collector{sinks: o.Sinks, states: states, store: o.State, log: o.Log, leading: o.Leading, fence: &r.fence,
		written: r.written, refused: func() { r.m.records.WithLabelValues("refused", "").Inc() }}
	if o.Registerer != nil {
		o.Registerer.MustRegister(stateCollector{r: r, desc: prometheus.NewDesc("flock_dispatcher_hosts",
			"Hosts of the inventory by site and state: ok (last poll answered), failing (last poll failed), unknown (not polled yet).",
			[]string{"site", "state"}, nil)})
		o.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flock_dispatcher_leader",
			Help: "1 if this dispatcher leads (schedules, publishes tasks, writes records), 0 if it stands by.",
		}, func() float64 {
			if o.Leading() {
				return 1
			}
			return 0
		}))
		if o.Pollers != nil {
			o.Registerer.MustRegister(sitePollersCollector{r: r, desc: prometheus.NewDesc("flock_dispatcher_site_pollers",
				"Live pollers of each site of the inventory (a heartbeat within 3 periods); 0: the site's hosts go unpolled.",
				[]string{"site"}, nil)})
		}
		if o.Queue != nil {
			o.Registerer.MustRegister(newQueueCollector(r.Sites, o.Queue))
		}
	}
	return r
}

// Sites is the sites of the inventory in force.
func (r *Runner) Sites() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sites
}

// beginTerm prepares a term of leading: the host states as the last
// leader left them in the store, the inventory's slots, and the current
// slot of every host whose record is not in yet, due now. A republished
// slot is harmless: its task id makes JetStream drop the copy or refuse it
// as busy.
func (r *Runner) beginTerm(ctx context.Context) error {
	r.mu.Lock()
	hosts, sites := r.hosts, r.sites
	r.stats.Terms++
	r.retry, r.overrun = nil, map[string]bool{} // an earlier term's: their slots are gone
	clear(r.awaiting)                           // their records went to whoever led since
	r.mu.Unlock()
	// Read at every term: the last leader (this one or another) saved them,
	// and the hosts it polled are the ones not to catch up.
	fresh, err := LoadStates(ctx, r.o.State)
	if err != nil {
		return fmt.Errorf("restore host state: %w", err)
	}
	r.states.replace(fresh)
	if r.o.AddSite != nil {
		for _, site := range sites {
			if err := r.o.AddSite(ctx, site); err != nil {
				return err
			}
		}
	}
	if r.o.ListSites != nil { // consumers of sites this inventory does not have: retired once empty
		existing, err := r.o.ListSites(ctx)
		if err != nil {
			return err
		}
		r.mu.Lock()
		for _, site := range existing {
			if !slices.Contains(sites, site) {
				r.retiring[site] = true
			}
		}
		r.mu.Unlock()
	}
	now := r.o.Now()
	r.sched = NewScheduler()
	r.sched.SetHosts(hosts, now)
	caughtUp := 0
	for i := range hosts {
		key := task.HostStateKey(hosts[i].Site, hosts[i].Key)
		if _, known := r.states.Get(key); !known {
			continue // a new host starts at its next slot, spread like the others
		}
		if r.sched.CatchUp(hosts[i].Key, now, func(id string) bool { return r.states.seen(key, id) }) {
			caughtUp++
		}
	}
	r.o.Log.Info("scheduling", "hosts", len(hosts), "sites", len(sites), "restored_states", r.states.Len(), "current_slots_caught_up", caughtUp)
	return nil
}

// States is the per-host state the runner keeps.
func (r *Runner) States() *States { return r.states }

// Stats returns a copy of the counters.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Run publishes tasks as their slots come and collects records until ctx
// ends: one term of leading. It may be called again for a later term.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.beginTerm(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	recordsDone := make(chan error, 1)
	var collecting sync.WaitGroup // a record being written when the term ends is finished before the lease goes
	go func() {
		err := r.bus.ConsumeRecords(ctx, RecordsDurable, r.o.RecordsAckWait, func(subject string, data []byte, redelivered bool) error {
			collecting.Add(1)
			defer collecting.Done()
			return r.records.collect(subject, data, redelivered)
		})
		collecting.Wait()
		recordsDone <- err
	}()
	stopExhausted, err := r.bus.WatchExhausted(ctx, r.exhausted)
	if err != nil {
		stopping := ctx.Err() != nil
		cancel()
		<-recordsDone
		if stopping {
			return nil // stopped before it started
		}
		return err
	}
	defer stopExhausted()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Minute // nothing scheduled: look again for sites to retire
		if next, ok := r.sched.NextDue(); ok {
			wait = max(next.Sub(r.o.Now()), 0)
		}
		if r.pendingRetries() || r.pendingRetirements() || r.pendingRecords() {
			wait = min(wait, time.Second)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return <-recordsDone
		case err := <-recordsDone:
			if ctx.Err() != nil { // stopping: it ended first, as it should
				return err
			}
			return fmt.Errorf("collecting records stopped: %w", err)
		case <-r.o.Reload:
			r.reload(ctx)
		case <-timer.C:
			r.publish(ctx, r.sched.Due(r.o.Now()))
			r.retireSites(ctx)
			r.sweepMissed(r.o.Now())
		}
	}
}

// Standby applies reloads while this dispatcher stands by, until ctx ends,
// so that it schedules what it was last told when it takes over.
func (r *Runner) Standby(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.o.Reload:
			r.reload(nil)
		}
	}
}

// reload applies the configuration's inventory; ctx is the term's while
// leading, nil while standing by (nothing to schedule, no sites to change).
func (r *Runner) reload(ctx context.Context) {
	cfg, err := r.o.LoadConfig()
	if err != nil {
		r.mu.Lock()
		r.stats.Rejected++
		r.mu.Unlock()
		r.m.reloads.WithLabelValues("rejected").Inc()
		r.o.Log.Error("reload rejected; the running inventory is kept", "err", err)
		return
	}
	added, removed, changed := 0, 0, 0
	if ctx != nil {
		added, removed, changed = r.sched.SetHosts(cfg.Hosts, r.o.Now())
	}
	sites := cfg.Sites()
	r.mu.Lock()
	oldSites := r.sites
	r.hosts, r.sites = cfg.Hosts, sites
	r.stats.Reloads++
	for _, s := range sites {
		delete(r.retiring, s) // back in the inventory: keep its consumer
	}
	var dropped []string
	for _, s := range oldSites {
		if !slices.Contains(sites, s) {
			r.retiring[s] = true
			dropped = append(dropped, s)
		}
	}
	for id, a := range r.awaiting { // a site dropped on purpose misses nothing
		if slices.Contains(dropped, a.site) {
			delete(r.awaiting, id)
		}
	}
	r.mu.Unlock()
	if ctx != nil && r.o.AddSite != nil {
		for _, s := range sites {
			if !slices.Contains(oldSites, s) {
				if err := r.o.AddSite(ctx, s); err != nil {
					r.o.Log.Error("new site: its pollers cannot take tasks yet; retrying every second", "site", s, "err", err)
					r.mu.Lock()
					r.adding[s] = true
					r.mu.Unlock()
				}
			}
		}
	}
	r.m.zeros(sites)
	r.m.reloads.WithLabelValues("applied").Inc()
	r.o.Log.Info("inventory reloaded", "hosts", len(cfg.Hosts), "added", added, "removed", removed, "changed", changed,
		"sites", len(sites), "sites_dropped", len(dropped), "leading", ctx != nil)
}

func (r *Runner) pendingRetirements() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return (len(r.retiring) > 0 && r.o.RemoveSite != nil) || len(r.adding) > 0
}

// retireSites makes the consumers of the sites whose first attempt failed,
// and removes those of the sites dropped from the inventory, each once its
// queue is empty.
func (r *Runner) retireSites(ctx context.Context) {
	if !r.o.Leading() {
		return
	}
	r.mu.Lock()
	var adding []string
	for s := range r.adding {
		if slices.Contains(r.sites, s) {
			adding = append(adding, s)
		} else {
			delete(r.adding, s)
		}
	}
	r.mu.Unlock()
	for _, s := range adding {
		if err := r.o.AddSite(ctx, s); err != nil {
			r.o.Log.Debug("new site: consumer still not made", "site", s, "err", err)
			continue
		}
		r.mu.Lock()
		delete(r.adding, s)
		r.mu.Unlock()
		r.o.Log.Info("new site: its pollers can take tasks now", "site", s)
	}
	if r.o.RemoveSite == nil {
		return
	}
	r.mu.Lock()
	var sites []string
	for s := range r.retiring {
		sites = append(sites, s)
	}
	r.mu.Unlock()
	for _, s := range sites {
		removed, err := r.o.RemoveSite(ctx, s)
		if err != nil {
			r.o.Log.Warn("cannot remove a dropped site's consumer yet", "site", s, "err", err)
			continue
		}
		if removed {
			r.mu.Lock()
			delete(r.retiring, s)
			r.mu.Unlock()
			r.o.Log.Info("site removed: it left the inventory and its queue is empty", "site", s, "consumer", task.PollerConsumer(s))
		}
	}
}

// awaited is a published task waiting for its record.
type awaited struct {
	site string
	by   time.Time // its deadline plus MissedGrace: no record by then, the slot is missed
}

// MissedGrace is how long after its deadline a task's record may still
// come: a poll begun just before the deadline runs for up to its poll
// timeout, and its record takes a moment to reach the dispatcher.
func MissedGrace(t *task.PollTask) time.Duration {
	return time.Duration(t.PollTimeoutMS)*time.Millisecond + 5*time.Second
}

// refused counts t's slot as missed at once: its task was not queued.
// r.mu is held.
func (r *Runner) refused(t *task.PollTask) {
	delete(r.awaiting, t.ID)
	r.missed[t.Site]++
}

func (r *Runner) pendingRecords() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.awaiting) > 0 || len(r.missed) > 0
}

// sweepMissed counts the tasks whose record did not come in time as
// missed slots, at most once a second, and reports the missed slots of
// each site: one warning per site and sweep, never one per host (a site
// cut off misses every host's slot at once).
func (r *Runner) sweepMissed(now time.Time) {
	r.mu.Lock()
	if now.Sub(r.lastSweep) < time.Second {
		r.mu.Unlock()
		return
	}
	r.lastSweep = now
	for id, a := range r.awaiting {
		if now.After(a.by) {
			delete(r.awaiting, id)
			r.missed[a.site]++
		}
	}
	report := r.missed
	if len(report) > 0 {
		r.missed = map[string]int{}
	}
	for _, n := range report {
		r.stats.Missed += n
	}
	r.mu.Unlock()
	for site, n := range report {
		r.m.missed.WithLabelValues(site).Add(float64(n))
		r.o.Log.Warn("slots missed: no record by their deadline", "site", site, "missed", n)
	}
}

func (r *Runner) pendingRetries() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.retry) > 0
}

func (r *Runner) publish(ctx context.Context, tasks []task.PollTask) {
	if !r.o.Leading() {
		// Not one task while the lease is not surely held: the link to NATS
		// is down (they wait for it, while they are worth publishing), or
		// the lease is lost (the term ends as soon as the elector notices,
		// and the next leader publishes these slots).
		now := r.o.Now()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, t := range tasks {
			if t.Deadline.After(now.Add(time.Second)) {
				r.retry = append(r.retry, t)
			}
		}
		r.retry = slices.DeleteFunc(r.retry, func(t task.PollTask) bool { return !t.Deadline.After(now.Add(time.Second)) })
		return
	}
	r.mu.Lock()
	// Awaited from now, not from the acknowledgement: a quick poll's record
	// may be collected before PublishTasks returns. Only the new slots: a
	// retried task is awaited since its first attempt, and if its record
	// came meanwhile (the attempt was stored, its acknowledgement lost) it
	// must not be awaited again: the copy is dropped, no second record comes.
	for i := range tasks {
		r.awaiting[tasks[i].ID] = awaited{site: tasks[i].Site, by: tasks[i].Deadline.Add(MissedGrace(&tasks[i]))}
	}
	if len(r.retry) > 0 {
		tasks = append(r.retry, tasks...)
		r.retry = nil
	}
	r.mu.Unlock()
	if len(tasks) == 0 {
		return
	}
	errs := r.bus.PublishTasks(ctx, tasks)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	full, interrupted := 0, 0
	defer func() { // once per batch, not once per host
		if full > 0 {
			r.o.Log.Error("task queue full: tasks refused; pollers are not keeping up (or nats.max_queued_tasks is too small)",
				"refused", full, "in_batch", len(tasks))
		}
		if interrupted > 0 {
			r.o.Log.Info("stopping: task publications cut short; the next dispatcher publishes their slots again", "tasks", interrupted)
		}
	}()
	for i, err := range errs {
		t := &tasks[i]
		switch {
		case err == nil:
			r.stats.Published++
			r.m.tasks.WithLabelValues("published", t.Site).Inc()
		case errors.Is(err, task.ErrHostBusy):
			r.stats.Overruns++
			r.refused(t)
			r.m.tasks.WithLabelValues("overrun", t.Site).Inc()
			r.o.Log.Debug("task refused", "host", t.Host, "task_id", t.ID, "reason", "overrun")
			if !r.overrun[t.HostKey] { // once until the host answers again, not once per slot
				r.overrun[t.HostKey] = true
				r.o.Log.Warn("overrun: the previous poll is still queued or running; slot skipped", "host", t.Host, "task_id", t.ID)
			}
		case errors.Is(err, task.ErrQueueFull):
			r.stats.QueueFull++
			r.refused(t)
			r.m.tasks.WithLabelValues("queue_full", t.Site).Inc()
			full++
			r.o.Log.Debug("task refused", "host", t.Host, "task_id", t.ID, "reason", "queue full")
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			// Stopping: the wait for the server's answer was cut short, and the
			// task may or may not be stored. Not a failure of the bus: counted
			// apart, and a dispatcher that runs next publishes the host's
			// current slot again under the same id.
			r.stats.Interrupted++
			delete(r.awaiting, t.ID) // the next dispatcher's, if stored
			interrupted++
			r.o.Log.Debug("task publication interrupted by shutdown", "host", t.Host, "task_id", t.ID)
		case t.Deadline.After(now.Add(time.Second)):
			// The server did not acknowledge (it was restarting, say): the task
			// may or may not be stored. Publish it again with the same id: if
			// it was, JetStream drops the copy or refuses it as busy.
			r.retry = append(r.retry, *t)
			r.m.tasks.WithLabelValues("retried", t.Site).Inc()
			r.o.Log.Warn("task not acknowledged; publishing it again", "host", t.Host, "task_id", t.ID, "err", err)
		default:
			r.stats.Failed++
			r.refused(t)
			r.m.tasks.WithLabelValues("failed", t.Site).Inc()
			r.o.Log.Error("task not published", "host", t.Host, "task_id", t.ID, "err", err)
		}
	}
}

// exhausted answers a task that no poller could finish with a final error
// record, so the host's cycle ends with a record, not a silence.
func (r *Runner) exhausted(subject string, data []byte, deliveries int) {
	// Not gated on the lease: the task is already out of the queue, and the
	// record's task id makes a second answer a duplicate JetStream drops.
	t, err := task.DecodeTask(data)
	if err != nil {
		r.o.Log.Error("removed an exhausted task that does not decode; no record answers it", "subject", subject, "err", err)
		return
	}
	r.o.Log.Error("task exhausted its deliveries", "host", t.Host, "task_id", t.ID, "deliveries", deliveries)
	r.mu.Lock()
	r.stats.Exhausted++
	r.mu.Unlock()
	r.m.exhausted.WithLabelValues(t.Site).Inc()
	rec := task.Undelivered(&t, "dispatcher", deliveries, "its pollers died with it", r.o.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.bus.PublishRecord(ctx, task.ResultSubject(rec.Site, rec.HostKey), rec.TaskID, rec.AppendJSON(nil)); err != nil {
		r.o.Log.Error("cannot publish the record of an exhausted task", "host", t.Host, "err", err)
	}
}

// written counts a record the collector wrote to the sinks.
func (r *Runner) written(h *task.RecordHead, redelivered bool) {
	r.mu.Lock()
	r.stats.Records++
	if redelivered {
		r.stats.PossibleDuplicates++
	}
	delete(r.awaiting, h.TaskID)
	delete(r.overrun, h.HostKey)
	site := h.Site
	if !slices.Contains(r.sites, site) {
		site = "other" // a label is never unbounded: only the inventory's sites
	}
	r.mu.Unlock()
	outcome := "ok"
	if h.Error != nil {
		outcome = h.Error.Kind
	}
	r.m.records.WithLabelValues(outcome, site).Inc()
	if redelivered {
		r.m.duplicates.Inc()
		r.o.Log.Info("possible duplicate: a record delivered before without an acknowledgement was written; the sinks may hold it twice",
			"task_id", h.TaskID, "host", h.Host)
	}
}
