// Package natstest runs a real, JetStream-enabled nats-server for tests, in
// the style of net/http/httptest: on a random loopback port, with its
// storage in the test's temporary directory, shut down by t.Cleanup.
package natstest

import (
	"testing"

	"github.com/flock-snmp/flock/internal/natsbus"
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
