package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func sampleTask() PollTask {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return PollTask{
		Schema: Schema, ID: "default.core-sw1-example-net@1795608000000", Site: DefaultSite,
		Host: "core-sw1.example.net", HostKey: "core-sw1-example-net", Address: "core-sw1.example.net", Port: 161,
		Credentials: "public", Get: []string{".1.3.6.1.2.1.1.1.0", ".1.3.6.1.2.1.1.3.0"}, Walk: []string{".1.3.6.1.2.1.4.20"},
		Tables:    []Table{{Root: ".1.3.6.1.2.1.2.2", Columns: []string{".1.3.6.1.2.1.2.2.1.2", ".1.3.6.1.2.1.2.2.1.10"}}},
		TimeoutMS: 2000, PollTimeoutMS: 9000, Retries: 1, MaxOids: 32, MaxRepetitions: 25, AllowNonIncreasingOIDs: true,
		ScheduledAt: at, Deadline: at.Add(17 * time.Second),
	}
}

func sampleRecord() HostRecord {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return HostRecord{
		Schema: Schema, TaskID: "default.core-sw1-example-net@1795608000000", Site: DefaultSite,
		Host: "core-sw1.example.net", HostKey: "core-sw1-example-net", Address: "core-sw1.example.net", Port: 161,
		Poller: "poller-a", Attempt: 1, ScheduledAt: at, StartedAt: at.Add(12 * time.Millisecond), DurationMS: 3.25,
		Varbinds: []Varbind{
			{OID: ".1.3.6.1.2.1.1.1.0", Type: TypeOctetString, Bytes: []byte("Flock \"sim\"\r\nrouter\tv1 — ü")},
			{OID: ".1.3.6.1.2.1.1.2.0", Type: TypeObjectIdentifier, Str: ".1.3.6.1.4.1.8072.3.2.10"},
			{OID: ".1.3.6.1.2.1.1.3.0", Type: TypeTimeTicks, Uint: 4294967295},
			{OID: ".1.3.6.1.2.1.1.7.0", Type: TypeInteger, Int: -72},
			{OID: ".1.3.6.1.2.1.2.2.1.6.2", Type: TypeOctetString, Bytes: []byte{0x00, 0x1a, 0x2b, 0xff, 0x0a, 0x80}},
			{OID: ".1.3.6.1.2.1.2.2.1.10.2", Type: TypeCounter32, Uint: 3000000000},
			{OID: ".1.3.6.1.2.1.2.2.1.5.2", Type: TypeGauge32, Uint: 1000000000},
			{OID: ".1.3.6.1.2.1.31.1.1.1.6.2", Type: TypeCounter64, Uint: math.MaxUint64},
			{OID: ".1.3.6.1.2.1.4.20.1.1.127.0.0.1", Type: TypeIPAddress, Str: "127.0.0.1"},
			{OID: ".1.3.6.1.4.1.2021.10.1.6.1", Type: TypeOpaqueFloat, Float: 0.5},
			{OID: ".1.3.6.1.2.1.1.9.0", Type: TypeNoSuchObject},
			{OID: ".1.3.6.1.2.1.1.1.1", Type: TypeNoSuchInstance},
			{OID: ".1.3.6.1.6.3.1", Type: TypeEndOfMibView},
			{OID: ".1.3.6.1.2.1.1.4.0", Type: TypeOctetString, Bytes: []byte{}},
		},
		Error: &Error{Kind: KindProtocol, Message: "walk .1.3.6.1.2.1.4.20 on core-sw1.example.net: protocol error: agent answered GenErr"},
		Errors: []PartError{
			{Part: "walk .1.3.6.1.2.1.4.20", Kind: KindProtocol, Message: "walk .1.3.6.1.2.1.4.20 on core-sw1.example.net: protocol error: agent answered GenErr"},
			{Part: "table .1.3.6.1.2.1.31.1.1", Kind: KindTimeout, Message: "walk table .1.3.6.1.2.1.31.1.1 on core-sw1.example.net: timeout"},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./internal/task -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed: the wire format is frozen.\n got: %s\nwant: %s", path, got, want)
	}
}

func TestPollTaskGolden(t *testing.T) {
	tk := sampleTask()
	got, err := json.MarshalIndent(tk, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "poll_task.golden.json", append(got, '\n'))

	back, err := DecodeTask(got)
	if err != nil {
		t.Fatalf("DecodeTask(golden): %v", err)
	}
	if !reflect.DeepEqual(back, tk) {
		t.Errorf("round trip changed the task:\n got %+v\nwant %+v", back, tk)
	}
}

func TestHostRecordGolden(t *testing.T) {
	r := sampleRecord()
	line := r.AppendJSON(nil)
	if !json.Valid(line) {
		t.Fatalf("AppendJSON produced invalid JSON: %s", line)
	}
	if bytes.ContainsAny(line, "\n") {
		t.Fatalf("a record must be one line: %s", line)
	}
	golden(t, "host_record.golden.json", append(line, '\n'))

	back, err := DecodeRecord(line)
	if err != nil {
		t.Fatal(err)
	}
	// Counter64 max must survive exactly: float64 cannot hold it.
	if got := back.Varbinds[7].Uint; got != math.MaxUint64 {
		t.Errorf("Counter64 decoded as %d, want %d", got, uint64(math.MaxUint64))
	}
	if !bytes.Equal(back.Varbinds[4].Bytes, r.Varbinds[4].Bytes) {
		t.Errorf("binary OctetString came back as %x", back.Varbinds[4].Bytes)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the record:\n got %+v\nwant %+v", back, r)
	}
	if !strings.Contains(string(line), `"value":"001a2bff0a80","encoding":"hex"`) {
		t.Errorf("binary OctetString not hex-encoded: %s", line)
	}
}

// A task with a transport is schema 2, so that pollers which would ignore
// the field refuse it; this package reads both.
func TestTaskSchemaTransport(t *testing.T) {
	if TaskSchema("") != 1 || TaskSchema("tcp") != 2 || TaskSchema("udp6") != 2 {
		t.Fatal("TaskSchema")
	}
	tk := sampleTask()
	tk.Address, tk.Transport, tk.Schema = "::1", "tcp6", TaskSchema("tcp6")
	back, err := DecodeTask(tk.AppendJSON(nil))
	if err != nil || back.Schema != 2 || back.Transport != "tcp6" {
		t.Fatalf("DecodeTask: %+v, %v", back, err)
	}
	if r := NewRecord(&back, "p", 1, time.Now()); r.Schema != Schema {
		t.Fatalf("a record of a schema 2 task is schema %d, want %d: records did not change", r.Schema, Schema)
	}
}

// A record names the transport only when it is not plain udp, and reads
// back with it.
func TestRecordTransport(t *testing.T) {
	tk := sampleTask()
	r := NewRecord(&tk, "p1", 1, time.Now())
	if line := r.AppendJSON(nil); strings.Contains(string(line), "transport") {
		t.Fatalf("a udp record names its transport: %s", line)
	}
	tk.Address, tk.Port, tk.Transport = "::1", 1161, "tcp6"
	r = NewRecord(&tk, "p1", 1, time.Now())
	line := r.AppendJSON(nil)
	if !strings.Contains(string(line), `"address":"::1","port":1161,"transport":"tcp6","poller":"p1"`) {
		t.Fatalf("record: %s", line)
	}
	back, err := DecodeRecord(line)
	if err != nil || back.Transport != "tcp6" || back.Address != "::1" || back.Port != 1161 {
		t.Fatalf("DecodeRecord: %+v, %v", back, err)
	}
	if h, err := ReadHead(line); err != nil || h.TaskID != tk.ID {
		t.Fatalf("ReadHead: %+v, %v", h, err)
	}
}

func TestRecordWithoutError(t *testing.T) {
	r := sampleRecord()
	r.Error, r.Errors = nil, nil
	r.Varbinds = nil
	line := r.AppendJSON(nil)
	if !bytes.Contains(line, []byte(`"varbinds":[],"error":null}`)) {
		t.Fatalf("want empty varbinds array and null error: %s", line)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	inputs := []string{"", "plain", "quote\"back\\slash", "ctl\x00\x01\x1f\x7f", "tab\tnl\nret\r",
		"utf8 ü — 漢字", "bad \xff\xfe utf8", "line\u2028sep\u2029", "emoji 🚀"}
	for _, s := range inputs {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: invalid JSON: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendString(%q) decodes to %q, encoding/json gives %q", s, back, wantBack)
		}
	}
}

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{"Linux router 5.10\r\n": true, "": true, "ü": true, "\x00abc": false, "abc\x00": false, "\xff": false, "bell\a": false} {
		if got := Printable([]byte(s)); got != want {
			t.Errorf("Printable(%q) = %v, want %v", s, got, want)
		}
	}
	// The ASCII fast path agrees with the rune rule on every ASCII byte.
	for c := 0; c < 0x80; c++ {
		want := unicode.IsPrint(rune(c)) || c == '\t' || c == '\n' || c == '\r'
		if got := Printable([]byte{'a', byte(c), 'b'}); got != want {
			t.Errorf("Printable(a%qb) = %v, want %v", rune(c), got, want)
		}
	}
}

