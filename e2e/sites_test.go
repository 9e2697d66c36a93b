package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/harness/browser"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// sitePasswords are the roles' passwords for the shipped nats-server.conf.
var sitePasswords = map[string]string{
	"FLOCK_DISPATCHER_PASSWORD":      "sites-dispatcher-pw",
	"FLOCK_POLLER_PASSWORD":          "sites-poller-default-pw",
	"FLOCK_POLLER_BRANCH_7_PASSWORD": "sites-poller-branch-7-pw",
	"FLOCK_READER_PASSWORD":          "sites-reader-pw",
}

// hostsIn writes fleet's hosts, each joining group (none when "").
func hostsIn(t *testing.T, fleet *snmpsim.Fleet, group string) string {
	t.Helper()
	var b bytes.Buffer
	if err := fleet.WriteHosts(&b); err != nil {
		t.Fatal(err)
	}
	if group == "" {
		return b.String()
	}
	return strings.ReplaceAll(b.String(), "}\n", ", groups: ["+group+"]}\n")
}

// securedSitesConfig writes the shipped nats-server.conf (store moved to a
// temporary directory) and a Flock config whose dispatcher embeds it, with
// the given hosts and settings; it returns the config's path and the URL.
func securedSitesConfig(t *testing.T, hosts, settings string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join("..", "config", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(shipped), `store_dir: "/data"`, fmt.Sprintf("store_dir: %q", filepath.Join(dir, "unused")), 1)
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := fmt.Sprintf(`nats:
  embedded: {listen: 127.0.0.1:%d, store_dir: %s, config_file: %s}
  user: dispatcher
  ack_wait: 2s
poller: {heartbeat: 200ms, concurrency: 8}
groups:
  - {name: branch7, site: branch-7}
  - {name: branch9, site: branch-9}
defaults:
  timeout: 300ms
  retries: 0
  interval: 1s
  get: [sysName.0]
%s
hosts:
%s`, port, filepath.Join(dir, "nats"), confPath, settings, hosts)
	path := filepath.Join(dir, "flock.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func envOf(m map[string]string, extra ...string) []string {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	return append(env, extra...)
}

// TestSitesPinnedToTheirPollers runs one dispatcher over three sites under
// the shipped nats-server.conf: default and branch-7 with two pollers each
// (each logged in as its site's user), branch-9 with none. Every record
// must come from a poller of its host's site; branch-9 must be reported
// (log, gauge, status page rendered by Chromium, `dispatcher status`).
func TestSitesPinnedToTheirPollers(t *testing.T) {
	if err := browser.Available(); err != nil {
		t.Fatal(err)
	}
	// Each site's devices answer only their own site's pollers, as devices
	// with access lists do: a task sent to the wrong site's poller would
	// time out. The pollers send from their site's address.
	hqSource, br7Source := netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12")
	hq := simtest.Start(t, snmpsim.Config{Devices: 4, Interfaces: 1, NamePrefix: "hq", AllowFrom: []netip.Addr{hqSource}})
	br7 := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1, NamePrefix: "br7", AllowFrom: []netip.Addr{br7Source}})
	br9 := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 1, NamePrefix: "br9"})
	records := filepath.Join(t.TempDir(), "records.jsonl")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath, url := securedSitesConfig(t, hostsIn(t, hq, "")+hostsIn(t, br7, "branch7")+hostsIn(t, br9, "branch9"),
		fmt.Sprintf("sinks: [{type: file, path: %s}]\nmetrics: {listen: %q}", records, metricsAddr))
	siteOf := map[string]string{}
	for site, f := range map[string]*snmpsim.Fleet{"default": hq, "branch-7": br7, "branch-9": br9} {
		for _, d := range f.Devices() {
			siteOf[d.Name] = site
		}
	}

	disp := start(t, "dispatcher", "dispatcher", envOf(sitePasswords, "FLOCK_NATS_PASSWORD="+sitePasswords["FLOCK_DISPATCHER_PASSWORD"],
		"FLOCK_LOG_FORMAT=json", "FLOCK_DISPATCHER_NAME=disp-sites"), "--config", cfgPath)
	pollerSite := map[string]string{}
	var pollers []*proc
	for _, p := range []struct {
		name, site, user, pw string
		source               netip.Addr
	}{
		{"hq-poller-1", "default", "poller", "FLOCK_POLLER_PASSWORD", hqSource},
		{"hq-poller-2", "default", "poller", "FLOCK_POLLER_PASSWORD", hqSource},
		{"br7-poller-1", "branch-7", "poller-branch-7", "FLOCK_POLLER_BRANCH_7_PASSWORD", br7Source},
		{"br7-poller-2", "branch-7", "poller-branch-7", "FLOCK_POLLER_BRANCH_7_PASSWORD", br7Source},
	} {
		pollerSite[p.name] = p.site
		pollers = append(pollers, start(t, p.name, "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_NATS_USER=" + p.user,
			"FLOCK_NATS_PASSWORD=" + sitePasswords[p.pw], "FLOCK_POLLER_NAME=" + p.name, "FLOCK_POLLER_SITE=" + p.site, "FLOCK_METRICS_LISTEN=127.0.0.1:0",
			"FLOCK_POLLER_SOURCE_ADDRESS=" + p.source.String()}, "--config", cfgPath))
	}

	read := func() map[string][]task.HostRecord { return decodeAll(t, completeLines(records)) }
	waitUntil(t, "two records of every host of default and branch-7", func() bool {
		if _, err := os.Stat(records); err != nil {
			return false
		}
		byHost := read()
		for name, site := range siteOf {
			if site != "branch-9" && len(byHost[name]) < 2 {
				return false
			}
		}
		return true
	})
	byPoller := map[string]int{}
	for host, recs := range read() {
		for _, r := range recs {
			if r.Site != siteOf[host] || !strings.HasPrefix(r.TaskID, siteOf[host]+".") {
				t.Fatalf("record of %s (site %s) says site %q, task %s", host, siteOf[host], r.Site, r.TaskID)
			}
			if pollerSite[r.Poller] != siteOf[host] {
				t.Fatalf("record of %s (site %s) polled by %q of site %q", host, siteOf[host], r.Poller, pollerSite[r.Poller])
			}
			if r.Error != nil || string(r.Varbinds[0].Bytes) != host {
				t.Fatalf("record of %s: %v %+v", host, r.Error, r.Varbinds)
			}
			byPoller[r.Poller]++
		}
		if siteOf[host] == "branch-9" {
			t.Fatalf("host %s of branch-9, which has no poller, has records", host)
		}
	}
	t.Logf("records by poller: %v", byPoller)
	// No request reached a device from another site's poller; and the
	// access lists do refuse one (so a misrouted task would have failed).
	for _, f := range []*snmpsim.Fleet{hq, br7} {
		for _, d := range f.Devices() {
			if n := d.Refused(); n != 0 {
				t.Fatalf("%s refused %d requests from another site's poller", d.Name, n)
			}
		}
	}
	wrong := &gosnmp.GoSNMP{Target: hq.Devices()[0].AddrPort().Addr().String(), Port: hq.Devices()[0].AddrPort().Port(), Community: "public", Version: gosnmp.Version2c,
		Timeout: 300 * time.Millisecond, Retries: 0, LocalAddr: br7Source.String() + ":0"}
	if err := wrong.Connect(); err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Get([]string{snmpsim.OIDSysName}); err == nil || hq.Devices()[0].Refused() != 1 {
		t.Fatalf("a request from branch-7's address to a device of default: %v, refused %d", err, hq.Devices()[0].Refused())
	}
	_ = wrong.Conn.Close()

	// The site without a poller is visible: a warning naming it, the gauge.
	waitUntil(t, "the warning about branch-9", func() bool {
		return noPoller(disp.stderr.String(), "branch-9")
	})

	_, body := get(t, "http://"+metricsAddr+"/metrics")
	for site, want := range map[string]float64{"default": 2, "branch-7": 2, "branch-9": 0} {
		if got := metric(t, body, `flock_dispatcher_site_pollers{site="`+site+`"}`); got != want {
			t.Fatalf("flock_dispatcher_site_pollers{site=%q} = %v, want %v", site, got, want)
		}
	}
	if metric(t, body, "flock_dispatcher_leader") != 1 || metric(t, body, `flock_dispatcher_queue_up{site="branch-9"}`) != 1 {
		t.Fatalf("leader / branch-9 queue:\n%s", body)
	}

	// The status page, as a browser renders it.
	shot := filepath.Join(t.TempDir(), "status.png")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	text, err := browser.Render(ctx, "http://"+metricsAddr+"/status", shot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Site default", "Site branch-7", "Site branch-9", "hq-poller-1", "hq-poller-2", "br7-poller-1",
		"br7-poller-2", "No live poller: this site's hosts go unpolled.", "disp-sites: leader", "This dispatcher: disp-sites (leader)"} {
		if !strings.Contains(text, want) {
			t.Fatalf("rendered status page lacks %q:\n%s", want, text)
		}
	}
	// Each site lists its own pollers only, in the order the page gives.
	b7, b9 := strings.Index(text, "Site branch-7"), strings.Index(text, "Site branch-9")
	if br := text[b7:b9]; !strings.Contains(br, "br7-poller-1") || strings.Contains(br, "hq-poller") {
		t.Fatalf("site branch-7's section:\n%s", br)
	}
	if os.Getenv("FLOCK_KEEP_SCREENSHOT") != "" {
		_ = os.WriteFile(os.Getenv("FLOCK_KEEP_SCREENSHOT"), must(os.ReadFile(shot)), 0o644)
	}
	if info, err := os.Stat(shot); err != nil || info.Size() < 5000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}

	// The CLI says the same.
	st := start(t, "status", "dispatcher", envOf(sitePasswords, "FLOCK_NATS_URL="+url, "FLOCK_NATS_PASSWORD="+sitePasswords["FLOCK_DISPATCHER_PASSWORD"]),
		"status", "--config", cfgPath)
	if code := st.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("dispatcher status: exit %d\n%s", code, st.stderr.String())
	}
	out := st.stdout.String()
	for _, re := range []string{`(?m)^  disp-sites\s+leader\s+since`, `(?m)^SITE default: 4 hosts .*, 2 live pollers$`,
		`(?m)^SITE branch-7: 3 hosts .*, 2 live pollers$`, `(?m)^SITE branch-9: 2 hosts \(ok 0, failing 0, unknown 2\), 0 live pollers$`,
		`(?m)^  no live poller: this site's hosts go unpolled$`, `(?m)^  poller br7-poller-2\s+in flight \d+\s+polls [1-9]`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("dispatcher status lacks %s:\n%s", re, out)
		}
	}

	// The default site's pollers stop: the site is reported at once (they
	// say so in their last heartbeat), the other sites poll on.
	for _, p := range pollers[:2] {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		p.wait(t, 20*time.Second)
	}
	waitUntil(t, "the warning about default", func() bool {
		return noPoller(disp.stderr.String(), "default")
	})
	_, body = get(t, "http://"+metricsAddr+"/metrics")
	if metric(t, body, `flock_dispatcher_site_pollers{site="default"}`) != 0 || metric(t, body, `flock_dispatcher_site_pollers{site="branch-7"}`) != 2 {
		t.Fatalf("after the default site's pollers stopped:\n%s", body)
	}
	before := len(read()[br7.Devices()[0].Name])
	waitUntil(t, "branch-7 to poll on", func() bool { return len(read()[br7.Devices()[0].Name]) >= before+2 })
}

