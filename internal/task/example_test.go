package task_test

import (
	"fmt"

	"github.com/flock-snmp/flock/internal/task"
)

// A third-party subscriber (a TSDB writer, say) receives HostRecords on
// flock.results.> and decodes them like this. Counter64 values stay exact.
func Example_decodeHostRecord() {
	msg := []byte(`{"schema":1,"task_id":"default.sw1@1","site":"default","host":"sw1.example.net","host_key":"sw1-example-net",` +
		`"address":"sw1.example.net","port":161,"poller":"p1","attempt":1,"scheduled_at":"2026-11-25T12:00:00Z",` +
		`"started_at":"2026-11-25T12:00:00.01Z","duration_ms":2.5,"varbinds":[` +
		`{"oid":".1.3.6.1.2.1.1.5.0","type":"OctetString","value":"sw1"},` +
		`{"oid":".1.3.6.1.2.1.31.1.1.1.6.1","type":"Counter64","value":18446744073709551615}],"error":null}`)
	rec, err := task.DecodeRecord(msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, vb := range rec.Varbinds {
		switch vb.Type {
		case task.TypeOctetString:
			fmt.Printf("%s %s %s\n", vb.OID, vb.Type, vb.Bytes)
		case task.TypeCounter64:
			fmt.Printf("%s %s %d\n", vb.OID, vb.Type, vb.Uint)
		}
	}
	fmt.Println("error:", rec.Error)
	// Output:
	// .1.3.6.1.2.1.1.5.0 OctetString sw1
	// .1.3.6.1.2.1.31.1.1.1.6.1 Counter64 18446744073709551615
	// error: <nil>
}