func TestDecodeTaskRejects(t *testing.T) {
	good := sampleTask()
	tests := []struct {
		name   string
		mutate func(*PollTask)
		want   string
	}{
		{"schema", func(p *PollTask) { p.Schema = 9 }, "schema 9: unknown schema"},
		{"schema 3", func(p *PollTask) { p.Schema, p.Transport = 3, "tcp" }, "schema 3: unknown schema"},
		{"no oids", func(p *PollTask) { p.Get, p.Walk, p.Tables = nil, nil, nil }, "nothing to poll"},
		{"table without columns", func(p *PollTask) { p.Tables = []Table{{Root: p.Tables[0].Root}} }, "tables[0]: no columns"},
		{"bad oid", func(p *PollTask) { p.Get = []string{"1.3.x"} }, `get[0]: malformed OID "1.3.x"`},
		{"no credentials", func(p *PollTask) { p.Credentials = "" }, "credentials is empty"},
		{"zero timeout", func(p *PollTask) { p.TimeoutMS = 0 }, "timeout_ms 0 is not positive"},
		{"no deadline", func(p *PollTask) { p.Deadline = time.Time{} }, "deadline is missing"},
		{"bracketed address", func(p *PollTask) { p.Address = "[::1]" }, `address: "[::1]" is not an IPv6 address`},
		{"address with port", func(p *PollTask) { p.Address = "core-sw1.example.net:161" },
			`address: "core-sw1.example.net:161" is not an IPv6 address`},
		{"bad IPv4", func(p *PollTask) { p.Address = "999.1.1.1" }, `address: "999.1.1.1" is not an IPv4 address`},
		{"unknown transport", func(p *PollTask) { p.Transport = "sctp" }, `has transport "sctp", which is not one of udp`},
		{"family", func(p *PollTask) { p.Address, p.Transport = "192.0.2.1", "udp6" },
			`address: "192.0.2.1" is an IPv4 address, and udp6 reaches IPv6 agents only`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := good
			tc.mutate(&tk)
			data, _ := json.Marshal(tk)
			_, err := DecodeTask(data)
			if err == nil || !errors.Is(err, ErrBadTask) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "core-sw1.example.net") {
				t.Fatalf("DecodeTask: %v; want ErrBadTask naming the host and containing %q", err, tc.want)
			}
		})
	}
	for _, garbage := range []string{"", "{", "null", "[]", `{"schema":"one"}`, "\x00\x01"} {
		if _, err := DecodeTask([]byte(garbage)); !errors.Is(err, ErrBadTask) {
			t.Errorf("DecodeTask(%q) = %v, want ErrBadTask", garbage, err)
		}
	}
}

