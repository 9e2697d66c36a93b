// Package e2e runs Flock's real binaries as separate processes against the
// project's SNMP simulator: the dispatcher with its embedded NATS server and
// several pollers, as an operator would run them.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/harness/syncbuf"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flock-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-tags", "gosnmp_nodebug", "-o", dir+"/",
		"github.com/flock-snmp/flock/cmd/dispatcher", "github.com/flock-snmp/flock/cmd/poller", "github.com/flock-snmp/flock/cmd/results")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is safe to read while a process writes to it.
type syncBuffer = syncbuf.Buffer

type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error
}

// start runs a binary with only the given environment (plus PATH and HOME),
// so nothing from the developer's FLOCK_ variables leaks in.
func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, bin), args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s stderr:\n%s", p.name, tail(p.stderr.String(), 40))
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", p.name, within)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitUntil polls ok until it holds; after 30 s the test fails naming what.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := procs.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// fleetConfig writes a config polling the fleet (plus extra host lines) and
// returns its path and the NATS URL of the embedded server.
func fleetConfig(t *testing.T, fleet *snmpsim.Fleet, extraHosts string, settings string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	var hosts bytes.Buffer
	if err := fleet.WriteHosts(&hosts); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`nats:
  embedded: {listen: 127.0.0.1:%d, store_dir: %s}
  ack_wait: 2s
%s
defaults:
  timeout: 500ms
  retries: 1
  get: [1.3.6.1.2.1.1.5.0, 1.3.6.1.2.1.1.3.0]
  walk: [1.3.6.1.2.1.2.2.1.2]
hosts:
%s%s`, port, filepath.Join(dir, "nats"), settings, hosts.String(), extraHosts)
	path := filepath.Join(dir, "flock.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func decodeAll(t *testing.T, lines []string) map[string][]task.HostRecord {
	t.Helper()
	byHost := map[string][]task.HostRecord{}
	for _, l := range lines {
		r, err := task.DecodeRecord([]byte(l))
		if err != nil {
			t.Fatalf("stdout line is not a HostRecord: %v\n%s", err, l)
		}
		byHost[r.Host] = append(byHost[r.Host], r)
	}
	return byHost
}

func TestOnceWithTwoPollers(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 50, Interfaces: 4})
	cfgPath, url := fleetConfig(t, fleet, "", "poller: {concurrency: 8}")

	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	// One poller with the config file, one with nothing but the environment:
	// its credentials default to the v2c profile "public".
	pollers := []*proc{
		start(t, "poller-1", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_POLLER_NAME=poller-1"}, "--config", cfgPath),
		start(t, "poller-2", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_POLLER_NAME=poller-2", "FLOCK_POLLER_CONCURRENCY=8"}),
	}
	if code := disp.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d, want 0", code)
	}
	byHost := decodeAll(t, disp.stdout.Lines())
	if len(byHost) != 50 {
		t.Fatalf("records for %d hosts, want 50", len(byHost))
	}
	for _, d := range fleet.Devices() {
		recs := byHost[d.Name]
		if len(recs) != 1 {
			t.Fatalf("host %s: %d records, want 1", d.Name, len(recs))
		}
		r := recs[0]
		if r.Error != nil || len(r.Varbinds) != 2+4 || string(r.Varbinds[0].Bytes) != d.Name || r.Port != d.AddrPort().Port() {
			t.Errorf("host %s: error %v, %d varbinds", d.Name, r.Error, len(r.Varbinds))
		}
	}
	summary := disp.stderr.String()
	if !strings.Contains(summary, "flock: hosts=50 ok=50 failed=0 missing=0 duplicates=0 elapsed=") {
		t.Errorf("summary line missing from stderr:\n%s", summary)
	}
	// SIGTERM: each poller stops taking tasks, drains and exits 0.
	for _, p := range pollers {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range pollers {
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("%s exit %d after SIGTERM, want 0", p.name, code)
		}
	}
}

