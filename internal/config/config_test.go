package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

func noEnv(string) string { return "" }

func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/good.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Poller.Concurrency != 64 || c.NATS.AckWait != 30*time.Second || c.NATS.Embedded.Listen != "127.0.0.1:4222" {
		t.Errorf("scalars: %+v %+v", c.Poller, c.NATS)
	}
	if len(c.Hosts) != 3 {
		t.Fatalf("hosts: %+v", c.Hosts)
	}
	want := []Host{
		{Name: "localhost", Key: "localhost", Site: "default", Address: "localhost", Port: 161, Credentials: "public", Timeout: 2 * time.Second, Retries: 1,
			Modules: []string{}, Get: []string{".1.3.6.1.2.1.1.1.0"}, MaxOids: 32, MaxRepetitions: 25, PollTimeout: 9 * time.Second,
			Interval: time.Minute, Bulk: true, MaxOutstanding: 1},
		{Name: "lab-sw1", Key: "lab-sw1", Site: "default", Address: "127.0.0.1", Port: 16100, Credentials: "lab", Timeout: 2 * time.Second, Retries: 1,
			Modules: []string{}, Get: []string{".1.3.6.1.2.1.1.1.0"}, MaxOids: 32, MaxRepetitions: 25, PollTimeout: 9 * time.Second,
			Interval: time.Minute, Bulk: true, MaxOutstanding: 1},
		{Name: "core-sw1.example.net", Key: "core-sw1-example-net", Site: "default", Address: "core-sw1.example.net", Port: 161, Credentials: "public",
			Timeout: 500 * time.Millisecond, Retries: 0, Modules: []string{}, Get: []string{".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.1.3.0"},
			MaxOids: 32, MaxRepetitions: 10, PollTimeout: 2 * time.Second, Interval: time.Minute, Bulk: true, MaxOutstanding: 1},
	}
	// A walk of ifTable is a multi-column table walk.
	if tb := c.Hosts[2].Tables; len(tb) != 1 || tb[0].Root != ".1.3.6.1.2.1.2.2" || len(tb[0].Columns) != 22 {
		t.Errorf("core-sw1 tables = %+v", tb)
	}
	want[2].Tables = c.Hosts[2].Tables
	for i := range want {
		if fmt.Sprintf("%+v", c.Hosts[i]) != fmt.Sprintf("%+v", want[i]) {
			t.Errorf("hosts[%d]:\n got %+v\nwant %+v", i, c.Hosts[i], want[i])
		}
	}
	lab, ok := c.Credential("lab")
	if !ok || lab.Version != Version1 || lab.Community.Reveal() != "s3cret-lab" {
		t.Errorf("credential lab = %+v", lab)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"FLOCK_NATS_URL":           "nats://127.0.0.1:4333",
		"FLOCK_POLLER_CONCURRENCY": "12",
		"FLOCK_DEFAULTS_TIMEOUT":   "750ms",
		"FLOCK_DEFAULTS_GET":       "1.3.6.1.2.1.1.5.0,1.3.6.1.2.1.1.3.0",
	}
	c, err := Load("testdata/good.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://127.0.0.1:4333" || c.PollerURL() != "nats://127.0.0.1:4333" {
		t.Errorf("nats.url = %q", c.NATS.URL)
	}
	if c.Poller.Concurrency != 12 {
		t.Errorf("poller.concurrency = %d", c.Poller.Concurrency)
	}
	if c.Hosts[0].Timeout != 750*time.Millisecond || len(c.Hosts[0].Get) != 2 {
		t.Errorf("defaults not overridden: %+v", c.Hosts[0])
	}
	if c.Hosts[2].Timeout != 500*time.Millisecond {
		t.Errorf("a host's own timeout must beat the environment's default: %s", c.Hosts[2].Timeout)
	}
}

