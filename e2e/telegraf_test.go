//go:build integration

package e2e

// Telegraf reading Flock with the shipped configurations: config/telegraf-
// nats.conf takes the line protocol metrics_subject publishes, config/
// telegraf-records.conf the HostRecords through json_v2. Telegraf is not a
// Debian package: .ci/run builds it (go install, a pinned version, only
// the plugins these configurations use) and this test finds it on PATH or
// at $FLOCK_TELEGRAF; it fails, rather than skips, without it.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
)

// telegrafConf is a shipped configuration pointed at url, without the
// reader's login (the test's NATS has no users), writing to out.
func telegrafConf(t *testing.T, shipped, url, out string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "config", shipped))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range map[string]string{
		`servers = ["nats://nats.example.net:4222"]`: fmt.Sprintf(`servers = [%q]`, url),
		`files = ["stdout"]`:                         fmt.Sprintf(`files = [%q]`, out),
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("%s: no line %s to point at the test", shipped, old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	s = regexp.MustCompile(`(?m)^\s*(username|password) = .*$`).ReplaceAllString(s, "")
	path := filepath.Join(t.TempDir(), shipped)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTelegrafReadsFlock(t *testing.T) {
	bin := os.Getenv("FLOCK_TELEGRAF")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("telegraf"); err != nil {
			t.Fatalf("telegraf is needed (.ci/run builds it: go install -tags custom,inputs.nats_consumer,parsers.influx,parsers.json_v2,outputs.file,serializers.influx github.com/influxdata/telegraf/cmd/telegraf@%s), or set FLOCK_TELEGRAF", telegrafVersion)
		}
	}
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 2})
	cfgPath, url := fleetConfig(t, fleet, "", `metrics_subject: true
modules:
  - {name: if-mib, walk: [IF-MIB::ifXTable], lookups: [ifName]}`)
	cfg, _ := os.ReadFile(cfgPath)
	cfg = []byte(strings.Replace(string(cfg), "  get: [", "  interval: 1s\n  modules: [if-mib]\n  get: [", 1))
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath)
	waitUntil(t, "the dispatcher's NATS", func() bool { return strings.Contains(disp.stderr.String(), "standing for election") })

	dir := t.TempDir()
	outs := map[string]string{}
	for _, shipped := range []string{"telegraf-nats.conf", "telegraf-records.conf"} {
		out := filepath.Join(dir, shipped+".out")
		conf := telegrafConf(t, shipped, url, out)
		cmd := exec.Command(bin, "--config", conf)
		logf, err := os.Create(filepath.Join(dir, shipped+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start telegraf: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("--- telegraf %s:\n%s", shipped, tail(string(b), 30))
			}
		})
		outs[shipped] = out
	}
	// Telegraf subscribes within a second or two; then the pollers start.
	time.Sleep(3 * time.Second)
	start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url}, "--config", cfgPath)
	h := fleet.Devices()[0].Name
	want := map[string][]*regexp.Regexp{
		"telegraf-nats.conf": {
			// (nats_consumer adds the subject as a tag)
			regexp.MustCompile(`(?m)^ifXTable,host=` + h + `,ifIndex=1,ifName=Gi0/1,site=default,subject=flock\.metrics\.default\.` + h + ` [^ ]*ifHCInOctets=\d+i`),
			regexp.MustCompile(`(?m)^snmp,host=` + h + `,site=default,subject=[^ ]+ [^ ]*flock_poll_up=1i`),
		},
		"telegraf-records.conf": {
			regexp.MustCompile(`(?m)^flock_poll,host=` + h + `,poller=[^ ]+,site=default[^ ]* duration_ms=[0-9.e-]+ \d+$`),
			regexp.MustCompile(`(?m)^flock_varbind,host=` + h + `,oid=\.1\.3\.6\.1\.2\.1\.1\.3\.0,site=default[^ ]*,type=TimeTicks value=\d+i \d+$`),
			regexp.MustCompile(`(?m)^flock_varbind,host=` + h + `,oid=\.1\.3\.6\.1\.2\.1\.31\.1\.1\.1\.6\.1,site=default[^ ]*,type=Counter64 value=\d+i \d+$`),
		},
	}
	for shipped, res := range want {
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(outs[shipped])
				t.Logf("--- %s output:\n%s", shipped, tail(string(b), 12))
			}
		})
		waitUntil(t, "Telegraf's output for "+shipped, func() bool {
			b, _ := os.ReadFile(outs[shipped])
			for _, re := range res {
				if !re.Match(b) {
					return false
				}
			}
			return true
		})
	}
	b, _ := os.ReadFile(outs["telegraf-records.conf"])
	if strings.Contains(string(b), "type=OctetString") {
		t.Errorf("json_v2: string varbinds must stay out of flock_varbind:\n%s", tail(string(b), 10))
	}
}

// telegrafVersion is the Telegraf .ci/run builds.
const telegrafVersion = "v1.37.2"
