package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/influxtest"
	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/harness/recordtest"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// A record polled from the simulator, written to a real InfluxDB in
// Telegraf's inputs.snmp shape: the database answers with the agent's
// values under measurement, tag and field names a Telegraf dashboard uses.
func TestWriteToInfluxDB(t *testing.T) {
	db := influxtest.Start(t, "flock")
	rec := recordtest.Router(t, 3)
	conv, err := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.AddRecord(&rec, conv.Convert(&rec, nil))
	if b.Lines() != 1+3+3 { // the scalars, ifTable's rows, ifXTable's
		t.Fatalf("%d lines:\n%s", b.Lines(), b.Bytes())
	}
	c, err := New(db.WriteURL("flock"), "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Send(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var uptime, hc2 uint64
	var name2 string
	for _, vb := range rec.Varbinds {
		switch vb.OID {
		case snmpsim.OIDSysUpTime:
			uptime = vb.Uint
		case ".1.3.6.1.2.1.31.1.1.1.6.2":
			hc2 = vb.Uint
		case ".1.3.6.1.2.1.31.1.1.1.1.2":
			name2 = string(vb.Bytes)
		}
	}
	num := func(v any) float64 {
		n, _ := v.(json.Number)
		f, _ := n.Float64()
		if x, ok := v.(float64); ok {
			f = x
		}
		return f
	}
	rows, err := db.Query(ctx, "flock", fmt.Sprintf(`SELECT "sysUpTime", "flock_poll_up", "site" FROM "snmp" WHERE "host" = '%s'`, rec.Host))
	if err != nil || len(rows) != 1 || num(rows[0]["sysUpTime"]) != float64(uptime) || num(rows[0]["flock_poll_up"]) != 1 || rows[0]["site"] != task.DefaultSite {
		t.Fatalf("snmp of %s: %v %v; the agent's sysUpTime %d", rec.Host, rows, err, uptime)
	}
	rows, err = db.Query(ctx, "flock", fmt.Sprintf(`SELECT "ifHCInOctets", "ifIndex", "ifDescr" FROM "ifXTable" WHERE "host" = '%s' AND "ifName" = '%s'`, rec.Host, name2))
	if err != nil || len(rows) != 1 || num(rows[0]["ifHCInOctets"]) != float64(hc2) || rows[0]["ifIndex"] != "2" || rows[0]["ifDescr"] == "" {
		t.Fatalf("ifXTable of %s %s: %v %v; the agent's ifHCInOctets %d", rec.Host, name2, rows, err, hc2)
	}
	// Integer fields stay integers: a float would conflict with them.
	var f Batch
	f.buf = fmt.Appendf(nil, "snmp,host=%s sysUpTime=1.5 %d\n", rec.Host, rec.StartedAt.UnixNano()+1)
	if err := c.Send(ctx, &f); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("a float into sysUpTime: %v; want a field type conflict, final", err)
	}
	port, _ := procs.FreePort()
	down, _ := New(fmt.Sprintf("http://127.0.0.1:%d/write?db=flock&u=flock&p=s3cret", port), "", time.Second)
	if err := down.Send(ctx, &b); err == nil || errors.Is(err, ErrRejected) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("no server: %v; want a retryable error without the password", err)
	}
	for _, u := range []string{"influx:8086/write?db=x", "http://h:8086/write", "http://h:8086/api/v2/write?org=o", "http://h:8086/query?db=x"} {
		if _, err := New(u, "", time.Second); err == nil || !strings.Contains(err.Error(), u) {
			t.Errorf("New(%q): %v; want an error naming the URL", u, err)
		}
	}
}

// Escaping: a label with spaces, commas and equals signs stays one tag.
func TestLineEscapes(t *testing.T) {
	rec := task.HostRecord{Host: "core sw1", Site: "default", StartedAt: time.Unix(1700000000, 5)}
	var b Batch
	b.AddRecord(&rec, []sample.Sample{{Name: "ifHCInOctets", Table: "ifXTable", Labels: []sample.Label{{Name: "ifIndex", Value: "1"}, {Name: "ifAlias", Value: "a,b=c d\\e"}}, Value: 7, Integer: true, Int: 7},
		{Name: "x y", Value: 0.5}})
	want := `ifXTable,host=core\ sw1,site=default,ifIndex=1,ifAlias=a\,b\=c\ d\\e ifHCInOctets=7i 1700000000000000005` + "\n" +
		`snmp,host=core\ sw1,site=default x\ y=0.5 1700000000000000005` + "\n"
	if got := string(b.Bytes()); got != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", got, want)
	}
}

// Encoding a 48-interface router's samples as lines.
func BenchmarkAddRecord(b *testing.B) {
	rec := recordtest.Router(b, 48)
	conv, _ := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	samples := conv.Convert(&rec, nil)
	var batch Batch
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		batch.Reset()
		batch.AddRecord(&rec, samples)
	}
	b.ReportMetric(float64(b.N*len(samples))/b.Elapsed().Seconds(), "samples/s")
}
