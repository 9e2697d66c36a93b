package snmp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

func columns(t *testing.T, root string) []string {
	t.Helper()
	cols, ok := mib.Builtin().Columns(root)
	if !ok {
		t.Fatalf("%s is not a known table", root)
	}
	return cols
}

// sameWalk checks two walks of the simulator: same OIDs and types in the
// same order, same values except counters, which grow every second.
func sameWalk(t *testing.T, got, want []task.Varbind) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d varbinds, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.OID != w.OID || g.Type != w.Type {
			t.Fatalf("varbind %d: %s %s, want %s %s", i, g.OID, g.Type, w.OID, w.Type)
		}
		if g.Type != task.TypeCounter32 && g.Type != task.TypeCounter64 && !reflect.DeepEqual(g, w) {
			t.Fatalf("varbind %d: %+v, want %+v", i, g, w)
		}
	}
}

func TestWalkTableEqualsWalk(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 2000})
			dev := fleet.Devices()[0]
			opts := Options{Timeout: 2 * time.Second, Retries: 1, MaxOids: 32, MaxRepetitions: 25}
			for _, tc := range []struct {
				name    string
				version config.Version
				root    string
				noBulk  bool
				maxOids int
			}{
				{"v2c ifTable", config.Version2c, snmpsim.OIDIfTable, false, 0},
				{"v2c ifXTable", config.Version2c, snmpsim.OIDIfXTable, false, 0},
				{"v1 ifXTable", config.Version1, snmpsim.OIDIfXTable, false, 0},
				{"v2c without bulk", config.Version2c, snmpsim.OIDIfXTable, true, 0},
				{"v2c max_oids 3 of 22 columns", config.Version2c, snmpsim.OIDIfTable, false, 3},
			} {
				t.Run(tc.name, func(t *testing.T) {
					o := opts
					o.NoBulk = tc.noBulk
					if tc.maxOids > 0 {
						o.MaxOids = tc.maxOids
					}
					s := dial(t, dev.AddrPort(), tc.version, "public", o)
					before := dev.Requests()
					want, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), tc.root, fn) })
					if err != nil {
						t.Fatal(err)
					}
					walkReqs := dev.Requests() - before
					before = dev.Requests()
					got, err := collect(t, func(fn func(*task.Varbind)) error {
						return s.WalkTable(context.Background(), tc.root, columns(t, tc.root), fn)
					})
					if err != nil {
						t.Fatal(err)
					}
					tableReqs := dev.Requests() - before
					if len(got) != len(want) || len(got) < 2000*7 {
						t.Fatalf("table walk: %d varbinds, walk: %d", len(got), len(want))
					}
					sameWalk(t, got, want)
					if tableReqs >= walkReqs {
						t.Errorf("table walk took %d requests, plain walk %d", tableReqs, walkReqs)
					}
					t.Logf("%d varbinds: %d requests as a table, %d as a walk", len(got), tableReqs, walkReqs)
				})
			}
		})
	}
}

func TestTooBigHalvesRepetitions(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 40})
			dev := fleet.Devices()[0]
			s := dial(t, dev.AddrPort(), config.Version2c, "public", Options{Timeout: time.Second, MaxOids: 32, MaxRepetitions: 50})
			want, _ := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfXTable, fn) })
			dev.SetTooBigAbove(3) // an agent that answers tooBig for more than 3 varbinds
			defer dev.SetTooBigAbove(0)
			got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfXTable, fn) })
			if err != nil {
				t.Fatalf("walk against a tooBig agent: %v", err)
			}
			sameWalk(t, got, want)
			if l := s.Learned(); l.MaxRepetitions != 3 { // 50, 25, 12, 6 are too big; 3 fits
				t.Fatalf("learned %+v, want max-repetitions 3", l)
			}
			got, err = collect(t, func(fn func(*task.Varbind)) error {
				return s.WalkTable(context.Background(), snmpsim.OIDIfXTable, []string{".1.3.6.1.2.1.31.1.1.1.1", ".1.3.6.1.2.1.31.1.1.1.6"}, fn)
			})
			if err != nil || len(got) != 80 {
				t.Fatalf("table walk against a tooBig agent: %d varbinds (want 80), %v", len(got), err)
			}
			dev.SetTooBigAbove(1) // even one row of two columns is too big: nothing more to halve
			_, err = collect(t, func(fn func(*task.Varbind)) error {
				return s.WalkTable(context.Background(), snmpsim.OIDIfXTable, []string{".1.3.6.1.2.1.31.1.1.1.1", ".1.3.6.1.2.1.31.1.1.1.6"}, fn)
			})
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "TooBig") {
				t.Fatalf("err = %v, want a protocol error naming tooBig", err)
			}
		})
	}
}

