//go:build integration

package e2e

// Interoperability with net-snmp: Debian's snmpd is an agent Flock did not
// write, and snmpget/snmpbulkwalk are readers Flock did not write. Flock's
// poll of the same agent, through the HostRecord wire format, must give the
// same OIDs with the same types and values. Run with -tags integration; CI
// always does, and fails (does not skip) when net-snmp is missing.

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/task"
)

const community = "flock-interop"

// startSnmpd runs net-snmp's agent on a free loopback UDP port, with extra
// configuration lines (SNMPv3 users).
func startSnmpd(t *testing.T, extra ...string) int {
	t.Helper()
	port := freeUDPPort(t, "udp4")
	runSnmpd(t, "udp:127.0.0.1:"+strconv.Itoa(port), "127.0.0.1:"+strconv.Itoa(port), extra...)
	return port
}

// freeUDPPort is a UDP port free on network's loopback ("udp4" or "udp6").
func freeUDPPort(t *testing.T, network string) int {
	t.Helper()
	pc, err := net.ListenPacket(network, map[string]string{"udp4": "127.0.0.1:0", "udp6": "[::1]:0"}[network])
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// runSnmpd runs net-snmp's agent listening on agentAddress (its own
// syntax, comma-separated), answering the test community from loopback,
// until it answers a GET at ready (a net-snmp agent specification).
func runSnmpd(t *testing.T, agentAddress, ready string, extra ...string) {
	t.Helper()
	bin, err := exec.LookPath("snmpd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/snmpd"); err2 != nil {
			t.Fatalf("snmpd (Debian package snmpd) is required for the interop test: %v", err)
		}
		bin = "/usr/sbin/snmpd"
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`agentAddress %s
rocommunity %s 127.0.0.1
rocommunity6 %s ::1
sysName flock-interop.example.net
sysLocation "Flock interop test"
sysContact noc@example.net
master no
%s
`, agentAddress, community, community, strings.Join(extra, "\n"))
	confPath := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", "-Lf", filepath.Join(dir, "snmpd.log"), "-C", "-c", confPath,
		"-p", filepath.Join(dir, "snmpd.pid"), "-M", "/dev/null", "-m", "")
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+filepath.Join(dir, "persist"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start snmpd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := netsnmpAt(t, "snmpget", ready, "-v2c", ".1.3.6.1.2.1.1.5.0"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "snmpd.log"))
			t.Fatalf("snmpd did not answer on %s:\n%s", ready, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nsVar is one line of net-snmp output in -On -Oe -Ox form.
type nsVar struct {
	oid, typ string
	value    string // decimal for numbers, lowercase hex for strings
}

// netsnmp runs a net-snmp tool against 127.0.0.1:port with numeric OIDs,
// numeric enums and hex strings.
func netsnmp(t *testing.T, tool string, port int, args ...string) ([]nsVar, error) {
	t.Helper()
	return netsnmpAt(t, tool, fmt.Sprintf("127.0.0.1:%d", port), args...)
}

// netsnmpAt is netsnmp against a net-snmp agent specification.
func netsnmpAt(t *testing.T, tool, agent string, args ...string) ([]nsVar, error) {
	t.Helper()
	full := []string{"-c", community, "-On", "-Oe", "-Ox", "-M", "/dev/null", "-m", "", "-r", "1", "-t", "2"}
	for _, a := range args[:len(args)-1] {
		full = append(full, strings.Fields(a)...)
	}
	full = append(full, agent)
	if tool == "snmpget" {
		full = append(full, strings.Fields(args[len(args)-1])...)
	} else {
		full = append(full, args[len(args)-1])
	}
	// Only stdout holds the answer: on a fresh machine net-snmp's first run
	// also says "Created directory: /var/lib/snmp/..." on stderr.
	cmd := exec.Command(tool, full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s%s", tool, err, out, stderr.String())
	}
	return parseNetsnmp(t, string(out)), nil
}

func parseNetsnmp(t *testing.T, out string) []nsVar {
	t.Helper()
	var vars []nsVar
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, ".") { // continuation of a wrapped Hex-STRING
			if len(vars) == 0 || vars[len(vars)-1].typ != "OctetString" {
				t.Fatalf("unexpected net-snmp line %q", line)
			}
			vars[len(vars)-1].value += strings.ToLower(strings.ReplaceAll(line, " ", ""))
			continue
		}
		oid, rest, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("unexpected net-snmp line %q", line)
		}
		v := nsVar{oid: oid}
		switch {
		case rest == `""`:
			v.typ = "OctetString"
		case strings.HasPrefix(rest, "No Such Object"):
			v.typ = "NoSuchObject"
		case strings.HasPrefix(rest, "No Such Instance"):
			v.typ = "NoSuchInstance"
		case strings.HasPrefix(rest, "No more variables"):
			v.typ = "EndOfMibView"
		default:
			typ, val, ok := strings.Cut(rest, ": ")
			if !ok {
				t.Fatalf("unexpected net-snmp value %q", rest)
			}
			switch typ {
			case "INTEGER":
				v.typ = "Integer"
			case "Hex-STRING", "STRING":
				v.typ, val = "OctetString", strings.ToLower(strings.ReplaceAll(val, " ", ""))
			case "OID":
				v.typ = "ObjectIdentifier"
			case "Timeticks": // "(12345) 0:02:03.45"
				v.typ = "TimeTicks"
				val = strings.TrimPrefix(strings.SplitN(val, ")", 2)[0], "(")
			case "IpAddress", "Counter32", "Counter64", "Gauge32", "Opaque":
				v.typ = typ
			default:
				t.Fatalf("net-snmp type %q not mapped (line %q)", typ, line)
			}
			v.value = strings.TrimSpace(val)
		}
		vars = append(vars, v)
	}
	return vars
}

