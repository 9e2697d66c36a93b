package natsbus

import (
	"cmp"
	"context"
	"errors"
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

// PollerConsumer is the durable consumer every poller of a site shares
// (task.PollerConsumer).
func PollerConsumer(site string) string { return task.PollerConsumer(site) }

// StreamOptions set what the dispatcher creates.
type StreamOptions struct {
	// Sites get a poller consumer each (pollers-<site>).
	Sites      []string
	AckWait    time.Duration
	MaxDeliver int
	// MaxQueued bounds the task stream (default 1,000,000 tasks).
	MaxQueued int
	// Replicas of every stream and bucket made (default 1): existing ones
	// are scaled to it.
	Replicas int
}

// sameReplicas refuses to go on when stream name exists with another
// number of replicas than nats.replicas: the dispatcher does not rescale
// streams in place (scaling the work queue up with its consumers in place
// stalled publishing in tests), so it says what to do instead.
func (b *Bus) sameReplicas(ctx context.Context, name string, replicas int) error {
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil // none yet (or unreadable: creating it will say why)
	}
	if have := st.CachedInfo().Config.Replicas; max(have, 1) != replicas {
		return fmt.Errorf("stream %s has %d replicas and nats.replicas is %d: the dispatcher does not rescale existing streams; "+
			"keep nats.replicas at %d, or stop every Flock process and remove Flock's streams and buckets "+
			"(nats stream rm %s %s %s KV_%s KV_%s KV_%s; queued tasks are published again at their next slots, stored records are lost) "+
			"so that the dispatcher makes them with %d", name, max(have, 1), replicas, max(have, 1),
			TaskStream, ResultStream, PollerStream, DeviceBucket, HostStateBucket, LeaseBucket, replicas)
	}
	return nil
}

// replicaErr says why a stream or bucket could not be made or scaled.
func replicaErr(what string, replicas int, err error) error {
	if replicas > 1 {
		return fmt.Errorf("create or update %s with %d replicas (nats.replicas): %w (a stream of %d replicas needs a JetStream cluster of at least %d servers)",
			what, replicas, err, replicas, replicas)
	}
	return fmt.Errorf("create or update %s: %w", what, err)
}

// EnsureStreams creates or updates the task, result and heartbeat streams,
// the device bucket and each site's poller consumer. Only the dispatcher
// calls it; pollers only bind.
func (b *Bus) EnsureStreams(ctx context.Context, o StreamOptions) error {
	replicas := max(o.Replicas, 1)
	b.replicas = replicas
	for _, name := range []string{TaskStream, ResultStream, PollerStream, "KV_" + DeviceBucket, "KV_" + HostStateBucket, "KV_" + LeaseBucket} {
		if err := b.sameReplicas(ctx, name, replicas); err != nil {
			return err
		}
	}
	for _, cfg := range []jetstream.StreamConfig{{
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
	}, {
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
	}, {
		Name:        PollerStream,
		Description: "Flock poller heartbeats: the last one of each poller",
		Subjects:    []string{task.HeartbeatPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		// A poller gone for an hour drops out of the fleet view.
		MaxMsgsPerSubject: 1,
		MaxAge:            time.Hour,
		MaxBytes:          64 << 20,
	}} {
		cfg.Replicas = replicas
		if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return replicaErr("stream "+cfg.Name, replicas, err)
		}
	}
	for _, site := range o.Sites {
		if err := b.EnsureSite(ctx, o, site); err != nil {
			return err
		}
	}
	// The pollers' shared memory of devices: made here, by the role that
	// administers JetStream, so pollers only ever open it.
	if _, err := b.Bucket(ctx, DeviceBucket, deviceBucketDescription); err != nil {
		return err
	}
	return nil
}

// EnsureSite creates or updates site's poller consumer, pollers-<site>,
// which takes that site's tasks only.
func (b *Bus) EnsureSite(ctx context.Context, o StreamOptions, site string) error {
	_, err := b.js.CreateOrUpdateConsumer(ctx, TaskStream, jetstream.ConsumerConfig{
		Durable:       PollerConsumer(site),
		Description:   "every poller of site " + site + " takes tasks from here",
		FilterSubject: task.TaskPrefix + site + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: 20_000,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", PollerConsumer(site), TaskStream, err)
	}
	return nil
}

// RemoveSite deletes site's poller consumer once no task of the site is
// queued or in flight: removed is false (and err nil) while some are, so
// the caller tries again later. A consumer already gone counts as removed.
func (b *Bus) RemoveSite(ctx context.Context, site string) (removed bool, err error) {
	cons, err := b.js.Consumer(ctx, TaskStream, PollerConsumer(site))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("consumer %s: %w", PollerConsumer(site), err)
	}
	if ci := cons.CachedInfo(); ci.NumPending > 0 || ci.NumAckPending > 0 {
		return false, nil
	}
	if err := b.js.DeleteConsumer(ctx, TaskStream, PollerConsumer(site)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, fmt.Errorf("delete consumer %s: %w", PollerConsumer(site), err)
	}
	return true, nil
}

// Sites lists the sites that have a poller consumer on the task stream.
func (b *Bus) Sites(ctx context.Context) ([]string, error) {
	st, err := b.js.Stream(ctx, TaskStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", TaskStream, err)
	}
	var out []string
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		if site, ok := task.ConsumerSite(name); ok {
			out = append(out, site)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", TaskStream, err)
	}
	return out, nil
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
