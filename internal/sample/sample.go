// Package sample turns HostRecords into metric samples named by their MIB objects.
//
// It is the domain policy behind every metric output (Prometheus remote
// write, InfluxDB line protocol): what a varbind is called, which labels a
// table row carries, which values are counters and which gauges, and what a
// failed poll yields. A numeric varbind becomes a sample named by its MIB
// object (sysUpTime, ifHCInOctets, hrStorageUsed); a table's column carries
// the row's index as labels named after the table's INDEX objects (ifIndex),
// then the values of the lookup columns of the same row (ifName, ifDescr,
// ifAlias), from the same table or one with the same index. An OID no MIB
// names keeps a stable numeric name: snmp_ and its OID without the last
// sub-identifier, underscores for dots, with that sub-identifier as label
// "index" (.1.3.6.1.4.1.9.2.1.58.0 is snmp_1_3_6_1_4_1_9_2_1_58{index="0"}).
// Strings that are not lookups are not samples (they stay in the record).
package sample

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/task"
)

// Kind says how a sample's value behaves.
type Kind uint8

const (
	// Gauge goes up and down: Gauge32, Integer, Unsigned32, TimeTicks,
	// floats, and the poll's own samples.
	Gauge Kind = iota
	// Counter only grows, wrapping or resetting: Counter32, Counter64. The
	// raw value; rates are the database's job.
	Counter
)

// Names of the poll's own samples.
const (
	// Up is 1 for a poll that succeeded, 0 for one that failed (which then
	// yields no other sample: nothing stale).
	Up = "flock_poll_up"
	// Duration is the poll's duration in seconds, for a poll that succeeded.
	Duration = "flock_poll_duration_seconds"
)

// Label is one label of a sample.
type Label struct{ Name, Value string }

// Sample is one value of one host at one time.
type Sample struct {
	// Name is the MIB object's ("ifHCInOctets"), a numeric one for an
	// unknown OID, or Up or Duration.
	Name string
	// Table is the column's table ("ifXTable"); "" for a scalar, an unknown
	// OID or the poll's own samples.
	Table string
	// Labels are the row's index (named after the INDEX objects), then its
	// lookups, in the converter's order; host and site are the record's.
	Labels []Label
	Value  float64
	Kind   Kind
	// Integer says the value came from an SNMP integer type (every kind but
	// the Opaque floats, and the poll's up), for outputs that keep integer
	// and float fields apart: it is the same for every sample of an object.
	Integer bool
}

// Converter turns records into samples. Make it once; it is safe for
// concurrent use.
type Converter struct {
	mib     *mib.Resolver
	lookups []string // column names whose values label their rows
}

// NewConverter converts with the MIB objects of r; lookups name columns
// whose values label the rows of their table, or of a table with the same
// index (ifName labels ifTable's rows and ifXTable's).
func NewConverter(r *mib.Resolver, lookups []string) (*Converter, error) {
	for _, l := range lookups {
		full, err := r.Resolve(l)
		if err != nil {
			return nil, fmt.Errorf("lookup %q: %w", l, err)
		}
		if o, _, ok := r.Object(full + ".1"); !ok || o.Table == "" {
			return nil, fmt.Errorf("lookup %q: not a table column", l)
		}
	}
	return &Converter{mib: r, lookups: append([]string(nil), lookups...)}, nil
}

// row identifies a table row across tables with the same index.
type row struct{ index, suffix string }

// Convert appends rec's samples to dst and returns it: Up (and Duration),
// then one per numeric varbind, in the record's order.
func (c *Converter) Convert(rec *task.HostRecord, dst []Sample) []Sample {
	if rec.Error != nil {
		return append(dst, Sample{Name: Up, Value: 0, Integer: true})
	}
	dst = append(dst, Sample{Name: Up, Value: 1, Integer: true}, Sample{Name: Duration, Value: rec.DurationMS / 1000})

	// The lookups' values, by row.
	var looked map[row][]Label
	if len(c.lookups) > 0 {
		for i := range rec.Varbinds {
			vb := &rec.Varbinds[i]
			if vb.Type != task.TypeOctetString {
				continue
			}
			o, suffix, ok := c.mib.Object(vb.OID)
			if !ok || o.Table == "" {
				continue
			}
			for j, l := range c.lookups {
				if l == o.Name {
					if looked == nil {
						looked = map[row][]Label{}
					}
					k := row{o.IndexKey, suffix}
					lk := looked[k]
					if lk == nil { // one slot per lookup, in the converter's order; Name "" while absent
						lk = make([]Label, len(c.lookups))
						looked[k] = lk
					}
					lk[j] = Label{l, string(vb.Bytes)}
				}
			}
		}
	}
	var idx []mib.IndexValue
	for i := range rec.Varbinds {
		vb := &rec.Varbinds[i]
		v, kind, ok := value(vb)
		if !ok {
			continue
		}
		o, suffix, known := c.mib.Object(vb.OID)
		s := Sample{Value: v, Kind: kind, Integer: vb.Type != task.TypeOpaqueFloat && vb.Type != task.TypeOpaqueDouble}
		switch {
		case !known:
			cut := strings.LastIndexByte(vb.OID, '.')
			if cut <= 0 {
				continue
			}
			s.Name = "snmp_" + strings.ReplaceAll(vb.OID[1:cut], ".", "_")
			s.Labels = []Label{{"index", vb.OID[cut+1:]}}
		case o.Table == "":
			s.Name = o.Name
		default:
			s.Name, s.Table = o.Name, o.Table
			idx = o.IndexValues(suffix, idx[:0])
			lk := looked[row{o.IndexKey, suffix}]
			s.Labels = make([]Label, 0, len(idx)+len(lk))
			for _, x := range idx {
				s.Labels = append(s.Labels, Label{x.Name, x.Value})
			}
			for _, l := range lk {
				if l.Name != "" {
					s.Labels = append(s.Labels, l)
				}
			}
		}
		dst = append(dst, s)
	}
	return dst
}

// value is a varbind's numeric value and kind; false for what is not a
// number (strings, OIDs, addresses, exceptions).
func value(vb *task.Varbind) (float64, Kind, bool) {
	switch vb.Type {
	case task.TypeCounter32, task.TypeCounter64:
		return float64(vb.Uint), Counter, true // Counter64 past 2^53 loses its lowest bits (README)
	case task.TypeGauge32, task.TypeTimeTicks, task.TypeUinteger32:
		return float64(vb.Uint), Gauge, true
	case task.TypeInteger:
		return float64(vb.Int), Gauge, true
	case task.TypeOpaqueFloat, task.TypeOpaqueDouble:
		if math.IsNaN(vb.Float) {
			return 0, Gauge, false
		}
		return vb.Float, Gauge, true
	}
	return 0, Gauge, false
}

// Time is the time a record's samples are stamped with: when its poll began.
func Time(rec *task.HostRecord) time.Time { return rec.StartedAt }
