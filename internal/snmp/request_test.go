package snmp

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gosnmp/gosnmp"
)

// The engine's requests read back, through gosnmp's decoder, as the
// requests they are: version, community, PDU type, request id,
// max-repetitions and the OIDs, whatever their sizes (long forms of the
// lengths included).
func TestRequestsDecodeAsGosnmp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		n := 1 + rng.IntN(60)
		oids := make([]string, n)
		for k := range oids {
			arcs := []string{fmt.Sprint(rng.IntN(3))}
			if arcs[0] == "2" {
				arcs = append(arcs, fmt.Sprint(rng.IntN(1000)))
			} else {
				arcs = append(arcs, fmt.Sprint(rng.IntN(40)))
			}
			for range rng.IntN(20) {
				arcs = append(arcs, fmt.Sprint(rng.Uint32()>>uint(rng.IntN(32))))
			}
			oids[k] = "." + strings.Join(arcs, ".")
		}
		version := []gosnmp.SnmpVersion{gosnmp.Version1, gosnmp.Version2c}[i%2]
		pdu := []gosnmp.PDUType{gosnmp.GetRequest, gosnmp.GetNextRequest, gosnmp.GetBulkRequest}[i%3]
		id, reps := rng.Uint32()&0x7fffffff, rng.IntN(300)
		community := strings.Repeat("c", rng.IntN(200))
		out, err := appendRequest(nil, version, community, pdu, id, reps, oids)
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := (&gosnmp.GoSNMP{}).SnmpDecodePacket(out)
		if err != nil {
			t.Fatalf("request %d does not decode: %v\n% x", i, err, out)
		}
		if pkt.Version != version || pkt.Community != community || pkt.PDUType != pdu || pkt.RequestID != id || len(pkt.Variables) != n {
			t.Fatalf("request %d reads back as v%d %q %v id %d with %d varbinds", i, pkt.Version, pkt.Community, pkt.PDUType, pkt.RequestID, len(pkt.Variables))
		}
		if pdu == gosnmp.GetBulkRequest && (pkt.NonRepeaters != 0 || pkt.MaxRepetitions != uint32(reps)) {
			t.Fatalf("request %d: non-repeaters %d max-repetitions %d, want 0 %d", i, pkt.NonRepeaters, pkt.MaxRepetitions, reps)
		}
		for k, v := range pkt.Variables {
			if v.Name != oids[k] || v.Type != gosnmp.Null {
				t.Fatalf("request %d varbind %d: %s %v, want %s Null", i, k, v.Name, v.Type, oids[k])
			}
		}
	}
	for _, bad := range []string{".1", "", ".1.3.x", ".3.1", ".1.40.1", ".1.3.99999999999"} {
		if _, err := appendRequest(nil, gosnmp.Version2c, "public", gosnmp.GetRequest, 1, 0, []string{bad}); err == nil {
			t.Errorf("OID %q encoded without an error", bad)
		}
	}
}
