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
// Strings that are not lookups are not samples (they stay in the record),
// unless the host's modules name them as info: then each is a sample
// <name>_info of value 1 with the string as label <name> (sysDescr_info{
// sysDescr="Linux ..."}), as snmp_exporter shows them. Label values are
// UTF-8: an octet string that is not is shown as 0x and its hex digits.
package sample

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

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
	// Int is the exact value of an Integer sample that fits an int64
	// (Value is a float64: exact only to 2^53), for outputs with integer
	// fields; a Counter64 past 2^63 has only Value.
	Int int64
}

// Converter turns records into samples. Make it once; it is safe for
// concurrent use.
type Converter struct {
	mib *mib.Resolver
	def *Profile
}

// Profile is what a host's modules ask of its samples beyond the MIB's
// names: lookup columns and info objects. Shared, read-only.
type Profile struct {
	lookups []string // column names whose values label their rows
	info    []string // string objects shown as <name>_info samples
}

// NewConverter converts with the MIB objects of r; lookups name columns
// whose values label the rows of their table, or of a table with the same
// index (ifName labels ifTable's rows and ifXTable's), for Convert.
func NewConverter(r *mib.Resolver, lookups []string) (*Converter, error) {
	c := &Converter{mib: r}
	def, err := c.Profile(lookups, nil)
	if err != nil {
		return nil, err
	}
	c.def = def
	return c, nil
}

// Profile makes the profile of lookup columns and info objects, each a MIB
// name or numeric OID of an object (not an instance).
func (c *Converter) Profile(lookups, info []string) (*Profile, error) {
	p := &Profile{}
	name := func(what, l string, column bool) (string, error) {
		full, err := c.mib.Resolve(l)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", what, l, err)
		}
		o, suffix, ok := c.mib.Object(full + ".1")
		if !ok || suffix != "1" {
			return "", fmt.Errorf("%s %q: not a MIB object", what, l)
		}
		if column && o.Table == "" {
			return "", fmt.Errorf("%s %q: not a table column", what, l)
		}
		return o.Name, nil
	}
	for _, l := range lookups {
		n, err := name("lookup", l, true)
		if err != nil {
			return nil, err
		}
		p.lookups = append(p.lookups, n)
	}
	for _, l := range info {
		n, err := name("info", l, false)
		if err != nil {
			return nil, err
		}
		p.info = append(p.info, n)
	}
	return p, nil
}

// row identifies a table row across tables with the same index.
type row struct{ index, suffix string }

// Convert appends rec's samples to dst with the lookups NewConverter was
// given: see ConvertWith.
func (c *Converter) Convert(rec *task.HostRecord, dst []Sample) []Sample {
	return c.ConvertWith(rec, c.def, dst)
}

