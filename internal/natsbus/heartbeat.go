package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// PollerStream keeps each poller's last heartbeat (flock.pollers.<id>), so
// that a dispatcher or `dispatcher status` knows the live pollers at once.
const PollerStream = "FLOCK_POLLERS"

// SendHeartbeats publishes beat() on flock.pollers.<id> now and every
// period until ctx ends, then one last one with Stopping set. id must be a
// single subject token. The publications are core NATS: a poller needs no
// JetStream permission for them (the dispatcher's FLOCK_POLLERS stream
// stores them).
func (b *Bus) SendHeartbeats(ctx context.Context, id string, every time.Duration, beat func() task.Heartbeat) {
	subject := task.HeartbeatPrefix + id
	send := func(stopping bool) {
		hb := beat()
		hb.Time, hb.EveryMS, hb.Stopping = time.Now().UTC(), every.Milliseconds(), stopping
		if data, err := json.Marshal(hb); err == nil {
			if err := b.nc.Publish(subject, data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				b.log.Debug("heartbeat not sent", "subject", subject, "err", err)
			}
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		send(false)
		select {
		case <-ctx.Done():
			send(true)
			_ = b.nc.FlushTimeout(time.Second)
			return
		case <-t.C:
		}
	}
}

// WatchPollers calls fn with the last heartbeat of every poller the
// FLOCK_POLLERS stream holds, then with each new one, and the time the
// server stored it, until stop is called. fn is called from one goroutine
// at a time; a heartbeat that does not decode is logged and skipped.
func (b *Bus) WatchPollers(ctx context.Context, fn func(hb task.Heartbeat, stored time.Time)) (stop func(), err error) {
	cons, err := b.js.OrderedConsumer(ctx, PollerStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{task.HeartbeatPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("watch poller heartbeats on %s: %w", PollerStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var hb task.Heartbeat
		if err := json.Unmarshal(m.Data(), &hb); err != nil {
			b.log.Warn("undecodable heartbeat skipped", "subject", m.Subject(), "err", err)
			return
		}
		stored := time.Now()
		if md, err := m.Metadata(); err == nil {
			stored = md.Timestamp
		}
		fn(hb, stored)
	})
	if err != nil {
		return nil, fmt.Errorf("watch poller heartbeats on %s: %w", PollerStream, err)
	}
	return cc.Stop, nil
}

// Pollers calls fn with the last heartbeat of every poller FLOCK_POLLERS
// holds, and when it was stored; it returns when all have been read.
func (b *Bus) Pollers(ctx context.Context, fn func(hb task.Heartbeat, stored time.Time)) error {
	st, err := b.js.Stream(ctx, PollerStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", PollerStream, err)
	}
	n := st.CachedInfo().State.NumSubjects
	if n == 0 {
		return nil
	}
	var mu sync.Mutex
	seen := uint64(0)
	done := make(chan struct{})
	stop, err := b.WatchPollers(ctx, func(hb task.Heartbeat, stored time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if seen >= n {
			return
		}
		fn(hb, stored)
		if seen++; seen == n {
			close(done)
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	defer func() { // no call of fn after this returns
		mu.Lock()
		seen = n
		mu.Unlock()
	}()
	select {
	case <-done:
		return nil
	case <-time.After(3 * time.Second): // a heartbeat that did not decode, or one aged out meanwhile
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
