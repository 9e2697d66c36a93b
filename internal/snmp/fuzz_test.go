package snmp

import (
	"bytes"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// FuzzResponse feeds arbitrary bytes to the decoding a poller does on an
// agent's answer (gosnmp's decoder, then Convert). Seeds are real answers
// of the simulator. Broken input is an error, never a panic.
func FuzzResponse(f *testing.F) {
	fleet := simtest.Start(f, snmpsim.Config{Devices: 1, Interfaces: 3})
	dev := fleet.Devices()[0]
	for _, pdu := range []gosnmp.PDUType{gosnmp.GetRequest, gosnmp.GetNextRequest, gosnmp.GetBulkRequest} {
		req := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: pdu, RequestID: 7, MaxRepetitions: 5,
			Variables: []gosnmp.SnmpPDU{{Name: snmpsim.OIDSysDescr, Type: gosnmp.Null}, {Name: ".1.3.6.1.2.1.31.1.1.1.6", Type: gosnmp.Null}}}
		if pdu == gosnmp.GetRequest {
			req.Variables[1].Name = ".1.3.6.1.2.1.31.1.1.1.6.1"
		}
		out, err := dev.Respond(req, time.Now()).MarshalMsg()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(out)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := &gosnmp.GoSNMP{}
		pkt, err := dec.SnmpDecodePacket(data)
		if err != nil || pkt == nil {
			return
		}
		var vb task.Varbind
		for i := range pkt.Variables {
			if err := Convert(&pkt.Variables[i], &vb); err == nil {
				_ = vb.AppendJSON(nil)
			}
		}
	})
}

// FuzzAnswer holds the engine's own reading of answers to gosnmp's:
// wherever the direct reader (decodeFast) takes a message, gosnmp's decoder
// and Convert must read the same version, request id, error status and
// index, and the same varbinds. Messages it does not take go to gosnmp.
func FuzzAnswer(f *testing.F) {
	fleet := simtest.Start(f, snmpsim.Config{Devices: 1, Interfaces: 3})
	dev := fleet.Devices()[0]
	for _, pdu := range []gosnmp.PDUType{gosnmp.GetRequest, gosnmp.GetNextRequest, gosnmp.GetBulkRequest} {
		for _, root := range []string{snmpsim.OIDSysDescr, ".1.3.6.1.2.1.1", ".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.31.1.1.1.6", ".1.3.6.1.2.1.4.20"} {
			req := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: pdu, RequestID: 7, MaxRepetitions: 12,
				Variables: []gosnmp.SnmpPDU{{Name: root, Type: gosnmp.Null}, {Name: ".1.3.6.1.4.1.99999.1", Type: gosnmp.Null}}}
			out, err := dev.Respond(req, time.Now()).MarshalMsg()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(out)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a answer
		if !a.decodeFast(data) {
			return
		}
		pkt, err := (&gosnmp.GoSNMP{}).SnmpDecodePacket(data)
		if err != nil {
			t.Fatalf("read directly, but gosnmp refuses it: %v", err)
		}
		if pkt.PDUType != gosnmp.GetResponse || pkt.Version != a.version || pkt.RequestID != a.requestID ||
			pkt.Error != a.errStatus || pkt.ErrorIndex != a.errIndex || len(pkt.Variables) != len(a.vbs) {
			t.Fatalf("header: gosnmp %v v%d id %d status %d index %d %d varbinds; direct v%d id %d status %d index %d %d varbinds",
				pkt.PDUType, pkt.Version, pkt.RequestID, pkt.Error, pkt.ErrorIndex, len(pkt.Variables),
				a.version, a.requestID, a.errStatus, a.errIndex, len(a.vbs))
		}
		for i := range pkt.Variables {
			var want task.Varbind
			if err := Convert(&pkt.Variables[i], &want); err != nil {
				t.Fatalf("varbind %d read directly as %+v, but gosnmp's does not convert: %v", i, a.vbs[i], err)
			}
			got := a.vbs[i]
			if got.OID != want.OID || got.Type != want.Type || got.Int != want.Int || got.Uint != want.Uint ||
				got.Float != want.Float || got.Str != want.Str || !bytes.Equal(got.Bytes, want.Bytes) {
				t.Fatalf("varbind %d: direct %+v, gosnmp %+v", i, got, want)
			}
		}
	})
}
