package task

import (
	"encoding/json"
	"fmt"
	"testing"
)

// benchRecord is a walk of a 48-interface ifXTable-like table: 7 columns.
func benchRecord() HostRecord {
	r := sampleRecord()
	r.Error = nil
	r.Varbinds = r.Varbinds[:0]
	for col := 1; col <= 7; col++ {
		for i := 1; i <= 48; i++ {
			oid := fmt.Sprintf(".1.3.6.1.2.1.31.1.1.1.%d.%d", col, i)
			if col%2 == 0 {
				r.Varbinds = append(r.Varbinds, Varbind{OID: oid, Type: TypeCounter64, Uint: 1<<62 + uint64(i)})
			} else {
				r.Varbinds = append(r.Varbinds, Varbind{OID: oid, Type: TypeOctetString, Bytes: []byte(fmt.Sprintf("GigabitEthernet0/%d", i))})
			}
		}
	}
	return r
}

func BenchmarkHostRecordAppendJSON(b *testing.B) {
	r := benchRecord()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(r.Varbinds)), "ns/varbind")
}

// The same record through encoding/json, for comparison only.
func BenchmarkHostRecordEncodingJSON(b *testing.B) {
	r := benchRecord()
	type plain HostRecord // no MarshalJSON method: reflection
	p := plain(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTask(b *testing.B) {
	data, _ := json.Marshal(sampleTask())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTask(data); err != nil {
			b.Fatal(err)
		}
	}
}

// The dispatcher reads a record's head once per poll (a 336-varbind walk
// record here); encoding/json into the same head is the reference.
func BenchmarkReadHead(b *testing.B) {
	r := benchRecord()
	data := r.AppendJSON(nil)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadHead(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadHeadEncodingJSON(b *testing.B) {
	r := benchRecord()
	data := r.AppendJSON(nil)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var h RecordHead
		if err := json.Unmarshal(data, &h); err != nil {
			b.Fatal(err)
		}
	}
}
