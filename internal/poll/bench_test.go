package poll

import (
	"context"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// One poll over loopback against the in-process simulator: resolve, dial,
// requests, conversion. The simulator's own CPU is included (same process).
func benchPoll(b *testing.B, get []string, walk []string, ifaces int) {
	fleet := simtest.Start(b, snmpsim.Config{Devices: 1, Interfaces: ifaces})
	ap := fleet.Devices()[0].AddrPort()
	tk := newTask("sim", ap.Addr().String(), ap.Port(), "v2")
	tk.Get, tk.Walk, tk.MaxRepetitions, tk.TimeoutMS = get, walk, 25, 2000
	tk.Deadline = time.Now().Add(time.Hour)
	p := New("bench", creds, simtest.NoDNS)
	var rec task.HostRecord
	varbinds := 0
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil || rec.Error != nil {
			b.Fatal(err, rec.Error)
		}
		varbinds += len(rec.Varbinds)
	}
	b.ReportMetric(float64(varbinds)/float64(b.N), "varbinds/op")
}

func BenchmarkPollGet1(b *testing.B) { benchPoll(b, []string{snmpsim.OIDSysDescr}, nil, 1) }

func BenchmarkPollWalkIfXTable48(b *testing.B) {
	benchPoll(b, nil, []string{snmpsim.OIDIfXTable}, 48)
}
