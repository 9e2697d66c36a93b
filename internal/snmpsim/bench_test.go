package snmpsim

import (
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// The simulator's cost per answer: decode is the client's; this is lookup,
// value computation and encoding of a 25-row GETBULK.
func BenchmarkRespondGetBulk25(b *testing.B) {
	f, err := Start(Config{Devices: 1, Interfaces: 48})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	d := f.Devices()[0]
	p := req(gosnmp.Version2c, gosnmp.GetBulkRequest, OIDIfXTable)
	p.MaxRepetitions = 25
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		resp := d.Respond(p, now)
		if _, err := resp.MarshalMsg(); err != nil {
			b.Fatal(err)
		}
	}
}