// flockValue renders a varbind the way parseNetsnmp renders net-snmp's.
func flockValue(vb task.Varbind) string {
	switch vb.Type {
	case task.TypeInteger:
		return strconv.FormatInt(vb.Int, 10)
	case task.TypeCounter32, task.TypeGauge32, task.TypeTimeTicks, task.TypeCounter64, task.TypeUinteger32:
		return strconv.FormatUint(vb.Uint, 10)
	case task.TypeOctetString, task.TypeOpaque:
		return hex.EncodeToString(vb.Bytes)
	case task.TypeIPAddress, task.TypeObjectIdentifier:
		return vb.Str
	}
	return ""
}

func volatile(typ string) bool {
	return typ == "Counter32" || typ == "Counter64" || typ == "TimeTicks"
}

// compare checks Flock's varbinds against net-snmp readings taken just
// before and just after: same OIDs, same types; counters and timeticks
// between the two readings, every other value equal to one of them.
func compare(t *testing.T, what string, got []task.Varbind, before, after []nsVar) {
	t.Helper()
	if len(got) != len(before) || len(got) != len(after) {
		t.Fatalf("%s: Flock got %d varbinds, net-snmp %d before and %d after", what, len(got), len(before), len(after))
	}
	for i, vb := range got {
		b, a := before[i], after[i]
		if vb.OID != b.oid || vb.OID != a.oid {
			t.Fatalf("%s[%d]: Flock OID %s, net-snmp %s / %s", what, i, vb.OID, b.oid, a.oid)
		}
		if vb.Type.String() != b.typ {
			t.Errorf("%s %s: Flock type %s, net-snmp %s", what, vb.OID, vb.Type, b.typ)
			continue
		}
		val := flockValue(vb)
		if volatile(b.typ) {
			lo, _ := strconv.ParseUint(b.value, 10, 64)
			hi, _ := strconv.ParseUint(a.value, 10, 64)
			if vb.Uint < lo || vb.Uint > hi {
				t.Errorf("%s %s: Flock %s %d outside net-snmp's %d..%d", what, vb.OID, vb.Type, vb.Uint, lo, hi)
			}
			continue
		}
		if val != b.value && val != a.value {
			t.Errorf("%s %s: Flock %s %q, net-snmp %q / %q", what, vb.OID, vb.Type, val, b.value, a.value)
		}
	}
}

