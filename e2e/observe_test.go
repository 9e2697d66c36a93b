package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample whose name and labels are exactly series.
func metric(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sample %s in:\n%s", series, tail(body, 60))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestObservability runs the dispatcher and a poller with their telemetry
// endpoints against three live devices and one closed port, and checks
// what an operator would look at: both /metrics moving with the polls,
// /healthz and /readyz, the status view (CLI and HTML), poll now, the
// poller's heartbeats, and one log line per failed poll.
func TestObservability(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := pc.LocalAddr().(*net.UDPAddr).Port
	_ = pc.Close()
	dir := t.TempDir()
	records := filepath.Join(dir, "records.jsonl")
	dispMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pollMetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath, url := fleetConfig(t, fleet, fmt.Sprintf("  - {name: gone.flock.onion, address: 127.0.0.1, port: %d}\n", closedPort),
		fmt.Sprintf("metrics: {listen: %s}\nsinks: [{type: file, path: %s}]", dispMetrics, records))
	cfg, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "  get: [", "  interval: 1s\n  get: [", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	// Not ready before it reaches NATS, alive all the same.
	early := start(t, "early-poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_METRICS_LISTEN=" + pollMetrics}, "--config", cfgPath)
	waitUntil(t, "the early poller's /healthz", func() bool {
		resp, err := http.Get("http://" + pollMetrics + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if code, body := get(t, "http://"+pollMetrics+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz of a poller without NATS: %d %q, want 503 not ready", code, body)
	}
	_ = early.cmd.Process.Signal(syscall.SIGTERM)
	if code := early.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("early poller exit %d", code)
	}

	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath)
	hb := subscribe(t, url, task.HeartbeatPrefix+">")
	poller := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_METRICS_LISTEN=" + pollMetrics,
		"FLOCK_POLLER_NAME=poller.e2e", "FLOCK_POLLER_HEARTBEAT=200ms", "FLOCK_LOG_FORMAT=json"}, "--config", cfgPath)

	countFor := func(host string) int {
		data, _ := os.ReadFile(records)
		return strings.Count(string(data), `"host":"`+host+`"`)
	}
	waitUntil(t, "two polls of every host", func() bool {
		for _, d := range fleet.Devices() {
			if countFor(d.Name) < 2 {
				return false
			}
		}
		return countFor("gone.flock.onion") >= 2
	})
	for _, addr := range []string{dispMetrics, pollMetrics} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, "http://"+addr+path); code != 200 {
				t.Fatalf("%s%s: %d %q", addr, path, code, body)
			}
		}
	}

	// Poller metrics move as polls happen.
	_, p1 := get(t, "http://"+pollMetrics+"/metrics")
	ok1, unreach1 := metric(t, p1, `flock_poller_polls_total{outcome="ok",site="default"}`), metric(t, p1, `flock_poller_polls_total{outcome="unreachable",site="default"}`)
	sent1 := metric(t, p1, `flock_poller_snmp_packets_sent_total{site="default"}`)
	if ok1 < 6 || unreach1 < 2 || sent1 < ok1 || metric(t, p1, `flock_poller_poll_duration_seconds_count{site="default"}`) < ok1+unreach1 {
		t.Fatalf("poller metrics after 8+ polls: ok %v unreachable %v packets %v\n%s", ok1, unreach1, sent1, p1)
	}
	metric(t, p1, `flock_poller_polls_in_flight{site="default"}`)
	metric(t, p1, `flock_poller_snmp_retries_total{site="default"}`)
	metric(t, p1, `flock_poller_tasks_redelivered_total{site="default"}`)
	metric(t, p1, `flock_poller_nats_reconnects_total{site="default"}`)
	waitUntil(t, "poller counters to move", func() bool {
		_, p2 := get(t, "http://"+pollMetrics+"/metrics")
		return metric(t, p2, `flock_poller_polls_total{outcome="ok",site="default"}`) >= ok1+3 && metric(t, p2, `flock_poller_snmp_packets_sent_total{site="default"}`) > sent1
	})

	// Dispatcher metrics: records by outcome, hosts by state, the queue.
	_, d1 := get(t, "http://"+dispMetrics+"/metrics")
	if metric(t, d1, `flock_dispatcher_records_total{outcome="ok",site="default"}`) < 6 || metric(t, d1, `flock_dispatcher_records_total{outcome="unreachable",site="default"}`) < 2 {
		t.Fatalf("dispatcher records by outcome:\n%s", d1)
	}
	if metric(t, d1, `flock_dispatcher_hosts{site="default",state="ok"}`) != 3 || metric(t, d1, `flock_dispatcher_hosts{site="default",state="failing"}`) != 1 ||
		metric(t, d1, `flock_dispatcher_hosts{site="default",state="unknown"}`) != 0 {
		t.Fatalf("hosts by state:\n%s", d1)
	}
	if metric(t, d1, `flock_dispatcher_queue_up{site="default"}`) != 1 {
		t.Fatalf("queue figures not read:\n%s", d1)
	}
	for _, s := range []string{`flock_dispatcher_queue_tasks{site="default"}`, `flock_dispatcher_queue_pending_tasks{site="default"}`,
		`flock_dispatcher_queue_unacked_tasks{site="default"}`, "flock_dispatcher_queue_oldest_task_age_seconds",
		`flock_dispatcher_tasks_total{outcome="overrun",site="default"}`, `flock_dispatcher_site_pollers{site="default"}`, "flock_dispatcher_leader"} {
		if v := metric(t, d1, s); v < 0 || v > 100 {
			t.Fatalf("%s = %v", s, v)
		}
	}
	if strings.Contains(d1, `host="`) || strings.Contains(p1, `host="`) {
		t.Fatal("a metric has a per-host label")
	}

	// Status: the CLI reads the KV bucket; failing first with --sort state.
	st := run(t, "dispatcher", "status", "--config", cfgPath, "--sort", "state")
	lines := hostTable(st.stdout)
	// Below the hosts: the dispatchers, then each site with its live pollers.
	if !strings.Contains(st.stdout, "\n\nDISPATCHERS\n") || !regexp.MustCompile(`(?m)^  \S+\s+leader\s+since `).MatchString(st.stdout) ||
		!strings.Contains(st.stdout, "SITE default: 4 hosts (ok 3, failing 1, unknown 0), 1 live pollers") ||
		!regexp.MustCompile(`(?m)^  poller poller\.e2e\s+in flight \d+\s+polls [1-9]`).MatchString(st.stdout) ||
		!regexp.MustCompile(`(?m)^  failing gone\.flock\.onion\s+\d+ in a row\s+unreachable`).MatchString(st.stdout) {
		t.Fatalf("dispatcher status: no fleet view below the hosts:\n%s", st.stdout)
	}
	if st.code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "HOST") ||
		!strings.HasPrefix(lines[1], "gone.flock.onion") || !strings.Contains(lines[1], "failing") || !strings.Contains(lines[1], "unreachable") {
		t.Fatalf("dispatcher status --sort state: exit %d\n%s\n%s", st.code, st.stdout, st.stderr)
	}
	for _, l := range lines[2:] {
		if !strings.Contains(l, " ok ") || !strings.Contains(l, "ms") {
			t.Fatalf("status line of a live device: %q", l)
		}
	}
	if st := run(t, "dispatcher", "status", "--config", cfgPath, "--sort", "size"); st.code != 2 || !strings.Contains(st.stderr, "duration") {
		t.Fatalf("unknown sort key: exit %d %q", st.code, st.stderr)
	}
	// The common flags before the subcommand, as with git, docker and nats.
	st2 := run(t, "dispatcher", "--config", cfgPath, "status", "--sort", "state")
	if lines2 := hostTable(st2.stdout); st2.code != 0 || len(lines2) != len(lines) {
		t.Fatalf("dispatcher --config F status: exit %d\n%s\nwant the hosts of\n%s\n%s", st2.code, st2.stdout, st.stdout, st2.stderr)
	} else {
		for i := range lines {
			if f, f2 := strings.Fields(lines[i]), strings.Fields(lines2[i]); f[0] != f2[0] || f[1] != f2[1] {
				t.Fatalf("dispatcher --config F status line %d: %q, want host and state of %q", i, lines2[i], lines[i])
			}
		}
	}
	code, page := get(t, "http://"+dispMetrics+"/status?sort=duration")
	if code != 200 || !strings.Contains(page, "<table>") || strings.Count(page, "<tr class=") != 4 || !strings.Contains(page, "failing: 1") {
		t.Fatalf("status page: %d\n%s", code, page)
	}

	// Poll now: the record of one host, without waiting for its slot.
	dev := fleet.Devices()[1]
	pn := run(t, "dispatcher", "poll", "--config", cfgPath, dev.Name)
	rec, err := task.DecodeRecord([]byte(strings.TrimSpace(pn.stdout)))
	if pn.code != 0 || err != nil || rec.Host != dev.Name || rec.Error != nil || len(rec.Varbinds) == 0 ||
		string(rec.Varbinds[0].Bytes) != dev.Name || !strings.Contains(rec.TaskID, "@now-") || rec.Poller != "poller.e2e" {
		t.Fatalf("dispatcher poll %s: exit %d, %v\n%s\n%s", dev.Name, pn.code, err, pn.stdout, pn.stderr)
	}
	// The common flags before the subcommand, as with git, docker and nats.
	pn = run(t, "dispatcher", "--config", cfgPath, "poll", dev.Name)
	if rec, err := task.DecodeRecord([]byte(strings.TrimSpace(pn.stdout))); pn.code != 0 || err != nil || rec.Host != dev.Name || rec.Error != nil {
		t.Fatalf("dispatcher --config F poll %s: exit %d, %v\n%s\n%s", dev.Name, pn.code, err, pn.stdout, pn.stderr)
	}
	// HOST before the flags works too.
	if pn := run(t, "dispatcher", "poll", "gone.flock.onion", "--config", cfgPath); pn.code != 1 || !strings.Contains(pn.stdout, `"kind":"unreachable"`) {
		t.Fatalf("poll of the closed port: exit %d\n%s\n%s", pn.code, pn.stdout, pn.stderr)
	}
	if pn := run(t, "dispatcher", "poll", "--config", cfgPath, "nosuch.example.net"); pn.code != 1 || !strings.Contains(pn.stderr, `"nosuch.example.net" is not in the dispatcher's inventory`) {
		t.Fatalf("poll of an unknown host: exit %d %q", pn.code, pn.stderr)
	}

	// Heartbeats: id, site, version, counts.
	select {
	case m := <-hb:
		var beat task.Heartbeat
		if err := json.Unmarshal(m.Data, &beat); err != nil || m.Subject != "flock.pollers.poller-e2e" || beat.ID != "poller.e2e" ||
			beat.Site != task.DefaultSite || beat.Version == "" || beat.Time.IsZero() {
			t.Fatalf("heartbeat on %s: %v %s", m.Subject, err, m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat on flock.pollers.>")
	}
	var last task.Heartbeat
	waitUntil(t, "a heartbeat counting polls", func() bool {
		m := <-hb
		_ = json.Unmarshal(m.Data, &last)
		return last.Polls >= 8
	})

	// One log line per failed poll (never per retry), with the stable keys.
	_ = poller.cmd.Process.Signal(syscall.SIGTERM)
	if code := poller.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("poller exit %d", code)
	}
	failed := 0
	for _, l := range strings.Split(poller.stderr.String(), "\n") {
		if strings.Contains(l, `"msg":"poll failed"`) {
			failed++
			for _, key := range []string{`"host":"gone.flock.onion"`, `"site":"default"`, `"task_id":"default.gone-flock-onion@`, `"poller":"poller.e2e"`, `"oid":`, `"err":`} {
				if !strings.Contains(l, key) {
					t.Fatalf("failed-poll line without %s: %s", key, l)
				}
			}
		}
	}
	waitUntil(t, "every failed poll's record", func() bool { return countFor("gone.flock.onion") >= failed })
	if got := countFor("gone.flock.onion"); failed == 0 || got != failed {
		t.Fatalf("%d failed-poll log lines for %d failed records (retries: 1)", failed, got)
	}
	_ = disp.cmd.Process.Signal(syscall.SIGTERM)
	if code := disp.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d", code)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// hostTable is the lines of the hosts' table in `dispatcher status`
// output: from the start to the blank line before the fleet view.
func hostTable(out string) []string {
	table, _, _ := strings.Cut(out, "\n\n")
	return strings.Split(strings.TrimSpace(table), "\n")
}

func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	p := start(t, bin+" "+args[0], bin, nil, args...)
	code := p.wait(t, 60*time.Second)
	return result{code, p.stdout.String(), p.stderr.String()}
}

// subscribe delivers the messages on subject (core NATS) once the server is up.
func subscribe(t *testing.T, url, subject string) <-chan *nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: url, Name: "e2e-sub"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ch := make(chan *nats.Msg, 1024)
	if _, err := b.Conn().ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	return ch
}
