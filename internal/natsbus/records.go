package natsbus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// WatchRecords delivers every HostRecord of site stored since `since`, then
// new ones as they arrive, to fn (called from one goroutine at a time) until
// stop is called. Records come from the results stream, so ones published
// before the watch started are not missed.
func (b *Bus) WatchRecords(ctx context.Context, site string, since time.Time, fn func(subject string, data []byte)) (stop func(), err error) {
	cons, err := b.js.OrderedConsumer(ctx, ResultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{task.ResultPrefix + site + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+site+".>", ResultStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Subject(), m.Data()) })
	if err != nil {
		return nil, fmt.Errorf("watch %s on %s: %w", task.ResultPrefix+site+".>", ResultStream, err)
	}
	return cc.Stop, nil
}