func TestExternalNATS(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 5, Interfaces: 1})
	srv := natstest.RunJetStream(t) // a NATS server the dispatcher does not own
	cfgPath, _ := fleetConfig(t, fleet, "", "poller: {concurrency: 2}")
	env := []string{"FLOCK_NATS_URL=" + srv.ClientURL()}
	disp := start(t, "dispatcher", "dispatcher", env, "--config", cfgPath, "--once")
	start(t, "poller", "poller", env, "--config", cfgPath)
	if code := disp.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d, want 0", code)
	}
	if n := len(decodeAll(t, disp.stdout.Lines())); n != 5 {
		t.Fatalf("records for %d hosts, want 5", n)
	}
	if strings.Contains(disp.stderr.String(), "embedded NATS server started") {
		t.Errorf("with nats.url set the dispatcher must not embed a server")
	}
	// The streams live on the external server.
	b, err := natsbus.Connect(context.Background(), natsbus.ConnectOptions{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.JetStream().Stream(context.Background(), natsbus.ResultStream)
	if err != nil || s.CachedInfo().State.Msgs != 5 {
		t.Fatalf("results stream on the external server: %v", err)
	}
}

func TestPollerKilledMidRun(t *testing.T) {
	const hosts = 300
	fleet := simtest.Start(t, snmpsim.Config{Devices: hosts, Interfaces: 4, Delay: 40 * time.Millisecond})
	cfgPath, url := fleetConfig(t, fleet, "", "poller: {concurrency: 8}")

	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	var pollers []*proc
	for i := 1; i <= 3; i++ {
		pollers = append(pollers, start(t, fmt.Sprintf("poller-%d", i), "poller",
			[]string{"FLOCK_NATS_URL=" + url, fmt.Sprintf("FLOCK_POLLER_NAME=poller-%d", i)}, "--config", cfgPath))
	}
	// Kill poller-1 once it has answered some tasks, while it holds others.
	victim := pollers[0]
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(disp.stdout.String(), `"poller":"poller-1"`) || len(disp.stdout.Lines()) < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("poller-1 never answered; %d records so far", len(disp.stdout.Lines()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := len(disp.stdout.Lines())

	if code := disp.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d, want 0 (every host answered)", code)
	}
	lines := disp.stdout.Lines()
	byHost := decodeAll(t, lines)
	if len(lines) != hosts || len(byHost) != hosts {
		t.Fatalf("%d lines for %d hosts, want exactly one record for each of %d hosts", len(lines), len(byHost), hosts)
	}
	redelivered := 0
	for _, d := range fleet.Devices() {
		r := byHost[d.Name][0]
		if r.Error != nil {
			t.Errorf("host %s: %v", d.Name, r.Error)
		}
		if r.Attempt > 1 {
			redelivered++
		}
	}
	// The killed poller held tasks it never acked: they came back to the others.
	if redelivered == 0 {
		t.Errorf("no record came from a redelivered task, yet poller-1 was killed holding tasks")
	}
	t.Logf("killed poller-1 after %d of %d records; %d hosts were answered on a redelivery", before, hosts, redelivered)
}

func TestFailingHostsExitOne(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1})
	closed := freePort(t) // nothing listens there over UDP either
	extra := fmt.Sprintf("  - {name: closed-port, address: 127.0.0.1, port: %d}\n  - {name: ghost, address: ghost-switch.onion}\n  - {name: wrong-community, address: 127.0.0.1, port: %d, credentials: wrong}\n",
		closed, fleet.Devices()[0].AddrPort().Port())
	cfgPath, url := fleetConfig(t, fleet, extra, `poller: {concurrency: 4}
credentials:
  - {name: public, version: 2c, community: public}
  - {name: wrong, version: 2c, community: wrong-community-s3cret}`)
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	poller := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url}, "--config", cfgPath, "--log-level", "debug")
	if code := disp.wait(t, 60*time.Second); code != 1 {
		t.Fatalf("dispatcher exit %d, want 1 when records carry errors", code)
	}
	byHost := decodeAll(t, disp.stdout.Lines())
	want := map[string]string{"closed-port": task.KindUnreachable, "ghost": task.KindResolve, "wrong-community": task.KindTimeout}
	for host, kind := range want {
		recs := byHost[host]
		if len(recs) != 1 || recs[0].Error == nil || recs[0].Error.Kind != kind {
			t.Errorf("host %s: %+v, want one record with error kind %s", host, recs, kind)
		}
	}
	for _, d := range fleet.Devices() {
		if r := byHost[d.Name]; len(r) != 1 || r[0].Error != nil {
			t.Errorf("healthy host %s: %+v", d.Name, r)
		}
	}
	if !strings.Contains(disp.stderr.String(), "flock: hosts=6 ok=3 failed=3 missing=0") {
		t.Errorf("summary:\n%s", disp.stderr.String())
	}
	_ = poller.cmd.Process.Signal(syscall.SIGTERM)
	poller.wait(t, 20*time.Second)
	for _, out := range []string{disp.stdout.String(), disp.stderr.String(), poller.stdout.String(), poller.stderr.String()} {
		if strings.Contains(out, "wrong-community-s3cret") {
			t.Errorf("a community string appeared in a record or a log line:\n%s", out)
		}
	}
}

func TestConfigAndUsageErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("hosts:\n  - {name: sw1, get: [sysDescripton.0]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("hosts: [core-sw1.example.net]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bin string
		env       []string
		args      []string
		code      int
		stream    string // "stdout" or "stderr"
		want      string
	}{
		{"bad oid", "dispatcher", nil, []string{"--config", bad, "--once"}, 2, "stderr", bad + `: hosts[0].get[0]: unknown MIB name "sysDescripton.0"`},
		{"bad oid in poller", "poller", nil, []string{"--config", bad}, 2, "stderr", bad + ": hosts[0].get[0]"},
		{"check good", "dispatcher", nil, []string{"--config", good, "--check-config"}, 0, "stdout", "configuration OK: " + good + ": 1 hosts"},
		{"check bad", "poller", nil, []string{"--config", bad, "--check-config"}, 2, "stderr", "unknown MIB name"},
		{"config from env", "dispatcher", []string{"FLOCK_CONFIG=" + bad}, []string{"--check-config"}, 2, "stderr", bad},
		{"missing file", "dispatcher", nil, []string{"--config", filepath.Join(dir, "nope.yaml"), "--once"}, 1, "stderr", "nope.yaml"},
		{"unknown flag", "poller", nil, []string{"--bogus"}, 2, "stderr", "flag provided but not defined: -bogus"},
		{"bad env value", "poller", []string{"FLOCK_POLLER_CONCURRENCY=many"}, []string{"--check-config"}, 2, "stderr", `poller.concurrency: "many" is not a whole number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.bin, tc.bin, tc.env, tc.args...)
			code := p.wait(t, 20*time.Second)
			out := p.stderr.String()
			if tc.stream == "stdout" {
				out = p.stdout.String()
			}
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, %s:\n%s\nwant exit %d and %q", code, tc.stream, out, tc.code, tc.want)
			}
		})
	}
}

func TestGarbageTaskDoesNotStopPolling(t *testing.T) {
	// A poller reports and terminates a task it cannot decode and goes on
	// polling; natsbus checks the bad_task record, this checks the binary.
	fleet := simtest.Start(t, snmpsim.Config{Devices: 5, Interfaces: 1})
	cfgPath, url := fleetConfig(t, fleet, "", "poller: {concurrency: 2}")
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	// The dispatcher waits for records until a poller comes, so its server is
	// up: queue the garbage first, then start the poller that must get past it.
	publishGarbage(t, url)
	p := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url}, "--config", cfgPath)
	if code := disp.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d", code)
	}
	if !strings.Contains(p.stderr.String(), "bad task terminated") {
		t.Errorf("poller did not report the garbage task:\n%s", p.stderr.String())
	}
}

func publishGarbage(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := publishRaw(ctx, url, task.TaskSubject(task.DefaultSite, "garbage-host"), []byte("\x00\x01 not a task")); err != nil {
		t.Fatal(err)
	}
}

func TestRunModeWithReload(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1})
	dir := t.TempDir()
	records := filepath.Join(dir, "records.jsonl")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath, url := fleetConfig(t, fleet, "", fmt.Sprintf(`poller: {concurrency: 4}
metrics: {listen: %s}
sinks: [{type: file, path: %s}]`, metricsAddr, records))
	// Start with two of the three devices, at a 1s interval.
	cfg, _ := os.ReadFile(cfgPath)
	third := fleet.Devices()[2]
	thirdLine := fmt.Sprintf("  - {name: %s, address: %s, port: %d}\n", third.Name, third.AddrPort().Addr(), third.AddrPort().Port())
	full := strings.Replace(string(cfg), "  get: [", "  interval: 1s\n  get: [", 1)
	initial := strings.Replace(full, thirdLine, "", 1)
	if initial == full {
		t.Fatal("test setup: third host line not found")
	}
	write := func(s string) {
		if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(initial)
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath)
	start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_METRICS_LISTEN=127.0.0.1:0"}, "--config", cfgPath)
	countFor := func(host string) int {
		data, _ := os.ReadFile(records)
		return strings.Count(string(data), `"host":"`+host+`"`)
	}
	waitUntil(t, "two polls of the first host", func() bool { return countFor(fleet.Devices()[0].Name) >= 2 })
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`flock_dispatcher_tasks_total\{outcome="published",site="default"\} [1-9]`).Match(body) ||
		!regexp.MustCompile(`flock_dispatcher_records_total\{outcome="ok",site="default"\} [1-9]`).Match(body) {
		t.Fatalf("metrics do not count the work done:\n%s", body)
	}

	write("hosts: [\n") // broken YAML: rejected, polling goes on
	_ = disp.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the rejection in the log", func() bool { return strings.Contains(disp.stderr.String(), "reload rejected") })
	before := countFor(fleet.Devices()[0].Name)
	waitUntil(t, "polling to go on after a rejected reload", func() bool { return countFor(fleet.Devices()[0].Name) >= before+2 })
	if countFor(third.Name) != 0 {
		t.Fatal("the third host was polled before it was added")
	}

	write(full)
	_ = disp.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the added host's first record", func() bool { return countFor(third.Name) >= 1 })
	if !strings.Contains(disp.stderr.String(), "added=1") {
		t.Errorf("reload not reported:\n%s", disp.stderr.String())
	}
	_ = disp.cmd.Process.Signal(syscall.SIGTERM)
	if code := disp.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d after SIGTERM, want 0", code)
	}
}

func TestSecretsStayOutOfOutput(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "priv")
	if err := os.WriteFile(secretFile, []byte("priv-from-a-file-77\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "v3.yaml")
	cfg := fmt.Sprintf(`credentials:
  - {name: core-v3, version: 3, username: flock, auth_protocol: SHA512, auth_passphrase: auth-in-the-file-66,
     priv_protocol: AES256C, priv_passphrase_file: %s}
  - {name: lab, version: 2c, community: community-in-the-file-55}
hosts: [{name: sw1.example.net, credentials: core-v3}, {name: sw2.example.net, credentials: lab}]
`, secretFile)
	if err := os.WriteFile(good, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(cfg, "AES256C", "AES512", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"priv-from-a-file-77", "auth-in-the-file-66", "community-in-the-file-55", "env-secret-88"}
	for _, run := range []struct {
		name string
		args []string
		code int
	}{
		{"check good", []string{"--config", good, "--check-config", "--log-level", "debug"}, 0},
		{"check bad", []string{"--config", bad, "--check-config"}, 2},
	} {
		for _, bin := range []string{"dispatcher", "poller"} {
			p := start(t, bin, bin, []string{"FLOCK_CREDENTIALS_LAB_COMMUNITY=env-secret-88"}, run.args...)
			if code := p.wait(t, 20*time.Second); code != run.code {
				t.Fatalf("%s %s: exit %d, want %d\n%s", bin, run.name, code, run.code, p.stderr.String())
			}
			for _, s := range secrets {
				if strings.Contains(p.stdout.String()+p.stderr.String(), s) {
					t.Errorf("%s %s printed the secret %q", bin, run.name, s)
				}
			}
		}
	}
}

func TestPollerStartsBeforeNATS(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 5, Interfaces: 1})
	cfgPath, url := fleetConfig(t, fleet, "", "poller: {concurrency: 2}")
	p := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url}, "--config", cfgPath)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "NATS is not reachable yet; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no clear line while NATS is away:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)                                                          // it keeps waiting...
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once") // ...until the server appears
	if code := disp.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d", code)
	}
	if n := len(disp.stdout.Lines()); n != 5 {
		t.Fatalf("%d records, want 5", n)
	}
}

func TestGracefulShutdownUnderLoad(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 40, Interfaces: 2, Delay: 150 * time.Millisecond})
	dir := t.TempDir()
	records := filepath.Join(dir, "records.jsonl")
	cfgPath, url := fleetConfig(t, fleet, "", fmt.Sprintf("poller: {concurrency: 20, shutdown_grace: 5s}\nsinks: [{type: file, path: %s}]", records))
	cfg, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "  get: [", "  interval: 1s\n  get: [", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath)
	p1 := start(t, "poller-1", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_POLLER_NAME=poller-1"}, "--config", cfgPath)
	p2 := start(t, "poller-2", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_POLLER_NAME=poller-2"}, "--config", cfgPath)
	time.Sleep(3500 * time.Millisecond)
	_ = p1.cmd.Process.Signal(syscall.SIGTERM) // mid-run, with polls in flight
	if code := p1.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("poller-1 exit %d after SIGTERM", code)
	}
	time.Sleep(2500 * time.Millisecond)
	_ = disp.cmd.Process.Signal(syscall.SIGTERM)
	if code := disp.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d after SIGTERM", code)
	}
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	if code := p2.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("poller-2 exit %d after SIGTERM", code)
	}
	data, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	slots := map[string][]int64{}
	handedBack := 0
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		r, err := task.DecodeRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Errorf("host %s: %v", r.Host, r.Error)
		}
		var ms int64
		fmt.Sscanf(r.TaskID[strings.LastIndex(r.TaskID, "@")+1:], "%d", &ms)
		slots[r.Host] = append(slots[r.Host], ms)
		if r.Attempt > 1 {
			handedBack++
		}
	}
	for _, d := range fleet.Devices() {
		s := slots[d.Name]
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		if len(s) < 4 {
			t.Errorf("host %s: only %d records", d.Name, len(s))
			continue
		}
		for i := 1; i < len(s); i++ {
			if s[i]-s[i-1] != 1000 {
				t.Errorf("host %s: slots %d and %d: a cycle was lost around the shutdowns", d.Name, s[i-1], s[i])
			}
		}
	}
	t.Logf("%d records; %d answered by poller-2 after poller-1 handed them back", len(strings.Split(strings.TrimSpace(string(data)), "\n")), handedBack)
}