func TestHostKey(t *testing.T) {
	for in, want := range map[string]string{
		"core-sw1.example.net": "core-sw1-example-net",
		"Core-SW1":             "core-sw1",
		"192.0.2.10":           "192-0-2-10",
		"2001:db8::1":          "2001-db8--1",
		"fe80::1%eth0":         "fe80--1-eth0",
		"[::1]:16551":          "---1--16551",
		"udp6://[::1]:16551":   "udp6------1--16551",
		"udp6:[::1]:16551":     "udp6----1--16551",
		"tcp:127.0.0.1:1161":   "tcp-127-0-0-1-1161",
	} {
		got, err := HostKey(in)
		if err != nil || got != want {
			t.Errorf("HostKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a b", "sw*", "x>y", "a@b", "a\\b"} {
		if _, err := HostKey(bad); err == nil {
			t.Errorf("HostKey(%q) accepted", bad)
		}
	}
}

// What the dispatcher publishes (json.Marshal of a PollTask) and the
// documented golden task both take the fast path, and decode as
// encoding/json decodes them.
func TestDecodeTaskFastPathIsTaken(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "poll_task.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	published, _ := json.Marshal(sampleTask())
	minimal, _ := json.Marshal(PollTask{Schema: Schema, ID: "default.h@1", Host: "h", Address: "192.0.2.1", Port: 161, Credentials: "c"})
	for name, data := range map[string][]byte{"golden": golden, "published": published, "minimal": minimal} {
		var fast, ref PollTask
		if !decodeTaskFast(data, &fast) {
			t.Fatalf("%s: the fast decoder declined %s", name, data)
		}
		if err := json.Unmarshal(data, &ref); err != nil || !reflect.DeepEqual(fast, ref) {
			t.Fatalf("%s: fast %+v\njson %+v (%v)", name, fast, ref, err)
		}
	}
	for _, declined := range []string{`{"ID":"x"}`, `{"id":"a\"b"}`, `{"get":null}`, `{"retries":1.0}`, `{"extra":1}`} {
		var tk PollTask
		if decodeTaskFast([]byte(declined), &tk) {
			t.Errorf("the fast decoder took %s, which it leaves to encoding/json", declined)
		}
	}
}

// PollTask.AppendJSON writes what encoding/json writes (read back, the same
// task), and its output takes the poller's fast path.
func TestPollTaskAppendJSONMatchesEncodingJSON(t *testing.T) {
	odd := sampleTask()
	odd.Host, odd.Address = "odd \"host\" <&> \u2028 é\x01", "::1"
	odd.Get, odd.Walk, odd.Tables = nil, []string{}, []Table{{Root: ".1.3"}}
	odd.NoBulk, odd.UnconnectedUDP, odd.AllowNonIncreasingOIDs = true, true, false
	odd.Transport = "tcp6"
	odd.ScheduledAt = time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	for name, tk := range map[string]PollTask{"sample": sampleTask(), "zero": {}, "odd": odd} {
		mine := tk.AppendJSON(nil)
		ref, err := json.Marshal(&tk)
		if err != nil {
			t.Fatal(err)
		}
		// The same task once read back; times are written in UTC, the same instants.
		var a, b PollTask
		if err := json.Unmarshal(mine, &a); err != nil {
			t.Fatalf("%s: AppendJSON wrote invalid JSON: %v\n%s", name, err, mine)
		}
		_ = json.Unmarshal(ref, &b)
		for _, tm := range []*time.Time{&a.ScheduledAt, &a.Deadline, &b.ScheduledAt, &b.Deadline} {
			*tm = tm.UTC()
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s:\nmine %s\njson %s", name, mine, ref)
		}
		back, err := DecodeTask(mine)
		if name == "sample" && (err != nil || !reflect.DeepEqual(back, tk)) {
			t.Fatalf("sample round trip: %v\n%+v", err, back)
		}
	}
	var fast PollTask
	if tk := sampleTask(); !decodeTaskFast(tk.AppendJSON(nil), &fast) {
		t.Fatal("the dispatcher's own encoding does not take the poller's fast path")
	}
}

func BenchmarkPollTaskAppendJSON(b *testing.B) {
	tk := sampleTask()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = tk.AppendJSON(buf[:0])
	}
}