// ConvertWith appends rec's samples to dst and returns it: Up (and
// Duration), then one per numeric varbind and info object, in the record's
// order, with p's lookups and info (nil: none).
func (c *Converter) ConvertWith(rec *task.HostRecord, p *Profile, dst []Sample) []Sample {
	if p == nil {
		p = &Profile{}
	}
	if rec.Error != nil {
		return append(dst, Sample{Name: Up, Value: 0, Integer: true, Int: 0})
	}
	dst = append(dst, Sample{Name: Up, Value: 1, Integer: true, Int: 1}, Sample{Name: Duration, Value: rec.DurationMS / 1000})

	// The lookups' values, by row.
	var looked map[row][]Label
	if len(p.lookups) > 0 {
		for i := range rec.Varbinds {
			vb := &rec.Varbinds[i]
			if vb.Type != task.TypeOctetString {
				continue
			}
			o, suffix, ok := c.mib.Object(vb.OID)
			if !ok || o.Table == "" {
				continue
			}
			for j, l := range p.lookups {
				if l == o.Name {
					if looked == nil {
						looked = map[row][]Label{}
					}
					k := row{o.IndexKey, suffix}
					lk := looked[k]
					if lk == nil { // one slot per lookup, in the converter's order; Name "" while absent
						lk = make([]Label, len(p.lookups))
						looked[k] = lk
					}
					lk[j] = Label{l, text(vb.Bytes)}
				}
			}
		}
	}
	var idx []mib.IndexValue
	for i := range rec.Varbinds {
		vb := &rec.Varbinds[i]
		v, kind, ok := value(vb)
		if !ok {
			if len(p.info) > 0 && vb.Type == task.TypeOctetString {
				dst, idx = c.appendInfo(dst, idx, vb, p, looked)
			}
			continue
		}
		o, suffix, known := c.mib.Object(vb.OID)
		s := Sample{Value: v, Kind: kind, Integer: vb.Type != task.TypeOpaqueFloat && vb.Type != task.TypeOpaqueDouble}
		if vb.Type == task.TypeInteger {
			s.Int = vb.Int
		} else if vb.Uint <= math.MaxInt64 {
			s.Int = int64(vb.Uint)
		}
		switch {
		case !known:
			cut := strings.LastIndexByte(vb.OID, '.')
			if cut <= 0 {
				continue
			}
			s.Name = "snmp_" + strings.ReplaceAll(vb.OID[1:cut], ".", "_")
			s.Labels = []Label{{"index", vb.OID[cut+1:]}}
		case o.Table == "":
			s.Name = metricName(o.Name)
		default:
			s.Name, s.Table = metricName(o.Name), o.Table
			idx = o.IndexValues(suffix, idx[:0])
			s.Labels = rowLabels(idx, looked[row{o.IndexKey, suffix}], 0, "")
		}
		dst = append(dst, s)
	}
	return dst
}

// appendInfo appends vb's <name>_info sample when p names its object.
func (c *Converter) appendInfo(dst []Sample, idx []mib.IndexValue, vb *task.Varbind, p *Profile, looked map[row][]Label) ([]Sample, []mib.IndexValue) {
	o, suffix, ok := c.mib.Object(vb.OID)
	if !ok {
		return dst, idx
	}
	for _, n := range p.info {
		if n != o.Name {
			continue
		}
		s := Sample{Name: metricName(o.Name) + "_info", Table: o.Table, Value: 1, Integer: true, Int: 1}
		if o.Table == "" {
			s.Labels = []Label{{metricName(o.Name), text(vb.Bytes)}}
		} else {
			idx = o.IndexValues(suffix, idx[:0])
			s.Labels = rowLabels(idx, looked[row{o.IndexKey, suffix}], 1, o.Name)
			s.Labels = append(s.Labels, Label{metricName(o.Name), text(vb.Bytes)})
		}
		return append(dst, s), idx
	}
	return dst, idx
}

// rowLabels are a row's index values, then its lookups but the one named
// except (an info sample's own object, which it carries as its last label)
// and those an index value already names, with room for extra more.
func rowLabels(idx []mib.IndexValue, lk []Label, extra int, except string) []Label {
	ls := make([]Label, 0, len(idx)+len(lk)+extra)
	for _, x := range idx {
		ls = append(ls, Label{metricName(x.Name), x.Value})
	}
next:
	for _, l := range lk {
		if l.Name == "" || l.Name == except {
			continue
		}
		for _, x := range idx {
			if x.Name == l.Name {
				continue next
			}
		}
		ls = append(ls, Label{metricName(l.Name), l.Value})
	}
	return ls
}

// metricName makes a MIB name a valid Prometheus metric and label name:
// SMI names may hold '-', Prometheus's may not ('_' instead).
func metricName(n string) string {
	if strings.IndexByte(n, '-') < 0 {
		return n
	}
	return strings.ReplaceAll(n, "-", "_")
}

// text is an octet string as a label value: itself when it is UTF-8 (and
// not ending in NULs, as some agents pad), else 0x and its hex digits.
func text(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	if utf8.Valid(b) {
		return string(b)
	}
	return "0x" + hex.EncodeToString(b)
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
