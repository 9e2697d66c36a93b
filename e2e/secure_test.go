package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/snmpsim"
)

// TestSecuredRunLeaksNoSecret polls a fleet with authentication on (the
// shipped config/nats-server.conf, run by the dispatcher's embedded server
// on loopback) and searches everything for every secret of the
// configuration, byte for byte: every message on every subject of the bus
// (a spy user subscribed to >: tasks, records, heartbeats, KV, JetStream
// API traffic), both binaries' stdout and debug logs, and their
// --check-config output. A poller with a wrong password fails clearly.
func TestSecuredRunLeaksNoSecret(t *testing.T) {
	const community = "community-secret-55"
	fleet := simtest.Start(t, snmpsim.Config{Devices: 4, Interfaces: 2, Community: community})
	dir := t.TempDir()
	secrets := map[string]string{
		"FLOCK_DISPATCHER_PASSWORD": "nats-dispatcher-secret-11",
		"FLOCK_POLLER_PASSWORD":     "nats-poller-secret-22",
		"FLOCK_READER_PASSWORD":     "nats-reader-secret-33",
		// The shipped configuration's second site.
		"FLOCK_POLLER_BRANCH_7_PASSWORD": "nats-branch-7-secret-77",
	}
	all := []string{community, "v3-auth-secret-44", "v3-priv-secret-66"}
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
		all = append(all, v)
	}
	// The shipped server config plus a spy that may read every subject.
	shipped, err := os.ReadFile(filepath.Join("..", "config", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(shipped), "users: [", `users: [
    { user: spy, password: spy-pw, permissions: { subscribe: ">", publish: "_INBOX.>" } },`, 1)
	conf = strings.Replace(conf, `store_dir: "/data"`, fmt.Sprintf("store_dir: %q", filepath.Join(dir, "unused")), 1)
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "dispatcher.pw")
	if err := os.WriteFile(pwFile, []byte(secrets["FLOCK_DISPATCHER_PASSWORD"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var hosts bytes.Buffer
	if err := fleet.WriteHosts(&hosts); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "flock.yaml")
	cfg := fmt.Sprintf(`nats:
  embedded: {listen: 127.0.0.1:%d, store_dir: %s, config_file: %s}
  user: dispatcher
  password_file: %s
  ack_wait: 2s
credentials:
  - {name: lab, version: 2c, community: %s}
  - {name: core-v3, version: 3, username: flock, auth_protocol: SHA256, auth_passphrase: v3-auth-secret-44,
     priv_protocol: AES, priv_passphrase: v3-priv-secret-66}
defaults:
  credentials: lab
  timeout: 500ms
  get: [sysName.0, sysDescr.0]
  walk: [IF-MIB::ifTable]
hosts:
%s`, port, filepath.Join(dir, "nats"), confPath, pwFile, community, hosts.String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	disp := start(t, "dispatcher", "dispatcher", env, "--config", cfgPath, "--once", "--log-level", "debug")
	var spyMu sync.Mutex
	var bus bytes.Buffer
	subjects := map[string]int{}
	var spy *nats.Conn
	waitUntil(t, "the secured server", func() bool {
		spy, err = nats.Connect(url, nats.UserInfo("spy", "spy-pw"))
		return err == nil
	})
	defer spy.Close()
	if _, err := spy.Subscribe(">", func(m *nats.Msg) {
		spyMu.Lock()
		defer spyMu.Unlock()
		bus.WriteString(m.Subject + " " + m.Reply + " ")
		for k, v := range m.Header {
			bus.WriteString(k + ":" + strings.Join(v, ",") + " ")
		}
		bus.Write(m.Data)
		bus.WriteByte('\n')
		subjects[strings.Join(strings.SplitN(m.Subject, ".", 3)[:2], ".")]++
	}); err != nil {
		t.Fatal(err)
	}
	_ = spy.Flush()

	// A poller with the wrong password is refused, clearly and at once.
	wrong := start(t, "wrong-poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_NATS_USER=poller", "FLOCK_NATS_PASSWORD=not-the-password"},
		"--config", cfgPath)
	if code := wrong.wait(t, 30*time.Second); code != 1 || !strings.Contains(wrong.stderr.String(), `as user "poller": the server refused`) ||
		!strings.Contains(strings.ToLower(wrong.stderr.String()), "authorization violation") {
		t.Fatalf("poller with a wrong password: exit %d\n%s", code, wrong.stderr.String())
	}

	poller := start(t, "poller", "poller", []string{"FLOCK_NATS_URL=" + url, "FLOCK_NATS_USER=poller",
		"FLOCK_NATS_PASSWORD=" + secrets["FLOCK_POLLER_PASSWORD"], "FLOCK_POLLER_HEARTBEAT=200ms"}, "--config", cfgPath, "--log-level", "debug")
	if code := disp.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dispatcher --once with authentication on: exit %d\n%s", code, disp.stderr.String())
	}
	byHost := decodeAll(t, disp.stdout.Lines())
	if len(byHost) != len(fleet.Devices()) {
		t.Fatalf("%d hosts answered, want %d", len(byHost), len(fleet.Devices()))
	}
	poller.cmd.Process.Signal(os.Interrupt)
	poller.wait(t, 20*time.Second)

	var checks []string
	for _, bin := range []string{"dispatcher", "poller"} {
		p := start(t, bin+" check", bin, env, "--config", cfgPath, "--check-config", "--log-level", "debug")
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Fatalf("%s --check-config: exit %d\n%s", bin, code, p.stderr.String())
		}
		checks = append(checks, p.stdout.String()+p.stderr.String())
	}
	spyMu.Lock()
	defer spyMu.Unlock()
	if subjects["flock.tasks"] < len(fleet.Devices()) || subjects["flock.results"] < len(fleet.Devices()) || subjects["flock.pollers"] == 0 {
		t.Fatalf("the spy saw too little to search: %v", subjects)
	}
	places := map[string]string{
		"the bus": bus.String(), "dispatcher stdout (records)": disp.stdout.String(), "dispatcher log": disp.stderr.String(),
		"poller log": poller.stderr.String(), "wrong poller's log": wrong.stderr.String(),
		"dispatcher --check-config": checks[0], "poller --check-config": checks[1],
	}
	for where, text := range places {
		for _, s := range all {
			if strings.Contains(text, s) {
				t.Errorf("secret %q found in %s", s, where)
			}
		}
	}
	t.Logf("searched %d bytes of bus traffic on %v, and %d places", bus.Len(), subjects, len(places))
}