// TestOnceReportsMissingBySite: a one-shot run over two sites, one of them
// without a poller, names that site in its summary.
func TestOnceReportsMissingBySite(t *testing.T) {
	hq := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1, NamePrefix: "hq"})
	br9 := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 1, NamePrefix: "br9"})
	cfgPath, url := fleetConfig(t, hq, hostsIn(t, br9, "branch9"),
		"dispatcher: {once_timeout: 6s}\npoller: {heartbeat: 200ms}\ngroups: [{name: branch9, site: branch-9}]")
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_POLLER_NAME=hq-poller"}, "--config", cfgPath)
	if code := disp.wait(t, 60*time.Second); code != 1 {
		t.Fatalf("dispatcher --once with a site without pollers: exit %d, want 1\n%s", code, disp.stderr.String())
	}
	byHost := decodeAll(t, disp.stdout.Lines())
	if len(byHost) != 3 {
		t.Fatalf("records of %d hosts, want the 3 of site default", len(byHost))
	}
	if !strings.Contains(disp.stderr.String(), "flock: hosts=5 ok=3 failed=0 missing=2 (site branch-9: no poller) duplicates=0") {
		t.Fatalf("summary:\n%s", disp.stderr.String())
	}
}

// completeLines reads the lines of a file sink that are whole (the sink
// may be writing the last one).
func completeLines(path string) []string {
	data, _ := os.ReadFile(path)
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		return strings.Split(string(data[:i]), "\n")
	}
	return nil
}

// noPoller reports whether the dispatcher's JSON log has its warning that
// site has no live poller.
func noPoller(log, site string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"msg":"site has no live poller`) && strings.Contains(l, `"site":"`+site+`"`) {
			return true
		}
	}
	return false
}

func must(data []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return data
}
