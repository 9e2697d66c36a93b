// Package agent reads SNMP agent addresses in the forms users copy from
// other tools.
//
// Accepted, with an optional port everywhere the form allows one:
//
//	core-sw1.example.net          a DNS name
//	192.0.2.1   2001:db8::1       IP literals
//	[2001:db8::1]                 a bracketed IPv6 literal (as in URLs)
//	fe80::1%eth0                  an IPv6 literal with its zone
//	core-sw1.example.net:1161     host:port (snmp_exporter targets, inventories)
//	[2001:db8::1]:1161            [v6]:port
//	udp://192.0.2.1:161           Telegraf's agents: udp, udp4, udp6, tcp, tcp4, tcp6
//	udp6://[2001:db8::1]:161      (a zone is written %25 in a URL: [fe80::1%25eth0])
//	udp:192.0.2.1:161             net-snmp's transport specifiers: udp, udp6 (udpv6,
//	udp6:[2001:db8::1]:161        udpipv6, ipv6), tcp, tcp6 (tcpv6, tcpipv6); udp4, tcp4
//
// Anything else is an error that quotes the address and says what is
// wrong with it: a name that can never resolve (999.1.1.1 is neither an
// IPv4 address nor a possible name) is refused here, not at poll time.
package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The transports, by their Go network names. "udp" and "tcp" take either
// address family; the others resolve names to their family only.
const (
	UDP  = "udp"
	UDP4 = "udp4"
	UDP6 = "udp6"
	TCP  = "tcp"
	TCP4 = "tcp4"
	TCP6 = "tcp6"
)

// ErrAddress is matched (errors.Is) by every Parse and CheckHost error.
var ErrAddress = errors.New("not an agent address")

// Error is a refused address: Error() quotes it, then says what is wrong.
type Error struct {
	Addr   string
	Reason string // follows the quoted address: "is ...", "has ..."
}

func (e *Error) Error() string        { return strconv.Quote(e.Addr) + " " + e.Reason }
func (e *Error) Is(target error) bool { return target == ErrAddress }

// Agent is where an agent listens, as Parse read it.
type Agent struct {
	// Host is a DNS name or an IP literal: IPv6 without brackets, with
	// its zone if it has one (fe80::1%eth0).
	Host string
	// Port is 0 when the address does not give one.
	Port uint16
	// Transport is one of UDP, UDP4, UDP6, TCP, TCP4, TCP6.
	Transport string
}

// String writes the agent back in Telegraf's URL form (udp6://[::1]:161).
func (a Agent) String() string {
	host := a.Host
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + strings.Replace(host, "%", "%25", 1) + "]"
	}
	if a.Port == 0 {
		return a.Transport + "://" + host
	}
	return a.Transport + "://" + host + ":" + strconv.Itoa(int(a.Port))
}

// urlSchemes are the schemes of Telegraf's agent URLs; netsnmpPrefixes
// net-snmp's transport specifiers (snmpcmd(1), "AGENT SPECIFICATION").
var (
	urlSchemes      = map[string]string{"udp": UDP, "udp4": UDP4, "udp6": UDP6, "tcp": TCP, "tcp4": TCP4, "tcp6": TCP6}
	netsnmpPrefixes = map[string]string{"udp": UDP, "udp4": UDP4, "udp6": UDP6, "udpv6": UDP6, "udpipv6": UDP6, "ipv6": UDP6,
		"tcp": TCP, "tcp4": TCP4, "tcp6": TCP6, "tcpv6": TCP6, "tcpipv6": TCP6}
)

