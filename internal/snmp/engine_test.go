package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var v2c = &config.Credential{Name: "v2", Version: config.Version2c, Community: "public"}

// countSink collects one job's outcome for tests that start many.
type countSink struct {
	mu      sync.Mutex
	vbs     []task.Varbind
	err     error
	learned task.Quirks
	done    chan struct{}
}

func newCountSink() *countSink { return &countSink{done: make(chan struct{})} }

func (s *countSink) Varbind(vb *task.Varbind) {
	s.mu.Lock()
	s.vbs = append(s.vbs, *vb)
	s.mu.Unlock()
}
func (s *countSink) PartFailed(string, error) bool { return true }
func (s *countSink) Done(q task.Quirks, err error) {
	s.learned, s.err = q, err
	close(s.done)
}

func waitAll(t *testing.T, sinks []*countSink, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for i, s := range sinks {
		select {
		case <-s.done:
		case <-deadline:
			t.Fatalf("poll %d of %d never ended", i, len(sinks))
		}
	}
}

// Thousands of polls in flight at once run on the engine's few sockets and
// goroutines, not a goroutine and a socket each.
func TestPollsShareAFewSockets(t *testing.T) {
	const polls = 2000
	fleet := simtest.Start(t, snmpsim.Config{Devices: polls, Interfaces: 1, Delay: 300 * time.Millisecond})
	e := testEngine(t, EngineOptions{Sockets: 2})
	baseG := runtime.NumGoroutine()
	opts := Options{Timeout: 2 * time.Second, Retries: 1, MaxOids: 8, MaxRepetitions: 10}
	sinks := make([]*countSink, polls)
	for i, dev := range fleet.Devices() {
		sinks[i] = newCountSink()
		e.Start(context.Background(), &Job{Name: dev.Name, Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, sinks[i])
	}
	// All were sent within the answers' 300 ms delay: all in flight now.
	e.mu.Lock()
	inFlight := len(e.pending)
	e.mu.Unlock()
	goroutines := runtime.NumGoroutine() - baseG
	waitAll(t, sinks, 10*time.Second)
	for i, s := range sinks {
		if s.err != nil || len(s.vbs) != 1 || string(s.vbs[0].Bytes) != fleet.Devices()[i].Name {
			t.Fatalf("poll %d: %v, %+v", i, s.err, s.vbs)
		}
	}
	if inFlight < polls/2 {
		t.Fatalf("only %d of %d polls were in flight at once", inFlight, polls)
	}
	// The engine adds 2 socket readers (its timer goroutine predates
	// baseG). The simulator in this process sends its delayed answers from
	// timers, each a goroutine for an instant, so a few more may be counted
	// under load: the bound is that goroutines do not grow with the polls.
	if goroutines > polls/50 {
		t.Fatalf("%d polls in flight took %d goroutines", inFlight, goroutines)
	}
	t.Logf("%d polls in flight on %d goroutines", inFlight, goroutines)
}

// An agent that stays silent on requests for more than a few varbinds (no
// tooBig, nothing) is asked with smaller requests, not reported down; what
// worked is learnt. A dead agent costs one small probe more than its tries.
func TestSilentOnLargeRequests(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 12})
	dev, dead := fleet.Devices()[0], fleet.Devices()[1]
	opts := Options{Timeout: 150 * time.Millisecond, Retries: 1, MaxOids: 32, MaxRepetitions: 25}
	normal := dial(t, dev.AddrPort(), config.Version2c, "public", opts)
	wantWalk, err := collect(t, func(fn func(*task.Varbind)) error { return normal.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
	if err != nil {
		t.Fatal(err)
	}
	var oids []string
	for i := 1; i <= 12; i++ {
		oids = append(oids, fmt.Sprintf("%s.1.2.%d", snmpsim.OIDIfTable, i))
	}
	dev.SetSilentAbove(5)
	defer dev.SetSilentAbove(0)
	for _, tc := range []struct {
		name string
		run  func(s requester, fn func(*task.Varbind)) error
		want int
	}{
		{"walk", func(s requester, fn func(*task.Varbind)) error {
			return s.Walk(context.Background(), snmpsim.OIDIfTable, fn)
		}, len(wantWalk)},
		{"table", func(s requester, fn func(*task.Varbind)) error {
			return s.WalkTable(context.Background(), snmpsim.OIDIfTable, columns(t, snmpsim.OIDIfTable), fn)
		}, len(wantWalk)},
		{"get", func(s requester, fn func(*task.Varbind)) error { return s.Get(context.Background(), oids, fn) }, len(oids)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			silenced := dev.Silenced()
			s := dial(t, dev.AddrPort(), config.Version2c, "public", opts)
			got, err := collect(t, func(fn func(*task.Varbind)) error { return tc.run(s, fn) })
			if err != nil || len(got) != tc.want {
				t.Fatalf("%d varbinds (want %d), %v", len(got), tc.want, err)
			}
			if tc.name == "walk" {
				sameWalk(t, got, wantWalk)
			}
			learned := s.Learned()
			if learned.MaxVarbinds < 1 || learned.MaxVarbinds > 5 || learned.NoBulk {
				t.Fatalf("learned %+v, want a request size of at most 5 and GETBULK kept", learned)
			}
			if dev.Silenced() == silenced {
				t.Fatal("the agent ignored no request: the test tested nothing")
			}
			// What was learnt, applied: not one request too large.
			o := opts
			o.MaxVarbindsPerRequest = learned.MaxVarbinds
			s = dial(t, dev.AddrPort(), config.Version2c, "public", o)
			silenced = dev.Silenced()
			if got, err := collect(t, func(fn func(*task.Varbind)) error { return tc.run(s, fn) }); err != nil || len(got) != tc.want {
				t.Fatalf("with the learnt size: %d varbinds, %v", len(got), err)
			}
			if dev.Silenced() != silenced {
				t.Fatalf("with the learnt size %d the agent still ignored %d requests", learned.MaxVarbinds, dev.Silenced()-silenced)
			}
		})
	}
	t.Run("dead agent", func(t *testing.T) {
		dead.SetDead(true)
		s := dial(t, dead.AddrPort(), config.Version2c, "public", opts)
		before := dead.Requests()
		_, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("dead agent: %v, want a timeout", err)
		}
		// The GETBULK's two tries, one GETNEXT probe of one varbind.
		if n := dead.Requests() - before; n != 3 {
			t.Fatalf("a dead agent cost %d requests, want 3", n)
		}
	})
}

