package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/export"
	"github.com/flock-snmp/flock/internal/task"
)

// SinkConsumer reads HostRecords for one metric sink through its own
// durable consumer on FLOCK_RESULTS (sink-<name>): every process running
// that sink shares it (an export.Source), so each record goes to one of them, and a record
// not acknowledged (its sink could not write it) stays pending there.
type SinkConsumer struct {
	cons jetstream.Consumer
	name string
}

// SinkConsumerName is the durable consumer of the metric sink name.
func SinkConsumerName(name string) string { return "sink-" + name }

// sinkAckWait is how long a fetched record may go unacknowledged (and
// without a progress report) before it goes to another writer of the sink.
const sinkAckWait = 30 * time.Second

// SinkRecords binds to (creating if needed) the durable consumer of the
// metric sink name, waiting (and saying so once) while FLOCK_RESULTS does
// not exist yet: a writer may start before the dispatcher. A new one starts with the records stored a minute
// before it (recordsLookBack), not the whole stream: a sink added to a
// running system does not backfill a day into a database that would refuse
// samples that old.
func (b *Bus) SinkRecords(ctx context.Context, name string) (*SinkConsumer, error) {
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
		MaxAckPending: 20_000,
	}
	if err := waitFor(ctx, b.log, "waiting for the results stream (a dispatcher creates it)", func() error {
		_, err := b.js.Stream(ctx, ResultStream)
		return err
	}, "stream", ResultStream, "sink", name); err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, ResultStream, err)
	}
	cons, err := b.js.Consumer(ctx, ResultStream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if cons, err = b.js.CreateConsumer(ctx, ResultStream, cfg); errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = b.js.Consumer(ctx, ResultStream, durable) // another writer made it meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, ResultStream, err)
	}
	return &SinkConsumer{cons: cons, name: durable}, nil
}

// Fetch returns up to max records, waiting up to wait for them: fewer (or
// none) when the wait ends first. Keep wait short (a second): it is how
// long a stopping writer may wait.
func (s *SinkConsumer) Fetch(max int, wait time.Duration, dst []export.Msg) ([]export.Msg, error) {
	batch, err := s.cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return dst, fmt.Errorf("fetch from %s: %w", s.name, err)
	}
	for m := range batch.Messages() {
		dst = append(dst, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return dst, fmt.Errorf("fetch from %s: %w", s.name, err)
	}
	return dst, nil
}

// Pending is how many records the sink has not yet acknowledged: stored
// and not yet delivered, or delivered and not acknowledged.
func (s *SinkConsumer) Pending(ctx context.Context) (uint64, error) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: %w", s.name, err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
