package dispatch

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/agent"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

func hostsN(n int, interval, jitter time.Duration) []config.Host {
	hs := make([]config.Host, n)
	for i := range hs {
		name := fmt.Sprintf("sw%05d.example.net", i)
		key, _ := task.HostKey(name)
		hs[i] = config.Host{Name: name, Key: key, Site: task.DefaultSite, Address: name, Port: 161, Credentials: "public", Timeout: time.Second,
			PollTimeout: 3 * time.Second, MaxOids: 32, MaxRepetitions: 25, Get: []string{".1.3.6.1.2.1.1.1.0"},
			Interval: interval, Jitter: jitter, Bulk: true}
	}
	return hs
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestSpreadOverTheInterval(t *testing.T) {
	const n = 10_000
	s := NewScheduler()
	s.SetHosts(hostsN(n, time.Minute, 0), t0)
	perSecond := map[int]int{}
	total := 0
	for sec := 1; sec <= 120; sec++ { // two full intervals, one Due per second
		tasks := s.Due(t0.Add(time.Duration(sec) * time.Second))
		perSecond[sec] = len(tasks)
		total += len(tasks)
	}
	if total != 2*n {
		t.Fatalf("%d tasks in two intervals, want %d (one per host per interval)", total, 2*n)
	}
	peak := 0
	for _, c := range perSecond {
		peak = max(peak, c)
	}
	// 10,000 hosts at 60s is 167 a second on average; a burst would be thousands.
	if peak > 260 {
		t.Fatalf("peak %d tasks in one second, want about 167", peak)
	}
	t.Logf("10000 hosts at 60s: %d tasks per second at the peak, %.0f on average", peak, float64(n)/60)
}

func TestDeterministicIDsAcrossDispatchers(t *testing.T) {
	hosts := hostsN(50, 30*time.Second, 5*time.Second)
	a, b := NewScheduler(), NewScheduler()
	a.SetHosts(hosts, t0)
	b.SetHosts(hosts, t0.Add(7*time.Second)) // started later, same slots
	ids := func(s *Scheduler) map[string]bool {
		out := map[string]bool{}
		for sec := 1; sec <= 120; sec++ {
			for _, tk := range s.Due(t0.Add(time.Duration(sec) * time.Second)) {
				if slot := SlotOf(tk); slot.Before(t0.Add(40*time.Second)) || !slot.Before(t0.Add(90*time.Second)) {
					continue // compare the slots both dispatchers cover
				}
				out[tk.ID] = true
				if !strings.HasPrefix(tk.ID, "default."+tk.HostKey+"@") {
					t.Fatalf("task id %q", tk.ID)
				}
				if tk.Deadline.Sub(SlotOf(tk)) != 30*time.Second {
					t.Fatalf("task %s lives %s, want its interval", tk.ID, tk.Deadline.Sub(SlotOf(tk)))
				}
				j := tk.ScheduledAt.Sub(SlotOf(tk))
				if j < 0 || j >= 5*time.Second {
					t.Fatalf("task %s jitter %s outside [0, 5s)", tk.ID, j)
				}
			}
		}
		return out
	}
	ia, ib := ids(a), ids(b)
	if len(ia) == 0 || len(ia) != len(ib) {
		t.Fatalf("%d vs %d ids", len(ia), len(ib))
	}
	for id := range ia {
		if !ib[id] {
			t.Fatalf("id %s from one dispatcher is not produced by the other", id)
		}
	}
}

// SlotOf recovers the slot start from a task id.
func SlotOf(tk task.PollTask) time.Time {
	var ms int64
	fmt.Sscanf(tk.ID[strings.LastIndex(tk.ID, "@")+1:], "%d", &ms)
	return time.UnixMilli(ms)
}

func TestMissedSlotsAreNotCaughtUp(t *testing.T) {
	s := NewScheduler()
	s.SetHosts(hostsN(3, 10*time.Second, 0), t0)
	if n := len(s.Due(t0.Add(11 * time.Second))); n != 3 {
		t.Fatalf("first interval: %d tasks, want 3", n)
	}
	// The dispatcher stalls for ten intervals: one task per host, not ten.
	if n := len(s.Due(t0.Add(111 * time.Second))); n > 3 {
		t.Fatalf("after a stall: %d tasks, want at most one per host", n)
	}
	next, _ := s.NextDue()
	if !next.After(t0.Add(111 * time.Second)) {
		t.Fatalf("next due %s is in the past", next)
	}
}

func TestSetHostsReload(t *testing.T) {
	s := NewScheduler()
	hosts := hostsN(4, time.Minute, 0)
	if a, r, c := s.SetHosts(hosts, t0); a != 4 || r != 0 || c != 0 {
		t.Fatalf("initial: +%d -%d ~%d", a, r, c)
	}
	// Remove sw00000, change sw00001's OIDs, change sw00002's interval, add a new host.
	next := append([]config.Host{}, hosts[1:]...)
	next[0].Get = []string{".1.3.6.1.2.1.1.5.0"}
	next[1].Interval = 10 * time.Second
	next = append(next, hostsN(5, time.Minute, 0)[4])
	if a, r, c := s.SetHosts(next, t0.Add(time.Second)); a != 1 || r != 1 || c != 2 {
		t.Fatalf("reload: +%d -%d ~%d, want +1 -1 ~2", a, r, c)
	}
	seen := map[string][]task.PollTask{}
	for sec := 2; sec <= 62; sec++ {
		for _, tk := range s.Due(t0.Add(time.Duration(sec) * time.Second)) {
			seen[tk.Host] = append(seen[tk.Host], tk)
		}
	}
	if len(seen["sw00000.example.net"]) != 0 {
		t.Error("a removed host was still polled")
	}
	if tks := seen["sw00001.example.net"]; len(tks) != 1 || tks[0].Get[0] != ".1.3.6.1.2.1.1.5.0" {
		t.Errorf("changed host polls %+v, want its new OIDs", tks)
	}
	if n := len(seen["sw00002.example.net"]); n < 5 {
		t.Errorf("host moved to a 10s interval was polled %d times in a minute", n)
	}
	if len(seen["sw00004.example.net"]) != 1 {
		t.Errorf("added host polled %d times in its first interval, want 1", len(seen["sw00004.example.net"]))
	}
	if s.Len() != 4 {
		t.Errorf("%d hosts scheduled, want 4", s.Len())
	}
}

func TestCatchUpCurrentSlot(t *testing.T) {
	hosts := hostsN(2, time.Minute, 0)
	now := t0.Add(90 * time.Second)
	s := NewScheduler()
	s.SetHosts(hosts, now)
	cur := SlotStart(hosts[0].Key, time.Minute, now)
	if !s.CatchUp(hosts[0].Key, now, func(string) bool { return false }) {
		t.Fatal("CatchUp of an unanswered slot refused")
	}
	if s.CatchUp(hosts[1].Key, now, func(id string) bool { return true }) {
		t.Fatal("CatchUp of an answered slot accepted")
	}
	got := s.Due(now)
	if len(got) != 1 || got[0].HostKey != hosts[0].Key || !SlotOf(got[0]).Equal(cur) {
		t.Fatalf("due now: %+v; want the current slot of the caught-up host only", got)
	}
	// With less than the margin of its slot left, the slot is not caught
	// up: it would make the next one an overrun.
	late := SlotStart(hosts[1].Key, time.Minute, now).Add(time.Minute - CatchUpMargin(time.Minute) + time.Second)
	s2 := NewScheduler()
	s2.SetHosts(hosts, late)
	if s2.CatchUp(hosts[1].Key, late, func(string) bool { return false }) {
		t.Fatal("CatchUp of a slot about to end accepted")
	}
}

// A host's transport goes into its tasks: left out for plain udp (schema
// 1, as before), named with schema 2 otherwise, so a poller that would
// ignore it refuses the task instead of polling over UDP.
func TestTaskTransport(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		transport, want string
		schema          int
	}{{"", "", 1}, {agent.TCP, "tcp", 2}, {agent.UDP6, "udp6", 2}} {
		h := config.Host{Name: "core-sw1", Key: "core-sw1", Site: "default", Address: "::1", Port: 1161, Transport: tc.transport,
			Credentials: "public", Timeout: time.Second, Get: []string{".1.3.6.1.2.1.1.5.0"}, PollTimeout: 3 * time.Second,
			MaxOids: 32, MaxRepetitions: 25}
		tk := newTask(&h, now, now, now.Add(time.Minute))
		if tk.Transport != tc.want || tk.Schema != tc.schema || tk.Address != "::1" || tk.Port != 1161 {
			t.Errorf("%s: task transport %q schema %d address %s port %d; want %q, %d", tc.transport, tk.Transport, tk.Schema, tk.Address, tk.Port, tc.want, tc.schema)
		}
		if err := tk.Validate(); err != nil {
			t.Errorf("%s: %v", tc.transport, err)
		}
	}
}
