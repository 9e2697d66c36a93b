package sample_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flock-snmp/flock/harness/recordtest"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

func labels(s sample.Sample) string {
	var b []string
	for _, l := range s.Labels {
		b = append(b, l.Name+"="+l.Value)
	}
	return strings.Join(b, ",")
}

func TestConvertRouter(t *testing.T) {
	rec := recordtest.Router(t, 4)
	conv, err := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	if err != nil {
		t.Fatal(err)
	}
	got := conv.Convert(&rec, nil)
	byKey := map[string]sample.Sample{}
	for _, s := range got {
		k := s.Name + "{" + labels(s) + "}"
		if _, dup := byKey[k]; dup {
			t.Fatalf("sample %s twice", k)
		}
		byKey[k] = s
	}
	if up := byKey[sample.Up+"{}"]; up.Value != 1 {
		t.Fatalf("%s = %v", sample.Up, up.Value)
	}
	if d := byKey[sample.Duration+"{}"]; d.Value <= 0 || d.Value != rec.DurationMS/1000 {
		t.Fatalf("%s = %v, record says %v ms", sample.Duration, d.Value, rec.DurationMS)
	}
	// Every numeric varbind is a sample with the varbind's value, named and
	// labelled by the MIB; strings are not samples.
	want := 0
	for _, vb := range rec.Varbinds {
		switch vb.Type {
		case task.TypeOctetString, task.TypeObjectIdentifier, task.TypeIPAddress:
			continue
		}
		want++
	}
	if len(got) != want+2 {
		t.Errorf("%d samples from %d numeric varbinds (+ up, duration)", len(got), want)
	}
	uptime, ok := byKey["sysUpTime{}"]
	if !ok || uptime.Table != "" || uptime.Kind != sample.Gauge || uptime.Value <= 0 {
		t.Fatalf("sysUpTime: %+v %v", uptime, ok)
	}
	var ifName, ifDescr, ifAlias [5]string
	for _, vb := range rec.Varbinds {
		var i int
		for prefix, dst := range map[string]*[5]string{".1.3.6.1.2.1.31.1.1.1.1.": &ifName, ".1.3.6.1.2.1.2.2.1.2.": &ifDescr, ".1.3.6.1.2.1.31.1.1.1.18.": &ifAlias} {
			if strings.HasPrefix(vb.OID, prefix) {
				fmt.Sscan(strings.TrimPrefix(vb.OID, prefix), &i)
				dst[i] = string(vb.Bytes)
			}
		}
	}
	for i := 1; i <= 4; i++ {
		lk := fmt.Sprintf("ifIndex=%d,ifName=%s,ifDescr=%s,ifAlias=%s", i, ifName[i], ifDescr[i], ifAlias[i])
		hc, ok := byKey["ifHCInOctets{"+lk+"}"]
		if !ok || hc.Table != "ifXTable" || hc.Kind != sample.Counter {
			t.Fatalf("ifHCInOctets of interface %d (%s): %+v %v; samples: %v", i, lk, hc, ok, keys(byKey))
		}
		for _, vb := range rec.Varbinds {
			if vb.OID == fmt.Sprintf(".1.3.6.1.2.1.31.1.1.1.6.%d", i) && hc.Value != float64(vb.Uint) {
				t.Errorf("ifHCInOctets of %d = %v; the varbind says %d", i, hc.Value, vb.Uint)
			}
		}
		// ifTable's rows take the lookups of ifXTable's (same index).
		if in, ok := byKey["ifInOctets{"+lk+"}"]; !ok || in.Table != "ifTable" || in.Kind != sample.Counter {
			t.Errorf("ifInOctets of interface %d: %+v %v", i, in, ok)
		}
		if sp, ok := byKey["ifSpeed{"+lk+"}"]; !ok || sp.Kind != sample.Gauge || sp.Value != 1e9 {
			t.Errorf("ifSpeed of interface %d: %+v %v", i, sp, ok)
		}
	}
	if ifName[1] == "" || ifDescr[1] == "" {
		t.Fatalf("the simulator gave no ifName/ifDescr: %v %v", ifName, ifDescr)
	}
}

func keys(m map[string]sample.Sample) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A failed poll yields up 0 and nothing else; an OID no MIB names keeps a
// numeric name, its last sub-identifier as label index.
func TestConvertFailedAndUnknown(t *testing.T) {
	conv, err := sample.NewConverter(mib.Builtin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	failed := task.HostRecord{Error: &task.Error{Kind: "timeout", Message: "no answer"},
		Varbinds: []task.Varbind{{OID: ".1.3.6.1.2.1.1.3.0", Type: task.TypeTimeTicks, Uint: 5}}}
	if got := conv.Convert(&failed, nil); len(got) != 1 || got[0].Name != sample.Up || got[0].Value != 0 {
		t.Fatalf("failed poll: %+v", got)
	}
	rec := task.HostRecord{DurationMS: 12, Varbinds: []task.Varbind{
		{OID: ".1.3.6.1.4.1.9.2.1.58.0", Type: task.TypeInteger, Int: -3},
		{OID: ".1.3.6.1.4.1.9.9.109.1.1.1.1.8.7", Type: task.TypeGauge32, Uint: 42},
		{OID: ".1.3.6.1.2.1.1.5.0", Type: task.TypeOctetString, Bytes: []byte("sw1")},
		{OID: ".1.3.6.1.2.1.1.7.0", Type: task.TypeNoSuchInstance},
	}}
	got := conv.Convert(&rec, nil)
	if len(got) != 4 || got[2].Name != "snmp_1_3_6_1_4_1_9_2_1_58" || labels(got[2]) != "index=0" || got[2].Value != -3 ||
		got[3].Name != "snmp_1_3_6_1_4_1_9_9_109_1_1_1_1_8" || labels(got[3]) != "index=7" || got[3].Value != 42 {
		t.Fatalf("unknown OIDs: %+v", got)
	}
	if _, err := sample.NewConverter(mib.Builtin(), []string{"ifNmae"}); err == nil || !strings.Contains(err.Error(), `lookup "ifNmae"`) {
		t.Fatalf("unknown lookup: %v", err)
	}
	if _, err := sample.NewConverter(mib.Builtin(), []string{"sysName"}); err == nil || !strings.Contains(err.Error(), "not a table column") {
		t.Fatalf("scalar lookup: %v", err)
	}
}

// The conversion of a 48-interface router's record (ifTable and ifXTable,
// about 1,700 varbinds): samples per second per core, allocations.
func BenchmarkConvertRouter48(b *testing.B) {
	rec := recordtest.Router(b, 48)
	conv, err := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	if err != nil {
		b.Fatal(err)
	}
	var dst []sample.Sample
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		dst = conv.Convert(&rec, dst[:0])
		n += len(dst)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(len(dst)), "samples/op")
}

