package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// maxDeliveriesAdvisory is the part of nats-server's
// io.nats.jetstream.advisory.v1.max_deliver advisory Flock reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// WatchExhausted calls fn with each task of any site (its subject and
// data) that reached the consumer's max_deliver without being acked (its
// pollers died with it, or handed it back every time), after removing it
// from the work queue: on a work-queue stream an exhausted message
// otherwise stays, and with one task per host it would hold the host's
// slot until its TTL. It runs until ctx ends or stop is called.
func (b *Bus) WatchExhausted(ctx context.Context, fn func(subject string, data []byte, deliveries int)) (stop func(), err error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + TaskStream + ".*"
	stream, err := b.js.Stream(ctx, TaskStream)
	if err != nil {
		return nil, fmt.Errorf("watch exhausted tasks: %w", err)
	}
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			b.log.Warn("undecodable max-deliveries advisory", "subject", m.Subject, "err", err)
			return
		}
		if _, ok := task.ConsumerSite(adv.Consumer); !ok {
			return // not a poller consumer's task
		}
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		raw, err := stream.GetMsg(opCtx, adv.StreamSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return // acked, terminated or expired meanwhile
		}
		if err != nil {
			b.log.Error("cannot read exhausted task", "stream_seq", adv.StreamSeq, "err", err)
			return
		}
		if err := stream.DeleteMsg(opCtx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			b.log.Error("cannot remove exhausted task", "stream_seq", adv.StreamSeq, "subject", raw.Subject, "err", err)
			return
		}
		fn(raw.Subject, raw.Data, int(adv.Deliveries))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
