//go:build integration

package e2e

// Metric outputs against the real databases: net-snmp's snmpd polled with
// the system and if-mib modules, the samples written to Prometheus (remote
// write), VictoriaMetrics (remote write and line protocol) and InfluxDB
// (line protocol), and published on flock.metrics.>; each database's HTTP
// API is asked for what it stored and compared with snmpget/snmpbulkwalk of
// the same agent. Then a database stopped for 20 s under a running writer
// (the results command): every poll's samples arrive once it is back.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/influxtest"
	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/promtest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// The modules as config/flock.yaml ships them, but for the walk of
// if-mib: only ifXTable, so that the lookup ifDescr (an ifTable column) is
// fetched because it is a lookup.
const tsdbModules = `modules:
  - name: system
    get: [sysDescr.0, sysObjectID.0, sysUpTime.0, sysContact.0, sysName.0, sysLocation.0]
    info: [sysDescr, sysName]
  - name: if-mib
    get: [ifNumber.0]
    walk: [IF-MIB::ifXTable]
    lookups: [ifName, ifDescr, ifAlias]
`

func TestMetricsInDatabases(t *testing.T) {
	port := startSnmpd(t, "")
	prom := promtest.Start(t)
	vm := promtest.StartVictoriaMetrics(t)
	influx := influxtest.Start(t, "flock")
	dir := t.TempDir()
	natsPort := freePort(t)
	cfg := fmt.Sprintf(`nats:
  embedded: {listen: 127.0.0.1:%d, store_dir: %s}
credentials:
  - {name: interop, version: 2c, community: %s}
%s
defaults:
  credentials: interop
  timeout: 2s
  get: []
  modules: [system, if-mib]
metrics_subject: true
sinks:
  - {type: stdout}
  - {type: prometheus_remote_write, url: '%s'}
  - {type: prometheus_remote_write, name: vm, url: '%s'}
  - {type: influx, url: '%s'}
  - {type: influx, name: vm-influx, url: '%s'}
  - {type: influx, name: nodb, url: '%s'}
hosts:
  - {name: snmpd-1.example.net, address: 127.0.0.1, port: %d}
`, natsPort, filepath.Join(dir, "nats"), community, tsdbModules, prom.WriteURL(), vm.WriteURL(), influx.WriteURL("flock"), vm.InfluxWriteURL(), influx.WriteURL("nodb"), port)
	cfgPath := filepath.Join(dir, "flock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	check := start(t, "check", "dispatcher", nil, "--config", cfgPath, "--check-config")
	if code := check.wait(t, 10*time.Second); code != 0 || !strings.Contains(check.stdout.String(), "sinks: stdout, prometheus_remote_write prometheus_remote_write (") {
		t.Fatalf("--check-config: exit %d: %s%s", code, check.stdout.String(), check.stderr.String())
	}

	// What net-snmp reads before the poll, and after: Flock's values lie between.
	before := snmpValues(t, port)
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	// The line protocol on flock.metrics.>, as Telegraf's nats_consumer would read it.
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	var linesMu sync.Mutex
	var lines []string
	waitUntil(t, "the embedded NATS server", func() bool {
		b, err := natsbus.Connect(context.Background(), natsbus.ConnectOptions{URL: natsURL, Timeout: 200 * time.Millisecond})
		if err != nil {
			return false
		}
		t.Cleanup(func() { b.Close() })
		stop, err := b.Subscribe(task.MetricsPrefix+">", func(subject string, data []byte) {
			linesMu.Lock()
			lines = append(lines, subject+" "+string(data))
			linesMu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return true
	})
	start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + natsURL}, "--config", cfgPath)
	if code := disp.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("dispatcher --once exit %d:\n%s", code, disp.stderr.String())
	}
	after := snmpValues(t, port)
	// A database that refuses the write for good (4xx): logged with its
	// answer, not retried, the run not held up by it.
	if !regexp.MustCompile(`sink refused a record: not retried.* sink=nodb host=snmpd-1.example.net .*404 Not Found: .*database not found`).MatchString(disp.stderr.String()) {
		t.Errorf("the refusal of InfluxDB without the database is not logged with its answer:\n%s", disp.stderr.String())
	}
	recs := decodeAll(t, disp.stdout.Lines())["snmpd-1.example.net"]
	if len(recs) != 1 || recs[0].Error != nil {
		t.Fatalf("records of snmpd-1: %+v", recs)
	}
	at := recs[0].StartedAt
	ctx := context.Background()
	host := `host="snmpd-1.example.net"`

	between := func(what string, got float64, lo, hi uint64) {
		t.Helper()
		if got < float64(lo) || got > float64(hi) {
			t.Errorf("%s = %.0f, want between net-snmp's %d (before) and %d (after)", what, got, lo, hi)
		}
	}
	// Prometheus and VictoriaMetrics over remote write: one sample each, by MIB name.
	for _, db := range []struct {
		name string
		s    *promtest.Server
	}{{"prometheus", prom}, {"victoria-metrics", vm}} {
		one := func(q string) promtest.Result {
			t.Helper()
			var rs []promtest.Result
			var err error
			// VictoriaMetrics makes a write searchable within a second or two.
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
				rs, err = db.s.Query(ctx, q, at.Add(time.Second))
				if err == nil && len(rs) == 1 || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || len(rs) != 1 {
				t.Fatalf("%s: %s: %v %+v", db.name, q, err, rs)
			}
			return rs[0]
		}
		between(db.name+" sysUpTime", one(`sysUpTime{`+host+`}`).Value, before.sysUpTime, after.sysUpTime)
		r := one(`ifHCInOctets{ifName="lo",` + host + `}`)
		between(db.name+` ifHCInOctets{ifName="lo"}`, r.Value, before.loIn, after.loIn)
		if r.Labels["ifIndex"] != before.loIndex || r.Labels["ifDescr"] != "lo" || r.Labels["site"] != "default" {
			t.Errorf("%s: ifHCInOctets of lo labelled %v, want ifIndex %s, ifDescr lo (a lookup fetched for it), site default", db.name, r.Labels, before.loIndex)
		}
		if up := one(`flock_poll_up{` + host + `}`).Value; up != 1 {
			t.Errorf("%s: flock_poll_up = %v, want 1", db.name, up)
		}
		if info := one(`sysDescr_info{` + host + `}`); info.Labels["sysDescr"] != before.sysDescr || info.Value != 1 {
			t.Errorf("%s: sysDescr_info %v = %v, want label sysDescr %q and 1", db.name, info.Labels, info.Value, before.sysDescr)
		}
		if rs, err := db.s.Query(ctx, `{__name__=~"sysName|sysDescr|ifDescr|ifName", `+host+`}`, at.Add(time.Second)); err != nil || len(rs) != 0 {
			t.Errorf("%s: strings that are not info must not be samples: %v %+v", db.name, err, rs)
		}
	}
	// VictoriaMetrics over line protocol: measurement_field.
	vmIn, err := vm.Query(ctx, `ifXTable_ifHCInOctets{ifName="lo",`+host+`}`, at.Add(time.Second))
	if err != nil || len(vmIn) != 1 {
		t.Fatalf("victoria-metrics line protocol: ifXTable_ifHCInOctets of lo: %v %+v", err, vmIn)
	}
	between("victoria-metrics ifXTable_ifHCInOctets", vmIn[0].Value, before.loIn, after.loIn)

	// InfluxDB: Telegraf's shape, the table as measurement, lookups as tags.
	rows, err := influx.Query(ctx, "flock", `SELECT "ifHCInOctets" FROM "ifXTable" WHERE "ifName" = 'lo' AND "host" = 'snmpd-1.example.net'`)
	if err != nil || len(rows) != 1 {
		t.Fatalf("influxdb ifXTable: %v %+v", err, rows)
	}
	between("influxdb ifXTable.ifHCInOctets", rows[0]["ifHCInOctets"].(float64), before.loIn, after.loIn)
	rows, err = influx.Query(ctx, "flock", `SELECT "sysUpTime" FROM "snmp" WHERE "host" = 'snmpd-1.example.net'`)
	if err != nil || len(rows) != 1 {
		t.Fatalf("influxdb snmp: %v %+v", err, rows)
	}
	between("influxdb snmp.sysUpTime", rows[0]["sysUpTime"].(float64), before.sysUpTime, after.sysUpTime)

	// flock.metrics.default.<hostkey>: line protocol InfluxDB takes as it is.
	linesMu.Lock()
	got := append([]string(nil), lines...)
	linesMu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], task.MetricsSubject("default", recs[0].HostKey)+" ") {
		t.Fatalf("flock.metrics.>: want one message on %s, got %d: %.300q", task.MetricsSubject("default", recs[0].HostKey), len(got), got)
	}
	body := strings.SplitN(got[0], " ", 2)[1]
	if !regexp.MustCompile(`(?m)^ifXTable,[^ ]*ifName=lo[, ][^ ]* [^ ]*ifHCInOctets=\d+i`).MatchString(body) {
		t.Errorf("flock.metrics.> line protocol lacks ifXTable's lo row:\n%s", body)
	}
	resp, err := http.Post(influx.WriteURL("flock"), "text/plain", strings.NewReader(strings.ReplaceAll(body, "ifXTable,", "subject_ifXTable,")))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("InfluxDB refused the subject's line protocol: %s %s", resp.Status, answer)
	}
	if rows, err := influx.Query(ctx, "flock", `SELECT "ifHCInOctets" FROM "subject_ifXTable" WHERE "ifName" = 'lo'`); err != nil || len(rows) != 1 {
		t.Errorf("the subject's line protocol, written to InfluxDB: %v %+v", err, rows)
	}
}

