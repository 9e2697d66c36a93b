package snmpsim

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/oid"
)

// ValueFunc computes an object's value for one device at one moment. The
// returned value must be of the Go type gosnmp marshals for the entry's type:
// int (Integer), uint32 (Counter32, Gauge32, TimeTicks), uint64 (Counter64),
// []byte or string (OctetString), string (ObjectIdentifier, IpAddress).
type ValueFunc func(d *Device, now time.Time) any

type entry struct {
	oid   oid.OID
	name  string // dotted, leading dot
	typ   gosnmp.Asn1BER
	value ValueFunc
}

// Table is an ordered MIB view shared by every device that has the same
// shape. It is immutable once built and safe for concurrent use.
type Table struct {
	entries []entry

	swapOnce  sync.Once // FaultSwappedRows' walk order, built on first use
	swapOrder []int
	swapPos   []int
	partner   []int
}

// TableBuilder collects objects and sorts them into a Table.
type TableBuilder struct {
	entries []entry
	err     error
}

// Add registers one object. Errors are reported by Build.
func (b *TableBuilder) Add(dotted string, typ gosnmp.Asn1BER, v ValueFunc) {
	o, err := oid.Parse(dotted)
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("table: %w", err)
		return
	}
	b.entries = append(b.entries, entry{oid: o, name: o.String(), typ: typ, value: v})
}

// Const is a ValueFunc for a fixed value.
func Const(v any) ValueFunc { return func(*Device, time.Time) any { return v } }

// Build sorts the objects numerically and rejects duplicates.
func (b *TableBuilder) Build() (*Table, error) {
	if b.err != nil {
		return nil, b.err
	}
	es := slices.Clone(b.entries)
	slices.SortFunc(es, func(x, y entry) int { return oid.Compare(x.oid, y.oid) })
	for i := 1; i < len(es); i++ {
		if oid.Compare(es[i-1].oid, es[i].oid) == 0 {
			return nil, fmt.Errorf("table: duplicate object %s", es[i].name)
		}
	}
	return &Table{entries: es}, nil
}

// Len is the number of objects.
func (t *Table) Len() int { return len(t.entries) }

// search returns the index of the first entry >= o.
func (t *Table) search(o oid.OID) (int, bool) {
	return slices.BinarySearchFunc(t.entries, o, func(e entry, target oid.OID) int { return oid.Compare(e.oid, target) })
}

// get finds the exact object o.
func (t *Table) get(o oid.OID) (*entry, bool) {
	i, found := t.search(o)
	if !found {
		return nil, false
	}
	return &t.entries[i], true
}

// next finds the first object strictly after o.
func (t *Table) next(o oid.OID) (*entry, bool) {
	i, found := t.search(o)
	if found {
		i++
	}
	if i >= len(t.entries) {
		return nil, false
	}
	return &t.entries[i], true
}

// nextSwapped is next in the walk order of a broken agent: within each
// column, neighbouring rows come in reverse pairs (2, 1, 4, 3, ...). A walk
// that tolerates OIDs going backwards still sees every object once.
func (t *Table) nextSwapped(o oid.OID) (*entry, bool) {
	t.swapOnce.Do(t.buildSwapped)
	i, found := t.search(o)
	var p int
	switch {
	case found:
		p = t.swapPos[i] + 1
	case i < len(t.entries):
		p = t.swapPos[i]
		if j := t.partner[i]; j >= 0 && t.swapPos[j] < p { // start the pair from its first position
			p = t.swapPos[j]
		}
	default:
		return nil, false
	}
	if p >= len(t.swapOrder) {
		return nil, false
	}
	return &t.entries[t.swapOrder[p]], true
}

func (t *Table) buildSwapped() {
	n := len(t.entries)
	t.swapOrder = make([]int, 0, n)
	t.swapPos = make([]int, n)
	t.partner = make([]int, n)
	for i := range t.partner {
		t.partner[i] = -1
	}
	for start := 0; start < n; {
		end := start + 1 // entries [start, end) share a parent (a column)
		parent := t.entries[start].oid[:len(t.entries[start].oid)-1]
		for end < n && len(t.entries[end].oid) == len(parent)+1 && t.entries[end].oid.HasPrefix(parent) {
			end++
		}
		for i := start; i < end; i += 2 {
			if i+1 < end {
				t.swapOrder = append(t.swapOrder, i+1, i)
				t.partner[i], t.partner[i+1] = i+1, i
			} else {
				t.swapOrder = append(t.swapOrder, i)
			}
		}
		start = end
	}
	for p, i := range t.swapOrder {
		t.swapPos[i] = p
	}
}

// hasObject reports whether o names an object type of this table (so that a
// missing instance below it is noSuchInstance rather than noSuchObject).
func (t *Table) hasObject(o oid.OID) bool {
	if len(o) < 2 {
		return false
	}
	parent := o[:len(o)-1]
	i, _ := t.search(parent)
	return i < len(t.entries) && t.entries[i].oid.HasPrefix(parent) && len(t.entries[i].oid) == len(o)
}

