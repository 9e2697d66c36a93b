// Package poller is a poller's delivery policy: every poll task delivered
// to it, from the work queue or as a poll-now request, ends in exactly one
// answer. A task from the queue is polled and its HostRecord stored before
// the task is acked; a task that cannot be polled is answered with an
// error record (bad_task, too_large, undelivered) rather than dropped; a
// poll the poller itself cannot finish is handed back to the queue.
//
// It declares what it needs: the deliveries (Delivery, taken through a
// Consume func), a Publisher for records, poll-now Requests and the poll
// itself (StartFunc, poll.Poller.Start). It imports no NATS package;
// internal/natsbus satisfies them, and cmd/poller wires the two.
package poller

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// Delivery is one delivery of a poll task from the work queue.
type Delivery interface {
	// Data is the task as it was published.
	Data() []byte
	// Subject is where it was published: flock.tasks.<site>.<hostkey>.
	Subject() string
	// Attempt is the delivery count, 1 the first time.
	Attempt() int
	// Ack ends the task as done: its record is stored.
	Ack() error
	// Nak hands the task back, to be delivered again after delay (0: at once).
	Nak(delay time.Duration) error
	// InProgress says the poll goes on: the queue must not give the task to another poller yet.
	InProgress() error
	// Term ends the task for good, with a reason: it is not delivered again.
	Term(reason string) error
}

// Publisher stores HostRecords.
type Publisher interface {
	// PublishRecord stores record on subject, with id as its deduplication
	// id, and returns once the store has acknowledged it.
	PublishRecord(ctx context.Context, subject, id string, record []byte) error
	// PublishRecordAsync is PublishRecord without the wait: done gets the
	// outcome, once, and must not block; record stays untouched until then.
	PublishRecordAsync(subject, id string, record []byte, done func(error))
	// MaxPayload is the largest message the bus carries.
	MaxPayload() int
	// Connected reports whether the bus is connected now.
	Connected() bool
}

// StartFunc starts polling one task into rec and returns at once
// (poll.Poller.Start); done is called once when rec is complete, on another
// goroutine, and must not block. Device failures go into rec.Error and
// done(nil); an error means the poll was interrupted (the poller is
// stopping), and the task is handed back.
type StartFunc func(ctx context.Context, t *task.PollTask, attempt int, rec *task.HostRecord, done func(error))

// Consume starts taking tasks from the queue: it calls deliver for each,
// with at most buffer taken and not yet answered, until stop is called.
// stop stops taking tasks; those already taken are passed to deliver before
// it returns, when they can still be handed back.
type Consume func(buffer int, deliver func(Delivery)) (stop func(), err error)

// Hooks observe the polls (metrics). They are called on the goroutines
// that move polls on, concurrently, and must be cheap.
type Hooks interface {
	// PollStarted: a task was taken and its poll begins.
	PollStarted()
	// PollDone: the poll ended and rec was stored; rec is nil when the task
	// was handed back instead. attempt > 1 is a redelivery.
	PollDone(rec *task.HostRecord, attempt int)
}

type noHooks struct{}

func (noHooks) PollStarted()                   {}
func (noHooks) PollDone(*task.HostRecord, int) {}

// Options configure a Loop.
type Options struct {
	// Name is the poller's, written into its records.
	Name string
	// Workers is how many polls run at once (each a state machine, not a
	// goroutine: tens of thousands are fine).
	Workers int
	// AckWait is the queue's: a poll reports progress every third of it, so
	// a live poller's long walk is never mistaken for a dead poller's.
	AckWait time.Duration
	// MaxDeliver is the queue's (<= 0: unlimited): the last delivery of a
	// task is answered, never handed back.
	MaxDeliver int
	// ShutdownGrace is how long in-flight polls may go on once Serve's
	// context ends.
	ShutdownGrace time.Duration
	// PublishTimeout bounds the wait for a bad task's error record to be
	// stored; default 10s. (A poll's record is bounded by the bus.)
	PublishTimeout time.Duration
	Log            *slog.Logger
	// Hooks observe each poll; nil observes nothing.
	Hooks Hooks
}