// snmpNow is what net-snmp reads of the agent.
type snmpNow struct {
	sysUpTime, loIn uint64
	loIndex         string
	sysDescr        string
}

func snmpValues(t *testing.T, port int) snmpNow {
	t.Helper()
	var out snmpNow
	vars, err := netsnmp(t, "snmpget", port, "-v2c", ".1.3.6.1.2.1.1.3.0 .1.3.6.1.2.1.1.1.0")
	if err != nil || len(vars) != 2 {
		t.Fatalf("snmpget: %v %+v", err, vars)
	}
	out.sysUpTime, _ = strconv.ParseUint(vars[0].value, 10, 64)
	descr, err := hexString(vars[1].value)
	if err != nil {
		t.Fatalf("sysDescr %q: %v", vars[1].value, err)
	}
	out.sysDescr = descr
	names, err := netsnmp(t, "snmpbulkwalk", port, "-v2c", ".1.3.6.1.2.1.31.1.1.1.1") // ifName
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range names {
		if s, _ := hexString(v.value); s == "lo" {
			out.loIndex = v.oid[strings.LastIndexByte(v.oid, '.')+1:]
		}
	}
	if out.loIndex == "" {
		t.Fatalf("snmpd has no interface named lo: %+v", names)
	}
	in, err := netsnmp(t, "snmpget", port, "-v2c", ".1.3.6.1.2.1.31.1.1.1.6."+out.loIndex) // ifHCInOctets
	if err != nil || len(in) != 1 {
		t.Fatalf("snmpget ifHCInOctets.%s: %v %+v", out.loIndex, err, in)
	}
	out.loIn, _ = strconv.ParseUint(in[0].value, 10, 64)
	return out
}

