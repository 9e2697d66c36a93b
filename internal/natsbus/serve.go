package natsbus

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// Handler polls one task and fills rec completely. Device failures go into
// rec.Error and return nil. A non-nil error means the poller itself could
// not finish (its context was cancelled at shutdown): the task is handed back
// to the queue instead of being answered.
type Handler func(ctx context.Context, t *task.PollTask, attempt int, rec *task.HostRecord) error

// ServeOptions configure ServeTasks.
type ServeOptions struct {
	Site    string
	Workers int
	Poller  string // name written into HostRecords
	// ShutdownGrace is how long in-flight polls may continue after ctx ends.
	ShutdownGrace time.Duration
	// PublishTimeout bounds the wait for a record's acknowledgement; default 10s.
	PublishTimeout time.Duration
	Log            *slog.Logger
	// Hooks observe each poll (metrics); nil observes nothing.
	Hooks ServeHooks
	// Bound, if set, is called once the poller is bound to its consumer and taking tasks.
	Bound func()
}

// ServeHooks observe the polls ServeTasks runs. They are called on the
// worker's goroutine and must be cheap.
type ServeHooks interface {
	// PollStarted: a task was taken and its poll begins.
	PollStarted()
	// PollDone: the poll ended and rec was published; rec is nil when the
	// task was handed back instead (shutdown, or the record could not be
	// published). attempt > 1 is a redelivery.
	PollDone(rec *task.HostRecord, attempt int)
}

type noHooks struct{}

func (noHooks) PollStarted()                   {}
func (noHooks) PollDone(*task.HostRecord, int) {}

// ServeTasks takes tasks from the site's work queue with at most Workers
// polls at once, until ctx ends. For each task it calls h, publishes the
// HostRecord to the results stream and acks the task only once that publish
// is acknowledged; a poller that dies before then leaves the task to be
// redelivered. On shutdown it stops taking tasks, hands back the ones it
// buffered, lets in-flight polls finish for ShutdownGrace, and hands back
// whatever is still running.
func (b *Bus) ServeTasks(ctx context.Context, o ServeOptions, h Handler) error {
	log := o.Log
	if log == nil {
		log = b.log
	}
	cons, err := b.bindConsumer(ctx, o.Site, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	info := cons.CachedInfo()
	// Report progress well within AckWait so a live poller's long walk is
	// never mistaken for a dead poller's.
	progressEvery := max(info.Config.AckWait/3, 100*time.Millisecond)
	maxDeliver := info.Config.MaxDeliver

	var hooks ServeHooks = noHooks{}
	if o.Hooks != nil {
		hooks = o.Hooks
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopping := make(chan struct{}) // closed when ctx ends; in-flight polls go on under workCtx
	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for i := 0; i < o.Workers; i++ {
		w := &worker{bus: b, h: h, poller: o.Poller, hooks: hooks, progressEvery: progressEvery, maxDeliver: maxDeliver, stopping: stopping,
			publishTimeout: cmp.Or(o.PublishTimeout, 10*time.Second), log: log.With("worker", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				w.handle(workCtx, m)
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case <-stopping:
			_ = m.Nak() // shutting down: hand it straight back
			return
		default:
		}
		select {
		case work <- m:
		case <-stopping:
			_ = m.Nak()
		}
	},
		jetstream.PullMaxMessages(o.Workers),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("task consumer", "err", err)
		}))
	if err != nil {
		close(work)
		wg.Wait()
		return fmt.Errorf("consume tasks from %s/%s: %w", TaskStream, PollerConsumer(o.Site), err)
	}
	log.Info("taking tasks", "consumer", PollerConsumer(o.Site), "workers", o.Workers, "ack_wait", info.Config.AckWait)
	if o.Bound != nil {
		o.Bound()
	}

	<-ctx.Done()
	log.Info("stopping: no new tasks; finishing in-flight polls", "grace", o.ShutdownGrace)
	close(stopping)
	if b.nc.IsConnected() {
		cc.Drain() // buffered tasks reach the handler, which hands them back
		select {
		case <-cc.Closed():
		case <-time.After(5 * time.Second):
			cc.Stop()
		}
	} else {
		cc.Stop() // nothing can be handed back without a server: AckWait will
	}
	close(work)
	grace := time.AfterFunc(o.ShutdownGrace, cancelWork)
	defer grace.Stop()
	wg.Wait()
	return nil
}

