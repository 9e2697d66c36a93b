// Package simtest starts the project's SNMP simulator for tests, in the
// style of net/http/httptest: closed by t.Cleanup. Its helpers give tasks
// that poll the simulated devices, and the resolver tests use so that no
// DNS query leaves the machine.
package simtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
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

// Tasks are one task per device for slot: GET sysName, walk ifTable, with
// a 300 ms request timeout, no retry and a poll budget of pollTimeout.
func Tasks(devs []*snmpsim.Device, slot int64, pollTimeout time.Duration) []task.PollTask {
	now := time.Now()
	out := make([]task.PollTask, len(devs))
	for i, d := range devs {
		key, _ := task.HostKey(d.Name)
		out[i] = task.PollTask{
			Schema: task.Schema, ID: task.SlotID(task.DefaultSite, key, time.UnixMilli(slot)), Site: task.DefaultSite, Host: d.Name, HostKey: key,
			Address: d.AddrPort().Addr().String(), Port: d.AddrPort().Port(), Credentials: "public",
			Get: []string{snmpsim.OIDSysName}, Walk: []string{snmpsim.OIDIfTable}, TimeoutMS: 300, PollTimeoutMS: pollTimeout.Milliseconds(),
			Retries: 0, MaxOids: 32, MaxRepetitions: 25, ScheduledAt: now, Deadline: now.Add(time.Minute),
		}
	}
	return out
}