// Parse reads an agent address in any of the package's forms.
func Parse(s string) (Agent, error) {
	bad := func(format string, args ...any) (Agent, error) {
		return Agent{}, &Error{Addr: s, Reason: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return bad("is empty")
	}
	if plainName(s) { // the common case, without allocating
		if reason := checkName(s); reason != "" {
			return bad("%s", reason)
		}
		return Agent{Host: s, Transport: UDP}, nil
	}
	if i := strings.IndexAny(s, " \t\r\n"); i >= 0 {
		return bad("has %q, which no address has", s[i])
	}
	a := Agent{Transport: UDP}
	rest, url := s, false
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		tr, known := urlSchemes[strings.ToLower(scheme)]
		if !known {
			return bad("has scheme %q, which is not an SNMP transport (want udp, udp4, udp6, tcp, tcp4 or tcp6, as in udp://host:161)", scheme)
		}
		a.Transport, rest, url = tr, after, true
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			return bad("has %q after the host and port, which is not part of an agent address", rest[i:])
		}
		if i := strings.IndexByte(rest, '@'); i >= 0 {
			return bad("has a user part (%q): credentials belong in a credential profile", rest[:i])
		}
	} else if prefix, after, ok := strings.Cut(s, ":"); ok && after != "" {
		// net-snmp's "udp6:[::1]:161". Neither "host:161" nor an IPv6
		// literal ("fe80::1" cuts to "fe80" and ":1") has a transport.
		tr, known := netsnmpPrefixes[strings.ToLower(prefix)]
		switch {
		case known && isNumber(after):
			return bad("has transport %q and port %s but no host: write %s:host:%s", prefix, after, prefix, after)
		case known:
			a.Transport, rest = tr, after
		case isWord(prefix) && !isHex(prefix) && looksLikeAgent(after):
			return bad("starts with %q, which is not a transport Flock polls over (want udp, udp6, tcp or tcp6, as in udp:host:161)", prefix+":")
		}
	}
	if rest == "" {
		return bad("has no host")
	}
	host, port, reason := splitHostPort(rest, url)
	if reason != "" {
		return bad("%s", reason)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad("has port %q, which is not a port number (1..65535)", port)
		}
		a.Port = uint16(n)
	}
	if reason := hostReason(host, a.Transport); reason != "" {
		if host == s {
			return bad("%s", reason)
		}
		return bad("has host %q, which %s", host, reason)
	}
	a.Host = host
	return a, nil
}

// splitHostPort splits "host", "host:port", "[v6]", "[v6]:port" and a bare
// IPv6 literal, or says why it cannot. In a URL a zone is written %25.
func splitHostPort(s string, url bool) (host, port, reason string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", "has a '[' without its ']'"
		}
		host, after := s[1:end], s[end+1:]
		if url {
			host = strings.Replace(host, "%25", "%", 1)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", "", fmt.Sprintf("has %q in brackets, which is not an IPv6 address (%s)", host, netipReason(err))
		}
		if ip.Is4() {
			return "", "", fmt.Sprintf("has IPv4 address %s in brackets, which are for IPv6 addresses only", host)
		}
		switch {
		case after == "":
			return host, "", ""
		case after[0] != ':':
			return "", "", fmt.Sprintf("has %q after ']', which is not a port: write [address]:port", after)
		case after == ":":
			return "", "", "has an empty port after ':'"
		}
		return host, after[1:], ""
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", ""
	case 1:
		host, port, _ = strings.Cut(s, ":")
		if host == "" {
			return "", "", "has no host before ':'"
		}
		if port == "" {
			return "", "", "has an empty port after ':'"
		}
		return host, port, ""
	}
	if url {
		s = strings.Replace(s, "%25", "%", 1)
	}
	if _, err := netip.ParseAddr(s); err != nil {
		last := strings.LastIndexByte(s, ':')
		if _, perr := netip.ParseAddr(s[:last]); perr == nil && isNumber(s[last+1:]) { // an address, then a port
			return "", "", fmt.Sprintf("has more than one ':' but is not an IPv6 address (%s); an IPv6 address with a port is written [address]:port", netipReason(err))
		}
		return "", "", fmt.Sprintf("has more than one ':' but is not an IPv6 address (%s)", netipReason(err))
	}
	return s, "", ""
}

// CheckHost says whether host, as a task or configuration carries it, is
// a DNS name or an IP literal (IPv6 unbracketed, with or without a zone)
// that transport can reach. The error is an *Error. A valid host costs no
// allocation: pollers check every task's.
func CheckHost(host, transport string) error {
	if reason := hostReason(host, transport); reason != "" {
		return &Error{Addr: host, Reason: reason}
	}
	return nil
}

