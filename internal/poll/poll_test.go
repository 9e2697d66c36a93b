package poll

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var creds = []config.Credential{
	{Name: "v1", Version: config.Version1, Community: "public"},
	{Name: "v2", Version: config.Version2c, Community: "public"},
	{Name: "wrong", Version: config.Version2c, Community: "not-the-community"},
}

func newTask(host, address string, port uint16, cred string) task.PollTask {
	now := time.Now()
	return task.PollTask{
		Schema: task.Schema, ID: "default." + host + "@1", Site: task.DefaultSite, Host: host, HostKey: host,
		Address: address, Port: port, Credentials: cred,
		Get:  []string{snmpsim.OIDSysDescr, snmpsim.OIDSysUpTime, snmpsim.OIDSysName, snmpsim.OIDIfNumber},
		Walk: []string{snmpsim.OIDIfXTable}, TimeoutMS: 200, PollTimeoutMS: 3000, Retries: 1, MaxOids: 3, MaxRepetitions: 25,
		ScheduledAt: now, Deadline: now.Add(time.Minute),
	}
}

func TestPoll(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 8})
	dev := fleet.Devices()[1]
	ap := dev.AddrPort()
	closed, _ := net.ListenPacket("udp", "127.0.0.1:0")
	closedPort := uint16(closed.LocalAddr().(*net.UDPAddr).Port)
	_ = closed.Close()

	p := New("test-poller", creds, simtest.NoDNS)
	tests := []struct {
		name     string
		task     task.PollTask
		wantKind string // "" for success
		wantVBs  int
		wantMsg  string
	}{
		{name: "v1", task: newTask("sim2", ap.Addr().String(), ap.Port(), "v1"), wantVBs: 4 + 8*7},
		{name: "v2c", task: newTask("sim2", ap.Addr().String(), ap.Port(), "v2"), wantVBs: 4 + 8*7},
		{name: "v2c via localhost", task: newTask("sim2", "localhost", ap.Port(), "v2"), wantVBs: 4 + 8*7},
		{name: "v2c via an IPv4-mapped IPv6 literal", task: newTask("sim2", "::ffff:"+ap.Addr().String(), ap.Port(), "v2"), wantVBs: 4 + 8*7},
		{name: "wrong community", task: newTask("sim2", ap.Addr().String(), ap.Port(), "wrong"), wantKind: task.KindTimeout, wantMsg: "sim2"},
		{name: "closed port", task: newTask("gone", "127.0.0.1", closedPort, "v2"), wantKind: task.KindUnreachable, wantMsg: "gone"},
		{name: "name does not resolve", task: newTask("ghost", "ghost-device.onion", 161, "v2"), wantKind: task.KindResolve, wantMsg: "ghost-device.onion"},
		{name: "unknown credential profile", task: newTask("sim2", ap.Addr().String(), ap.Port(), "core-v3"), wantKind: task.KindBadTask, wantMsg: `"core-v3"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec task.HostRecord
			if err := p.Poll(context.Background(), &tc.task, 2, &rec); err != nil {
				t.Fatalf("Poll returned %v; device failures belong in the record", err)
			}
			if rec.TaskID != tc.task.ID || rec.Host != tc.task.Host || rec.Poller != "test-poller" || rec.Attempt != 2 || rec.StartedAt.IsZero() {
				t.Errorf("identity fields: %+v", rec)
			}
			if tc.wantKind == "" {
				if rec.Error != nil {
					t.Fatalf("unexpected error %v", rec.Error)
				}
				if len(rec.Varbinds) != tc.wantVBs {
					t.Fatalf("got %d varbinds, want %d", len(rec.Varbinds), tc.wantVBs)
				}
				if string(rec.Varbinds[2].Bytes) != dev.Name {
					t.Errorf("sysName = %q, want %q", rec.Varbinds[2].Bytes, dev.Name)
				}
				return
			}
			if rec.Error == nil || !slices.Contains(strings.Split(tc.wantKind, "|"), rec.Error.Kind) || !strings.Contains(rec.Error.Message, tc.wantMsg) {
				t.Fatalf("error = %+v, want kind %q mentioning %q", rec.Error, tc.wantKind, tc.wantMsg)
			}
			if strings.Contains(rec.Error.Message, "not-the-community") {
				t.Errorf("community leaked into the error: %s", rec.Error.Message)
			}
		})
	}
}

func TestPollDeadline(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	ap := fleet.Devices()[0].AddrPort()
	fleet.Devices()[0].SetDead(true)
	tk := newTask("dead", ap.Addr().String(), ap.Port(), "v2")
	tk.TimeoutMS, tk.Retries, tk.PollTimeoutMS = 5000, 10, 300 // retries alone would take a minute
	var rec task.HostRecord
	start := time.Now()
	if err := New("p", creds, simtest.NoDNS).Poll(context.Background(), &tk, 1, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Error == nil || rec.Error.Kind != task.KindTimeout {
		t.Fatalf("error = %+v, want timeout", rec.Error)
	}
	// Not a timing assertion on speed: a poll budget of 300ms must not turn into a minute.
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("poll ignored its budget: %s", took)
	}
}

func TestPollCancelHandsBack(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	ap := fleet.Devices()[0].AddrPort()
	fleet.Devices()[0].SetDead(true)
	tk := newTask("dead", ap.Addr().String(), ap.Port(), "v2")
	tk.TimeoutMS, tk.PollTimeoutMS = 10000, 60000
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	var rec task.HostRecord
	if err := New("p", creds, simtest.NoDNS).Poll(ctx, &tk, 1, &rec); err == nil {
		t.Fatalf("Poll after cancel returned nil with record %+v; want an error so the task is handed back", rec.Error)
	}
}

func TestPartialRecords(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 50})
	dev := fleet.Devices()[0]
	ap := dev.AddrPort()
	p := New("p", creds, simtest.NoDNS)
	twoColumns := task.Table{Root: snmpsim.OIDIfXTable, Columns: []string{".1.3.6.1.2.1.31.1.1.1.1", ".1.3.6.1.2.1.31.1.1.1.6"}}

	t.Run("one bad table", func(t *testing.T) {
		dev.SetTooBigAbove(1) // one-column answers fit, two columns never do
		defer dev.SetTooBigAbove(0)
		tk := newTask("sim", ap.Addr().String(), ap.Port(), "v2")
		tk.Get, tk.Walk, tk.Tables = []string{snmpsim.OIDSysName}, []string{snmpsim.OIDSystem}, []task.Table{twoColumns}
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error == nil || rec.Error.Kind != task.KindProtocol || len(rec.Errors) != 1 || rec.Errors[0].Part != "table "+snmpsim.OIDIfXTable {
			t.Fatalf("error %+v, errors %+v; want one protocol error for the table part", rec.Error, rec.Errors)
		}
		if len(rec.Varbinds) != 1+7 { // sysName, then the system group's 7 objects
			t.Fatalf("%d varbinds: the GET and the walk must survive the failed table", len(rec.Varbinds))
		}
	})
	t.Run("stops answering halfway", func(t *testing.T) {
		tk := newTask("sim", ap.Addr().String(), ap.Port(), "v2")
		tk.Get, tk.Walk, tk.Tables = []string{snmpsim.OIDSysName}, nil, []task.Table{twoColumns}
		tk.TimeoutMS, tk.Retries, tk.MaxRepetitions = 200, 0, 4
		dev.StopAfter(3) // the GET and two table answers, then silence
		defer dev.SetDead(false)
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error == nil || rec.Error.Kind != task.KindTimeout || len(rec.Errors) != 1 {
			t.Fatalf("error %+v, errors %+v; want a timeout in the table part", rec.Error, rec.Errors)
		}
		// The GET and the rows of the two answered table requests stay: 2 columns x 4 rows each.
		if len(rec.Varbinds) != 1+2*2*4 || string(rec.Varbinds[0].Bytes) != dev.Name {
			t.Fatalf("%d varbinds: the GET and the rows answered before the agent died must stay", len(rec.Varbinds))
		}
	})
}

// An IPv6 agent polled as the task names it: a zone on the literal (the
// kernel reports answers without it, or under its own name for the
// interface) still matches the answers, and the record shows the address
// and port polled.
func TestPollIPv6Forms(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 2, ListenIP: "::1"})
	dev := fleet.Devices()[0]
	ap := dev.AddrPort()
	p := New("p", creds, simtest.NoDNS)
	for _, tc := range []struct{ address, transport string }{
		{"::1", ""},
		{"::1%lo", ""},
		{"::1", "udp6"},
		{"::1%1", "udp6"},
	} {
		tk := newTask("v6", tc.address, ap.Port(), "v2")
		tk.Transport = tc.transport
		if err := tk.Validate(); err != nil {
			t.Fatalf("%s %s: %v", tc.address, tc.transport, err)
		}
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error != nil || len(rec.Varbinds) != 4+2*7 || string(rec.Varbinds[2].Bytes) != dev.Name {
			t.Fatalf("%s %s: error %v, %d varbinds", tc.address, tc.transport, rec.Error, len(rec.Varbinds))
		}
		if rec.Address != tc.address || rec.Port != ap.Port() || rec.Transport != tc.transport {
			t.Errorf("record names %s port %d transport %q; want %s %d %q", rec.Address, rec.Port, rec.Transport, tc.address, ap.Port(), tc.transport)
		}
	}
	// A udp6 agent's name resolves to IPv6 only: localhost, 127.0.0.1 here,
	// is no udp6 agent (or is ::1 where /etc/hosts says so).
	tk := newTask("v6", "localhost", ap.Port(), "v2")
	tk.Transport = "udp6"
	var rec task.HostRecord
	if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Error != nil && (rec.Error.Kind != task.KindResolve || !strings.Contains(rec.Error.Message, "resolve localhost to an IPv6 address")) {
		t.Fatalf("udp6 localhost: %+v; want a poll of ::1 or a resolve error saying there is no IPv6 address", rec.Error)
	}
	if rec.Error == nil && len(rec.Varbinds) != 4+2*7 {
		t.Fatalf("udp6 localhost polled %d varbinds", len(rec.Varbinds))
	}
}

// Polls over TCP fail as UDP ones do: a closed port is unreachable, an
// agent that accepts and never answers times out, one that hangs up on
// every connection fails the poll; none hangs past the poll's budget.
func TestPollTCPFaults(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	_ = closed.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	var conns sync.WaitGroup
	serve := func(l net.Listener, hang bool) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if hang {
				_ = c.Close()
				continue
			}
			conns.Add(1)
			go func() { // read and never answer, until the poller hangs up
				defer conns.Done()
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
			}()
		}
	}
	go serve(silent, false)
	go serve(hangup, true)

	p := New("p", creds, simtest.NoDNS)
	for _, tc := range []struct {
		name     string
		port     uint16
		wantKind string
	}{
		{"closed port", closedPort, task.KindUnreachable},
		{"silent agent", uint16(silent.Addr().(*net.TCPAddr).Port), task.KindTimeout},
		// Reset (unreachable) or closed (gosnmp reconnects, then gives up: timeout), as the race goes.
		{"agent hangs up", uint16(hangup.Addr().(*net.TCPAddr).Port), task.KindUnreachable + "|" + task.KindTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := newTask("tcp-agent", "127.0.0.1", tc.port, "v2")
			tk.Transport = "tcp"
			var rec task.HostRecord
			start := time.Now()
			if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Error == nil || !slices.Contains(strings.Split(tc.wantKind, "|"), rec.Error.Kind) || !strings.Contains(rec.Error.Message, "tcp-agent") {
				t.Fatalf("error %+v; want kind %q naming the host", rec.Error, tc.wantKind)
			}
			if rec.Transport != "tcp" || rec.Port != tc.port {
				t.Errorf("record: transport %q port %d", rec.Transport, rec.Port)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Fatalf("poll took %s: past its 3 s budget", took)
			}
			t.Logf("%s: %s: %s", tc.name, rec.Error.Kind, rec.Error.Message)
		})
	}
	_ = silent.Close()
	conns.Wait() // each poll closed its connection
}

// A link-local agent: fe80::1 on the loopback interface of a network
// namespace of the test's own (unshare -rn: no other host is reachable
// from it). Polled as fe80::1%lo and as fe80::1%1 (lo's index there), the
// poll sends on that interface and matches the answers, which the kernel
// reports from fe80::1%lo whatever the task wrote.
func TestPollLinkLocalZone(t *testing.T) {
	if os.Getenv("FLOCK_TEST_NETNS") == "" {
		cmd := exec.Command("unshare", "-rn", os.Args[0], "-test.run=^TestPollLinkLocalZone$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "FLOCK_TEST_NETNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPollLinkLocalZone") {
			t.Fatalf("in a network namespace of its own (unshare -rn, util-linux): %v\n%s", err, out)
		}
		return
	}
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s (iproute2): %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 2, ListenIP: "fe80::1%lo", AllowNonLoopback: true})
	dev := fleet.Devices()[0]
	p := New("p", creds, simtest.NoDNS)
	for _, address := range []string{"fe80::1%lo", "fe80::1%1"} {
		tk := newTask("link-local", address, dev.AddrPort().Port(), "v2")
		tk.Transport = "udp6"
		if err := tk.Validate(); err != nil {
			t.Fatal(err)
		}
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error != nil || len(rec.Varbinds) != 4+2*7 || string(rec.Varbinds[2].Bytes) != dev.Name {
			t.Fatalf("%s: error %v, %d varbinds", address, rec.Error, len(rec.Varbinds))
		}
		if rec.Address != address {
			t.Errorf("record names %s, want %s", rec.Address, address)
		}
	}
}