// hexString decodes net-snmp's -Ox rendering of a string (parseNetsnmp's).
func hexString(h string) (string, error) {
	var b bytes.Buffer
	for i := 0; i+1 < len(h); i += 2 {
		v, err := strconv.ParseUint(h[i:i+2], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(v))
	}
	return b.String(), nil
}

// A database stopped for 20 s while the results command writes to it: the
// writer holds the records (pending grows, errors count, one warning), and
// once the database is back every poll's samples are in it, none twice.
func TestSinkOutageLosesNothing(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 2})
	prom := promtest.Start(t)
	dir := t.TempDir()
	records := filepath.Join(dir, "records.jsonl")
	// A NATS server of its own: the writer outlives the dispatcher.
	natsURL := natstest.RunJetStream(t).ClientURL()
	// The leading dispatcher runs a sink of its own, to VictoriaMetrics,
	// which stays up: Prometheus's outage does not hold it up.
	vm := promtest.StartVictoriaMetrics(t)
	cfgPath, _ := fleetConfig(t, fleet, "", fmt.Sprintf(`poller: {concurrency: 4}
sinks: [{type: file, path: %s}]`, records))
	cfg, _ := os.ReadFile(cfgPath)
	cfg = bytes.Replace(cfg, []byte("  get: ["), []byte("  interval: 1s\n  get: ["), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// The leading dispatcher writes the JSON lines, VictoriaMetrics, and
	// Prometheus; the results command, apart, runs the same Prometheus sink:
	// the two share its consumer, which serves one of them at a time.
	promSink := "{type: prometheus_remote_write, url: '" + prom.WriteURL() + "', timeout: 2s, batch_records: 20}"
	dispCfg := bytes.Replace(cfg, []byte("sinks: [{type: file, path: "+records+"}]"),
		[]byte("sinks: [{type: file, path: "+records+"}, {type: prometheus_remote_write, name: vm, url: '"+vm.WriteURL()+"'}, "+promSink+"]"), 1)
	if err := os.WriteFile(cfgPath, dispCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	writerCfg := filepath.Join(dir, "writer.yaml")
	cfg = bytes.Replace(cfg, []byte("sinks: [{type: file, path: "+records+"}]"), []byte("sinks: ["+promSink+"]"), 1)
	if err := os.WriteFile(writerCfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	dispMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	disp := start(t, "dispatcher", "dispatcher", []string{"FLOCK_NATS_URL=" + natsURL, "FLOCK_METRICS_LISTEN=" + dispMetrics}, "--config", cfgPath)
	poller := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + natsURL}, "--config", cfgPath)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	writer := start(t, "results", "results", []string{"FLOCK_NATS_URL=" + natsURL, "FLOCK_METRICS_LISTEN=" + metrics}, "--config", writerCfg)
	ctx := context.Background()
	count := func(host string, at time.Time) int {
		rs, err := prom.Query(ctx, `count_over_time(flock_poll_up{host="`+host+`"}[10m])`, at)
		if err != nil || len(rs) == 0 {
			return 0
		}
		return int(rs[0].Value)
	}
	h0 := fleet.Devices()[0].Name
	waitUntil(t, "samples of "+h0+" in Prometheus", func() bool { return count(h0, time.Now()) >= 2 })

	prom.Stop()
	stopped := time.Now()
	logs := func() string { return writer.stderr.String() + disp.stderr.String() }
	waitUntil(t, "a writer's warning", func() bool { return strings.Contains(logs(), "sink cannot write") })
	time.Sleep(20*time.Second - time.Since(stopped))
	// Pending is the sink consumer's, the same from either writer; errors
	// are counted by the writer that was served.
	m, dm := scrape(t, metrics), scrape(t, dispMetrics)
	if pending := metricValue(m, `flock_sink_pending{sink="prometheus_remote_write"}`); pending < 20 {
		t.Errorf("after 20 s down, flock_sink_pending = %v, want the records of 20 s of 3 hosts at 1 s held", pending)
	}
	if errs := metricValue(m, `flock_sink_errors_total{sink="prometheus_remote_write"}`) +
		metricValue(dm, `flock_sink_errors_total{sink="prometheus_remote_write"}`); errs < 1 {
		t.Errorf("flock_sink_errors_total = %v in all, want failed writes counted", errs)
	}
	prom.Restart()
	waitUntil(t, "the sink to write again", func() bool { return strings.Contains(logs(), "sink writes again") })
	// The dispatcher's own sink is judged up to a few seconds before it
	// stopped: what it collected in its last second need not have reached
	// its sink (the sink's consumer keeps it for the next leader).
	// The poller stops first, and the dispatcher collects two seconds more:
	// every record stored is then in the dispatcher's file (the record of a
	// task still queued when the dispatcher stopped would otherwise reach
	// Prometheus through the results command, and not the file).
	_ = poller.cmd.Process.Signal(syscall.SIGTERM)
	if code := poller.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("poller exit %d", code)
	}
	time.Sleep(2 * time.Second)
	judged := time.Now().Add(-3 * time.Second)
	_ = disp.cmd.Process.Signal(syscall.SIGTERM)
	if code := disp.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d", code)
	}
	// The results command goes on alone: it is served once the stopping
	// dispatcher releases the consumer, and writes what is left.
	data, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	byHost := decodeAll(t, lines)
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range fleet.Devices() {
				t.Logf("%s: %d records, %d samples in Prometheus", d.Name, len(byHost[d.Name]), count(d.Name, time.Now()))
				for _, r := range byHost[d.Name] {
					rs, err := prom.Query(ctx, `timestamp(flock_poll_up{host="`+d.Name+`"})`, r.StartedAt)
					if err != nil || len(rs) != 1 || int64(rs[0].Value*1000) != r.StartedAt.UnixMilli() {
						t.Logf("  missing %s (started %s, stopped at %s): %+v %v", r.TaskID, r.StartedAt.Format("15:04:05.000"), stopped.Format("15:04:05.000"), rs, err)
					}
				}
			}
			for _, l := range strings.Split(scrape(t, metrics), "\n") {
				if strings.HasPrefix(l, "flock_sink") {
					t.Log(l)
				}
			}
		}
	})
	waitUntil(t, "every record's samples in Prometheus", func() bool {
		for _, d := range fleet.Devices() {
			if count(d.Name, time.Now()) < len(byHost[d.Name]) {
				return false
			}
		}
		return true
	})
	waitUntil(t, "the writer to catch up", func() bool {
		return metricValue(scrape(t, metrics), `flock_sink_pending{sink="prometheus_remote_write"}`) == 0
	})
	// One writer served: one warning for the outage in all; nothing reached
	// Prometheus out of order (it would have refused it), also after the
	// dispatcher stopped and the results command went on alone.
	if n := strings.Count(logs(), "sink cannot write"); n != 1 {
		t.Errorf("the writers warned %d times of one outage, want once:\n%s", n, logs())
	}
	if strings.Contains(logs(), "sink refused a record") {
		t.Errorf("Prometheus refused records:\n%s", logs())
	}
	now := time.Now()
	during := 0
	for _, d := range fleet.Devices() {
		for _, r := range byHost[d.Name] {
			if r.StartedAt.After(stopped) && r.StartedAt.Before(stopped.Add(20*time.Second)) {
				during++
			}
		}
		if got, want := count(d.Name, now), len(byHost[d.Name]); got != want {
			t.Errorf("%s: %d flock_poll_up samples in Prometheus, want one per record: %d", d.Name, got, want)
		}
		before := 0
		for _, r := range byHost[d.Name] {
			if r.StartedAt.Before(judged) {
				before++
			}
		}
		rs, err := vm.Query(ctx, `count_over_time(flock_poll_up{host="`+d.Name+`"}[10m])`, judged)
		if err != nil || len(rs) != 1 || int(rs[0].Value) != before {
			t.Errorf("%s: VictoriaMetrics, written by the leading dispatcher: %+v %v, want %d samples", d.Name, rs, err, before)
		}
	}
	if during < 30 {
		t.Errorf("only %d polls while the database was down; the test needs them", during)
	}
	t.Logf("%d records, %d of them polled while Prometheus was down", len(lines), during)
}

// scrape reads a /metrics page.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue is the value of the series (name and labels as written) on a
// metrics page; -1 when absent.
func metricValue(page, series string) float64 {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