func TestNetSNMPInterop(t *testing.T) {
	port := startSnmpd(t, "")
	gets := []string{".1.3.6.1.2.1.1.1.0", ".1.3.6.1.2.1.1.2.0", ".1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.4.0",
		".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.1.6.0", ".1.3.6.1.2.1.1.7.0", ".1.3.6.1.2.1.2.1.0",
		".1.3.6.1.2.1.1.99.0", ".1.3.6.1.2.1.1.5.1"} // the last two: NoSuchObject, NoSuchInstance
	creds := []config.Credential{
		{Name: "v2", Version: config.Version2c, Community: community},
		{Name: "v1", Version: config.Version1, Community: community},
	}
	p := poll.New("interop", creds, nil)

	pollOnce := func(t *testing.T, cred string, get []string, walk string, tables ...task.Table) []task.Varbind {
		t.Helper()
		now := time.Now()
		tk := task.PollTask{Schema: task.Schema, ID: "interop@1", Site: task.DefaultSite, Host: "snmpd", HostKey: "snmpd",
			Address: "127.0.0.1", Port: uint16(port), Credentials: cred, Get: get, TimeoutMS: 2000, PollTimeoutMS: 20000,
			Retries: 1, MaxOids: 4, MaxRepetitions: 10, ScheduledAt: now, Deadline: now.Add(time.Minute)}
		if walk != "" {
			tk.Walk = []string{walk}
		}
		tk.Tables = tables
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error != nil {
			t.Fatalf("poll of snmpd: %v", rec.Error)
		}
		// Through the wire format, as a subscriber sees it.
		back, err := task.DecodeRecord(rec.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		return back.Varbinds
	}

	t.Run("get v2c", func(t *testing.T) {
		before, err := netsnmp(t, "snmpget", port, "-v2c", strings.Join(gets, " "))
		if err != nil {
			t.Fatal(err)
		}
		got := pollOnce(t, "v2", gets, "")
		after, _ := netsnmp(t, "snmpget", port, "-v2c", strings.Join(gets, " "))
		compare(t, "get", got, before, after)
	})
	// Multi-column table walks give exactly what snmpbulkwalk gives for the table.
	for _, tc := range []struct{ name, cred, version, root string }{
		{"table ifTable v2c", "v2", "-v2c", ".1.3.6.1.2.1.2.2"},
		{"table ifXTable v2c", "v2", "-v2c", ".1.3.6.1.2.1.31.1.1"},
		{"table hrStorageTable v2c", "v2", "-v2c", ".1.3.6.1.2.1.25.2.3"},
		{"table ifTable v1", "v1", "-v1", ".1.3.6.1.2.1.2.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cols, ok := mib.Builtin().Columns(tc.root)
			if !ok {
				t.Fatalf("%s is not a known table", tc.root)
			}
			tool := "snmpbulkwalk"
			if tc.version == "-v1" {
				tool = "snmpwalk"
			}
			before, err := netsnmp(t, tool, port, tc.version, tc.root)
			if err != nil {
				t.Fatal(err)
			}
			if len(before) < 5 {
				t.Fatalf("net-snmp walked only %d objects under %s", len(before), tc.root)
			}
			got := pollOnce(t, tc.cred, nil, "", task.Table{Root: tc.root, Columns: cols})
			after, _ := netsnmp(t, tool, port, tc.version, tc.root)
			compare(t, tc.name, got, before, after)
			t.Logf("%s as a table: %d varbinds identical in OID and type", tc.root, len(got))
		})
	}
	for _, tc := range []struct{ name, cred, tool, version, root string }{
		{"bulkwalk system v2c", "v2", "snmpbulkwalk", "-v2c", ".1.3.6.1.2.1.1"},
		{"bulkwalk interfaces v2c", "v2", "snmpbulkwalk", "-v2c", ".1.3.6.1.2.1.2"},
		{"bulkwalk ifXTable v2c", "v2", "snmpbulkwalk", "-v2c", ".1.3.6.1.2.1.31.1.1"},
		{"walk system v1", "v1", "snmpwalk", "-v1", ".1.3.6.1.2.1.1"},
		{"walk interfaces v1", "v1", "snmpwalk", "-v1", ".1.3.6.1.2.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := netsnmp(t, tc.tool, port, tc.version, tc.root)
			if err != nil {
				t.Fatal(err)
			}
			if len(before) < 5 {
				t.Fatalf("net-snmp walked only %d objects under %s", len(before), tc.root)
			}
			got := pollOnce(t, tc.cred, nil, tc.root)
			after, _ := netsnmp(t, tc.tool, port, tc.version, tc.root)
			compare(t, tc.name, got, before, after)
			t.Logf("%s: %d varbinds identical in OID and type", tc.root, len(got))
		})
	}
}
