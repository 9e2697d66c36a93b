package agent

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Agent
	}{
		// Names and literals, as snmp_exporter, LibreNMS and inventories write them.
		{"core-sw1.example.net", Agent{"core-sw1.example.net", 0, UDP}},
		{"core-sw1.example.net.", Agent{"core-sw1.example.net.", 0, UDP}},
		{"core_sw1", Agent{"core_sw1", 0, UDP}},
		{"localhost", Agent{"localhost", 0, UDP}},
		{"192.0.2.1", Agent{"192.0.2.1", 0, UDP}},
		{"2001:db8::1", Agent{"2001:db8::1", 0, UDP}},
		{"::1", Agent{"::1", 0, UDP}},
		{"::ffff:192.0.2.1", Agent{"::ffff:192.0.2.1", 0, UDP}},
		{"[::1]", Agent{"::1", 0, UDP}},
		{"[2001:db8::1]", Agent{"2001:db8::1", 0, UDP}},
		{"fe80::1%eth0", Agent{"fe80::1%eth0", 0, UDP}},
		{"[fe80::1%eth0]", Agent{"fe80::1%eth0", 0, UDP}},
		{"abcd::1", Agent{"abcd::1", 0, UDP}},
		// host:port and [v6]:port.
		{"127.0.0.1:16551", Agent{"127.0.0.1", 16551, UDP}},
		{"core-sw1.example.net:1161", Agent{"core-sw1.example.net", 1161, UDP}},
		{"[::1]:16551", Agent{"::1", 16551, UDP}},
		{"[fe80::1%eth0]:161", Agent{"fe80::1%eth0", 161, UDP}},
		{"[::1]:65535", Agent{"::1", 65535, UDP}},
		// Telegraf's agent URLs.
		{"udp://127.0.0.1:161", Agent{"127.0.0.1", 161, UDP}},
		{"udp://core-sw1.example.net", Agent{"core-sw1.example.net", 0, UDP}},
		{"UDP://core-sw1.example.net:161", Agent{"core-sw1.example.net", 161, UDP}},
		{"udp4://192.0.2.1:161", Agent{"192.0.2.1", 161, UDP4}},
		{"udp6://[::1]:16551", Agent{"::1", 16551, UDP6}},
		{"udp6://[::1]", Agent{"::1", 0, UDP6}},
		{"udp6://::1", Agent{"::1", 0, UDP6}},
		{"udp6://[fe80::1%25eth0]:161", Agent{"fe80::1%eth0", 161, UDP6}},
		{"udp6://[fe80::1%eth0]:161", Agent{"fe80::1%eth0", 161, UDP6}},
		{"udp6://core-sw1.example.net:161", Agent{"core-sw1.example.net", 161, UDP6}},
		{"udp://[::1]:161", Agent{"::1", 161, UDP}},
		{"tcp://127.0.0.1:1161", Agent{"127.0.0.1", 1161, TCP}},
		{"tcp4://192.0.2.1", Agent{"192.0.2.1", 0, TCP4}},
		{"tcp6://[::1]:1161", Agent{"::1", 1161, TCP6}},
		// net-snmp's transport specifiers.
		{"udp:127.0.0.1:161", Agent{"127.0.0.1", 161, UDP}},
		{"udp:core-sw1.example.net", Agent{"core-sw1.example.net", 0, UDP}},
		{"udp6:[::1]:16551", Agent{"::1", 16551, UDP6}},
		{"udp6:[::1]", Agent{"::1", 0, UDP6}},
		{"udp6:::1", Agent{"::1", 0, UDP6}},
		{"udpv6:[::1]:161", Agent{"::1", 161, UDP6}},
		{"udpipv6:[2001:db8::1]:161", Agent{"2001:db8::1", 161, UDP6}},
		{"udp6:fe80::1%eth0", Agent{"fe80::1%eth0", 0, UDP6}},
		{"udp6:[fe80::1%eth0]:161", Agent{"fe80::1%eth0", 161, UDP6}},
		{"tcp:127.0.0.1:1161", Agent{"127.0.0.1", 1161, TCP}},
		{"tcp6:[::1]:1161", Agent{"::1", 1161, TCP6}},
		{"TCPv6:[::1]:1161", Agent{"::1", 1161, TCP6}},
		{"ipv6:[::1]:161", Agent{"::1", 161, UDP6}},
		{"udp4:core-sw1.example.net", Agent{"core-sw1.example.net", 0, UDP4}},
		{"tcp4:192.0.2.1:1161", Agent{"192.0.2.1", 1161, TCP4}},
		// A name whose last label is numeric may still be in /etc/hosts.
		{"rack.42", Agent{"rack.42", 0, UDP}},
		{"fe80::1%2", Agent{"fe80::1%2", 0, UDP}},
		{"[fe80::1%25]:161", Agent{"fe80::1%25", 161, UDP}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		// What String writes reads back as the same agent.
		again, err := Parse(got.String())
		if err != nil || again != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v; want %+v", tc.in, got.String(), again, err, got)
		}
		if err := CheckHost(got.Host, got.Transport); err != nil {
			t.Errorf("CheckHost(%q, %q): %v", got.Host, got.Transport, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `"" is empty`},
		{"999.1.1.1", `"999.1.1.1" is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`},
		{"1.2.3", `"1.2.3" is not an IPv4 address (IPv4 address too short), and a name of digits and dots can never resolve`},
		{"010.1.1.1", `"010.1.1.1" is not an IPv4 address (IPv4 field has octet with leading zero), and a name of digits and dots can never resolve`},
		{"999.1.1.1:161", `"999.1.1.1:161" has host "999.1.1.1", which is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`},
		{"udp://999.1.1.1:161", `"udp://999.1.1.1:161" has host "999.1.1.1", which is not an IPv4 address (IPv4 field has value >255), and a name of digits and dots can never resolve`},
		{"udp:161", `"udp:161" has transport "udp" and port 161 but no host: write udp:host:161`},
		{"abcde::1", `"abcde::1" has more than one ':' but is not an IPv6 address (each group must have 4 or less digits (at "abcde::1"))`},
		{"fe80x::1", `"fe80x::1" has more than one ':' but is not an IPv6 address (unexpected character, want colon (at "x::1"))`},
		{"router:161:", `"router:161:" has more than one ':' but is not an IPv6 address (each colon-separated field must have at least one digit (at "router:161:"))`},
		{"switch:161/x", `"switch:161/x" has port "161/x", which is not a port number (1..65535)`},
		{"[fe80::1%25eth0]:161", `"[fe80::1%25eth0]:161" has host "fe80::1%25eth0", which has zone "25eth0": %25 is how a URL writes '%'; outside one write fe80::1%eth0`},
		{"münchen.example.net", `"münchen.example.net" has 'ü': write an internationalized name in its ASCII (xn--, punycode) form`},
		{"fe80::1%#0", `"fe80::1%#0" has zone "#0", and an interface name is letters, digits, '.', '-' and '_'`},
		{"0.0.0.0", `"0.0.0.0" is the unspecified address, which names no agent`},
		{"[::]:161", `"[::]:161" has host "::", which is the unspecified address, which names no agent`},
		{"255.255.255.255", `"255.255.255.255" is a broadcast or multicast address: Flock polls one agent at a time`},
		{"udp6://[ff02::1]:161", `"udp6://[ff02::1]:161" has host "ff02::1", which is a broadcast or multicast address: Flock polls one agent at a time`},
		{"core sw1", `"core sw1" has ' ', which no address has`},
		{"core-sw1.example.net/24", `"core-sw1.example.net/24" has '/', which a host name cannot have (letters, digits, '-', '_' and '.')`},
		{"core..sw1", `"core..sw1" has an empty label (".." or a leading dot), which a host name cannot have`},
		{"-core.example.net", `"-core.example.net" has label "-core", which begins or ends with '-'`},
		{strings.Repeat("a", 64) + ".net", `"` + strings.Repeat("a", 64) + `.net" has label "` + strings.Repeat("a", 64) + `", longer than the 63 characters a label may have`},
		{"[::1", `"[::1" has a '[' without its ']'`},
		{"[::1]:", `"[::1]:" has an empty port after ':'`},
		{"[::1]161", `"[::1]161" has "161" after ']', which is not a port: write [address]:port`},
		{"[::1]:0", `"[::1]:0" has port "0", which is not a port number (1..65535)`},
		{"[::1]:65536", `"[::1]:65536" has port "65536", which is not a port number (1..65535)`},
		{"[127.0.0.1]:161", `"[127.0.0.1]:161" has IPv4 address 127.0.0.1 in brackets, which are for IPv6 addresses only`},
		{"[core-sw1]:161", `"[core-sw1]:161" has "core-sw1" in brackets, which is not an IPv6 address (unable to parse IP)`},
		{"127.0.0.1:", `"127.0.0.1:" has an empty port after ':'`},
		{":161", `":161" has no host before ':'`},
		{"core-sw1:snmp", `"core-sw1:snmp" has port "snmp", which is not a port number (1..65535)`},
		{"2001:db8::1:zz", `"2001:db8::1:zz" has more than one ':' but is not an IPv6 address (each colon-separated field must have at least one digit (at "zz"))`},
		{"2001:db8::zz:161", `"2001:db8::zz:161" has more than one ':' but is not an IPv6 address (each colon-separated field must have at least one digit (at "zz:161"))`},
		{"fe80::1%eth0:161", `"fe80::1%eth0:161" has zone "eth0:161", and no interface has ':' in its name: an IPv6 address with a port is written [address]:port`},
		{"2001:db8::1%", `"2001:db8::1%" has more than one ':' but is not an IPv6 address (zone must be a non-empty string)`},
		{"192.0.2.1%eth0", `"192.0.2.1%eth0" has a zone (%eth0), which only an IPv6 address has`},
		{"core-sw1%eth0", `"core-sw1%eth0" has a zone (%eth0), which only an IPv6 address has`},
		{"http://core-sw1:161", `"http://core-sw1:161" has scheme "http", which is not an SNMP transport (want udp, udp4, udp6, tcp, tcp4 or tcp6, as in udp://host:161)`},
		{"udp://core-sw1:161/public", `"udp://core-sw1:161/public" has "/public" after the host and port, which is not part of an agent address`},
		{"udp://public@core-sw1:161", `"udp://public@core-sw1:161" has a user part ("public"): credentials belong in a credential profile`},
		{"udp://", `"udp://" has no host`},
		{"udp6://127.0.0.1:161", `"udp6://127.0.0.1:161" has host "127.0.0.1", which is an IPv4 address, and udp6 reaches IPv6 agents only`},
		{"udp6:127.0.0.1:161", `"udp6:127.0.0.1:161" has host "127.0.0.1", which is an IPv4 address, and udp6 reaches IPv6 agents only`},
		{"tcp4://[::1]:161", `"tcp4://[::1]:161" has host "::1", which is an IPv6 address, and tcp4 reaches IPv4 agents only`},
		{"dtlsudp:core-sw1:10161", `"dtlsudp:core-sw1:10161" starts with "dtlsudp:", which is not a transport Flock polls over (want udp, udp6, tcp or tcp6, as in udp:host:161)`},
		{"unix:/var/agentx/master", `"unix:/var/agentx/master" starts with "unix:", which is not a transport Flock polls over (want udp, udp6, tcp or tcp6, as in udp:host:161)`},
	} {
		got, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want error %s", tc.in, got, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tc.in, err, tc.want)
		}
		if !errors.Is(err, ErrAddress) {
			t.Errorf("Parse(%q): %v is not ErrAddress", tc.in, err)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for _, tc := range []struct{ host, transport, want string }{
		{"core-sw1.example.net", "", ""},
		{"core-sw1.example.net", TCP6, ""},
		{"::1", UDP, ""},
		{"fe80::1%eth0", UDP6, ""},
		{"::ffff:192.0.2.1", UDP4, ""},
		{"192.0.2.1", UDP6, `"192.0.2.1" is an IPv4 address, and udp6 reaches IPv6 agents only`},
		{"[::1]", UDP, `"[::1]" is not an IPv6 address (each colon-separated field must have at least one digit (at "[::1]"))`},
		{"127.0.0.1:161", UDP, `"127.0.0.1:161" is not an IPv6 address (unexpected character (at ":161"))`},
		{"core-sw1", "sctp", `"core-sw1" has transport "sctp", which is not one of udp, udp4, udp6, tcp, tcp4, tcp6`},
		{"", UDP, `"" is empty`},
	} {
		err := CheckHost(tc.host, tc.transport)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("CheckHost(%q, %q):\n got %s\nwant %s", tc.host, tc.transport, got, tc.want)
		}
	}
}

