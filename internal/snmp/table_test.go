package snmp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

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

func TestWalkTableEqualsWalk(t *testing.T) {
	fleet := startFleet(t, snmpsim.Config{Devices: 1, Interfaces: 2000})
	dev := fleet.Devices()[0]
	opts := Options{Timeout: 2 * time.Second, Retries: 1, MaxOids: 32, MaxRepetitions: 25}
	for _, tc := range []struct {
		name    string
		version config.Version
		root    string
		noBulk  bool
	}{
		{"v2c ifTable", config.Version2c, snmpsim.OIDIfTable, false},
		{"v2c ifXTable", config.Version2c, snmpsim.OIDIfXTable, false},
		{"v1 ifXTable", config.Version1, snmpsim.OIDIfXTable, false},
		{"v2c without bulk", config.Version2c, snmpsim.OIDIfXTable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.NoBulk = tc.noBulk
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
			if !reflect.DeepEqual(got, want) {
				t.Fatal("the table walk differs from the plain walk")
			}
			if tableReqs >= walkReqs {
				t.Errorf("table walk took %d requests, plain walk %d", tableReqs, walkReqs)
			}
			t.Logf("%d varbinds: %d requests as a table, %d as a walk", len(got), tableReqs, walkReqs)
		})
	}
}

func TestTooBigHalvesRepetitions(t *testing.T) {
	fleet := startFleet(t, snmpsim.Config{Devices: 1, Interfaces: 40})
	dev := fleet.Devices()[0]
	s := dial(t, dev.AddrPort(), config.Version2c, "public", Options{Timeout: time.Second, MaxOids: 32, MaxRepetitions: 50})
	want, _ := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfXTable, fn) })
	dev.SetTooBigAbove(3) // an agent that answers tooBig for more than 3 varbinds
	defer dev.SetTooBigAbove(0)
	got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfXTable, fn) })
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("walk against a tooBig agent: %d varbinds (want %d), %v", len(got), len(want), err)
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
}

func TestAgentQuirks(t *testing.T) {
	fleet := startFleet(t, snmpsim.Config{Devices: 1, Interfaces: 6})
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
		s := dial(t, dev.AddrPort(), config.Version2c, "public", base)
		if _, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) }); !errors.Is(err, ErrTimeout) {
			t.Fatalf("bulk walk of an agent without GETBULK: %v, want a timeout", err)
		}
		o := base
		o.NoBulk = true
		s = dial(t, dev.AddrPort(), config.Version2c, "public", o)
		got, err := collect(t, func(fn func(*task.Varbind)) error { return s.Walk(context.Background(), snmpsim.OIDIfTable, fn) })
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("bulk: false: %d varbinds, %v", len(got), err)
		}
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
}