// Well-known numeric OIDs the simulator serves.
const (
	OIDSystem    = ".1.3.6.1.2.1.1"
	OIDSysDescr  = ".1.3.6.1.2.1.1.1.0"
	OIDSysUpTime = ".1.3.6.1.2.1.1.3.0"
	OIDSysName   = ".1.3.6.1.2.1.1.5.0"
	OIDIfNumber  = ".1.3.6.1.2.1.2.1.0"
	OIDIfTable   = ".1.3.6.1.2.1.2.2"
	OIDIfXTable  = ".1.3.6.1.2.1.31.1.1"
)

// RouterTable builds the table of a router with n interfaces: the system
// group, ifNumber, ifTable and ifXTable. Values that differ between devices
// (names, counters) are computed from the device, so one table serves every
// device of that shape.
func RouterTable(n int) (*Table, error) {
	var b TableBuilder
	b.Add(OIDSysDescr, gosnmp.OctetString, func(d *Device, _ time.Time) any { return d.descr })
	b.Add(".1.3.6.1.2.1.1.2.0", gosnmp.ObjectIdentifier, Const(".1.3.6.1.4.1.8072.3.2.10"))
	b.Add(OIDSysUpTime, gosnmp.TimeTicks, func(d *Device, now time.Time) any {
		return uint32(now.Sub(d.bootTime) / (10 * time.Millisecond))
	})
	b.Add(".1.3.6.1.2.1.1.4.0", gosnmp.OctetString, Const("noc@example.net"))
	b.Add(OIDSysName, gosnmp.OctetString, func(d *Device, _ time.Time) any { return d.Name })
	b.Add(".1.3.6.1.2.1.1.6.0", gosnmp.OctetString, func(d *Device, _ time.Time) any { return d.location })
	b.Add(".1.3.6.1.2.1.1.7.0", gosnmp.Integer, Const(72))
	b.Add(OIDIfNumber, gosnmp.Integer, Const(n))
	for i := 1; i <= n; i++ {
		idx := i
		col := func(c int) string { return fmt.Sprintf("%s.1.%d.%d", OIDIfTable, c, idx) }
		xcol := func(c int) string { return fmt.Sprintf("%s.1.%d.%d", OIDIfXTable, c, idx) }
		b.Add(col(1), gosnmp.Integer, Const(idx))
		b.Add(col(2), gosnmp.OctetString, Const(fmt.Sprintf("GigabitEthernet0/%d", idx)))
		b.Add(col(3), gosnmp.Integer, Const(6))
		b.Add(col(4), gosnmp.Integer, Const(1500))
		b.Add(col(5), gosnmp.Gauge32, Const(uint32(1_000_000_000)))
		b.Add(col(6), gosnmp.OctetString, func(d *Device, _ time.Time) any {
			return []byte{0x02, 0x00, byte(d.Index >> 16), byte(d.Index >> 8), byte(d.Index), byte(idx)}
		})
		b.Add(col(7), gosnmp.Integer, Const(1))
		b.Add(col(8), gosnmp.Integer, Const(1+idx%2)) // up(1) or down(2)
		b.Add(col(9), gosnmp.TimeTicks, Const(uint32(idx*100)))
		b.Add(col(10), gosnmp.Counter32, counter32(idx, 10))
		b.Add(col(11), gosnmp.Counter32, counter32(idx, 11))
		b.Add(col(13), gosnmp.Counter32, Const(uint32(0)))
		b.Add(col(14), gosnmp.Counter32, Const(uint32(idx%3)))
		b.Add(col(16), gosnmp.Counter32, counter32(idx, 16))
		b.Add(col(17), gosnmp.Counter32, counter32(idx, 17))
		b.Add(col(19), gosnmp.Counter32, Const(uint32(0)))
		b.Add(col(20), gosnmp.Counter32, Const(uint32(0)))
		b.Add(xcol(1), gosnmp.OctetString, Const(fmt.Sprintf("Gi0/%d", idx)))
		b.Add(xcol(6), gosnmp.Counter64, counter64(idx, 6))
		b.Add(xcol(7), gosnmp.Counter64, counter64(idx, 7))
		b.Add(xcol(10), gosnmp.Counter64, counter64(idx, 10))
		b.Add(xcol(11), gosnmp.Counter64, counter64(idx, 11))
		b.Add(xcol(15), gosnmp.Gauge32, Const(uint32(1000)))
		b.Add(xcol(18), gosnmp.OctetString, Const(fmt.Sprintf("link %d", idx)))
	}
	return b.Build()
}

// counter32 grows with time since boot at a per-interface rate, wrapping as a real Counter32 does.
func counter32(ifIndex, col int) ValueFunc {
	rate := uint64(1000 * (ifIndex + col))
	return func(d *Device, now time.Time) any {
		secs := uint64(now.Sub(d.bootTime) / time.Second)
		return uint32(uint64(d.Index)*7919 + rate*secs)
	}
}

// counter64 starts above 2^53, so that a value passed through float64 would
// lose its low bits: readers must keep Counter64 exact.
func counter64(ifIndex, col int) ValueFunc {
	base := uint64(1)<<62 + uint64(ifIndex)*1_000_003 + uint64(col)
	return func(d *Device, now time.Time) any {
		secs := uint64(now.Sub(d.bootTime) / time.Second)
		return base + uint64(d.Index)*104_729 + secs*uint64(1000*(ifIndex+col))
	}
}
