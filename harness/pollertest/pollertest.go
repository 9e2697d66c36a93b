// Package pollertest runs a poller's loop on a natsbus connection for
// tests, wired as cmd/poller wires it, so that tests of the dispatcher,
// the bus and the poller exercise the real delivery path.
package pollertest

import (
	"context"
	"testing"

	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poller"
)

// Serve binds b to the site's task consumer (waiting for it to exist) and
// serves its tasks with poll in the background until ctx ends; AckWait and
// MaxDeliver default to the consumer's. done receives Serve's result. The
// loop is returned for poll-now wiring.
func Serve(tb testing.TB, ctx context.Context, b *natsbus.Bus, site string, o poller.Options, start poller.StartFunc) (loop *poller.Loop, done <-chan error) {
	tb.Helper()
	tasks, err := b.BindTasks(ctx, site, o.Log)
	if err != nil {
		tb.Fatalf("bind to the task consumer of site %s: %v", site, err)
	}
	if o.AckWait == 0 {
		o.AckWait = tasks.AckWait()
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = tasks.MaxDeliver()
	}
	loop = poller.New(o, start, b)
	ch := make(chan error, 1)
	go func() {
		ch <- loop.Serve(ctx, func(buffer int, deliver func(poller.Delivery)) (func(), error) {
			return tasks.Consume(buffer, func(m *natsbus.TaskMsg) { deliver(m) })
		})
	}()
	return loop, ch
}
