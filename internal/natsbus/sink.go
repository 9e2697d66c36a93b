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
// that sink shares it (an export.Source), so each record goes to one of
// them, and a record not acknowledged (its sink could not write it) stays
// pending there. The consumer lets one batch out at a time (MaxAckPending
// is the batch size), so a sink's records reach its database in order
// however many processes run it: Prometheus refuses a series' samples out
// of order. More writers give failover, not parallel writes.
type SinkConsumer struct {
	cons jetstream.Consumer
	js   jetstream.JetStream
	name string
}

// SinkConsumerName is the durable consumer of the metric sink name.
func SinkConsumerName(name string) string { return "sink-" + name }

// sinkAckWait is how long a fetched record may go unacknowledged (and
// without a progress report) before it goes to another writer of the sink:
// above a write's longest timeout (15 s) plus the longest back-off (10 s).
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
		if have := cons.CachedInfo().Config; have.MaxAckPending != cfg.MaxAckPending || have.AckWait != cfg.AckWait {
			have.MaxAckPending, have.AckWait = cfg.MaxAckPending, cfg.AckWait
			cons, err = b.js.UpdateConsumer(ctx, ResultStream, have)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, ResultStream, err)
	}
	return &SinkConsumer{cons: cons, js: b.js, name: durable}, nil
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
