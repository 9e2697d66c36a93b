package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// requester is what the tests ask of an agent: the engine (v1/v2c in
// production) and the gosnmp session (SNMPv3 in production) alike.
type requester interface {
	Get(ctx context.Context, oids []string, fn func(*task.Varbind)) error
	Walk(ctx context.Context, root string, fn func(*task.Varbind)) error
	WalkTable(ctx context.Context, root string, columns []string, fn func(*task.Varbind)) error
	Learned() task.Quirks
}

// engineSession runs each call as a one-part job on an engine.
type engineSession struct {
	e       *Engine
	job     Job
	learned task.Quirks
}

func (s *engineSession) run(ctx context.Context, j Job, fn func(*task.Varbind)) error {
	q, err := s.e.Run(ctx, &j, fn)
	if q.NoBulk {
		s.learned.NoBulk, s.job.Opts.NoBulk = true, true
	}
	if q.MaxRepetitions > 0 && (s.learned.MaxRepetitions == 0 || q.MaxRepetitions < s.learned.MaxRepetitions) {
		s.learned.MaxRepetitions = q.MaxRepetitions
	}
	if q.MaxVarbinds > 0 {
		s.learned.MaxVarbinds = q.MaxVarbinds
	}
	return err
}

func (s *engineSession) Get(ctx context.Context, oids []string, fn func(*task.Varbind)) error {
	j := s.job
	j.Get = oids
	return s.run(ctx, j, fn)
}

func (s *engineSession) Walk(ctx context.Context, root string, fn func(*task.Varbind)) error {
	j := s.job
	j.Walk = []string{root}
	return s.run(ctx, j, fn)
}

func (s *engineSession) WalkTable(ctx context.Context, root string, columns []string, fn func(*task.Varbind)) error {
	j := s.job
	j.Tables = []task.Table{{Root: root, Columns: columns}}
	return s.run(ctx, j, fn)
}

func (s *engineSession) Learned() task.Quirks { return s.learned }

func testEngine(t testing.TB, o EngineOptions) *Engine {
	e := NewEngine(o)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func defaultOpts(opts Options) Options {
	if opts.Timeout == 0 {
		opts = Options{Timeout: 500 * time.Millisecond, Retries: 1, MaxOids: 32, MaxRepetitions: 25}
	}
	return opts
}

// dial is the engine, as v1/v2c polls run.
func dial(t *testing.T, addr netip.AddrPort, version config.Version, community string, opts Options) requester {
	t.Helper()
	cred := &config.Credential{Name: "test", Version: version, Community: config.Secret(community)}
	return &engineSession{e: testEngine(t, EngineOptions{}), job: Job{Name: "sim", Addr: addr, Cred: cred, Opts: defaultOpts(opts)}}
}

// dialSession is a gosnmp session, as SNMPv3 polls run.
func dialSession(t *testing.T, addr netip.AddrPort, version config.Version, community string, opts Options) requester {
	t.Helper()
	s, err := Dial(context.Background(), "sim", addr, &config.Credential{Name: "test", Version: version, Community: config.Secret(community)}, defaultOpts(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dialers run a test against both ways of polling.
var dialers = []struct {
	name string
	dial func(*testing.T, netip.AddrPort, config.Version, string, Options) requester
}{{"engine", dial}, {"session", dialSession}}

func collect(t *testing.T, f func(fn func(*task.Varbind)) error) ([]task.Varbind, error) {
	t.Helper()
	var out []task.Varbind
	err := f(func(vb *task.Varbind) { out = append(out, *vb) })
	return out, err
}

func TestGetAcrossPDUs(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 4})
			addr := fleet.Devices()[0].AddrPort()
			for _, v := range []config.Version{config.Version1, config.Version2c} {
				t.Run("v"+string(v), func(t *testing.T) {
					// 9 OIDs with max_oids 2: five PDUs; the answer keeps request order.
					var oids []string
					for i := 1; i <= 4; i++ {
						oids = append(oids, fmt.Sprintf(".1.3.6.1.2.1.2.2.1.2.%d", i), fmt.Sprintf(".1.3.6.1.2.1.31.1.1.1.6.%d", i))
					}
					oids = append(oids, snmpsim.OIDSysName)
					s := dial(t, addr, v, "public", Options{Timeout: time.Second, Retries: 1, MaxOids: 2, MaxRepetitions: 10})
					got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Get(context.Background(), oids, fn) })
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(oids) {
						t.Fatalf("got %d varbinds, want %d", len(got), len(oids))
					}
					for i, vb := range got {
						if vb.OID != oids[i] {
							t.Errorf("varbind %d is %s, want %s", i, vb.OID, oids[i])
						}
					}
					if got[0].Type != task.TypeOctetString || string(got[0].Bytes) != "GigabitEthernet0/1" {
						t.Errorf("ifDescr.1 = %v %q", got[0].Type, got[0].Bytes)
					}
					if got[1].Type != task.TypeCounter64 || got[1].Uint < 1<<62 {
						t.Errorf("ifHCInOctets.1 = %v %d, want a Counter64 above 2^62", got[1].Type, got[1].Uint)
					}
					if string(got[8].Bytes) != "sim-00001" {
						t.Errorf("sysName = %q", got[8].Bytes)
					}
					if fleet.Devices()[0].Malformed() != 0 {
						t.Error("the agent saw malformed packets")
					}
				})
			}
		})
	}
}

