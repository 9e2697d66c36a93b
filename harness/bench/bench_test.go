package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readRecords finds the most polls running at once from the records' start
// times and durations; a poll ending as another starts does not overlap it.
func TestReadRecordsMaxInFlight(t *testing.T) {
	lines := `{"schema":1,"started_at":"2026-11-26T00:00:00Z","duration_ms":100,"varbinds":[{"oid":".1"}],"error":null}
{"schema":1,"started_at":"2026-11-26T00:00:00.050Z","duration_ms":100,"varbinds":[],"error":{"kind":"timeout"}}
{"schema":1,"started_at":"2026-11-26T00:00:00.060Z","duration_ms":10,"varbinds":[{"oid":".1"},{"oid":".2"}],"error":null}
{"schema":1,"started_at":"2026-11-26T00:00:00.150Z","duration_ms":5,"varbinds":[],"error":null}
flock: hosts=4 ok=3 failed=1
`
	path := filepath.Join(t.TempDir(), "records")
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := readRecords(path, &res); err != nil {
		t.Fatal(err)
	}
	if res.Polls != 4 || res.Varbinds != 3 || res.Errors != 1 {
		t.Fatalf("polls=%d varbinds=%d errors=%d, want 4 3 1", res.Polls, res.Varbinds, res.Errors)
	}
	// 0.060-0.070 has three polls running; at 0.150 the second ends as the fourth starts.
	if res.MaxInFlight != 3 {
		t.Fatalf("max in flight %d, want 3", res.MaxInFlight)
	}
}

func TestRepeatHostsAndCycle(t *testing.T) {
	got := repeatHosts("hosts:\n  - {name: sim-00001, address: 127.0.0.1, port: 20001}\n", 2)
	want := "hosts:\n  - {name: sim-00001-1, address: 127.0.0.1, port: 20001}\n  - {name: sim-00001-2, address: 127.0.0.1, port: 20001}\n"
	if got != want {
		t.Fatalf("repeatHosts:\n%s\nwant:\n%s", got, want)
	}
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("{\"schema\":1}\nflock: hosts=2 ok=2 failed=0 missing=0 duplicates=0 elapsed=1.250s unpublished=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := cycleSecs(path); c != 1.25 {
		t.Fatalf("cycleSecs = %v, want 1.25", c)
	}
	base := Result{Polls: 100, Secs: 1, PollerCPU: 100_000_000} // 100 polls/s, 1 ms per poll
	r := Result{Polls: 100, Secs: 2, PollerCPU: 50_000_000, DispatcherCPU: 50_000_000, NATSCPU: 50_000_000, Varbinds: 100, CycleSecs: 1.6, Base: &base}
	line := r.Line()
	for _, want := range []string{" x_gosnmp_polls_per_s=0.50 ", " x_gosnmp_poller_cpu_per_poll=0.50 ", " x_gosnmp_total_cpu_per_poll=1.50",
		" dispatcher_cpu_us_per_varbind=500.000 ", " cycle_secs=1.60 command_over_cycle=1.25 "} {
		if !strings.Contains(line+" ", want) {
			t.Errorf("line lacks %q:\n%s", want, line)
		}
	}
}
