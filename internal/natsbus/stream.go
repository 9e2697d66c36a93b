package natsbus

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// Stream names.
const (
	TaskStream   = "FLOCK_TASKS"
	ResultStream = "FLOCK_RESULTS"
)

// PollerConsumer is the durable consumer every poller of a site shares.
func PollerConsumer(site string) string { return "pollers-" + site }

// StreamOptions set what the dispatcher creates.
type StreamOptions struct {
	Site       string
	AckWait    time.Duration
	MaxDeliver int
	// MaxQueued bounds the task stream (default 1,000,000 tasks).
	MaxQueued int
}

// EnsureStreams creates or updates the task and result streams and the
// site's poller consumer. Only the dispatcher calls it; pollers only bind.
func (b *Bus) EnsureStreams(ctx context.Context, o StreamOptions) error {
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        TaskStream,
		Description: "Flock poll tasks: a work queue, one message per host at a time",
		Subjects:    []string{task.TaskPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		// One queued or in-flight task per host: a second is refused (an overrun).
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    1,
		MaxMsgs:              int64(cmp.Or(o.MaxQueued, 1_000_000)),
		MaxBytes:             1 << 30,
		MaxAge:               24 * time.Hour,
		AllowMsgTTL:          true,
		Duplicates:           2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", TaskStream, err)
	}
	_, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        ResultStream,
		Description: "Flock HostRecords, one per poll; every reader has its own consumer",
		Subjects:    []string{task.ResultPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      24 * time.Hour,
		MaxBytes:    2 << 30,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", ResultStream, err)
	}
	_, err = b.js.CreateOrUpdateConsumer(ctx, TaskStream, jetstream.ConsumerConfig{
		Durable:       PollerConsumer(o.Site),
		Description:   "every poller of site " + o.Site + " takes tasks from here",
		FilterSubject: task.TaskPrefix + o.Site + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: 20_000,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", PollerConsumer(o.Site), TaskStream, err)
	}
	// The pollers' shared memory of devices: made here, by the role that
	// administers JetStream, so pollers only ever open it.
	if _, err := b.Bucket(ctx, DeviceBucket, deviceBucketDescription); err != nil {
		return err
	}
	return nil
}

// QueueStats is the state of a site's task queue, from JetStream.
type QueueStats struct {
	Queued      uint64        // tasks in the work queue (waiting or being polled)
	Pending     uint64        // tasks no poller has taken yet: the consumer's lag
	AckPending  int           // tasks taken and not yet answered
	Redelivered int           // tasks being redelivered
	OldestAge   time.Duration // age of the oldest task still in the queue; 0 when empty
}

// Queue reads the task stream's and the site's poller consumer's state.
func (b *Bus) Queue(ctx context.Context, site string) (QueueStats, error) {
	var q QueueStats
	st, err := b.js.Stream(ctx, TaskStream)
	if err != nil {
		return q, fmt.Errorf("stream %s: %w", TaskStream, err)
	}
	si := st.CachedInfo()
	q.Queued = si.State.Msgs
	if q.Queued > 0 && !si.State.FirstTime.IsZero() {
		q.OldestAge = max(time.Since(si.State.FirstTime), 0)
	}
	cons, err := st.Consumer(ctx, PollerConsumer(site))
	if err != nil {
		return q, fmt.Errorf("consumer %s: %w", PollerConsumer(site), err)
	}
	ci := cons.CachedInfo()
	q.Pending, q.AckPending, q.Redelivered = ci.NumPending, ci.NumAckPending, ci.NumRedelivered
	return q, nil
}