func TestGetMissingOIDs(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 2})
			addr := fleet.Devices()[0].AddrPort()
			oids := []string{snmpsim.OIDSysDescr, ".1.3.6.1.2.1.1.5.1", ".1.3.6.1.4.1.99999.1.0", snmpsim.OIDSysName}
			tests := []struct {
				version config.Version
				want    []task.Type
			}{
				// v1 fails the PDU on the first missing OID; the others must survive.
				{config.Version1, []task.Type{task.TypeOctetString, task.TypeNoSuchObject, task.TypeNoSuchObject, task.TypeOctetString}},
				{config.Version2c, []task.Type{task.TypeOctetString, task.TypeNoSuchInstance, task.TypeNoSuchObject, task.TypeOctetString}},
			}
			for _, tc := range tests {
				t.Run("v"+string(tc.version), func(t *testing.T) {
					s := dial(t, addr, tc.version, "public", Options{})
					got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Get(context.Background(), oids, fn) })
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(tc.want) {
						t.Fatalf("got %d varbinds, want %d: %+v", len(got), len(tc.want), got)
					}
					for i := range got {
						if got[i].Type != tc.want[i] || got[i].OID != oids[i] {
							t.Errorf("varbind %d = %s %s, want %s %s", i, got[i].OID, got[i].Type, oids[i], tc.want[i])
						}
					}
				})
			}
		})
	}
}

func TestWalk(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			const ifaces = 30
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: ifaces})
			addr := fleet.Devices()[0].AddrPort()
			const ifTableCols = 17
			for _, tc := range []struct {
				name    string
				version config.Version
				maxRep  int
			}{{"v1 getnext", config.Version1, 10}, {"v2c bulk 25", config.Version2c, 25}, {"v2c bulk 1", config.Version2c, 1}, {"v2c bulk 200", config.Version2c, 200}} {
				t.Run(tc.name, func(t *testing.T) {
					s := dial(t, addr, tc.version, "public", Options{Timeout: time.Second, Retries: 1, MaxOids: 32, MaxRepetitions: tc.maxRep})
					got, err := collect(t, func(fn func(*task.Varbind)) error {
						return s.Walk(context.Background(), "1.3.6.1.2.1.2.2", fn)
					})
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != ifaces*ifTableCols {
						t.Fatalf("walked %d varbinds, want %d", len(got), ifaces*ifTableCols)
					}
					for i := 1; i < len(got); i++ {
						if !strings.HasPrefix(got[i].OID, ".1.3.6.1.2.1.2.2.1.") {
							t.Fatalf("varbind %s is outside ifTable", got[i].OID)
						}
					}
					// ifPhysAddress is binary, ifDescr text.
					if got[ifaces*5].Type != task.TypeOctetString || len(got[ifaces*5].Bytes) != 6 {
						t.Errorf("ifPhysAddress.1 = %+v", got[ifaces*5])
					}
				})
			}
			t.Run("leaf root", func(t *testing.T) {
				s := dial(t, addr, config.Version2c, "public", Options{})
				got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDSysName, fn) })
				if err != nil || len(got) != 1 || string(got[0].Bytes) != "sim-00001" {
					t.Fatalf("walk of sysName.0 = %+v, %v; want the object itself", got, err)
				}
			})
			t.Run("empty subtree", func(t *testing.T) {
				s := dial(t, addr, config.Version2c, "public", Options{})
				got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), ".1.3.6.1.4.1.99999", fn) })
				if err != nil || len(got) != 0 {
					t.Fatalf("walk of an empty subtree = %+v, %v; want nothing, no error", got, err)
				}
			})
		})
	}
}

