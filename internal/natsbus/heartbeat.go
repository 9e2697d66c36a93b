package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// HeartbeatPrefix: each poller publishes its Heartbeat on HeartbeatPrefix + its id.
const HeartbeatPrefix = "flock.pollers."

// Heartbeat is what a poller says about itself on flock.pollers.<id>.
type Heartbeat struct {
	ID          string    `json:"id"`
	Site        string    `json:"site"`
	Version     string    `json:"version"`
	Concurrency int       `json:"concurrency"`
	InFlight    int64     `json:"in_flight"`
	Polls       uint64    `json:"polls"`
	StartedAt   time.Time `json:"started_at"`
	Time        time.Time `json:"time"`
}

// SendHeartbeats publishes beat() on flock.pollers.<id> now and every
// period until ctx ends. id must be a single subject token.
func (b *Bus) SendHeartbeats(ctx context.Context, id string, every time.Duration, beat func() Heartbeat) {
	subject := HeartbeatPrefix + id
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		hb := beat()
		hb.Time = time.Now().UTC()
		if data, err := json.Marshal(hb); err == nil {
			if err := b.nc.Publish(subject, data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				b.log.Debug("heartbeat not sent", "subject", subject, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