// At most max_outstanding requests in flight to one agent address: polls
// of hosts that share it wait their turn, and all are answered.
func TestMaxOutstandingPerAgent(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1, Delay: 20 * time.Millisecond})
	dev := fleet.Devices()[0]
	e := testEngine(t, EngineOptions{})
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			opts := Options{Timeout: time.Second, Retries: 0, MaxOids: 8, MaxRepetitions: 10, MaxOutstanding: limit}
			sinks := make([]*countSink, 12)
			for i := range sinks {
				sinks[i] = newCountSink()
				e.Start(context.Background(), &Job{Name: fmt.Sprint("h", i), Addr: dev.AddrPort(), Cred: v2c, Opts: opts,
					Get: []string{snmpsim.OIDSysName}, Walk: []string{snmpsim.OIDSystem}}, sinks[i])
			}
			waitAll(t, sinks, 10*time.Second)
			for i, s := range sinks {
				if s.err != nil || len(s.vbs) < 2 {
					t.Fatalf("host %d: %v, %d varbinds", i, s.err, len(s.vbs))
				}
			}
			if got := dev.MostInFlight(); got != limit {
				t.Fatalf("the agent held %d requests at once, want %d", got, limit)
			}
		})
	}
}

// poller.max_packets_per_second: the engine sends no faster.
func TestPacketRate(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 60, Interfaces: 1})
	e := testEngine(t, EngineOptions{MaxPacketsPerSecond: 100})
	opts := Options{Timeout: 2 * time.Second, Retries: 0, MaxOids: 8, MaxRepetitions: 10}
	sinks := make([]*countSink, 60)
	start := time.Now()
	for i, dev := range fleet.Devices() {
		sinks[i] = newCountSink()
		e.Start(context.Background(), &Job{Name: dev.Name, Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, sinks[i])
	}
	waitAll(t, sinks, 10*time.Second)
	took := time.Since(start)
	for i, s := range sinks {
		if s.err != nil {
			t.Fatalf("poll %d: %v", i, s.err)
		}
	}
	// 60 requests at 100 per second, one free: at least 0.59 s. (A lower
	// bound is what the limit promises; no upper bound is asserted.)
	if took < 580*time.Millisecond {
		t.Fatalf("60 requests at 100/s took %s", took)
	}
}

