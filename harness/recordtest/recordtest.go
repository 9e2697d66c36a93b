// Package recordtest polls the project's simulator for real HostRecords,
// for the tests and benchmarks of what consumes records.
package recordtest

import (
	"context"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// Router polls a simulated router with n interfaces, as a poller would:
// GET sysUpTime and sysName, walk ifTable and ifXTable. The simulator stops
// when the test ends.
func Router(tb testing.TB, n int) task.HostRecord {
	tb.Helper()
	fleet := simtest.Start(tb, snmpsim.Config{Devices: 1, Interfaces: n})
	tk := simtest.Tasks(fleet.Devices(), time.Now().UnixMilli(), 10*time.Second)[0]
	tk.Get = []string{snmpsim.OIDSysUpTime, snmpsim.OIDSysName}
	tk.Walk = []string{snmpsim.OIDIfTable, snmpsim.OIDIfXTable}
	p := poll.New("test", []config.Credential{{Name: "public", Version: config.Version2c, Community: "public"}}, simtest.NoDNS)
	defer p.Close()
	var rec task.HostRecord
	if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil || rec.Error != nil {
		tb.Fatalf("poll: %v %v", err, rec.Error)
	}
	return rec
}