func TestNoFileUsesDefaults(t *testing.T) {
	c, err := Load("", func(k string) string {
		if k == "FLOCK_NATS_URL" {
			return "nats://127.0.0.1:4222"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Poller.Concurrency != 256 || len(c.Hosts) != 0 {
		t.Errorf("defaults: concurrency %d, %d hosts", c.Poller.Concurrency, len(c.Hosts))
	}
	if cr, ok := c.Credential("public"); !ok || cr.Version != Version2c {
		t.Errorf("default credential profile missing: %+v", c.Credentials)
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		file string
		want []string // exact lines after "invalid configuration:"
	}{
		{"bad-oid.yaml", []string{
			`testdata/bad-oid.yaml: hosts[0].get[1]: unknown MIB name "sysDescripton.0": no object "sysDescripton" is known (built in: HOST-RESOURCES-MIB, IF-MIB, SNMPv2-MIB; add the MIB's directory to mib_dirs)`,
			`testdata/bad-oid.yaml: hosts[0].get[2]: malformed OID "1.3.x": unexpected 'x'`,
		}},
		{"bad-issue3.yaml", []string{
			`testdata/bad-issue3.yaml: credentials[1].priv_protocol: "AES512" is not a privacy protocol (want one of DES, AES, AES192, AES256, AES192C, AES256C)`,
			`testdata/bad-issue3.yaml: credentials[1].priv_passphrase: is missing (give priv_passphrase, priv_passphrase_file or FLOCK_CREDENTIALS_CORE_V3_PRIV_PASSPHRASE)`,
			`testdata/bad-issue3.yaml: credentials[2].auth_passphrase: is missing (give auth_passphrase, auth_passphrase_file or FLOCK_CREDENTIALS_NOPASS_AUTH_PASSPHRASE)`,
			`testdata/bad-issue3.yaml: credentials[3].auth_passphrase: is shorter than 8 characters, which SNMPv3 (RFC 3414) does not allow`,
			`testdata/bad-issue3.yaml: modules[0].get[1]: unknown MIB name "SNMPv2-MIB::sysUptime.0": SNMPv2-MIB has no object "sysUptime" known here (built in: HOST-RESOURCES-MIB, IF-MIB, SNMPv2-MIB; add the MIB's directory to mib_dirs)`,
			`testdata/bad-issue3.yaml: groups[0].interval: 0s is shorter than 1s`,
			`testdata/bad-issue3.yaml: groups[0].credentials: "core-v4" is not a defined credential profile (defined: public, core-v3, nopass, short)`,
			`testdata/bad-issue3.yaml: groups[0].modules[1]: "if-mib" is not a defined module (defined: system)`,
			`testdata/bad-issue3.yaml: hosts[0].groups[1]: "edge" is not a defined group (defined: core)`,
			`testdata/bad-issue3.yaml: hosts[0].credentials: "core-v4" (from group core) is not a defined credential profile (defined: public, core-v3, nopass, short)`,
		}},
		{"bad-default-credentials.yaml", []string{
			`testdata/bad-default-credentials.yaml: hosts[1].credentials: "public" (from defaults.credentials) is not a defined credential profile (defined: lab)`,
		}},
		{"bad-credentials.yaml", []string{`testdata/bad-credentials.yaml: hosts[0].credentials: "core-v2" is not a defined credential profile (defined: public)`}},
		{"bad-duplicate.yaml", []string{`testdata/bad-duplicate.yaml: hosts[2].name: host "Core-SW1.Example.Net" has host key "core-sw1-example-net", the same as hosts[0] ("core-sw1.example.net"): host names must differ in more than case, '.', ':' and '-' (or '%', '/', '[' and ']')`}},
		{"bad-unknown-key.yaml", []string{`testdata/bad-unknown-key.yaml: nats: unknown key(s) urll`}},
		{"bad-host-key.yaml", []string{`testdata/bad-host-key.yaml: hosts[0]: unknown key(s) adress (known: name, address, groups, site, credentials, port, timeout, retries, get, walk, modules, max_oids, max_repetitions, poll_timeout, interval, jitter, bulk, allow_nonincreasing_oids, unconnected_udp, max_outstanding)`}},
		{"bad-duration.yaml", []string{`testdata/bad-duration.yaml: defaults.timeout: "2 seconds" is not a duration (write it like 2s, 500ms or 1m30s)`}},
		{"bad-host-types.yaml", []string{
			`testdata/bad-host-types.yaml: hosts[0].port: "abc" is not a whole number`,
			`testdata/bad-host-types.yaml: hosts[0].timeout: "forever" is not a duration (write it like 2s, 500ms or 1m30s)`,
			`testdata/bad-host-types.yaml: hosts[1]: want a host name or an object with name/address, got 42`,
		}},
		{"bad-telemetry.yaml", []string{
			`testdata/bad-telemetry.yaml: poller.heartbeat: 10ms is shorter than 100ms`,
			`testdata/bad-telemetry.yaml: log.level: "verbose" is not one of debug, info, warn, error`,
			`testdata/bad-telemetry.yaml: log.format: "xml" is not text or json`,
			`testdata/bad-telemetry.yaml: metrics.listen: "9100" is not host:port: address 9100: missing port in address`,
		}},
		{"bad-nats-auth.yaml", []string{
			`testdata/bad-nats-auth.yaml: nats.password: is missing for nats.user "poller" (give password, password_file or FLOCK_NATS_PASSWORD)`,
			`testdata/bad-nats-auth.yaml: nats.creds_file: cannot read testdata/missing.creds: no such file or directory`,
			`testdata/bad-nats-auth.yaml: nats.tls.cert_file: cannot read testdata/client.pem: no such file or directory`,
			`testdata/bad-nats-auth.yaml: nats: give one way to authenticate, not user/password and creds`,
			`testdata/bad-nats-auth.yaml: nats.tls: cert_file and key_file go together (a client certificate needs its key)`,
		}},
		{"bad-embedded-open.yaml", []string{
			`testdata/bad-embedded-open.yaml: nats.embedded.listen: "0.0.0.0:4222" is beyond this machine: the embedded server listens there only with authentication (set nats.embedded.config_file to a nats-server configuration with users, such as config/nats-server.conf)`,
		}},
		{"bad-sites.yaml", []string{
			`testdata/bad-sites.yaml: nats.replicas: 7 is out of range 1..5 (JetStream keeps at most 5 replicas; 3 on a 3-node cluster)`,
			`testdata/bad-sites.yaml: poller.site: site name "branch*" has character '*'; a site is letters, digits, '-' and '_' (it is a NATS subject token)`,
			`testdata/bad-sites.yaml: poller.source_address: "10.0.0.300" is not an IP address (the local address SNMP requests are sent from)`,
			`testdata/bad-sites.yaml: dispatcher.lease_ttl: 500ms is shorter than 1s`,
			`testdata/bad-sites.yaml: groups[0].site: site name "dc.one" has character '.'; a site is letters, digits, '-' and '_' (it is a NATS subject token)`,
			`testdata/bad-sites.yaml: hosts[0].site: site name "branch 7" has character ' '; a site is letters, digits, '-' and '_' (it is a NATS subject token)`,
			`testdata/bad-sites.yaml: hosts[1].site: site name is empty`,
		}},
		{"bad-sinks.yaml", []string{
			`testdata/bad-sinks.yaml: modules[0].lookups[1]: "sysName" is a scalar, not a table column: only a column's values can label rows`,
			`testdata/bad-sinks.yaml: modules[0].lookups[2]: unknown MIB name "ifNme": no object "ifNme" is known (built in: HOST-RESOURCES-MIB, IF-MIB, SNMPv2-MIB; add the MIB's directory to mib_dirs)`,
			`testdata/bad-sinks.yaml: modules[0].lookups[3]: "ifName.1" (.1.3.6.1.2.1.31.1.1.1.1.1) is not a MIB object Flock knows by name (give an object, not an instance or a table)`,
			`testdata/bad-sinks.yaml: modules[0].info[0]: "sysDescr.0" (.1.3.6.1.2.1.1.1.0) is not a MIB object Flock knows by name (give an object, not an instance or a table)`,
			`testdata/bad-sinks.yaml: sinks[0].type: "prometheus" is not a sink type (want stdout, file, prometheus_remote_write or influx)`,
			`testdata/bad-sinks.yaml: sinks[1].url: is empty (a prometheus_remote_write sink needs its write URL, such as http://prometheus.example.net:9090/api/v1/write)`,
			`testdata/bad-sinks.yaml: sinks[2].name: "prometheus_remote_write" is already the name of sinks[1]: give each metric sink its own name`,
			`testdata/bad-sinks.yaml: sinks[2].url: "ftp://prometheus.example.net/api/v1/write": scheme "ftp" is not http or https`,
			`testdata/bad-sinks.yaml: sinks[3].url: "http://influxdb.example.net:8086/query?db=flock" is not an InfluxDB write URL: want …/write?db=DB (1.x) or …/api/v2/write?org=ORG&bucket=BUCKET (2.x)`,
			`testdata/bad-sinks.yaml: sinks[4].name: "influx" is already the name of sinks[3]: give each metric sink its own name`,
			`testdata/bad-sinks.yaml: sinks[4].url: "http://influxdb.example.net:8086/write": an InfluxDB 1 write URL needs db= (…/write?db=flock)`,
			`testdata/bad-sinks.yaml: sinks[5].url: "http://influxdb.example.net:8086/api/v2/write?org=noc": an InfluxDB 2 write URL needs org= and bucket= (…/api/v2/write?org=ORG&bucket=BUCKET)`,
			`testdata/bad-sinks.yaml: sinks[5].url: "http://influxdb.example.net:8086/api/v2/write?org=noc": InfluxDB 2 needs a token: give token_file or FLOCK_SINKS_V2_TOKEN`,
			`testdata/bad-sinks.yaml: sinks[6].path: a prometheus_remote_write sink takes no path (it writes to url)`,
			`testdata/bad-sinks.yaml: sinks[6].name: "vm.one" may hold only letters, digits, '-' and '_' (it names the consumer sink-vm.one)`,
			`testdata/bad-sinks.yaml: sinks[7].url: a file sink takes no url (only metric sinks do)`,
			`testdata/bad-sinks.yaml: sinks[8].name: "metrics_subject" is taken by metrics_subject: name this sink otherwise`,
			`testdata/bad-sinks.yaml: sinks[9].timeout: -1s is negative`,
			`testdata/bad-sinks.yaml: sinks[9].batch_records: 20000 is not between 1 and 10000`,
			`testdata/bad-sinks.yaml: sinks[10].timeout: 1m0s is longer than 15s (a batch held longer without news goes to another writer)`,
			`testdata/bad-sinks.yaml: sinks[11].name: "a_b" and sinks[10]'s "a-b" share the token variable FLOCK_SINKS_A_B_TOKEN: name them apart`,
		}},
		{"bad-addresses.yaml", []string{
			`testdata/bad-addresses.yaml: hosts[0]: "999.1.1.1" is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`,
			`testdata/bad-addresses.yaml: hosts[1].address: "999.1.1.1" is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`,
			`testdata/bad-addresses.yaml: hosts[2].address: "[::1" has a '[' without its ']'`,
			`testdata/bad-addresses.yaml: hosts[3].address: "127.0.0.1:70000" has port "70000", which is not a port number (1..65535)`,
			`testdata/bad-addresses.yaml: hosts[4].port: 16500 differs from the port in address "127.0.0.1:16551" (16551): give the port once, or the same in both`,
			`testdata/bad-addresses.yaml: hosts[5].address: "http://core-sw1.example.net" has scheme "http", which is not an SNMP transport (want udp, udp4, udp6, tcp, tcp4 or tcp6, as in udp://host:161)`,
			`testdata/bad-addresses.yaml: hosts[6].address: "udp6://127.0.0.1:161" has host "127.0.0.1", which is an IPv4 address, and udp6 reaches IPv6 agents only`,
			`testdata/bad-addresses.yaml: hosts[7].address: "[127.0.0.1]:161" has IPv4 address 127.0.0.1 in brackets, which are for IPv6 addresses only`,
			`testdata/bad-addresses.yaml: hosts[8].address: "fe80::1%eth0:161" has zone "eth0:161", and no interface has ':' in its name: an IPv6 address with a port is written [address]:port`,
			`testdata/bad-addresses.yaml: hosts[9].address: "core sw1.example.net" has ' ', which no address has`,
			`testdata/bad-addresses.yaml: hosts[10].address: "dtlsudp:core-sw1.example.net:10161" starts with "dtlsudp:", which is not a transport Flock polls over (want udp, udp6, tcp or tcp6, as in udp:host:161)`,
			`testdata/bad-addresses.yaml: hosts[11].address: "192.0.2.1%eth0" has a zone (%eth0), which only an IPv6 address has`,
			`testdata/bad-addresses.yaml: hosts[12].name: "core..sw1" has an empty label (".." or a leading dot), which a host name cannot have`,
			`testdata/bad-addresses.yaml: hosts[13].address: "udp://public@core-sw1.example.net:161" has a user part ("public"): credentials belong in a credential profile`,
			`testdata/bad-addresses.yaml: hosts[14].address: "core-sw1.example.net:" has an empty port after ':'`,
			`testdata/bad-addresses.yaml: hosts[15].address: "0.0.0.0" is the unspecified address, which names no agent`,
			`testdata/bad-addresses.yaml: hosts[16].address: "udp:161" has transport "udp" and port 161 but no host: write udp:host:161`,
			`testdata/bad-addresses.yaml: hosts[17].address: "münchen.example.net" has 'ü': write an internationalized name in its ASCII (xn--, punycode) form`,
		}},
		{"bad-values.yaml", []string{
			`testdata/bad-values.yaml: poller.concurrency: 0 is out of range 1..100000`,
			`testdata/bad-values.yaml: poller.max_packets_per_second: -5 is out of range 0..10000000 (0: unbounded)`,
			`testdata/bad-values.yaml: credentials[1].version: "4" is not an SNMP version (want 1, 2c or 3)`,
			`testdata/bad-values.yaml: credentials[2].community: is empty (SNMP v1 needs a community, or community_file, or FLOCK_CREDENTIALS_NOCOMM_COMMUNITY)`,
			`testdata/bad-values.yaml: defaults.timeout: 0s is not positive`,
			`testdata/bad-values.yaml: hosts[0].port: 70000 is not a port number (1..65535)`,
			`testdata/bad-values.yaml: hosts[1].max_outstanding: 0 is out of range 1..256`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load("testdata/"+tc.file, noEnv)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v, want ErrInvalid", err)
			}
			want := "invalid configuration:\n" + strings.Join(tc.want, "\n")
			if err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
		})
	}
	t.Run("bad-yaml.yaml", func(t *testing.T) {
		_, err := Load("testdata/bad-yaml.yaml", noEnv)
		if !errors.Is(err, ErrInvalid) || err.Error() != "testdata/bad-yaml.yaml: invalid configuration: yaml: line 2: did not find expected key" {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load("testdata/nope.yaml", noEnv)
		if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "testdata/nope.yaml") {
			t.Errorf("error = %v, want a read error naming the file", err)
		}
	})
}

func TestSecretNeverShows(t *testing.T) {
	c, err := Load("testdata/good.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	lab, _ := c.Credential("lab")
	dumps := []string{fmt.Sprintf("%v", lab), fmt.Sprintf("%+v", lab), fmt.Sprintf("%#v", lab), fmt.Sprintf("%s", lab.Community)}
	js, _ := json.Marshal(c.Credentials)
	var back []map[string]string
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	dumps = append(dumps, back[1]["Community"])
	for _, d := range dumps {
		if strings.Contains(d, "s3cret-lab") {
			t.Errorf("secret leaked: %s", d)
		}
		if !strings.Contains(d, "<secret>") {
			t.Errorf("no redaction marker in %s", d)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                               "nats://127.0.0.1:4222",
		"nats://poller:hunter2@nats.example.net:4222":         "nats://poller:<secret>@nats.example.net:4222",
		"nats://a:x@n1.example.net,nats://b:y@n2.example.net": "nats://a:<secret>@n1.example.net,nats://b:<secret>@n2.example.net",
		"nats://s3cr3t-token@nats.example.net":                "nats://<secret>@nats.example.net",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The example shipped in config/ must stay valid.
func TestShippedExample(t *testing.T) {
	c, err := Load("../../config/flock.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Hosts) != 5 || len(c.Credentials) != 3 || len(c.Modules) != 3 || strings.Join(c.Sites(), ",") != "branch-7,default" {
		t.Fatalf("example config: %d hosts, %d credentials, sites %v", len(c.Hosts), len(c.Credentials), c.Sites())
	}
}

func TestGroupsModulesAndSecrets(t *testing.T) {
	env := map[string]string{"FLOCK_CREDENTIALS_CORE_V3_PRIV_PASSPHRASE": "from-the-environment"}
	c, err := Load("testdata/good-issue3.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Host{}
	for _, h := range c.Hosts {
		byName[h.Name] = h
	}
	sw1, sw2, edge := byName["core-sw1"], byName["core-sw2"], byName["edge-sw1.example.net"]
	// Group over defaults.
	if sw1.Interval != 30*time.Second || sw1.Credentials != "core-v3" || len(sw1.Walk) != 0 || len(sw1.Tables) != 2 ||
		sw1.Tables[0].Root != ".1.3.6.1.2.1.2.2" || len(sw1.Tables[0].Columns) != 22 || len(sw1.Tables[1].Columns) != 19 {
		t.Errorf("core-sw1 = %+v", sw1)
	}
	// Later group over earlier, host over groups; modules' OIDs plus the host's own.
	if sw2.Interval != 45*time.Second || sw2.Timeout != 5*time.Second || sw2.Get[len(sw2.Get)-1] != ".1.3.6.1.2.1.1.4.0" || len(sw2.Get) != 4 {
		t.Errorf("core-sw2 = %+v", sw2)
	}
	// Defaults only; names resolved; sysDescr.0 from defaults.get and module system counted once.
	if edge.Interval != time.Minute || edge.Credentials != "public" || len(edge.Get) != 3 || edge.Get[1] != ".1.3.6.1.2.1.1.3.0" {
		t.Errorf("edge-sw1 = %+v", edge)
	}
	// A credential profile's agent knobs apply to its hosts; the host still wins.
	l1, l2 := byName["legacy-sw1"], byName["legacy-sw2"]
	if l1.Bulk || l1.MaxRepetitions != 5 || !l1.UnconnectedUDP || !l2.Bulk || l2.MaxRepetitions != 5 {
		t.Errorf("per-credential knobs: legacy-sw1 %+v, legacy-sw2 %+v", l1, l2)
	}
	if !edge.Bulk || edge.MaxRepetitions != 25 || edge.UnconnectedUDP {
		t.Errorf("another profile's knobs leaked to edge-sw1: %+v", edge)
	}
	v3, _ := c.Credential("core-v3")
	if v3.AuthPassphrase.Reveal() != "file-auth-secret" || v3.PrivPassphrase.Reveal() != "from-the-environment" || v3.AuthProtocol != "SHA256" {
		t.Errorf("core-v3: auth %q from file, priv %q from env, protocol %q", v3.AuthPassphrase.Reveal(), v3.PrivPassphrase.Reveal(), v3.AuthProtocol)
	}
	if len(c.Sinks) != 2 || c.Sinks[1].Path != "./data/records.jsonl" {
		t.Errorf("sinks = %+v", c.Sinks)
	}
	if fmt.Sprintf("%+v", v3) == "" || strings.Contains(fmt.Sprintf("%+v", *v3), "file-auth-secret") {
		t.Errorf("passphrase visible in %+v", *v3)
	}
}

func TestMIBDirs(t *testing.T) {
	c, err := Load("testdata/good-mibs.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosts[0]
	if len(h.Get) != 2 || h.Get[0] != ".1.3.6.1.4.1.99999.1.1.0" {
		t.Errorf("get = %v, want the MIB file's flockWidgetCount.0 resolved", h.Get)
	}
	if len(h.Tables) != 1 || h.Tables[0].Root != ".1.3.6.1.4.1.99999.1.2" || len(h.Tables[0].Columns) != 3 {
		t.Errorf("tables = %+v, want flockWidgetTable with its 3 columns from the MIB file", h.Tables)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("mib_dirs: [no-such-dir]\nhosts: [sw1]\n"), 0o644)
	_, err = Load(bad, noEnv)
	if err == nil || !strings.Contains(err.Error(), bad+": mib_dirs: MIB directory "+filepath.Join(dir, "no-such-dir")) {
		t.Errorf("missing MIB directory: %v", err)
	}
}

func TestSites(t *testing.T) {
	c, err := Load("testdata/good-sites.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range c.Hosts {
		got = append(got, h.Name+"="+h.Site)
	}
	if s := strings.Join(got, " "); s != "core-sw1.example.net=hq edge1.example.net=branch-7 edge2.example.net=lab_2" {
		t.Fatalf("sites: %s", s)
	}
	if s := strings.Join(c.Sites(), ","); s != "branch-7,hq,lab_2" {
		t.Fatalf("Sites() = %s", s)
	}
	if c.Poller.Site != "default" || c.Dispatcher.LeaseTTL != 10*time.Second {
		t.Fatalf("poller.site %q, dispatcher.lease_ttl %s: want the defaults", c.Poller.Site, c.Dispatcher.LeaseTTL)
	}
	c, err = Load("testdata/good-sites.yaml", func(k string) string {
		return map[string]string{"FLOCK_POLLER_SITE": "branch-7", "FLOCK_DEFAULTS_SITE": "dc2"}[k]
	})
	if err != nil || c.Poller.Site != "branch-7" || c.Hosts[0].Site != "dc2" {
		t.Fatalf("FLOCK_POLLER_SITE, FLOCK_DEFAULTS_SITE: %v %+v", err, c)
	}
}

// Metric sinks get their defaults and their token; a module's lookups label
// rows and are walked when no walk covers them; info objects are kept.
func TestMetricSinksAndLookups(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "influx.token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "flock.yaml")
	if err := os.WriteFile(cfg, []byte(`
modules:
  - name: if-x
    walk: [IF-MIB::ifXTable]
    lookups: [ifName, ifDescr, IF-MIB::ifAlias]
    info: [sysDescr, ifDescr]
  - name: if-both
    walk: [IF-MIB::ifTable, IF-MIB::ifXTable]
    lookups: [ifName, ifDescr]
sinks:
  - {type: prometheus_remote_write, url: 'http://prometheus.example.net:9090/api/v1/write'}
  - {type: influx, name: influx2, url: 'http://influxdb.example.net:8086/api/v2/write?org=noc&bucket=snmp', token_file: influx.token, batch_records: 50, timeout: 3s}
  - {type: file, path: records.jsonl}
hosts:
  - {name: a.example.net, modules: [if-x]}
  - {name: b.example.net, modules: [if-both]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ms := c.MetricSinks()
	if len(ms) != 2 || ms[0].Name != SinkPrometheusRemoteWrite || ms[0].Timeout != 10*time.Second || ms[0].BatchRecords != 500 ||
		ms[1].Name != "influx2" || ms[1].Token.Reveal() != "s3cret-token" || ms[1].BatchRecords != 50 || ms[1].Timeout != 3*time.Second {
		t.Errorf("metric sinks: %+v", ms)
	}
	if rs := c.RecordSinks(); len(rs) != 1 || rs[0].Type != "file" {
		t.Errorf("record sinks: %+v", rs)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", ms, ms), "s3cret-token") {
		t.Error("a sink's token shows when the sink is printed")
	}
	const ifDescr, ifName, ifAlias = ".1.3.6.1.2.1.2.2.1.2", ".1.3.6.1.2.1.31.1.1.1.1", ".1.3.6.1.2.1.31.1.1.1.18"
	a, b := c.Hosts[0], c.Hosts[1]
	if !slices.Equal(a.Lookups, []string{ifName, ifDescr, ifAlias}) || !slices.Equal(a.Info, []string{".1.3.6.1.2.1.1.1", ifDescr}) {
		t.Errorf("a: lookups %v info %v", a.Lookups, a.Info)
	}
	// ifDescr is in ifTable, which a does not walk: walked for the lookup.
	if !slices.Equal(a.Walk, []string{ifDescr}) || len(a.Tables) != 1 {
		t.Errorf("a walks %v and tables %v, want ifXTable and the lookup column ifDescr", a.Walk, a.Tables)
	}
	if len(b.Walk) != 0 || len(b.Tables) != 2 {
		t.Errorf("b walks %v and tables %v: its lookups are covered, nothing to add", b.Walk, b.Tables)
	}
	// FLOCK_SINKS_<NAME>_TOKEN wins over the file.
	c, err = Load(cfg, func(k string) string {
		if k == "FLOCK_SINKS_INFLUX2_TOKEN" {
			return "from-env"
		}
		return ""
	})
	if err != nil || c.MetricSinks()[1].Token.Reveal() != "from-env" {
		t.Errorf("token from the environment: %v", err)
	}
}

// Every accepted form of agent address: the host polls the address's host,
// port (over the defaults' and groups') and transport, under a host key
// taken from its name, stable and subject-safe.
func TestAgentAddresses(t *testing.T) {
	c, err := Load("testdata/good-addresses.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"core-sw1.example.net key=core-sw1-example-net core-sw1.example.net 1161 transport=\"\"",
		"192.0.2.1 key=192-0-2-1 192.0.2.1 1161 transport=\"\"",
		"2001:db8::1 key=2001-db8--1 2001:db8::1 1161 transport=\"\"",
		"[2001:db8::2] key=-2001-db8--2- 2001:db8::2 1161 transport=\"\"",
		"fe80::1%eth0 key=fe80--1-eth0 fe80::1%eth0 1161 transport=\"\"",
		"192.0.2.3:16551 key=192-0-2-3-16551 192.0.2.3 16551 transport=\"\"",
		"[2001:db8::3]:16552 key=-2001-db8--3--16552 2001:db8::3 16552 transport=\"\"",
		"udp://192.0.2.4:161 key=udp---192-0-2-4-161 192.0.2.4 161 transport=\"\"",
		"udp6://[2001:db8::4]:162 key=udp6----2001-db8--4--162 2001:db8::4 162 transport=\"udp6\"",
		"udp:192.0.2.5:163 key=udp-192-0-2-5-163 192.0.2.5 163 transport=\"\"",
		"udp6:[2001:db8::5]:164 key=udp6--2001-db8--5--164 2001:db8::5 164 transport=\"udp6\"",
		"tcp://192.0.2.6:165 key=tcp---192-0-2-6-165 192.0.2.6 165 transport=\"tcp\"",
		"tcp6://[2001:db8::6] key=tcp6----2001-db8--6- 2001:db8::6 1161 transport=\"tcp6\"",
		"a1 key=a1 core-sw2.example.net 16553 transport=\"\"",
		"a2 key=a2 fe80::2%eth1 16554 transport=\"\"",
		"a3 key=a3 fe80::3%eth0 16555 transport=\"udp6\"",
		"a4 key=a4 core-sw3.example.net 16556 transport=\"tcp\"",
		"same-1 key=same-1 192.0.2.9 161 transport=\"\"",
		"same-2 key=same-2 192.0.2.9 161 transport=\"\"",
	}
	var got []string
	for _, h := range c.Hosts {
		got = append(got, fmt.Sprintf("%s key=%s %s %d transport=%q", h.Name, h.Key, h.Address, h.Port, h.Transport))
		if _, k, ok := task.ParseTaskSubject(task.TaskSubject(h.Site, h.Key)); !ok || k != h.Key ||
			strings.Trim(h.Key, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Errorf("host %s: key %q is not one subject token of lowercase letters, digits, '-' and '_'", h.Name, h.Key)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hosts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