// Loop is a poller's loop over the tasks delivered to it.
type Loop struct {
	o     Options
	start StartFunc
	jobs  sync.Pool // *job, with their buffers
	pub   Publisher
	hooks Hooks
	log   *slog.Logger

	liveMu sync.Mutex
	live   []*job // being polled: the keep-alive sweep reports progress on them

	// finished carries polls that ended from the engine's goroutines to the
	// one that publishes their records: encoding a record and writing it to
	// the bus (which may wait on a slow server) never hold up the engine's
	// timeouts or its socket readers.
	finished chan *job

	mu       sync.Mutex    // orders poll-now admissions with the close of stopping
	stopping chan struct{} // closed when Serve's context ends
	pollNow  chan struct{} // one token per poll-now request being served
	requests sync.WaitGroup
}

// New returns a Loop that polls with start and stores records through pub.
func New(o Options, start StartFunc, pub Publisher) *Loop {
	o.Workers = max(o.Workers, 1)
	o.PublishTimeout = cmp.Or(o.PublishTimeout, 10*time.Second)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var hooks Hooks = noHooks{}
	if o.Hooks != nil {
		hooks = o.Hooks
	}
	return &Loop{o: o, start: start, pub: pub, hooks: hooks, log: o.Log,
		stopping: make(chan struct{}), pollNow: make(chan struct{}, pollNowLimit)}
}

// Serve takes tasks through consume with at most Workers polls at once,
// until ctx ends. For each task it polls, stores the HostRecord and acks
// the task only once the record is stored; a poller that dies before then
// leaves the task to be delivered again. No goroutine waits for a poll:
// a poll moves on on the SNMP engine's goroutines, its record is published
// without waiting and the task acked when the store acknowledges it. On
// shutdown it stops taking tasks, hands back the ones it had taken but not
// started, lets in-flight polls finish for ShutdownGrace and hands back
// whatever is still running.
func (l *Loop) Serve(ctx context.Context, consume Consume) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	slots := make(chan struct{}, l.o.Workers)
	l.finished = make(chan *job, l.o.Workers) // one place per poll in flight: never full
	published := make(chan struct{})
	go func() {
		defer close(published)
		for j := range l.finished {
			j.afterPoll()
		}
	}()
	defer func() {
		close(l.finished)
		<-published
	}()
	var inflight sync.WaitGroup
	release := func() { // a delivery is answered: its slot is free
		<-slots
		inflight.Done()
	}
	stop, err := consume(l.o.Workers, func(d Delivery) {
		select {
		case <-l.stopping:
			_ = d.Nak(0) // shutting down: hand it straight back
			return
		default:
		}
		select {
		case slots <- struct{}{}:
		case <-l.stopping:
			_ = d.Nak(0)
			return
		}
		inflight.Add(1)
		l.begin(workCtx, d, release)
	})
	if err != nil {
		return err
	}
	l.log.Info("taking tasks", "workers", l.o.Workers, "ack_wait", l.o.AckWait)
	sweepDone := make(chan struct{})
	stopSweep := make(chan struct{})
	go func() {
		defer close(sweepDone)
		l.keepAlive(stopSweep)
	}()
	defer func() {
		close(stopSweep)
		<-sweepDone
	}()

	<-ctx.Done()
	l.log.Info("stopping: no new tasks; finishing in-flight polls", "grace", l.o.ShutdownGrace)
	l.mu.Lock()
	close(l.stopping)
	l.mu.Unlock()
	stop() // the tasks taken and not started reach deliver, which hands them back
	grace := time.AfterFunc(l.o.ShutdownGrace, cancelWork)
	defer grace.Stop()
	inflight.Wait()
	l.requests.Wait()
	return nil
}

func (l *Loop) shuttingDown() bool {
	select {
	case <-l.stopping:
		return true
	default:
		return false
	}
}