func TestFamily(t *testing.T) {
	for tr, want := range map[string]int{"": 0, UDP: 0, TCP: 0, UDP4: 4, TCP4: 4, UDP6: 6, TCP6: 6, "sctp": -1} {
		if got := Family(tr); got != want {
			t.Errorf("Family(%q) = %d, want %d", tr, got, want)
		}
	}
	if !IsTCP(TCP6) || IsTCP(UDP) || IsTCP("") {
		t.Error("IsTCP")
	}
}

// A plain name is read without allocating: a large inventory is mostly names.
func TestParseNameDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse("core-sw1.example.net") }); n != 0 {
		t.Errorf("Parse of a name allocates %v times", n)
	}
}

// Pollers check every task's address: a valid one costs no allocation.
func TestCheckHostDoesNotAllocate(t *testing.T) {
	for _, host := range []string{"core-sw1.example.net", "192.0.2.1", "2001:db8::1", "fe80::1%eth0"} {
		if n := testing.AllocsPerRun(100, func() { _ = CheckHost(host, UDP) }); n != 0 {
			t.Errorf("CheckHost(%q) allocates %v times", host, n)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, s := range []string{"core-sw1.example.net", "192.0.2.1", "udp6://[2001:db8::1]:161"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := Parse(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Whatever a configuration holds, Parse answers without panicking; what
// it accepts writes back (String) as the same agent and passes CheckHost,
// as the poller checks every task.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"core-sw1.example.net", "192.0.2.1:161", "[::1]:161", "fe80::1%eth0", "udp6://[fe80::1%25eth0]:161",
		"udp6:[::1]:161", "tcp:host:1161", "999.1.1.1", "[::1", "udp://", "a:b:c", "%", "[]:", "udp6:::1", "ipv6:[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrAddress) || !strings.HasPrefix(err.Error(), strconv.Quote(s)+" ") {
				t.Fatalf("Parse(%q): error %q does not quote the address", s, err)
			}
			return
		}
		if err := CheckHost(a.Host, a.Transport); err != nil {
			t.Fatalf("Parse(%q) = %+v, which CheckHost refuses: %v", s, a, err)
		}
		if again, err := Parse(a.String()); err != nil || again.Host != a.Host || again.Transport != a.Transport || again.Port != a.Port {
			t.Fatalf("Parse(%q) = %+v; Parse(%q) = %+v, %v", s, a, a.String(), again, err)
		}
	})
}
