package natsbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// TaskConsumer is a site's task consumer, shared by every poller of the
// site: each task goes to one of them.
type TaskConsumer struct {
	bus  *Bus
	cons jetstream.Consumer
	log  *slog.Logger
}

// BindTasks waits until the dispatcher has created the site's task
// consumer (pollers may not create it) and binds to it.
func (b *Bus) BindTasks(ctx context.Context, site string, log *slog.Logger) (*TaskConsumer, error) {
	if log == nil {
		log = b.log
	}
	var cons jetstream.Consumer
	err := waitFor(ctx, log, "waiting for the task consumer; the dispatcher creates it", func() (err error) {
		cons, err = b.js.Consumer(ctx, TaskStream, PollerConsumer(site))
		return err
	}, "stream", TaskStream, "consumer", PollerConsumer(site))
	if err != nil {
		return nil, fmt.Errorf("bind to the task consumer %s: %w", PollerConsumer(site), err)
	}
	log.Info("bound to the task consumer", "stream", TaskStream, "consumer", PollerConsumer(site))
	return &TaskConsumer{bus: b, cons: cons, log: log}, nil
}

// AckWait is how long a delivered task may go unanswered before it is
// delivered again.
func (c *TaskConsumer) AckWait() time.Duration { return c.cons.CachedInfo().Config.AckWait }

// MaxDeliver is how often a task is delivered at most; <= 0 is unlimited.
func (c *TaskConsumer) MaxDeliver() int { return c.cons.CachedInfo().Config.MaxDeliver }

// taskPullExpiry is how long a poller's pull request for tasks lasts.
const taskPullExpiry = 5 * time.Second

// Consume pulls tasks and calls fn for each, with at most buffer pulled and
// not yet answered, until stop is called. fn may block: it is the
// back-pressure. stop stops pulling; when connected, the tasks already
// pulled reach fn first (for at most 5 s), so they can be handed back.
func (c *TaskConsumer) Consume(buffer int, fn func(*TaskMsg)) (stop func(), err error) {
	cc, err := c.cons.Consume(func(m jetstream.Msg) { fn(&TaskMsg{m: m}) },
		jetstream.PullMaxMessages(buffer),
		// A pull request waits on the consumer's leader: when that node
		// dies (a cluster), the request dies with it, unanswered. A short
		// expiry (heartbeats every half of it) finds out within seconds and
		// pulls again from the new leader, instead of after the default 30 s.
		jetstream.PullExpiry(taskPullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Warn("task consumer", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("consume tasks from %s/%s: %w", TaskStream, c.cons.CachedInfo().Name, err)
	}
	return func() {
		if !c.bus.nc.IsConnected() {
			cc.Stop() // nothing can be handed back without a server: AckWait will
			return
		}
		drain(cc)
	}, nil
}

// legacyStart makes a new durable start where the previous version's
// dispatcher-default left off (after its acknowledged records) rather
// than at new records only, so an upgrade loses no record; it reports
// whether there was such a consumer.
func (b *Bus) legacyStart(ctx context.Context, durable string, cfg *jetstream.ConsumerConfig) bool {
	old, err := b.js.Consumer(ctx, ResultStream, legacyRecordsConsumer)
	if err != nil {
		return false
	}
	cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, nil
	cfg.OptStartSeq = old.CachedInfo().AckFloor.Stream + 1
	b.log.Info("taking over the previous version's record consumer", "from", legacyRecordsConsumer, "to", durable, "start_seq", cfg.OptStartSeq)
	return true
}

// drain stops a consumption after the messages already pulled reach its
// callback, waiting at most 5 s for them.
func drain(cc jetstream.ConsumeContext) {
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		cc.Stop()
	}
}

// waitFor calls try until it succeeds or ctx ends, every 50 ms for 3 s,
// then backing off to 5 s, and logs the first failure once (msg, args and its error): for
// what a poller needs and the dispatcher creates.
func waitFor(ctx context.Context, log *slog.Logger, msg string, try func() error, args ...any) error {
	// Every 50 ms at first: a poller started with its dispatcher (--once,
	// compose up) finds the consumer as soon as it is made, not after a
	// back-off. Then less and less often, up to every 5 s.
	const quick, quickFor = 50 * time.Millisecond, 3 * time.Second
	start := time.Now()
	backoff := quick
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
		if time.Since(start) >= quickFor {
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// WatchRecords delivers HostRecords of every site to fn (called from one
// goroutine at a time) until stop is called: those stored since `since` and
// then new ones, or, with a zero since, only records stored after the watch
// began, which needs no agreement between this machine's clock and the
// server's.
func (b *Bus) WatchRecords(ctx context.Context, since time.Time, fn func(subject string, data []byte)) (stop func(), err error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{task.ResultPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := b.js.OrderedConsumer(ctx, ResultStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+">", ResultStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Subject(), m.Data()) })
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+">", ResultStream, err)
	}
	return cc.Stop, nil
}