// Answers that belong to no request in flight are dropped and counted:
// late ones, duplicates, ones from another address (unless the poll says
// unconnected_udp); a late answer to an earlier try of the same request is
// as good as the last.
func TestStrayAnswers(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 1})
	dev, other := fleet.Devices()[0], fleet.Devices()[1]
	counters := NewCounters()
	e := testEngine(t, EngineOptions{Counters: counters})
	get := func(opts Options) ([]task.Varbind, error) {
		var out []task.Varbind
		_, err := e.Run(context.Background(), &Job{Name: dev.Name, Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}},
			func(vb *task.Varbind) { out = append(out, *vb) })
		return out, err
	}
	opts := Options{Timeout: 100 * time.Millisecond, Retries: 2, MaxOids: 8, MaxRepetitions: 10}

	t.Run("late answer to an earlier try", func(t *testing.T) {
		dev.SetDelay(150 * time.Millisecond) // answers the first try while the second waits
		defer dev.SetDelay(0)
		got, err := get(opts)
		if err != nil || len(got) != 1 || string(got[0].Bytes) != dev.Name {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("duplicates", func(t *testing.T) {
		dev.SetFault(snmpsim.FaultDuplicate)
		defer dev.SetFault(snmpsim.FaultNone)
		before := counters.Stray()
		for range 5 {
			if got, err := get(opts); err != nil || len(got) != 1 {
				t.Fatalf("%+v, %v", got, err)
			}
		}
		deadline := time.Now().Add(2 * time.Second)
		for counters.Stray()-before < 5 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := counters.Stray() - before; n != 5 {
			t.Fatalf("%d stray answers counted, want the 5 duplicates", n)
		}
	})
	t.Run("answer from another address", func(t *testing.T) {
		// A third party answers first, with the request's own id, a valid
		// message from the wrong address: dropped; the agent's answer wins.
		dev.SetDelay(200 * time.Millisecond)
		defer dev.SetDelay(0)
		spoofer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer spoofer.Close()
		for _, unconnected := range []bool{false, true} {
			o := opts
			o.Timeout, o.Retries, o.UnconnectedUDP = time.Second, 0, unconnected
			s := newCountSink()
			e.Start(context.Background(), &Job{Name: dev.Name, Addr: dev.AddrPort(), Cred: v2c, Opts: o, Get: []string{snmpsim.OIDSysName}}, s)
			var id uint32
			var to netip.AddrPort
			for id == 0 {
				e.mu.Lock()
				for k, m := range e.pending {
					id, to = k, m.sock.conn.LocalAddr().(*net.UDPAddr).AddrPort()
				}
				e.mu.Unlock()
			}
			req := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.GetRequest, RequestID: id,
				Variables: []gosnmp.SnmpPDU{{Name: snmpsim.OIDSysName, Type: gosnmp.Null}}}
			fake, err := other.Respond(req, time.Now()).MarshalMsg()
			if err != nil {
				t.Fatal(err)
			}
			before := counters.Stray()
			if _, err := spoofer.WriteToUDPAddrPort(fake, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.Port())); err != nil {
				t.Fatal(err)
			}
			<-s.done
			want := dev.Name
			if unconnected {
				want = other.Name // any address may answer: the first answer is taken
			}
			if s.err != nil || len(s.vbs) != 1 || string(s.vbs[0].Bytes) != want {
				t.Fatalf("unconnected_udp %v: %+v, %v; want %s", unconnected, s.vbs, s.err, want)
			}
			if !unconnected && counters.Stray() == before {
				t.Fatal("the misaddressed answer was not counted")
			}
			time.Sleep(250 * time.Millisecond) // the late real answer of the unconnected round lands as a stray
		}
	})
}

