package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// RunBus is what continuous dispatching needs from the message bus.
type RunBus interface {
	// PublishTasks queues tasks, one error per task (task.ErrHostBusy, task.ErrQueueFull, ...).
	PublishTasks(ctx context.Context, tasks []task.PollTask) []error
	// ConsumeRecords delivers the site's records through a durable consumer until ctx ends; fn's error redelivers.
	ConsumeRecords(ctx context.Context, site, durable string, fn func(subject string, data []byte) error) error
	// WatchExhausted hands over tasks that reached max_deliver unanswered, removed from the queue.
	WatchExhausted(ctx context.Context, site string, fn func(subject string, data []byte, deliveries int)) (stop func(), err error)
	// PublishRecord stores a record with its task id as message id.
	PublishRecord(ctx context.Context, subject, id string, data []byte) error
	// RequestPoll hands a poll-now task to one of the site's pollers and returns its record.
	RequestPoll(ctx context.Context, site string, data []byte) ([]byte, error)
}

// RunOptions configure Run.
type RunOptions struct {
	Site  string
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
	// Queue, if set, reads the task queue's state for the metrics.
	Queue func(ctx context.Context) (QueueStats, error)
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
	hosts   []config.Host   // the inventory in force

	records *collector
	pollNow chan struct{} // one token per poll-now request being served
}

// NewRunner prepares continuous dispatching of cfg's hosts, restoring host
// state from o.State.
func NewRunner(ctx context.Context, bus RunBus, cfg *config.Config, o RunOptions) (*Runner, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	states, err := LoadStates(ctx, o.State)
	if err != nil {
		return nil, fmt.Errorf("restore host state: %w", err)
	}
	r := &Runner{bus: bus, o: o, sched: NewScheduler(o.Site), states: states, overrun: map[string]bool{}, m: newMetrics(o.Registerer),
		hosts: cfg.Hosts, pollNow: make(chan struct{}, pollNowLimit)}
	r.records = &collector{sinks: o.Sinks, states: states, store: o.State, log: o.Log,
		written: r.written, refused: func() { r.m.records.WithLabelValues("refused").Inc() }}
	if o.Registerer != nil {
		o.Registerer.MustRegister(stateCollector{r: r, desc: prometheus.NewDesc("flock_dispatcher_hosts",
			"Hosts of the inventory by state: ok (last poll answered), failing (last poll failed), unknown (not polled yet).",
			[]string{"state"}, nil)})
		if o.Queue != nil {
			o.Registerer.MustRegister(newQueueCollector(o.Queue))
		}
	}
	now := o.Now()
	r.sched.SetHosts(cfg.Hosts, now)
	caughtUp := 0
	for i := range cfg.Hosts {
		key := task.HostStateKey(o.Site, cfg.Hosts[i].Key)
		if _, known := states.Get(key); !known {
			continue // a new host starts at its next slot, spread like the others
		}
		if r.sched.CatchUp(cfg.Hosts[i].Key, now, func(id string) bool { return states.seen(key, id) }) {
			caughtUp++
		}
	}
	o.Log.Info("scheduling", "hosts", len(cfg.Hosts), "restored_states", states.Len(), "current_slots_caught_up", caughtUp)
	return r, nil
}

// States is the per-host state the runner keeps.
func (r *Runner) States() *States { return r.states }

// Stats returns a copy of the counters.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Run publishes tasks as their slots come and collects records until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recordsDone := make(chan error, 1)
	go func() {
		recordsDone <- r.bus.ConsumeRecords(ctx, r.o.Site, "dispatcher-"+r.o.Site, r.records.collect)
	}()
	stopExhausted, err := r.bus.WatchExhausted(ctx, r.o.Site, r.exhausted)
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
		if next, ok := r.sched.NextDue(); ok {
			wait := max(next.Sub(r.o.Now()), 0)
			if r.pendingRetries() {
				wait = min(wait, time.Second)
			}
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return <-recordsDone
		case err := <-recordsDone:
			return fmt.Errorf("collecting records stopped: %w", err)
		case <-r.o.Reload:
			r.reload()
		case <-timer.C:
			r.publish(ctx, r.sched.Due(r.o.Now()))
		}
	}
}

