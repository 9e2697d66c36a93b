//go:build integration

package export_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/promtest"
	"github.com/flock-snmp/flock/harness/recordtest"
	"github.com/flock-snmp/flock/harness/syncbuf"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/export"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

// A sink writes what the results stream holds to a real VictoriaMetrics,
// with the host's lookups; a reload's new lookups label the next records;
// Drain returns once everything stored is written.
func TestSinkWritesWithReloadedLookups(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := startBus(t)
	vm := promtest.StartVictoriaMetrics(t)
	load := func(lookup string) *config.Config {
		path := filepath.Join(t.TempDir(), "flock.yaml")
		body := `
modules: [{name: if-mib, walk: [IF-MIB::ifXTable], lookups: [` + lookup + `]}]
sinks: [{type: prometheus_remote_write, name: vm, url: '` + vm.WriteURL() + `'}]
hosts: [{name: sim-00001, modules: [if-mib]}]
`
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sinks, err := export.Start(ctx, load("ifName"), bus.OpenSink, bus, export.NewMetrics(nil), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	rec := recordtest.Router(t, 2)
	if rec.Host != "sim-00001" || rec.Site != task.DefaultSite {
		t.Fatalf("the simulated router is %s of site %s; the test's inventory names sim-00001 of default", rec.Host, rec.Site)
	}
	publish := func(rec task.HostRecord) {
		t.Helper()
		if err := bus.PublishRecord(ctx, task.ResultSubject(rec.Site, rec.HostKey), rec.TaskID, rec.AppendJSON(nil)); err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		defer dcancel()
		start := time.Now()
		if err := sinks.Drain(dctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("drained in %s", time.Since(start))
	}
	// VictoriaMetrics makes a write searchable within a second or two.
	query := func(q string, at time.Time) int {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			rs, err := vm.Query(ctx, q, at)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) > 0 || time.Now().After(deadline) {
				t.Logf("%s: %d series", q, len(rs))
				return len(rs)
			}
		}
	}
	publish(rec)
	first := rec.StartedAt
	if n := query(`ifHCInOctets{host="`+rec.Host+`",ifName="Gi0/1",ifIndex="1"}`, first.Add(time.Second)); n != 1 {
		t.Fatalf("after Drain, ifHCInOctets of Gi0/1 labelled by the lookup ifName: %d series, want 1", n)
	}
	// The reload: ifDescr instead of ifName, for the records from now on.
	if err := sinks.SetHosts(load("ifDescr")); err != nil {
		t.Fatal(err)
	}
	rec.TaskID += "-2"
	rec.StartedAt = first.Add(2 * time.Second)
	publish(rec)
	at := rec.StartedAt.Add(time.Second)
	if n := query(`ifHCInOctets{host="`+rec.Host+`",ifDescr="GigabitEthernet0/1",ifName=""}`, at); n != 1 {
		t.Errorf("after the reload, ifHCInOctets labelled by ifDescr alone: %d series, want 1", n)
	}
	cancel()
	sinks.Wait()
}

// Prometheus refuses a whole request for one sample out of order (400,
// rolled back): the batch is halved down to the record that holds it, and
// the rest of the batch is written.
func TestRefusedBatchIsSplit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := startBus(t)
	prom := promtest.Start(t)
	path := filepath.Join(t.TempDir(), "flock.yaml")
	if err := os.WriteFile(path, []byte(`sinks: [{type: prometheus_remote_write, url: '`+prom.WriteURL()+`', batch_records: 10}]
hosts: [sim-00001, sim-00002, sim-00003]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sinks, err := export.Start(ctx, cfg, bus.OpenSink, bus, export.NewMetrics(nil), log)
	if err != nil {
		t.Fatal(err)
	}
	base := recordtest.Router(t, 1)
	rec := func(host string, at time.Time) task.HostRecord {
		r := base
		r.Host, r.HostKey, r.TaskID, r.StartedAt = host, host, host+"@"+at.Format(time.RFC3339Nano), at
		return r
	}
	publish := func(rs ...task.HostRecord) {
		t.Helper()
		for _, r := range rs {
			if err := bus.PublishRecord(ctx, task.ResultSubject(r.Site, r.HostKey), r.TaskID, r.AppendJSON(nil)); err != nil {
				t.Fatal(err)
			}
		}
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		defer dcancel()
		if err := sinks.Drain(dctx); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	// And a host not in the inventory, twice: warned about once, written.
	publish(rec("sim-00001", t0.Add(30*time.Second)), rec("sim-00009", t0), rec("sim-00009", t0.Add(10*time.Second)))
	// One batch: sim-00001 older than what Prometheus holds, then two others.
	publish(rec("sim-00001", t0), rec("sim-00002", t0), rec("sim-00003", t0))
	for host, want := range map[string]int{"sim-00001": 1, "sim-00002": 1, "sim-00003": 1, "sim-00009": 2} {
		rs, err := prom.Query(ctx, `count_over_time(flock_poll_up{host="`+host+`"}[5m])`, t0.Add(40*time.Second))
		if err != nil || len(rs) != 1 || int(rs[0].Value) != want {
			t.Errorf("%s: flock_poll_up samples %+v (%v), want %d", host, rs, err, want)
		}
	}
	if n := strings.Count(logs.String(), "sink refused a record"); n != 1 || !strings.Contains(logs.String(), "host=sim-00001") || !strings.Contains(logs.String(), "out of order") {
		t.Errorf("want one refusal, of sim-00001's old record, with Prometheus's answer:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "host not in this writer's inventory"); n != 1 || !strings.Contains(logs.String(), "inventory: its samples carry no lookups or info (give the writer the dispatcher's configuration)\" sink=prometheus_remote_write host=sim-00009") {
		t.Errorf("want one warning, of sim-00009:\n%s", logs.String())
	}
	cancel()
	sinks.Wait()
}

// startBus runs a JetStream server for the test and connects to it, the
// streams made as a dispatcher makes them.
func startBus(tb testing.TB) *natsbus.Bus {
	tb.Helper()
	srv := natstest.RunJetStream(tb)
	bus, err := natsbus.Connect(context.Background(), natsbus.ConnectOptions{URL: srv.ClientURL(), Timeout: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = bus.Close() })
	if err := bus.EnsureStreams(context.Background(), natsbus.StreamOptions{Sites: []string{task.DefaultSite}}); err != nil {
		tb.Fatal(err)
	}
	return bus
}

// One writer's throughput, end to end: records of a 48-interface router
// (963 samples each) stored in the results stream, fetched, converted,
// remote-written to a real VictoriaMetrics and acknowledged. Reports
// records and samples per second of wall time (one writer, one batch at a
// time; the database shares the machine).
func BenchmarkWriterToVictoriaMetrics(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := startBus(b)
	vm := promtest.StartVictoriaMetrics(b)
	path := filepath.Join(b.TempDir(), "flock.yaml")
	if err := os.WriteFile(path, []byte(`modules: [{name: if-mib, walk: [IF-MIB::ifTable, IF-MIB::ifXTable], lookups: [ifName, ifDescr, ifAlias]}]
sinks: [{type: prometheus_remote_write, url: '`+vm.WriteURL()+`'}]
hosts: [{name: sim-00001, modules: [if-mib]}]
`), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	base := recordtest.Router(b, 48)
	// Store the records first, then time the writer through them.
	t0 := time.Now().Add(-time.Hour)
	for i := range b.N {
		r := base
		r.StartedAt = t0.Add(time.Duration(i) * time.Millisecond)
		r.TaskID = fmt.Sprintf("bench@%d", i)
		if err := bus.PublishRecord(ctx, task.ResultSubject(r.Site, r.HostKey), r.TaskID, r.AppendJSON(nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	sinks, err := export.Start(ctx, cfg, bus.OpenSink, bus, export.NewMetrics(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer dcancel()
	if err := sinks.Drain(dctx); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el, "records/s")
	b.ReportMetric(float64(b.N)*963/el, "samples/s")
	cancel()
	sinks.Wait()
}
