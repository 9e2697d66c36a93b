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
