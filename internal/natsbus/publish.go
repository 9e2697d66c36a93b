package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// PublishTasks queues tasks on the work queue, each living until its
// deadline (at least 1s) so a task nobody took cannot block its host's next
// one. It returns one error per task: nil, task.ErrHostBusy,
// task.ErrQueueFull or another failure. The task id is the JetStream message
// id, so publishing the same task twice (a restarted or doubled dispatcher)
// stores it once.
func (b *Bus) PublishTasks(ctx context.Context, tasks []task.PollTask) []error {
	errs := make([]error, len(tasks))
	for start := 0; start < len(tasks); start += publishWindow {
		end := min(start+publishWindow, len(tasks))
		if ctx.Err() != nil { // stopped: the windows not begun are not published
			for i := start; i < len(tasks); i++ {
				errs[i] = fmt.Errorf("publish task for %s: %w", tasks[i].Host, ctx.Err())
			}
			break
		}
		b.publishBatch(ctx, tasks[start:end], errs[start:end])
	}
	return errs
}

// publishWindow is how many tasks PublishTasks keeps unacknowledged at
// once: well under nats.go's limit of 4,000 asynchronous publishes, past
// which the client refuses a publish it could not send within 200 ms
// ("stalled with too many outstanding async published messages"), as it
// does when the server is slow to acknowledge. A window then waits for its
// acknowledgements instead.
const publishWindow = 1000

func (b *Bus) publishBatch(ctx context.Context, tasks []task.PollTask, errs []error) {
	now := time.Now()
	futures := make([]jetstream.PubAckFuture, len(tasks))
	for i := range tasks {
		t := &tasks[i]
		// A buffer per task: the client keeps the message for retries until its PubAck.
		data := t.AppendJSON(make([]byte, 0, 512))
		msg := &nats.Msg{Subject: task.TaskSubject(t.Site, t.HostKey), Data: data}
		var err error
		ttl := max(t.Deadline.Sub(now), time.Second).Round(time.Second)
		futures[i], err = b.js.PublishMsgAsync(msg, jetstream.WithMsgID(t.ID), jetstream.WithMsgTTL(ttl),
			jetstream.WithExpectStream(TaskStream))
		if err != nil {
			errs[i] = fmt.Errorf("publish task for %s: %w", t.Host, err)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = classifyPublish(tasks[i].Host, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("publish task for %s: %w", tasks[i].Host, ctx.Err())
		}
	}
}

// errCodeStoreFailed is nats-server's JSStreamStoreFailedF (10077): a limit
// with DiscardNew refused the message. nats.go has no constant for it.
const errCodeStoreFailed jetstream.ErrorCode = 10077

func classifyPublish(host string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed {
		if strings.Contains(apiErr.Description, "per subject") {
			return fmt.Errorf("publish task for %s: %w", host, task.ErrHostBusy)
		}
		return fmt.Errorf("publish task for %s: %w: %s", host, task.ErrQueueFull, apiErr.Description)
	}
	return fmt.Errorf("publish task for %s: %w", host, err)
}

// PublishRecord stores a HostRecord (data) on subject in the results
// stream, with id (its task id) as message id, so that a second record of
// the same task is not stored again; it returns once the server has
// acknowledged it.
func (b *Bus) PublishRecord(ctx context.Context, subject, id string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(ResultStream)); err != nil {
		return fmt.Errorf("publish record to %s: %w", subject, err)
	}
	return nil
}

// PublishRecordAsync stores a record as PublishRecord does, without
// waiting: done is called once with the outcome, in publication order, on
// the bus's acknowledgement goroutine (it must not block). data must stay
// untouched until then: the client keeps it to send again.
func (b *Bus) PublishRecordAsync(subject, id string, data []byte, done func(error)) {
	b.acksOnce.Do(func() {
		b.acks = make(chan pendingAck, 1<<16)
		go awaitAcks(b.acks)
	})
	msg := &nats.Msg{Subject: subject, Data: data}
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(ResultStream))
	if err != nil {
		done(fmt.Errorf("publish record to %s: %w", subject, err))
		return
	}
	b.acks <- pendingAck{f: f, subject: subject, done: done}
}

type pendingAck struct {
	f       jetstream.PubAckFuture
	subject string
	done    func(error)
}

// awaitAcks reports each asynchronous publication's acknowledgement, in
// order. None waits forever: the client fails one unacknowledged within
// publishAckTimeout, and every one when the connection closes.
func awaitAcks(acks <-chan pendingAck) {
	for p := range acks {
		select {
		case <-p.f.Ok():
			p.done(nil)
		case err := <-p.f.Err():
			p.done(fmt.Errorf("publish record to %s: %w", p.subject, err))
		}
	}
}

// PublishCore publishes data on subject without storing it (core NATS:
// whoever subscribes gets it, no one else): metrics_subject's line protocol.
func (b *Bus) PublishCore(subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// FlushCore waits until the server has everything PublishCore sent.
func (b *Bus) FlushCore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nats.go wants a deadline
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush to NATS: %w", err)
	}
	return nil
}