// A profile's info objects become <name>_info samples (the string as a
// label, 1 as value; rows keep their index and lookups); strings that are
// not UTF-8 are shown in hex, NUL padding dropped; other strings are no sample.
func TestConvertInfo(t *testing.T) {
	conv, err := sample.NewConverter(mib.Builtin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// ifDescr both a lookup and info, ifIndex (an index) a lookup: no label twice.
	p, err := conv.Profile([]string{"ifName", "ifDescr", "ifIndex"}, []string{"sysDescr", "IF-MIB::ifDescr", ".1.3.6.1.2.1.31.1.1.1.18"})
	if err != nil {
		t.Fatal(err)
	}
	rec := task.HostRecord{DurationMS: 3, Varbinds: []task.Varbind{
		{OID: ".1.3.6.1.2.1.1.1.0", Type: task.TypeOctetString, Bytes: []byte("Linux core-sw1\x00\x00")},
		{OID: ".1.3.6.1.2.1.1.5.0", Type: task.TypeOctetString, Bytes: []byte("core-sw1")},
		{OID: ".1.3.6.1.2.1.2.2.1.2.3", Type: task.TypeOctetString, Bytes: []byte("Gi0/1")},
		{OID: ".1.3.6.1.2.1.31.1.1.1.1.3", Type: task.TypeOctetString, Bytes: []byte("gi0/1")},
		{OID: ".1.3.6.1.2.1.31.1.1.1.18.3", Type: task.TypeOctetString, Bytes: []byte{0xff, 0x01}},
		{OID: ".1.3.6.1.2.1.2.2.1.10.3", Type: task.TypeCounter32, Uint: 99},
		{OID: ".1.3.6.1.2.1.2.2.1.1.3", Type: task.TypeInteger, Int: 3},
	}}
	got := map[string]string{}
	for _, s := range conv.ConvertWith(&rec, p, nil) {
		got[s.Name] = fmt.Sprintf("%s{%s} %v", s.Table, labels(s), s.Value)
	}
	want := map[string]string{
		sample.Up:       "{} 1",
		sample.Duration: "{} 0.003",
		"sysDescr_info": "{sysDescr=Linux core-sw1} 1",
		"ifDescr_info":  "ifTable{ifIndex=3,ifName=gi0/1,ifDescr=Gi0/1} 1",
		"ifAlias_info":  "ifXTable{ifIndex=3,ifName=gi0/1,ifDescr=Gi0/1,ifAlias=0xff01} 1",
		"ifInOctets":    "ifTable{ifIndex=3,ifName=gi0/1,ifDescr=Gi0/1} 99",
		"ifIndex":       "ifTable{ifIndex=3,ifName=gi0/1,ifDescr=Gi0/1} 3",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("samples:\n got %v\nwant %v", got, want)
	}
	// Without the profile: no info, no lookup.
	if n := len(conv.ConvertWith(&rec, nil, nil)); n != 4 {
		t.Errorf("no profile: %d samples, want up, duration, ifInOctets and ifIndex", n)
	}
	if _, err := conv.Profile(nil, []string{"sysDescr.0"}); err == nil || !strings.Contains(err.Error(), `info "sysDescr.0"`) {
		t.Errorf("an instance as info: %v", err)
	}
}

// A Counter64 past 2^53 keeps its exact value in Int (for integer fields);
// Value, a float64, rounds it.
func TestConvertExactIntegers(t *testing.T) {
	conv, err := sample.NewConverter(mib.Builtin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const big = 1<<62 + 1
	rec := task.HostRecord{Varbinds: []task.Varbind{
		{OID: ".1.3.6.1.2.1.31.1.1.1.6.1", Type: task.TypeCounter64, Uint: big},
		{OID: ".1.3.6.1.2.1.31.1.1.1.10.1", Type: task.TypeCounter64, Uint: 1<<64 - 1},
		{OID: ".1.3.6.1.2.1.2.2.1.8.1", Type: task.TypeInteger, Int: -2},
	}}
	got := conv.Convert(&rec, nil)
	if len(got) != 5 || got[2].Int != big || !got[2].Integer {
		t.Fatalf("Counter64 2^62+1: %+v", got)
	}
	if got[3].Int != 0 || got[3].Value != 1<<64 {
		t.Errorf("Counter64 past 2^63 has only its float value: %+v", got[3])
	}
	if got[4].Int != -2 || got[4].Value != -2 {
		t.Errorf("Integer: %+v", got[4])
	}
}
