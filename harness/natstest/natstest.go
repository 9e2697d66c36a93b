// Package natstest runs a real, JetStream-enabled nats-server for tests, in
// the style of net/http/httptest: on a random loopback port, with its
// storage in the test's temporary directory, shut down by t.Cleanup; its
// helpers connect Flock's natsbus to it.
package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

// RunJetStream starts a server on 127.0.0.1 and a random port.
func RunJetStream(tb testing.TB) *natsbus.Embedded {
	tb.Helper()
	return RunJetStreamIn(tb, tb.TempDir())
}

// RunJetStreamIn starts a server whose store is dir, so a test can restart
// a server on the same data.
func RunJetStreamIn(tb testing.TB, dir string) *natsbus.Embedded {
	tb.Helper()
	return Run(tb, natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: dir})
}

// Run starts a server with the given options (Listen and StoreDir included).
func Run(tb testing.TB, o natsbus.EmbeddedOptions) *natsbus.Embedded {
	tb.Helper()
	e, err := natsbus.StartEmbedded(o)
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	tb.Cleanup(e.Close)
	return e
}

// Connect connects to srv as name; the connection is closed when the test ends.
func Connect(tb testing.TB, srv *natsbus.Embedded, name string) *natsbus.Bus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: srv.ClientURL(), Name: name})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// RunFlock starts a server with Flock's streams, the default site's task
// consumer (ackWait, maxDeliver) and buckets, as a dispatcher makes them,
// and returns it with that dispatcher's connection.
func RunFlock(tb testing.TB, ackWait time.Duration, maxDeliver int) (*natsbus.Embedded, *natsbus.Bus) {
	tb.Helper()
	srv := RunJetStream(tb)
	return srv, Dispatcher(tb, srv, natsbus.StreamOptions{AckWait: ackWait, MaxDeliver: maxDeliver})
}

// Dispatcher connects to srv as the dispatcher does and makes Flock's
// streams, consumer and buckets with o (the default site when o names none).
func Dispatcher(tb testing.TB, srv *natsbus.Embedded, o natsbus.StreamOptions) *natsbus.Bus {
	tb.Helper()
	d := Connect(tb, srv, "dispatcher")
	if len(o.Sites) == 0 {
		o.Sites = []string{task.DefaultSite}
	}
	if err := d.EnsureStreams(context.Background(), o); err != nil {
		tb.Fatal(err)
	}
	return d
}

// FixedOptions are the options of a server that a test stops and starts
// again on the same loopback address and store: a free port, chosen now,
// and a temporary directory.
func FixedOptions(tb testing.TB) natsbus.EmbeddedOptions {
	tb.Helper()
	port, err := procs.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return natsbus.EmbeddedOptions{Listen: fmt.Sprintf("127.0.0.1:%d", port), StoreDir: tb.TempDir()}
}
