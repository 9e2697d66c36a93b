package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/export"
	"github.com/flock-snmp/flock/internal/task"
)

// SinkConsumer reads HostRecords for one metric sink through its own
// durable consumer on FLOCK_RESULTS (sink-<name>), an export.Source. Every
// process running that sink shares the consumer, which serves one of them
// at a time (JetStream's pinned-client priority policy): records a writer
// hands back go to it again, before newer ones, so a sink's records reach
// its database in order (Prometheus refuses a series' samples out of
// order) however many dispatchers and writers run it. The others stand by;
// one takes over when the serving writer releases the consumer (stopping)
// or has not asked for records for sinkPinnedTTL (it died). A record not
// acknowledged (its sink could not write it) stays in the stream.
type SinkConsumer struct {
	cons  jetstream.Consumer
	js    jetstream.JetStream
	name  string
	pinID atomic.Pointer[string] // the pin this writer was last served under
}

// sinkGroup is the priority group a sink's writers pull in.
const sinkGroup = "writers"

// SinkConsumerName is the durable consumer of the metric sink name.
func SinkConsumerName(name string) string { return "sink-" + name }

// sinkPinnedTTL is how long a writer that stopped asking for records keeps
// the consumer: above a writer's longest silence (a write's 15 s timeout,
// the 10 s back-off and a fetch's second), and above the ack wait, so that
// a dead writer's records are due again when the next writer is served.
const sinkPinnedTTL = 35 * time.Second

// sinkAckWait is how long a fetched record may go unacknowledged before it
// is delivered again: above a write's longest timeout (15 s).
const sinkAckWait = 30 * time.Second

// SinkRecords binds to (creating if needed) the durable consumer of the
// metric sink name, waiting (and saying so once) while FLOCK_RESULTS does
// not exist yet: a writer may start before the dispatcher. A new one starts with the records stored a minute
// before it (recordsLookBack), not the whole stream: a sink added to a
// running system does not backfill a day into a database that would refuse
// samples that old.
func (b *Bus) SinkRecords(ctx context.Context, name string, batch int) (*SinkConsumer, error) {
	durable := SinkConsumerName(name)
	start := time.Now().Add(-recordsLookBack)
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Flock metric sink " + name + ": the records it has yet to write",
		FilterSubject: task.ResultPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckWait:       sinkAckWait,
		MaxAckPending: max(batch, 1),
		// One writer served at a time: see SinkConsumer.
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{sinkGroup},
		PinnedTTL:      sinkPinnedTTL,
	}
	if err := waitFor(ctx, b.log, "waiting for the results stream (a dispatcher creates it)", func() error {
		_, err := b.js.Stream(ctx, ResultStream)
		return err
	}, "stream", ResultStream, "sink", name); err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, ResultStream, err)
	}
	cons, err := b.js.Consumer(ctx, ResultStream, durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if cons, err = b.js.CreateConsumer(ctx, ResultStream, cfg); errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = b.js.Consumer(ctx, ResultStream, durable) // another writer made it meanwhile
		}
	case err == nil:
		// An existing one keeps its place; the batch size and ack wait follow
		// the configuration.
		if have := cons.CachedInfo().Config; have.MaxAckPending != cfg.MaxAckPending || have.AckWait != cfg.AckWait ||
			have.PriorityPolicy != cfg.PriorityPolicy || have.PinnedTTL != cfg.PinnedTTL {
			have.MaxAckPending, have.AckWait = cfg.MaxAckPending, cfg.AckWait
			have.PriorityPolicy, have.PriorityGroups, have.PinnedTTL = cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL
			cons, err = b.js.UpdateConsumer(ctx, ResultStream, have)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, ResultStream, err)
	}
	return &SinkConsumer{cons: cons, js: b.js, name: durable}, nil
}

// Release unpins this writer, if it is the one served, so that another
// writer of the sink is served at once rather than after sinkPinnedTTL.
func (s *SinkConsumer) Release(ctx context.Context) error {
	// Unpinning is unconditional on the server: only the writer served now
	// may do it, or it would take the consumer from another in mid-batch.
	id := s.pinID.Load()
	if id == nil {
		return nil
	}
	info, err := s.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", s.name, err)
	}
	pinned := false
	for _, g := range info.PriorityGroups {
		pinned = pinned || (g.Group == sinkGroup && g.PinnedClientID == *id)
	}
	if !pinned {
		return nil
	}
	st, err := s.js.Stream(ctx, ResultStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", ResultStream, err)
	}
	if err := st.UnpinConsumer(ctx, s.name, sinkGroup); err != nil {
		return fmt.Errorf("unpin %s: %w", s.name, err)
	}
	return nil
}

// Fetch returns up to max records, waiting up to wait for them: fewer (or
// none) when the wait ends first. Keep wait short (a second): it is how
// long a stopping writer may wait.
func (s *SinkConsumer) Fetch(max int, wait time.Duration, dst []export.Msg) ([]export.Msg, error) {
	batch, err := s.cons.Fetch(max, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(sinkGroup))
	if err != nil {
		return dst, fmt.Errorf("fetch from %s: %w", s.name, err)
	}
	for m := range batch.Messages() {
		dst = append(dst, m)
		if id := m.Headers().Get("Nats-Pin-Id"); id != "" {
			s.pinID.Store(&id)
		}
	}
	err = batch.Error()
	if errors.Is(err, jetstream.ErrPinIDMismatch) {
		// Another writer is served now (after a NATS restart, say): this one
		// stands by, as it would have from the start.
		s.pinID.Store(nil)
		return dst, nil
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return dst, fmt.Errorf("fetch from %s: %w", s.name, err)
	}
	return dst, nil
}

// OpenSink is SinkRecords as an export.OpenSource (export.Start's).
func (b *Bus) OpenSink(ctx context.Context, name string, batch int) (export.Source, error) {
	c, err := b.SinkRecords(ctx, name, batch)
	if err != nil {
		return nil, err // not a nil *SinkConsumer in a non-nil interface
	}
	return c, nil
}

// Progress says how far the sink has written: its records not yet
// acknowledged, and the stream sequence up to which all are.
func (s *SinkConsumer) Progress(ctx context.Context) (export.Progress, error) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		return export.Progress{}, fmt.Errorf("consumer %s: %w", s.name, err)
	}
	return export.Progress{Pending: info.NumPending + uint64(info.NumAckPending), AckFloor: info.AckFloor.Stream}, nil
}

// LastStored is the sequence of the last record in FLOCK_RESULTS.
func (s *SinkConsumer) LastStored(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, ResultStream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", ResultStream, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}
