package poll

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system") // Linux only; CI and the dev machines are Linux
	}
	return len(entries)
}

// Every kind of broken agent ends in a typed record within the poll's
// budget; none panics, none leaks a goroutine or a socket.
func TestHostileAgents(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 20})
	dev := fleet.Devices()[0]
	ap := dev.AddrPort()
	p := New("p", creds, simtest.NoDNS)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	tests := []struct {
		name   string
		setup  func()
		want   string // error kind, "" for a clean record
		budget time.Duration
	}{
		{"silent", func() { dev.SetDead(true) }, task.KindTimeout, 2 * time.Second},
		{"wrong request id", func() { dev.SetFault(snmpsim.FaultWrongRequestID) }, task.KindTimeout, 2 * time.Second},
		{"truncated BER", func() { dev.SetFault(snmpsim.FaultTruncated) }, task.KindProtocol, 2 * time.Second},
		{"garbage", func() { dev.SetFault(snmpsim.FaultGarbage) }, task.KindProtocol, 2 * time.Second},
		{"genErr", func() { dev.SetFault(snmpsim.FaultGenErr) }, task.KindProtocol, 2 * time.Second},
		{"non-increasing", func() { dev.SetFault(snmpsim.FaultNonIncreasing) }, task.KindProtocol, 2 * time.Second},
		{"endless walk", func() { dev.SetFault(snmpsim.FaultEndless) }, task.KindProtocol, 60 * time.Second},
		{"slow", func() { dev.SetDelay(150 * time.Millisecond) }, "", 5 * time.Second},
		{"30% loss", func() { dev.SetLoss(30) }, "", 10 * time.Second},
		{"huge values", func() { dev.SetFault(snmpsim.FaultHugeValue) }, "", 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			defer func() {
				dev.SetDead(false)
				dev.SetFault(snmpsim.FaultNone)
				dev.SetDelay(0)
				dev.SetLoss(0)
			}()
			tk := newTask("sim", ap.Addr().String(), ap.Port(), "v2")
			tk.Get, tk.Walk = []string{snmpsim.OIDSysDescr}, []string{snmpsim.OIDIfTable}
			tk.TimeoutMS, tk.Retries, tk.PollTimeoutMS = 300, 3, tc.budget.Milliseconds()
			var rec task.HostRecord
			start := time.Now()
			if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			switch {
			case tc.want == "" && rec.Error != nil:
				t.Fatalf("error %v, want a clean record", rec.Error)
			case tc.want != "" && (rec.Error == nil || rec.Error.Kind != tc.want):
				t.Fatalf("error %+v, want kind %s", rec.Error, tc.want)
			}
			// A correctness bound, not a speed assertion: the poll ended within its own budget.
			if took > tc.budget+2*time.Second {
				t.Fatalf("poll took %s, beyond its budget of %s", took, tc.budget)
			}
			if tc.want == "" && len(rec.Varbinds) != 1+20*17 {
				t.Fatalf("%d varbinds, want %d", len(rec.Varbinds), 1+20*17)
			}
		})
	}
	// Every session closed, every goroutine gone.
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseG || openFDs(t) > baseFD {
		if time.Now().After(deadline) {
			t.Fatalf("leak: %d goroutines (was %d), %d open files (was %d)", runtime.NumGoroutine(), baseG, openFDs(t), baseFD)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
