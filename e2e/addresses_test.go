//go:build integration

package e2e

// Agent addresses as users copy them from other tools' configurations:
// Debian's snmpd listens on udp6:[::1], udp:127.0.0.1, tcp:127.0.0.1 and
// tcp6:[::1], and a dispatcher --once with one poller polls it through
// every accepted way of writing those addresses. Each host's record must
// hold snmpd's sysName and name the address, port and transport polled.

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

func TestAgentAddressForms(t *testing.T) {
	udp6, udp4, tcp4, tcp6 := freeUDPPort(t, "udp6"), freeUDPPort(t, "udp4"), freePort(t), freePort(t)
	runSnmpd(t, fmt.Sprintf("udp6:[::1]:%d,udp:127.0.0.1:%d,tcp:127.0.0.1:%d,tcp6:[::1]:%d", udp6, udp4, tcp4, tcp6),
		fmt.Sprintf("udp6:[::1]:%d", udp6))
	for _, spec := range []string{fmt.Sprintf("tcp:127.0.0.1:%d", tcp4), fmt.Sprintf("tcp6:[::1]:%d", tcp6)} {
		if _, err := netsnmpAt(t, "snmpget", spec, "-v2c", ".1.3.6.1.2.1.1.5.0"); err != nil {
			t.Fatalf("snmpd does not answer net-snmp on %s: %v", spec, err)
		}
	}
	p6, p4, pt4, pt6 := strconv.Itoa(udp6), strconv.Itoa(udp4), strconv.Itoa(tcp4), strconv.Itoa(tcp6)

	// Each entry: the YAML host entry, then the address, port and
	// transport its record must name.
	type want struct {
		entry, name, address string
		port                 int
		transport            string
	}
	forms := []want{
		// snmpd on udp6:[::1]:PORT, written every way Flock accepts.
		{`{name: v6-plain, address: "::1", port: ` + p6 + `}`, "v6-plain", "::1", udp6, ""},
		{`{name: v6-brackets, address: "[::1]", port: ` + p6 + `}`, "v6-brackets", "::1", udp6, ""},
		{`{name: v6-port, address: "[::1]:` + p6 + `"}`, "v6-port", "::1", udp6, ""},
		{`{name: v6-port-twice, address: "[::1]:` + p6 + `", port: ` + p6 + `}`, "v6-port-twice", "::1", udp6, ""},
		{`{name: v6-zone, address: "::1%lo", port: ` + p6 + `}`, "v6-zone", "::1%lo", udp6, ""},
		{`{name: v6-telegraf, address: "udp6://[::1]:` + p6 + `"}`, "v6-telegraf", "::1", udp6, "udp6"},
		{`{name: v6-telegraf-udp, address: "udp://[::1]:` + p6 + `"}`, "v6-telegraf-udp", "::1", udp6, ""},
		{`{name: v6-telegraf-zone, address: "udp6://[::1%25lo]:` + p6 + `"}`, "v6-telegraf-zone", "::1%lo", udp6, "udp6"},
		{`{name: v6-netsnmp, address: "udp6:[::1]:` + p6 + `"}`, "v6-netsnmp", "::1", udp6, "udp6"},
		{`{name: v6-netsnmp-bare, address: "udp6:::1", port: ` + p6 + `}`, "v6-netsnmp-bare", "::1", udp6, "udp6"},
		{`{name: v6-netsnmp-udpv6, address: "udpv6:[::1]:` + p6 + `"}`, "v6-netsnmp-udpv6", "::1", udp6, "udp6"},
		{`{name: v6-netsnmp-ipv6, address: "ipv6:[::1]:` + p6 + `"}`, "v6-netsnmp-ipv6", "::1", udp6, "udp6"},
		// Bare entries: the address is the name, the host key comes from it.
		{`"[::1]:` + p6 + `"`, "[::1]:" + p6, "::1", udp6, ""},
		{`"udp6://[::1]:` + p6 + `"`, "udp6://[::1]:" + p6, "::1", udp6, "udp6"},
		{`"udp6:[::1]:` + p6 + `"`, "udp6:[::1]:" + p6, "::1", udp6, "udp6"},
		// IPv4 host:port and agent forms.
		{`"127.0.0.1:` + p4 + `"`, "127.0.0.1:" + p4, "127.0.0.1", udp4, ""},
		{`{name: v4-telegraf, address: "udp://127.0.0.1:` + p4 + `"}`, "v4-telegraf", "127.0.0.1", udp4, ""},
		{`{name: v4-netsnmp, address: "udp:127.0.0.1:` + p4 + `"}`, "v4-netsnmp", "127.0.0.1", udp4, ""},
		{`{name: v4-telegraf-udp4, address: "udp4://127.0.0.1:` + p4 + `"}`, "v4-telegraf-udp4", "127.0.0.1", udp4, "udp4"},
		{`{name: v4-name, address: "localhost:` + p4 + `"}`, "v4-name", "localhost", udp4, ""},
		// TCP (RFC 3430), on snmpd's TCP listeners.
		{`{name: tcp-telegraf, address: "tcp://127.0.0.1:` + pt4 + `"}`, "tcp-telegraf", "127.0.0.1", tcp4, "tcp"},
		{`{name: tcp-netsnmp, address: "tcp:127.0.0.1:` + pt4 + `"}`, "tcp-netsnmp", "127.0.0.1", tcp4, "tcp"},
		{`{name: tcp6-telegraf, address: "tcp6://[::1]:` + pt6 + `"}`, "tcp6-telegraf", "::1", tcp6, "tcp6"},
		{`{name: tcp6-netsnmp, address: "tcp6:[::1]:` + pt6 + `"}`, "tcp6-netsnmp", "::1", tcp6, "tcp6"},
	}
	var hosts strings.Builder
	for _, f := range forms {
		hosts.WriteString("  - " + f.entry + "\n")
	}
	dir := t.TempDir()
	natsPort := freePort(t)
	cfg := fmt.Sprintf(`nats:
  embedded: {listen: 127.0.0.1:%d, store_dir: %s}
credentials:
  - {name: interop, version: 2c, community: %s}
defaults:
  credentials: interop
  port: 16199
  timeout: 2s
  get: [1.3.6.1.2.1.1.5.0, 1.3.6.1.2.1.1.3.0]
  walk: [1.3.6.1.2.1.2.2.1.2]
hosts:
%s`, natsPort, filepath.Join(dir, "nats"), community, hosts.String())
	cfgPath := filepath.Join(dir, "flock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	check := start(t, "check", "dispatcher", nil, "--config", cfgPath, "--check-config")
	if code := check.wait(t, 10*time.Second); code != 0 || !strings.Contains(check.stdout.String(), fmt.Sprintf(": %d hosts", len(forms))) {
		t.Fatalf("--check-config: exit %d: %s%s", code, check.stdout.String(), check.stderr.String())
	}
	disp := start(t, "dispatcher", "dispatcher", nil, "--config", cfgPath, "--once")
	start(t, "poller", "poller", []string{fmt.Sprintf("FLOCK_NATS_URL=nats://127.0.0.1:%d", natsPort)}, "--config", cfgPath)
	if code := disp.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("dispatcher --once exit %d:\n%s\n%s", code, disp.stdout.String(), disp.stderr.String())
	}
	byHost := decodeAll(t, disp.stdout.Lines())
	var ifDescr []task.Varbind // the first record's walk: every form's must match
	for _, f := range forms {
		recs := byHost[f.name]
		if len(recs) != 1 {
			t.Errorf("%s: %d records, want 1", f.entry, len(recs))
			continue
		}
		r := recs[0]
		if r.Error != nil || len(r.Varbinds) < 3 || string(r.Varbinds[0].Bytes) != "flock-interop.example.net" {
			t.Errorf("%s: error %v, %d varbinds %+v; want snmpd's sysName, sysUpTime and ifDescr", f.entry, r.Error, len(r.Varbinds), r.Varbinds)
		}
		if r.Error == nil && len(r.Varbinds) >= 3 {
			if ifDescr == nil {
				ifDescr = r.Varbinds[2:]
			} else if !reflect.DeepEqual(r.Varbinds[2:], ifDescr) {
				t.Errorf("%s: ifDescr walk %+v; the first form's was %+v", f.entry, r.Varbinds[2:], ifDescr)
			}
		}
		if r.Address != f.address || int(r.Port) != f.port || r.Transport != f.transport {
			t.Errorf("%s: record names address %q port %d transport %q; want %q %d %q",
				f.entry, r.Address, r.Port, r.Transport, f.address, f.port, f.transport)
		}
	}
	if want := fmt.Sprintf("flock: hosts=%d ok=%d failed=0", len(forms), len(forms)); !strings.Contains(disp.stderr.String(), want) {
		t.Errorf("summary: want %q in\n%s", want, disp.stderr.String())
	}
}

// Addresses that can never be polled stop the dispatcher and the poller at
// load, naming the file, the key and the value.
func TestAgentAddressRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`hosts:
  - "[::1"
  - {name: sw2, address: "999.1.1.1"}
  - {name: sw3, address: "127.0.0.1:16551", port: 16500}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"dispatcher", "poller"} {
		p := start(t, bin, bin, nil, "--config", bad, "--check-config")
		code := p.wait(t, 20*time.Second)
		out := p.stderr.String()
		for _, want := range []string{
			bad + `: hosts[0]: "[::1" has a '[' without its ']'`,
			bad + `: hosts[1].address: "999.1.1.1" is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`,
			bad + `: hosts[2].port: 16500 differs from the port in address "127.0.0.1:16551" (16551): give the port once, or the same in both`,
		} {
			if code != 2 || !strings.Contains(out, want) {
				t.Errorf("%s --check-config: exit %d, stderr:\n%s\nwant exit 2 and %q", bin, code, out, want)
			}
		}
	}
}