func hostReason(host, transport string) string {
	family := Family(transport)
	if family < 0 {
		return fmt.Sprintf("has transport %q, which is not one of udp, udp4, udp6, tcp, tcp4, tcp6", transport)
	}
	if host == "" {
		return "is empty"
	}
	if plainName(host) { // no literal: checked without allocating
		return checkName(host)
	}
	ip, err := netip.ParseAddr(host)
	if err == nil {
		v4 := ip.Unmap().Is4()
		zone := ip.Zone()
		switch {
		case strings.IndexByte(zone, ':') >= 0:
			return fmt.Sprintf("has zone %q, and no interface has ':' in its name: an IPv6 address with a port is written [address]:port", zone)
		case !zoneName(zone):
			return fmt.Sprintf("has zone %q, and an interface name is letters, digits, '.', '-' and '_'", zone)
		case ip.IsUnspecified():
			return "is the unspecified address, which names no agent"
		case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return "is a broadcast or multicast address: Flock polls one agent at a time"
		case len(zone) > 2 && zone[:2] == "25" && (zone[2]|0x20 >= 'a' && zone[2]|0x20 <= 'z'):
			return fmt.Sprintf("has zone %q: %%25 is how a URL writes '%%'; outside one write %s%%%s", zone, ip.WithZone(""), zone[2:])
		case family == 6 && v4:
			return fmt.Sprintf("is an IPv4 address, and %s reaches IPv6 agents only", transport)
		case family == 4 && !v4:
			return fmt.Sprintf("is an IPv6 address, and %s reaches IPv4 agents only", transport)
		}
		return ""
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		if ip, err := netip.ParseAddr(host[:i]); err != nil || ip.Is4() {
			return fmt.Sprintf("has a zone (%s), which only an IPv6 address has", host[i:])
		}
	}
	switch {
	case strings.IndexByte(host, ':') >= 0 || strings.IndexByte(host, '%') >= 0:
		return fmt.Sprintf("is not an IPv6 address (%s)", netipReason(err))
	case numeric(host):
		return fmt.Sprintf("is not an IPv4 address (%s), and a name of digits and dots can never resolve", netipReason(err))
	}
	return checkName(host)
}

// Family is 4 or 6 for a transport bound to one address family, 0 for
// udp and tcp, -1 for a transport that is not one of the package's.
func Family(transport string) int {
	switch transport {
	case UDP, TCP, "":
		return 0
	case UDP4, TCP4:
		return 4
	case UDP6, TCP6:
		return 6
	}
	return -1
}

// IsTCP says whether transport is TCP (RFC 3430), not UDP.
func IsTCP(transport string) bool { return transport == TCP || transport == TCP4 || transport == TCP6 }

// checkName checks a DNS host name, or says why it is none: labels of
// letters, digits, '-' and '_' (seen in internal names), none empty or
// over 63 characters, at most 253 in all, an optional final dot. (Digits
// and dots alone, a mistyped IPv4 address, are refused before.)
func checkName(s string) string {
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return fmt.Sprintf("is %d characters long, and a name has at most 253", len(name))
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if c >= utf8.RuneSelf {
				r, _ := utf8.DecodeRuneInString(name[i:])
				return fmt.Sprintf("has %q: write an internationalized name in its ASCII (xn--, punycode) form", r)
			}
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("has %q, which a host name cannot have (letters, digits, '-', '_' and '.')", c)
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return "has an empty label (\"..\" or a leading dot), which a host name cannot have"
		case len(label) > 63:
			return fmt.Sprintf("has label %q, longer than the 63 characters a label may have", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("has label %q, which begins or ends with '-'", label)
		}
		start = i + 1
	}
	return ""
}

// plainName: letters, digits, '-', '_' and '.' only, with a letter, '-' or
// '_' somewhere: a name, no literal, port or scheme.
func plainName(s string) bool {
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			letter = true
		case c >= '0' && c <= '9', c == '.':
		default:
			return false
		}
	}
	return letter
}

// numeric: digits and dots only (an attempt at an IPv4 literal).
func numeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func isNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// zoneName: an interface name or index as a zone (eth0, enp0s3, eth0.100,
// br-lan, 2), or none.
func zoneName(z string) bool {
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// looksLikeAgent: what follows "word:" in a transport specifier ("[v6]",
// "/path", "host:port"), not a port ("161") or an IPv6 literal's rest.
func looksLikeAgent(after string) bool {
	if after[0] == '[' || after[0] == '/' {
		return true
	}
	host, _, ok := strings.Cut(after, ":")
	return ok && host != "" && !isNumber(host)
}

// isHex: up to four hexadecimal digits (the start of an IPv6 literal).
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return len(s) <= 4
}

// isWord: letters and digits only, starting with a letter (a transport name).
func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= 'a' && c <= 'z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return s != ""
}

// netipReason is netip's error without its `ParseAddr("...")` prefix: the
// caller quotes the address already.
func netipReason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "): "); ok && strings.HasPrefix(msg, "ParseAddr(") {
		return after
	}
	return msg
}