func (r *Runner) reload() {
	cfg, err := r.o.LoadConfig()
	if err != nil {
		r.mu.Lock()
		r.stats.Rejected++
		r.mu.Unlock()
		r.m.reloads.WithLabelValues("rejected").Inc()
		r.o.Log.Error("reload rejected; the running inventory is kept", "err", err)
		return
	}
	added, removed, changed := r.sched.SetHosts(cfg.Hosts, r.o.Now())
	r.mu.Lock()
	r.hosts = cfg.Hosts
	r.stats.Reloads++
	r.mu.Unlock()
	r.m.reloads.WithLabelValues("applied").Inc()
	r.o.Log.Info("inventory reloaded", "hosts", len(cfg.Hosts), "added", added, "removed", removed, "changed", changed)
}

func (r *Runner) pendingRetries() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.retry) > 0
}

func (r *Runner) publish(ctx context.Context, tasks []task.PollTask) {
	r.mu.Lock()
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
			r.m.tasks.WithLabelValues("published").Inc()
		case errors.Is(err, task.ErrHostBusy):
			r.stats.Overruns++
			r.m.tasks.WithLabelValues("overrun").Inc()
			r.o.Log.Debug("task refused", "host", t.Host, "task_id", t.ID, "reason", "overrun")
			if !r.overrun[t.HostKey] { // once until the host answers again, not once per slot
				r.overrun[t.HostKey] = true
				r.o.Log.Warn("overrun: the previous poll is still queued or running; slot skipped", "host", t.Host, "task_id", t.ID)
			}
		case errors.Is(err, task.ErrQueueFull):
			r.stats.QueueFull++
			r.m.tasks.WithLabelValues("queue_full").Inc()
			full++
			r.o.Log.Debug("task refused", "host", t.Host, "task_id", t.ID, "reason", "queue full")
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			// Stopping: the wait for the server's answer was cut short, and the
			// task may or may not be stored. Not a failure of the bus: counted
			// apart, and a dispatcher that runs next publishes the host's
			// current slot again under the same id.
			r.stats.Interrupted++
			interrupted++
			r.o.Log.Debug("task publication interrupted by shutdown", "host", t.Host, "task_id", t.ID)
		case t.Deadline.After(now.Add(time.Second)):
			// The server did not acknowledge (it was restarting, say): the task
			// may or may not be stored. Publish it again with the same id: if
			// it was, JetStream drops the copy or refuses it as busy.
			r.retry = append(r.retry, *t)
			r.m.tasks.WithLabelValues("retried").Inc()
			r.o.Log.Warn("task not acknowledged; publishing it again", "host", t.Host, "task_id", t.ID, "err", err)
		default:
			r.stats.Failed++
			r.m.tasks.WithLabelValues("failed").Inc()
			r.o.Log.Error("task not published", "host", t.Host, "task_id", t.ID, "err", err)
		}
	}
}

// exhausted answers a task that no poller could finish with a final error
// record, so the host's cycle ends with a record, not a silence.
func (r *Runner) exhausted(subject string, data []byte, deliveries int) {
	t, err := task.DecodeTask(data)
	if err != nil {
		r.o.Log.Error("removed an exhausted task that does not decode; no record answers it", "subject", subject, "err", err)
		return
	}
	r.o.Log.Error("task exhausted its deliveries", "host", t.Host, "task_id", t.ID, "deliveries", deliveries)
	r.mu.Lock()
	r.stats.Exhausted++
	r.mu.Unlock()
	r.m.exhausted.Inc()
	rec := task.Undelivered(&t, "dispatcher", deliveries, "its pollers died with it", r.o.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.bus.PublishRecord(ctx, task.ResultSubject(rec.Site, rec.HostKey), rec.TaskID, rec.AppendJSON(nil)); err != nil {
		r.o.Log.Error("cannot publish the record of an exhausted task", "host", t.Host, "err", err)
	}
}

// written counts a record the collector wrote to the sinks.
func (r *Runner) written(h *task.RecordHead) {
	r.mu.Lock()
	r.stats.Records++
	delete(r.overrun, h.HostKey)
	r.mu.Unlock()
	outcome := "ok"
	if h.Error != nil {
		outcome = h.Error.Kind
	}
	r.m.records.WithLabelValues(outcome).Inc()
}
