package fleet

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

func TestLiveAndOutages(t *testing.T) {
	var logs bytes.Buffer
	f := New(slog.New(slog.NewTextHandler(&logs, nil)))
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	f.Observe(task.Heartbeat{ID: "p1", Site: "hq", EveryMS: 1000}, t0)
	f.Observe(task.Heartbeat{ID: "p2", Site: "hq"}, t0) // no period: 10 s assumed
	f.Observe(task.Heartbeat{ID: "p3", Site: "lab", EveryMS: 1000}, t0)
	f.Observe(task.Heartbeat{ID: "p1", Site: "hq", EveryMS: 1000, Polls: 1}, t0.Add(-time.Second)) // replayed, older: ignored

	live := f.Check([]string{"hq", "lab", "dc9"}, t0.Add(time.Second))
	if len(live["hq"]) != 2 || live["hq"][0].ID != "p1" || live["hq"][0].Polls != 0 || len(live["lab"]) != 1 {
		t.Fatalf("live at +1s: %+v", live)
	}
	if n := strings.Count(logs.String(), "site has no live poller"); n != 1 || !strings.Contains(logs.String(), "site=dc9") {
		t.Fatalf("outage log at +1s:\n%s", logs.String())
	}
	// Three missed periods: p1 and p3 are gone, p2 (10 s period) is not.
	live = f.Check([]string{"hq", "lab", "dc9"}, t0.Add(3*time.Second))
	if len(live["hq"]) != 1 || live["hq"][0].ID != "p2" || len(live["lab"]) != 0 {
		t.Fatalf("live at +3s: %+v", live)
	}
	if n := strings.Count(logs.String(), "site has no live poller"); n != 2 || !strings.Contains(logs.String(), "site=lab") {
		t.Fatalf("outage log at +3s (dc9 once, lab once):\n%s", logs.String())
	}
	// A stopping poller is gone at once; a new one ends the outage.
	f.Observe(task.Heartbeat{ID: "p2", Site: "hq", Stopping: true}, t0.Add(4*time.Second))
	f.Observe(task.Heartbeat{ID: "p4", Site: "lab", EveryMS: 1000}, t0.Add(4*time.Second))
	live = f.Check([]string{"hq", "lab", "dc9"}, t0.Add(4*time.Second))
	if len(live["hq"]) != 0 || len(live["lab"]) != 1 {
		t.Fatalf("live at +4s: %+v", live)
	}
	if !strings.Contains(logs.String(), `msg="site has live pollers again" site=lab pollers=1`) || !strings.Contains(logs.String(), "site=hq") {
		t.Fatalf("log at +4s:\n%s", logs.String())
	}
}
