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
	// Replicas of every stream and bucket (default 1): existing ones with
	// another number are scaled to it.
	Replicas int
}

// rescale brings an existing stream (a bucket's too) up to replicas, when
// it has fewer, and waits until the new replicas have caught up: while a
// stream changes its replicas it takes no message, so going on at once
// would only stall the first publications. It never scales down: every
// dispatcher start runs this, a standby's or a --once run's too, and one
// whose configuration lacks nats.replicas (1) must not take the copies
// away from under the leader; it says how to scale down by hand instead.
// A stream that does not exist yet is left for creation.
func (b *Bus) rescale(ctx context.Context, name string, replicas int) error {
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil // none yet (or unreadable: creating it will say why)
	}
	cfg := st.CachedInfo().Config
	have := max(cfg.Replicas, 1)
	if have == replicas {
		return nil
	}
	if have > replicas {
		return fmt.Errorf("stream %s has %d replicas and nats.replicas is %d: a dispatcher scales streams up, never down "+
			"(a dispatcher started with a configuration that lacks nats.replicas would take the copies away from under the leader); "+
			"set nats.replicas to %d, or scale down by hand with every dispatcher stopped: "+
			"nats stream edit --replicas %d for each of %s %s %s KV_%s KV_%s KV_%s",
			name, have, replicas, have, replicas, TaskStream, ResultStream, PollerStream, DeviceBucket, HostStateBucket, LeaseBucket)
	}
	b.log.Warn("scaling a stream to nats.replicas; it takes no message until its replicas have caught up",
		"stream", name, "replicas", have, "nats.replicas", replicas)
	cfg.Replicas = replicas
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("scale stream %s from %d to %d replicas (nats.replicas): %w%s", name, have, replicas, err, clusterHint(replicas))
	}
	start := time.Now()
	if err := b.waitReplicas(ctx, name, "", replicas, rescaleWait); err != nil {
		return fmt.Errorf("scale stream %s from %d to %d replicas (nats.replicas): %w", name, have, replicas, err)
	}
	// Its durable consumers follow (they inherit the stream's replicas),
	// some seconds later: a consumer not yet scaled would be lost with its
	// node.
	var durables []string
	infos := st.ListConsumers(ctx)
	for ci := range infos.Info() {
		if ci.Config.Durable != "" && ci.Config.Replicas == 0 {
			durables = append(durables, ci.Name)
		}
	}
	if err := infos.Err(); err != nil {
		return fmt.Errorf("scale stream %s: list its consumers: %w", name, err)
	}
	for _, c := range durables {
		if err := b.waitReplicas(ctx, name, c, replicas, rescaleWait); err != nil {
			return fmt.Errorf("scale stream %s from %d to %d replicas (nats.replicas): consumer %s: %w", name, have, replicas, c, err)
		}
	}
	b.log.Info("stream scaled", "stream", name, "replicas", replicas, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// rescaleWait bounds the wait for a rescaled stream's replicas (a large
// FLOCK_RESULTS takes a while to copy); the wait is logged every 30 s.
const rescaleWait = 15 * time.Minute

// waitReplicas waits until stream (or its consumer, when consumer is not
// empty) has a leader and replicas-1 current followers, or says what it
// lacks after limit.
func (b *Bus) waitReplicas(ctx context.Context, stream, consumer string, replicas int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last string
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	for {
		var cl *jetstream.ClusterInfo
		var err error
		if consumer == "" {
			var st jetstream.Stream
			if st, err = b.js.Stream(ctx, stream); err == nil {
				cl = st.CachedInfo().Cluster
			}
		} else {
			var c jetstream.Consumer
			if c, err = b.js.Consumer(ctx, stream, consumer); err == nil {
				cl = c.CachedInfo().Cluster
			}
		}
		switch {
		case err != nil:
			last = err.Error()
		case cl == nil:
			if replicas == 1 {
				return nil // a single server
			}
			last = "no cluster"
		case cl.Leader == "":
			last = "no leader yet"
		default:
			current := 0
			for _, r := range cl.Replicas {
				if r.Current {
					current++
				}
			}
			if current >= replicas-1 && len(cl.Replicas) == replicas-1 {
				return nil
			}
			last = fmt.Sprintf("leader %s, %d of %d followers current", cl.Leader, current, replicas-1)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("its replicas did not catch up within %s (%s)", limit, last)
		case <-progress.C:
			b.log.Info("waiting for a stream's new replicas to catch up", "stream", stream, "consumer", consumer, "state", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func clusterHint(replicas int) string {
	if replicas > 1 {
		return fmt.Sprintf(" (a stream of %d replicas needs a JetStream cluster of at least %d servers)", replicas, replicas)
	}
	return ""
}

// replicaErr says why a stream or bucket could not be made or scaled.
func replicaErr(what string, replicas int, err error) error {
	if replicas > 1 {
		return fmt.Errorf("create or update %s with %d replicas (nats.replicas): %w%s", what, replicas, err, clusterHint(replicas))
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
		if err := b.rescale(ctx, name, replicas); err != nil {
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
		// Tasks being polled at once by all the site's pollers together: a
		// poller keeps tens of thousands in flight (poller.concurrency).
		MaxAckPending: 200_000,
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