// bindConsumer waits until the dispatcher has created the site's consumer.
func (b *Bus) bindConsumer(ctx context.Context, site string, log *slog.Logger) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := waitFor(ctx, log, "waiting for the task consumer; the dispatcher creates it", func() (err error) {
		cons, err = b.js.Consumer(ctx, TaskStream, PollerConsumer(site))
		return err
	}, "stream", TaskStream, "consumer", PollerConsumer(site))
	return cons, err
}

// waitFor calls try until it succeeds or ctx ends, backing off from 250 ms
// to 5 s, and logs the first failure once (msg, args and its error): for
// what a poller needs and the dispatcher creates.
func waitFor(ctx context.Context, log *slog.Logger, msg string, try func() error, args ...any) error {
	backoff := 250 * time.Millisecond
	for warned := false; ; warned = true {
		err := try()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !warned {
			log.Warn(msg, append(args, "err", err)...)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// worker owns the buffers of one poll slot, reused from task to task.
type worker struct {
	bus            *Bus
	h              Handler
	hooks          ServeHooks
	poller         string
	progressEvery  time.Duration
	maxDeliver     int // the consumer's; <= 0 is unlimited
	stopping       <-chan struct{}
	publishTimeout time.Duration
	log            *slog.Logger
	rec            task.HostRecord
	buf            []byte
}

func (w *worker) handle(ctx context.Context, m jetstream.Msg) {
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	t, err := task.DecodeTask(m.Data())
	if err != nil {
		w.badTask(ctx, m, &t, attempt, err)
		return
	}
	rec := &w.rec
	*rec = task.HostRecord{Varbinds: rec.Varbinds[:0]}
	w.hooks.PollStarted()
	pollCtx, cancel := context.WithDeadline(ctx, t.Deadline)
	ka := keepAlive(m, w.progressEvery)
	herr := w.h(pollCtx, &t, attempt, rec)
	ka.stop()
	cancel()
	if herr != nil {
		if w.maxDeliver > 0 && attempt >= w.maxDeliver {
			// No delivery is left: handing it back would leave it stuck in the
			// queue. Answer it with a final error instead.
			msg := fmt.Sprintf("task for host %s was delivered %d times (max_deliver) without being polled to the end; last: %v", t.Host, attempt, herr)
			*rec = task.HostRecord{Schema: task.Schema, TaskID: t.ID, Site: t.Site, Host: t.Host, HostKey: t.HostKey, Address: t.Address,
				Port: t.Port, Poller: w.poller, Attempt: attempt, ScheduledAt: t.ScheduledAt, StartedAt: time.Now(),
				Error: &task.Error{Kind: task.KindUndelivered, Message: msg}}
			if err := w.publish(ctx, task.ResultSubject(t.Site, t.HostKey), t.ID, rec); err == nil {
				_ = m.TermWithReason("max deliveries")
				w.hooks.PollDone(rec, attempt)
				return
			}
		}
		w.log.Info("handing task back", "host", t.Host, "task_id", t.ID, "err", herr)
		_ = m.Nak()
		w.hooks.PollDone(nil, attempt)
		return
	}
	if err := w.publish(ctx, task.ResultSubject(t.Site, t.HostKey), t.ID, rec); err != nil {
		w.log.Error("cannot publish host record; the task will be redelivered", "host", t.Host, "task_id", t.ID, "err", err)
		_ = m.NakWithDelay(time.Second)
		w.hooks.PollDone(nil, attempt)
		return
	}
	w.hooks.PollDone(rec, attempt)
	if err := m.Ack(); err != nil {
		w.log.Warn("ack failed; the task may be polled again, its record is deduplicated", "host", t.Host, "task_id", t.ID, "err", err)
	}
	if rec.Error != nil { // one line per failed poll, never per retry
		w.log.Warn("poll failed", "host", t.Host, "site", t.Site, "task_id", t.ID, "oid", failedOID(rec), "attempt", attempt,
			"kind", rec.Error.Kind, "err", rec.Error.Message)
	}
}

// failedOID is the walk or table root of the poll's first failed part
// ("walk .1.3.6.1.2.1.2.2"), or "" when the GETs failed or no part is named.
func failedOID(rec *task.HostRecord) string {
	if len(rec.Errors) == 0 {
		return ""
	}
	_, root, _ := strings.Cut(rec.Errors[0].Part, " ")
	return root
}

// badTask answers an unusable task with an error record on the host's result
// subject (taken from the task subject when the body is unreadable) and
// terminates it, so it is neither retried nor silently dropped.
func (w *worker) badTask(ctx context.Context, m jetstream.Msg, t *task.PollTask, attempt int, cause error) {
	site, key := task.DefaultSite, ""
	if rest, ok := strings.CutPrefix(m.Subject(), task.TaskPrefix); ok {
		if s, k, ok := strings.Cut(rest, "."); ok {
			site, key = s, k
		}
	}
	host := t.Host
	if host == "" {
		host = key
	}
	w.log.Error("bad task terminated", "subject", m.Subject(), "host", host, "err", cause)
	if key != "" && !strings.ContainsAny(key, ".*>") {
		id := t.ID
		if id == "" {
			id = fmt.Sprintf("bad.%s.%s", key, time.Now().UTC().Format("20060102T150405.000000000"))
		}
		rec := &task.HostRecord{
			Schema: task.Schema, TaskID: id, Site: site, Host: host, HostKey: key, Address: t.Address, Port: t.Port,
			Poller: w.poller, Attempt: attempt, ScheduledAt: t.ScheduledAt, StartedAt: time.Now(),
			Error: &task.Error{Kind: task.KindBadTask, Message: cause.Error()},
		}
		if err := w.publish(ctx, task.ResultSubject(site, key), id, rec); err != nil {
			w.log.Error("cannot publish bad-task record", "subject", m.Subject(), "err", err)
		} else {
			w.hooks.PollStarted() // counted as a poll that ended at once, with kind bad_task
			w.hooks.PollDone(rec, attempt)
		}
	}
	_ = m.TermWithReason("bad task: " + truncate(cause.Error(), 200))
}

func (w *worker) publish(ctx context.Context, subject, id string, rec *task.HostRecord) error {
	w.buf = rec.AppendJSON(w.buf[:0])
	// Headers and the subject take some of max_payload too.
	if limit := int(w.bus.nc.MaxPayload()) - 4096; len(w.buf) > limit {
		size := len(w.buf)
		msg := fmt.Sprintf("the record for host %s is %d bytes with %d varbinds, more than the bus's max_payload allows (%d): "+
			"poll fewer OIDs or raise max_payload on the NATS server", rec.Host, size, len(rec.Varbinds), w.bus.nc.MaxPayload())
		rec.Varbinds = rec.Varbinds[:0]
		rec.Error = &task.Error{Kind: task.KindTooLarge, Message: msg}
		rec.Errors = append(rec.Errors, task.PartError{Part: "record", Kind: task.KindTooLarge, Message: msg})
		w.log.Error("record too large; published without its varbinds", "host", rec.Host, "task_id", id, "bytes", size)
		w.buf = rec.AppendJSON(w.buf[:0])
	}
	if w.shuttingDown() && !w.bus.nc.IsConnected() {
		// Shutting down and the server is gone: waiting for it would only
		// delay the exit. The task, never acked, goes to another poller.
		return fmt.Errorf("publish record to %s: not connected to NATS while shutting down", subject)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.publishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: w.buf}
	_, err := w.bus.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(ResultStream))
	if err != nil {
		return fmt.Errorf("publish record to %s: %w", subject, err)
	}
	return nil
}

func (w *worker) shuttingDown() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// keepAliveTimer reports progress on a task until stopped. It is a runtime
// timer, not a goroutine: it costs nothing on polls shorter than its period.
type keepAliveTimer struct {
	t     *time.Timer
	m     jetstream.Msg
	every time.Duration
	mu    sync.Mutex
	done  bool
}

func keepAlive(m jetstream.Msg, every time.Duration) *keepAliveTimer {
	k := &keepAliveTimer{m: m, every: every}
	k.mu.Lock() // fire reads k.t under the lock: order it after this write
	k.t = time.AfterFunc(every, k.fire)
	k.mu.Unlock()
	return k
}

func (k *keepAliveTimer) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	_ = k.m.InProgress()
	k.t.Reset(k.every)
}

func (k *keepAliveTimer) stop() {
	k.mu.Lock()
	k.done = true
	k.mu.Unlock()
	k.t.Stop()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
