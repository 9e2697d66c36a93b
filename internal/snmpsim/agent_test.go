package snmpsim

import (
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

func device(t *testing.T, ifaces int) *Device {
	t.Helper()
	f, err := Start(Config{Devices: 1, Interfaces: ifaces})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f.Devices()[0]
}

func req(v gosnmp.SnmpVersion, typ gosnmp.PDUType, oids ...string) *gosnmp.SnmpPacket {
	p := &gosnmp.SnmpPacket{Version: v, Community: "public", PDUType: typ, RequestID: 42}
	for _, o := range oids {
		p.Variables = append(p.Variables, gosnmp.SnmpPDU{Name: o, Type: gosnmp.Null})
	}
	return p
}

func names(p *gosnmp.SnmpPacket) []string {
	var out []string
	for _, v := range p.Variables {
		out = append(out, v.Name)
	}
	return out
}

func TestGetNextOrderIsNumeric(t *testing.T) {
	d := device(t, 12)
	// After ifDescr.9 comes ifDescr.10 (numeric), not ifDescr.1x (lexical).
	resp := d.Respond(req(gosnmp.Version2c, gosnmp.GetNextRequest, ".1.3.6.1.2.1.2.2.1.2.9", ".1.3.6.1.2.1.2.2.1.2.12", ".1"), time.Now())
	want := []string{".1.3.6.1.2.1.2.2.1.2.10", ".1.3.6.1.2.1.2.2.1.3.1", OIDSysDescr}
	got := names(resp)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("GETNEXT answers %v, want %v", got, want)
		}
	}
	if resp.RequestID != 42 || resp.PDUType != gosnmp.GetResponse {
		t.Errorf("response header %+v", resp)
	}
}

func TestGetBulkLayout(t *testing.T) {
	d := device(t, 3)
	p := req(gosnmp.Version2c, gosnmp.GetBulkRequest, ".1.3.6.1.2.1.1.4", ".1.3.6.1.2.1.2.2.1.1", ".1.3.6.1.2.1.31.1.1.1.1")
	p.NonRepeaters, p.MaxRepetitions = 1, 4
	got := names(d.Respond(p, time.Now()))
	// One non-repeater, then rows of the two repeaters, interleaved, four times.
	want := []string{
		".1.3.6.1.2.1.1.4.0",
		".1.3.6.1.2.1.2.2.1.1.1", ".1.3.6.1.2.1.31.1.1.1.1.1",
		".1.3.6.1.2.1.2.2.1.1.2", ".1.3.6.1.2.1.31.1.1.1.1.2",
		".1.3.6.1.2.1.2.2.1.1.3", ".1.3.6.1.2.1.31.1.1.1.1.3",
		".1.3.6.1.2.1.2.2.1.2.1", ".1.3.6.1.2.1.31.1.1.1.6.1",
	}
	if len(got) != len(want) {
		t.Fatalf("GETBULK gave %d varbinds %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("varbind %d = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestEndOfView(t *testing.T) {
	d := device(t, 1)
	last := ".1.3.6.1.2.1.31.1.1.1.18.1" // ifAlias.1, the last object
	p := req(gosnmp.Version2c, gosnmp.GetBulkRequest, last)
	p.MaxRepetitions = 5
	resp := d.Respond(p, time.Now())
	if len(resp.Variables) != 1 || resp.Variables[0].Type != gosnmp.EndOfMibView {
		t.Fatalf("bulk past the end: %+v, want one EndOfMibView", resp.Variables)
	}
	v1 := d.Respond(req(gosnmp.Version1, gosnmp.GetNextRequest, last), time.Now())
	if v1.Error != gosnmp.NoSuchName || v1.ErrorIndex != 1 {
		t.Fatalf("v1 GETNEXT past the end: error %v index %d, want noSuchName 1", v1.Error, v1.ErrorIndex)
	}
	if d.Respond(req(gosnmp.Version1, gosnmp.GetBulkRequest, ".1"), time.Now()) != nil {
		t.Fatal("a v1 agent must drop GETBULK")
	}
}

func TestValuesAreTyped(t *testing.T) {
	d := device(t, 2)
	resp := d.Respond(req(gosnmp.Version2c, gosnmp.GetRequest, OIDSysUpTime, ".1.3.6.1.2.1.31.1.1.1.6.2", ".1.3.6.1.2.1.2.2.1.10.2", OIDSysName), time.Now())
	types := []gosnmp.Asn1BER{gosnmp.TimeTicks, gosnmp.Counter64, gosnmp.Counter32, gosnmp.OctetString}
	for i, typ := range types {
		if resp.Variables[i].Type != typ {
			t.Errorf("%s is %v, want %v", resp.Variables[i].Name, resp.Variables[i].Type, typ)
		}
	}
	if c := resp.Variables[1].Value.(uint64); c <= 1<<53 {
		t.Errorf("Counter64 %d should exceed 2^53 so float64 readers are caught", c)
	}
	// Every answer must marshal: the codec is the one on the wire.
	if _, err := resp.MarshalMsg(); err != nil {
		t.Fatal(err)
	}
}

func TestRejectsNonLoopback(t *testing.T) {
	if _, err := Start(Config{Devices: 1, ListenIP: "192.0.2.1"}); err == nil {
		t.Fatal("the simulator must only listen on loopback")
	}
}

// A device with SilentAbove answers requests up to that many varbinds and
// ignores larger ones, GETs and GETBULKs alike, as seen through a real
// client (gosnmp) over UDP.
func TestSilentAbove(t *testing.T) {
	f, err := Start(Config{Devices: 1, Interfaces: 4, SilentAbove: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	d := f.Devices()[0]
	g := &gosnmp.GoSNMP{Target: d.AddrPort().Addr().String(), Port: d.AddrPort().Port(), Community: "public",
		Version: gosnmp.Version2c, Timeout: time.Second, Retries: 1, MaxOids: 60}
	if err := g.Connect(); err != nil {
		t.Fatal(err)
	}
	defer g.Conn.Close()
	const sysDescr, sysUpTime, sysName, ifDescr, ifInOctets = ".1.3.6.1.2.1.1.1.0", ".1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.2.2.1.2", ".1.3.6.1.2.1.2.2.1.10"
	if r, err := g.Get([]string{sysDescr, sysUpTime, sysName}); err != nil || len(r.Variables) != 3 {
		t.Fatalf("GET of 3 varbinds (limit 4): %v", err)
	}
	if _, err := g.Get([]string{sysDescr, sysUpTime, sysName, sysDescr, sysUpTime}); err == nil {
		t.Fatal("GET of 5 varbinds (limit 4) was answered")
	}
	if r, err := g.GetBulk([]string{ifDescr, ifInOctets}, 0, 2); err != nil || len(r.Variables) != 4 {
		t.Fatalf("GETBULK of 2 columns x 2 (limit 4): %v", err)
	}
	if _, err := g.GetBulk([]string{ifDescr, ifInOctets}, 0, 3); err == nil {
		t.Fatal("GETBULK of 2 columns x 3 (limit 4) was answered")
	}
	if _, err := g.GetBulk([]string{ifDescr}, 0, 25); err == nil {
		t.Fatal("GETBULK of 1 column x 25 (limit 4) was answered")
	}
	if n := d.Silenced(); n != 6 { // each sent twice (one retry)
		t.Errorf("Silenced = %d, want the 3 requests ignored, each sent twice", n)
	}
	d.SetSilentAbove(0)
	if _, err := g.Get([]string{sysDescr, sysUpTime, sysName, sysDescr, sysUpTime}); err != nil {
		t.Errorf("with the limit lifted, a GET of 5: %v", err)
	}
}