func TestAgentQuirks(t *testing.T) {
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dial := d.dial
			fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 6})
			dev := fleet.Devices()[0]
			base := Options{Timeout: 200 * time.Millisecond, Retries: 0, MaxOids: 32, MaxRepetitions: 25}
			normal := func(t *testing.T) []task.Varbind {
				s := dial(t, dev.AddrPort(), config.Version2c, "public", base)
				v, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			want := normal(t)

			t.Run("no GETBULK", func(t *testing.T) {
				dev.SetFault(snmpsim.FaultNoBulk)
				defer dev.SetFault(snmpsim.FaultNone)
				// A bulk walk times out once, probes with GETNEXT, learns, and walks on.
				s := dial(t, dev.AddrPort(), config.Version2c, "public", base)
				got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
				if err != nil || !s.Learned().NoBulk {
					t.Fatalf("bulk walk of an agent without GETBULK: %d varbinds, %v, learned %+v", len(got), err, s.Learned())
				}
				sameWalk(t, got, want)
				s = dial(t, dev.AddrPort(), config.Version2c, "public", base)
				got, err = collect(t, func(fn func(*task.Varbind)) error {
					return s.WalkTable(context.Background(), snmpsim.OIDIfTable, columns(t, snmpsim.OIDIfTable), fn)
				})
				if err != nil || !s.Learned().NoBulk {
					t.Fatalf("table walk of an agent without GETBULK: %d varbinds, %v, learned %+v", len(got), err, s.Learned())
				}
				sameWalk(t, got, want)
				o := base
				o.NoBulk = true
				s = dial(t, dev.AddrPort(), config.Version2c, "public", o)
				got, err = collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
				if err != nil || s.Learned().NoBulk {
					t.Fatalf("bulk: false: %d varbinds, %v, learned %+v (nothing to learn)", len(got), err, s.Learned())
				}
				sameWalk(t, got, want)
			})
			t.Run("rows out of order", func(t *testing.T) {
				dev.SetFault(snmpsim.FaultSwappedRows)
				defer dev.SetFault(snmpsim.FaultNone)
				s := dial(t, dev.AddrPort(), config.Version2c, "public", base)
				if _, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) }); !errors.Is(err, ErrProtocol) {
					t.Fatalf("walk of an agent with rows out of order: %v, want a protocol error", err)
				}
				o := base
				o.AllowNonIncreasing = true
				s = dial(t, dev.AddrPort(), config.Version2c, "public", o)
				got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, vb := range got {
					seen[vb.OID] = true
				}
				if len(got) != len(want) || len(seen) != len(want) {
					t.Fatalf("allow_nonincreasing_oids: %d varbinds (%d distinct), want each of %d once", len(got), len(seen), len(want))
				}
				for _, vb := range want {
					if !seen[vb.OID] {
						t.Fatalf("missing %s", vb.OID)
					}
				}
			})
			t.Run("answers from another port", func(t *testing.T) {
				dev.SetFault(snmpsim.FaultOtherPort)
				defer dev.SetFault(snmpsim.FaultNone)
				s := dial(t, dev.AddrPort(), config.Version2c, "public", base)
				if _, err := collect(t, func(fn func(*task.Varbind)) error {
					return s.Get(context.Background(), []string{snmpsim.OIDSysName}, fn)
				}); !errors.Is(err, ErrTimeout) {
					t.Fatalf("connected socket, answer from elsewhere: %v, want a timeout", err)
				}
				o := base
				o.UnconnectedUDP = true
				s = dial(t, dev.AddrPort(), config.Version2c, "public", o)
				got, err := collect(t, func(fn func(*task.Varbind)) error {
					return s.Get(context.Background(), []string{snmpsim.OIDSysName}, fn)
				})
				if err != nil || len(got) != 1 || string(got[0].Bytes) != dev.Name {
					t.Fatalf("unconnected_udp: %+v, %v", got, err)
				}
			})
		})
	}
}