func TestWalkTooBigHalvesRepetitions(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			// Responses larger than 700 bytes are truncated by the agent for GETBULK and
			// answered tooBig for GET: the walk must still be complete.
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 10, MaxResponseBytes: 700})
			s := dial(t, fleet.Devices()[0].AddrPort(), config.Version2c, "public", Options{Timeout: time.Second, Retries: 0, MaxOids: 60, MaxRepetitions: 100})
			got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfXTable, fn) })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 10*7 {
				t.Fatalf("walked %d varbinds, want 70", len(got))
			}
			var oids []string
			for i := 1; i <= 10; i++ {
				for _, c := range []int{1, 6, 10, 18} {
					oids = append(oids, fmt.Sprintf("%s.1.%d.%d", snmpsim.OIDIfXTable, c, i))
				}
			}
			vbs, err := collect(t, func(fn func(*task.Varbind)) error { return s.Get(context.Background(), oids, fn) })
			if err != nil || len(vbs) != len(oids) {
				t.Fatalf("GET of %d OIDs against a small agent: %d varbinds, %v", len(oids), len(vbs), err)
			}
		})
	}
}

func TestBrokenAgents(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 4})
			dev := fleet.Devices()[0]
			for _, tc := range []struct {
				name    string
				fault   snmpsim.Fault
				version config.Version
				want    string
			}{
				{"genErr v2c", snmpsim.FaultGenErr, config.Version2c, "agent answered GenErr"},
				{"genErr v1", snmpsim.FaultGenErr, config.Version1, "agent answered GenErr"},
				{"non-increasing v2c", snmpsim.FaultNonIncreasing, config.Version2c, "is not increasing"},
				{"non-increasing v1", snmpsim.FaultNonIncreasing, config.Version1, "is not increasing"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					dev.SetFault(tc.fault)
					defer dev.SetFault(snmpsim.FaultNone)
					s := dial(t, dev.AddrPort(), tc.version, "public", Options{})
					got, err := collect(t, func(fn func(*task.Varbind)) error {
						return s.Walk(context.Background(), ".1.3.6.1.2.1.2.2.1.2", fn)
					})
					// gosnmp's BulkWalk would return nil here: the truncation must be an error.
					if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ".1.3.6.1.2.1.2.2.1.2") {
						t.Fatalf("walk of a broken agent: %d varbinds, err %v; want ErrProtocol containing %q and the walk root", len(got), err, tc.want)
					}
				})
			}
		})
	}
}