// Request ids are unique among the requests in flight, even when the
// counter comes round to one still in use.
func TestRequestIDsDoNotCollide(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 1})
	slow, fast := fleet.Devices()[0], fleet.Devices()[1]
	slow.SetDelay(300 * time.Millisecond)
	e := testEngine(t, EngineOptions{})
	opts := Options{Timeout: time.Second, Retries: 0, MaxOids: 8, MaxRepetitions: 10}
	a := newCountSink()
	e.Start(context.Background(), &Job{Name: slow.Name, Addr: slow.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, a)
	e.mu.Lock()
	var inUse uint32
	for id := range e.pending {
		inUse = id
	}
	e.mu.Unlock()
	e.nextID.Store(inUse - 1) // the next id drawn would be the one in flight
	if id := e.newID(); id == inUse {
		t.Fatalf("drew id %d, which is in flight", id)
	}
	e.nextID.Store(inUse - 1)
	b := newCountSink()
	e.Start(context.Background(), &Job{Name: fast.Name, Addr: fast.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, b)
	waitAll(t, []*countSink{a, b}, 5*time.Second)
	if a.err != nil || string(a.vbs[0].Bytes) != slow.Name || b.err != nil || string(b.vbs[0].Bytes) != fast.Name {
		t.Fatalf("slow: %+v %v; fast: %+v %v", a.vbs, a.err, b.vbs, b.err)
	}
}

// A cancelled poll ends at once with the context's error, whether its
// request is in flight or waits for its agent's slot.
func TestCancelWhileQueued(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	dev := fleet.Devices()[0]
	dev.SetDead(true)
	e := testEngine(t, EngineOptions{})
	opts := Options{Timeout: 5 * time.Second, Retries: 0, MaxOids: 8, MaxRepetitions: 10}
	ctx, cancel := context.WithCancel(context.Background())
	sinks := []*countSink{newCountSink(), newCountSink()}
	for i, s := range sinks {
		e.Start(ctx, &Job{Name: fmt.Sprint("h", i), Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, s)
	}
	e.mu.Lock()
	queued := len(e.waiting[dev.AddrPort()])
	e.mu.Unlock()
	if queued != 1 {
		t.Fatalf("%d polls wait for the agent, want 1 (max_outstanding 1)", queued)
	}
	cancel()
	waitAll(t, sinks, time.Second)
	for i, s := range sinks {
		if !errors.Is(s.err, context.Canceled) {
			t.Fatalf("poll %d: %v, want context.Canceled", i, s.err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) != 0 || len(e.agents) != 0 || len(e.waiting) != 0 || len(e.timers) != 0 {
		t.Fatalf("left behind: %d pending, %d agents, %d queues, %d timers", len(e.pending), len(e.agents), len(e.waiting), len(e.timers))
	}
}

// The simulator's answers (every type it sends) are read directly, not
// through gosnmp's decoder: the fast path FuzzAnswer checks is the one taken.
func TestAnswersReadDirectly(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 4})
	dev := fleet.Devices()[0]
	types := map[task.Type]bool{}
	for _, root := range []string{".1.3.6.1.2.1.1", ".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.31.1.1.1"} {
		req := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.GetBulkRequest, RequestID: 9, MaxRepetitions: 40,
			Variables: []gosnmp.SnmpPDU{{Name: root, Type: gosnmp.Null}}}
		out, err := dev.Respond(req, time.Now()).MarshalMsg()
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if !a.decodeFast(out) || len(a.vbs) < 20 {
			t.Fatalf("answer for %s not read directly (%d varbinds)", root, len(a.vbs))
		}
		for _, vb := range a.vbs {
			types[vb.Type] = true
		}
	}
	for _, want := range []task.Type{task.TypeOctetString, task.TypeObjectIdentifier, task.TypeTimeTicks, task.TypeInteger,
		task.TypeGauge32, task.TypeCounter32, task.TypeCounter64} {
		if !types[want] {
			t.Errorf("no %s among the answers read", want)
		}
	}
}

// A poll waiting for its agent's slot still ends at its own deadline, as a
// timeout, however long the request ahead of it takes.
func TestDeadlineWhileQueued(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	dev := fleet.Devices()[0]
	dev.SetDead(true)
	e := testEngine(t, EngineOptions{})
	opts := Options{Timeout: 3 * time.Second, Retries: 0, MaxOids: 8, MaxRepetitions: 10}
	ahead, behind := newCountSink(), newCountSink()
	e.Start(context.Background(), &Job{Name: "ahead", Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName}}, ahead)
	start := time.Now()
	e.Start(context.Background(), &Job{Name: "behind", Addr: dev.AddrPort(), Cred: v2c, Opts: opts, Get: []string{snmpsim.OIDSysName},
		Deadline: start.Add(300 * time.Millisecond)}, behind)
	waitAll(t, []*countSink{behind}, 2*time.Second)
	if !errors.Is(behind.err, ErrTimeout) {
		t.Fatalf("the queued poll ended with %v, want a timeout", behind.err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("the queued poll ended after %s, past its 300 ms deadline by far", took)
	}
	select {
	case <-ahead.done:
		t.Fatal("the poll ahead ended with the one behind it")
	default:
	}
	waitAll(t, []*countSink{ahead}, 5*time.Second)
}

// Many polls of closed ports at once, with retries: each ends unreachable,
// whether its ICMP error reached the reader or a sender (which hands it to
// the timer goroutine); none hangs.
func TestManyUnreachableAtOnce(t *testing.T) {
	var ports []netip.AddrPort
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, pc.LocalAddr().(*net.UDPAddr).AddrPort())
		_ = pc.Close()
	}
	e := testEngine(t, EngineOptions{Sockets: 1})
	opts := Options{Timeout: 30 * time.Millisecond, Retries: 3, MaxOids: 8, MaxRepetitions: 10}
	var sinks []*countSink
	for round := range 4 {
		for i, ap := range ports {
			s := newCountSink()
			sinks = append(sinks, s)
			e.Start(context.Background(), &Job{Name: fmt.Sprint("closed-", round, "-", i), Addr: ap, Cred: v2c, Opts: opts,
				Get: []string{snmpsim.OIDSysName, snmpsim.OIDSysDescr}}, s)
		}
	}
	waitAll(t, sinks, 10*time.Second)
	unreachable := 0
	for i, s := range sinks {
		switch {
		case errors.Is(s.err, ErrUnreachable):
			unreachable++
		case errors.Is(s.err, ErrTimeout): // an ICMP rate limit may leave some without an error
		default:
			t.Fatalf("poll %d: %v, want unreachable", i, s.err)
		}
	}
	if unreachable < len(sinks)/2 {
		t.Fatalf("only %d of %d polls of closed ports were unreachable", unreachable, len(sinks))
	}
	t.Logf("%d of %d unreachable", unreachable, len(sinks))
}
