package snmp

import (
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