func TestFailures(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 1})
			fast := Options{Timeout: 150 * time.Millisecond, Retries: 1, MaxOids: 32, MaxRepetitions: 10}

			t.Run("wrong community times out", func(t *testing.T) {
				s := dial(t, fleet.Devices()[0].AddrPort(), config.Version2c, "wrong", fast)
				_, err := collect(t, func(fn func(*task.Varbind)) error {
					return s.Get(context.Background(), []string{snmpsim.OIDSysDescr}, fn)
				})
				if !errors.Is(err, ErrTimeout) {
					t.Fatalf("err = %v, want ErrTimeout", err)
				}
			})
			t.Run("dead agent mid-walk", func(t *testing.T) {
				d := fleet.Devices()[1]
				s := dial(t, d.AddrPort(), config.Version2c, "public", fast)
				n := 0
				err := s.Walk(context.Background(), ".1.3.6.1.2.1", func(*task.Varbind) {
					n++
					d.SetDead(true)
				})
				d.SetDead(false)
				if !errors.Is(err, ErrTimeout) || n == 0 {
					t.Fatalf("walk got %d varbinds and %v; want some varbinds then ErrTimeout", n, err)
				}
			})
			t.Run("closed port is unreachable", func(t *testing.T) {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
				_ = pc.Close()
				s := dial(t, addr, config.Version2c, "public", fast)
				_, err = collect(t, func(fn func(*task.Varbind)) error {
					return s.Get(context.Background(), []string{snmpsim.OIDSysDescr}, fn)
				})
				if !errors.Is(err, ErrUnreachable) {
					t.Fatalf("err = %v, want ErrUnreachable", err)
				}
			})
			t.Run("deadline bounds retries", func(t *testing.T) {
				s := dial(t, fleet.Devices()[0].AddrPort(), config.Version2c, "wrong", Options{Timeout: 10 * time.Second, Retries: 5, MaxOids: 1, MaxRepetitions: 1})
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, err := collect(t, func(fn func(*task.Varbind)) error { return s.Get(ctx, []string{snmpsim.OIDSysDescr}, fn) })
				if !errors.Is(err, ErrTimeout) {
					t.Fatalf("err = %v, want ErrTimeout from the context deadline", err)
				}
			})
			t.Run("cancel is not a timeout", func(t *testing.T) {
				s := dial(t, fleet.Devices()[0].AddrPort(), config.Version2c, "wrong", Options{Timeout: 10 * time.Second, Retries: 5, MaxOids: 1, MaxRepetitions: 1})
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				_, err := collect(t, func(fn func(*task.Varbind)) error { return s.Get(ctx, []string{snmpsim.OIDSysDescr}, fn) })
				if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			})
		})
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	if ip, err := Resolve(ctx, simtest.NoDNS, "ip", "127.0.0.9"); err != nil || ip.String() != "127.0.0.9" {
		t.Fatalf("literal address: %v %v", ip, err)
	}
	if ip, err := Resolve(ctx, simtest.NoDNS, "ip", "localhost"); err != nil || !ip.IsLoopback() {
		t.Fatalf("localhost: %v %v", ip, err)
	}
	// udp4/udp6 agents' names resolve in their family only.
	if ip, err := Resolve(ctx, simtest.NoDNS, "ip4", "localhost"); err != nil || !ip.Is4() || !ip.IsLoopback() {
		t.Fatalf("localhost, ip4: %v %v", ip, err)
	}
	if ip, err := Resolve(ctx, simtest.NoDNS, "ip6", "localhost"); err == nil && (!ip.Is6() || ip.Is4In6()) {
		t.Fatalf("localhost, ip6: %v, an IPv4 address", ip)
	} else if err != nil && !errors.Is(err, ErrResolve) {
		t.Fatalf("localhost, ip6: %v, want an IPv6 address or ErrResolve", err)
	}
	_, err := Resolve(ctx, simtest.NoDNS, "ip", "no-such-device.onion")
	if !errors.Is(err, ErrResolve) || !strings.Contains(err.Error(), "no-such-device.onion") {
		t.Fatalf("err = %v, want ErrResolve naming the host", err)
	}
}

func TestEngineCacheAdvancesTime(t *testing.T) {
	c := NewEngineCache(2)
	a := netip.MustParseAddrPort("127.0.0.1:161")
	t0 := time.Now()
	c.store(a, &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: "engine-a", AuthoritativeEngineBoots: 3, AuthoritativeEngineTime: 1000}, t0)
	sp := &gosnmp.UsmSecurityParameters{}
	c.seed(a, sp, t0.Add(200*time.Second))
	// Beyond the 150s time window: an unadvanced clock would be rejected as notInTimeWindow.
	if sp.AuthoritativeEngineID != "engine-a" || sp.AuthoritativeEngineBoots != 3 || sp.AuthoritativeEngineTime != 1200 {
		t.Fatalf("seeded %+v, want engine-a, boots 3, time 1200", sp)
	}
	for _, port := range []string{"1", "2", "3"} {
		c.store(netip.MustParseAddrPort("127.0.0.1:"+port), &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: "e" + port}, t0)
	}
	if c.Len() != 2 {
		t.Fatalf("cache holds %d agents, want its bound 2", c.Len())
	}
	var nilCache *EngineCache
	nilCache.seed(a, sp, t0) // a nil cache caches nothing and does not panic
	nilCache.store(a, sp, t0)
}