// legacyRecordsConsumer is the durable consumer through which dispatchers
// before sites collected the records of site default.
const legacyRecordsConsumer = "dispatcher-default"

// recordsLookBack is how far before its creation a new records durable
// starts: the dispatcher's first term publishes tasks while the durable is
// being made (slower on a cluster), and a quick record stored before it
// exists must not be skipped. A minute also covers a clock skew between
// the dispatcher's host and the servers', whose time stamps the start is
// compared with.
const recordsLookBack = time.Minute

// ConsumeRecords delivers every site's HostRecords to fn through the
// durable consumer durable, from where it left off (the first time it is
// created, from records stored recordsLookBack before), until ctx ends. Records published while no
// one consumed are delivered when someone does. fn returning nil acks the
// record; an error hands it back for redelivery a second later.
// redelivered says the record was delivered before (to this or another
// dispatcher) and not acknowledged. A record not acknowledged within
// ackWait (30 s when 0) is delivered again: to whichever dispatcher leads.
func (b *Bus) ConsumeRecords(ctx context.Context, durable string, ackWait time.Duration, fn func(subject string, data []byte, redelivered bool) error) error {
	ackWait = cmp.Or(ackWait, 30*time.Second)
	start := time.Now().Add(-recordsLookBack)
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Flock dispatcher: collects the HostRecords of every site",
		FilterSubject: task.ResultPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckWait:       ackWait,
		MaxAckPending: 10_000,
	}
	// An existing durable keeps its place and its start (neither can be
	// changed); only its ack wait follows the lease TTL.
	cons, err := b.js.Consumer(ctx, ResultStream, durable)
	legacy := false
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		legacy = b.legacyStart(ctx, durable, &cfg)
		if cons, err = b.js.CreateConsumer(ctx, ResultStream, cfg); errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = b.js.Consumer(ctx, ResultStream, durable) // another dispatcher made it meanwhile
		}
	case err == nil && cons.CachedInfo().Config.AckWait != ackWait:
		have := cons.CachedInfo().Config
		have.AckWait = ackWait
		cons, err = b.js.UpdateConsumer(ctx, ResultStream, have)
	}
	if err == nil && legacy {
		// Its place is taken over: the records it had not acknowledged come
		// through the new one.
		if err := b.js.DeleteConsumer(ctx, ResultStream, legacyRecordsConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			b.log.Warn("the previous version's record consumer could not be removed", "consumer", legacyRecordsConsumer, "err", err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("create consumer %s on %s: %w", durable, ResultStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		redelivered := false
		if md, err := m.Metadata(); err == nil {
			redelivered = md.NumDelivered > 1
		}
		if err := fn(m.Subject(), m.Data(), redelivered); err != nil {
			b.log.Warn("record not processed; it will be redelivered", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(1000),
		// A dispatcher parted from the server (silently: the connection
		// looks open) keeps receiving records on the pull requests it has
		// out until they expire: short ones hand the flow to the next
		// leader soon after the lease does.
		jetstream.PullExpiry(max(cfg.AckWait/4, time.Second)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Warn("record consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", ResultStream, durable, err)
	}
	<-ctx.Done()
	if !b.nc.IsConnected() {
		cc.Stop() // no ack can reach the server: what was pulled is redelivered
		return nil
	}
	drain(cc)
	return nil
}

// Subscribe delivers what is published on subject (core NATS, live: no
// stored message, no acknowledgement) to fn, from one goroutine at a time,
// until stop is called.
func (b *Bus) Subscribe(subject string, fn func(subject string, data []byte)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
