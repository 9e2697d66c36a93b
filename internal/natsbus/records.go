package natsbus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// WatchRecords delivers HostRecords of site to fn (called from one
// goroutine at a time) until stop is called: those stored since `since` and
// then new ones, or, with a zero since, only records stored after the watch
// began, which needs no agreement between this machine's clock and the
// server's.
func (b *Bus) WatchRecords(ctx context.Context, site string, since time.Time, fn func(subject string, data []byte)) (stop func(), err error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{task.ResultPrefix + site + ".>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := b.js.OrderedConsumer(ctx, ResultStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+site+".>", ResultStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Subject(), m.Data()) })
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+site+".>", ResultStream, err)
	}
	return cc.Stop, nil
}

// ConsumeRecords delivers the site's HostRecords to fn through the durable
// consumer durable, from where it left off (only new records the first time
// it is created), until ctx ends. Records published while the caller was
// down are delivered when it returns. fn returning nil acks the record; an
// error hands it back for redelivery a second later.
func (b *Bus) ConsumeRecords(ctx context.Context, site, durable string, fn func(subject string, data []byte) error) error {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, ResultStream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Flock dispatcher: collects HostRecords of site " + site,
		FilterSubject: task.ResultPrefix + site + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 10_000,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("create consumer %s on %s: %w", durable, ResultStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := fn(m.Subject(), m.Data()); err != nil {
			b.log.Warn("record not processed; it will be redelivered", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(1000), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		b.log.Warn("record consumer", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", ResultStream, durable, err)
	}
	<-ctx.Done()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		cc.Stop()
	}
	return nil
}
