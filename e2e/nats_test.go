package e2e

import (
	"context"
	"time"

	"github.com/flock-snmp/flock/internal/natsbus"
)

// publishRaw publishes a message to JetStream once the dispatcher's server
// and streams exist.
func publishRaw(ctx context.Context, url, subject string, data []byte) error {
	b, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: url, Name: "e2e"})
	if err != nil {
		return err
	}
	defer b.Close()
	for {
		_, err := b.JetStream().Publish(ctx, subject, data)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
