// Package simtest starts the project's SNMP simulator for tests, in the
// style of net/http/httptest: closed by t.Cleanup. It also has the resolver
// tests use so that no DNS query leaves the machine.
package simtest

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/flock-snmp/flock/internal/snmpsim"
)

// Start runs a simulated fleet until the test ends.
func Start(tb testing.TB, cfg snmpsim.Config) *snmpsim.Fleet {
	tb.Helper()
	f, err := snmpsim.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// NoDNS resolves through /etc/hosts only and refuses to reach any DNS
// server, so no test sends a query off this machine.
var NoDNS = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, fmt.Errorf("test resolver: DNS to %s blocked", address)
}}
