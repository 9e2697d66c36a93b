// Package snmp runs a poll's SNMP requests against an agent, Flock's one
// adapter to gosnmp: on the engine's shared sockets with gosnmp's packet
// codec (Engine), or on a gosnmp session of its own for SNMPv3. Its errors
// wrap this package's sentinels; it does not log.
package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/oid"
	"github.com/flock-snmp/flock/internal/task"
)

// Errors a caller branches on. Every error from this package wraps one of them,
// or context.Canceled when the caller gave up.
var (
	// ErrTimeout: the agent did not answer within the timeout, retries and deadline.
	ErrTimeout = errors.New("timeout")
	// ErrUnreachable: the network refused (ICMP port or host unreachable, no route).
	ErrUnreachable = errors.New("unreachable")
	// ErrResolve: the host name has no address.
	ErrResolve = errors.New("name does not resolve")
	// ErrAuth: the agent rejected the credentials (SNMPv3 reports).
	ErrAuth = errors.New("authentication failed")
	// ErrProtocol: the agent answered with an error status or broke the protocol.
	ErrProtocol = errors.New("protocol error")
)

// Options are the per-host knobs of a session.
type Options struct {
	Timeout        time.Duration // per request
	Retries        int
	MaxOids        int // OIDs per GET PDU
	MaxRepetitions int // GETBULK max-repetitions for walks
	// NoBulk walks with GETNEXT even on v2c and v3.
	NoBulk bool
	// AllowNonIncreasing lets a walk go on when the agent returns an OID that
	// sorts before the previous one; a repeated OID still ends it as an error.
	AllowNonIncreasing bool
	// UnconnectedUDP accepts answers from any address (multi-homed agents).
	UnconnectedUDP bool
	// TCP polls over TCP (RFC 3430) on a session of its own, not UDP.
	TCP bool
	// Engines remembers SNMPv3 engine ids and clocks across sessions; may be nil.
	Engines *EngineCache
	// MaxVarbinds bounds one walk, against agents that walk forever; 0 means DefaultMaxVarbinds.
	MaxVarbinds int
	// Counters count packets and retries; may be nil.
	Counters *Counters
	// MaxOutstanding bounds the requests in flight to one agent address
	// (the engine's; hosts sharing an address and port share it); 0 means 1.
	MaxOutstanding int
	// MaxVarbindsPerRequest, when positive, bounds the varbinds one request
	// asks for (the engine's; learnt from agents silent on larger ones).
	MaxVarbindsPerRequest int
	// Source, when valid, is the local address requests are sent from (to
	// agents of its address family), for agents that answer only certain
	// addresses (net-snmp's clientaddr).
	Source netip.Addr
}

// local is the local UDP address to send to addr from: Source when it is
// of addr's family, else nil (the system chooses).
func (o *Options) local(addr netip.AddrPort) *net.UDPAddr {
	if !o.Source.IsValid() || o.Source.Is4() != addr.Addr().Is4() {
		return nil
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.Source, 0))
}

// DefaultMaxVarbinds bounds a walk: more than any real table (2,000
// interfaces x 2 tables x 30 columns is 120,000).
const DefaultMaxVarbinds = 250_000

func (o *Options) maxVarbinds() int {
	if o.MaxVarbinds > 0 {
		return o.MaxVarbinds
	}
	return DefaultMaxVarbinds
}

// Session is one gosnmp session to one target. It is not safe for
// concurrent use: one goroutine polls through it at a time.
type Session struct {
	g       *gosnmp.GoSNMP
	name    string // host name, for error messages
	addr    netip.AddrPort
	opts    Options
	learned task.Quirks
}

// Learned is what the session found out about the agent: that it does not
// answer GETBULK, or the max-repetitions it answered after tooBig.
func (s *Session) Learned() task.Quirks { return s.learned }

// bulkRefused is called when a GETBULK timed out: one GETNEXT of the same
// OIDs tells an agent that ignores GETBULK from one that is down. If it
// answers, the session walks with GETNEXT from then on.
func (s *Session) bulkRefused(oids []string) bool {
	if s.g.Version == gosnmp.Version1 || s.opts.NoBulk {
		return false
	}
	if _, err := s.g.GetNext(oids); err != nil {
		return false
	}
	s.opts.NoBulk, s.learned.NoBulk = true, true
	return true
}

// Resolve turns a host name or address into an IP address of network's
// family ("ip", "ip4" or "ip6"), bounded by ctx. A literal address is
// returned without any lookup.
func Resolve(ctx context.Context, r *net.Resolver, network, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, network, host)
	what := host
	switch network {
	case "ip4":
		what += " to an IPv4 address"
	case "ip6":
		what += " to an IPv6 address"
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return netip.Addr{}, ctx.Err()
		}
		return netip.Addr{}, fmt.Errorf("resolve %s: %w: %w", what, ErrResolve, err)
	}
	for _, ip := range ips { // prefer IPv4, as most SNMP fleets are addressed that way
		if (ip.Is4() || ip.Is4In6()) && network != "ip6" {
			return ip.Unmap(), nil
		}
	}
	for _, ip := range ips {
		if ip.Is6() && !ip.Is4In6() && network != "ip4" {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("resolve %s: %w", what, ErrResolve)
}

// Dial opens a session to addr, over UDP or (opts.TCP) TCP, with the given
// credentials; ctx bounds a TCP connect. name labels errors.
func Dial(ctx context.Context, name string, addr netip.AddrPort, cred *config.Credential, opts Options) (*Session, error) {
	transport := "udp"
	if opts.TCP {
		transport, opts.UnconnectedUDP = "tcp", false
	}
	g := &gosnmp.GoSNMP{
		Target:                  addr.Addr().String(),
		Port:                    addr.Port(),
		Transport:               transport,
		Timeout:                 opts.Timeout,
		Retries:                 opts.Retries,
		MaxOids:                 opts.MaxOids,
		MaxRepetitions:          uint32(opts.MaxRepetitions),
		UseUnconnectedUDPSocket: opts.UnconnectedUDP,
	}
	if l := opts.local(addr); l != nil {
		g.LocalAddr = l.String()
	}
	switch cred.Version {
	case config.Version1:
		g.Version = gosnmp.Version1
		g.Community = cred.Community.Reveal()
	case config.Version2c:
		g.Version = gosnmp.Version2c
		g.Community = cred.Community.Reveal()
	case config.Version3:
		if err := setV3(g, cred); err != nil {
			return nil, fmt.Errorf("dial %s: credentials %q: %w", name, cred.Name, err)
		}
		opts.Engines.seed(addr, g.SecurityParameters.(*gosnmp.UsmSecurityParameters), time.Now())
	default:
		return nil, fmt.Errorf("dial %s: credentials %q: SNMP version %q is not supported", name, cred.Name, cred.Version)
	}
	opts.Counters.attach(g)
	g.Context = ctx // for the connect; each request binds its own (bind)
	if err := g.Connect(); err != nil {
		return nil, fmt.Errorf("dial %s (%s): %w", name, addr, classify(err))
	}
	return &Session{g: g, name: name, addr: addr, opts: opts}, nil
}

var (
	authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{"MD5": gosnmp.MD5, "SHA": gosnmp.SHA, "SHA224": gosnmp.SHA224,
		"SHA256": gosnmp.SHA256, "SHA384": gosnmp.SHA384, "SHA512": gosnmp.SHA512}
	privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{"DES": gosnmp.DES, "AES": gosnmp.AES, "AES192": gosnmp.AES192,
		"AES256": gosnmp.AES256, "AES192C": gosnmp.AES192C, "AES256C": gosnmp.AES256C}
)

// setV3 configures USM. A fresh UsmSecurityParameters per session: gosnmp
// writes the discovered engine into it, so it must never be shared.
func setV3(g *gosnmp.GoSNMP, cred *config.Credential) error {
	sp := &gosnmp.UsmSecurityParameters{UserName: cred.Username, AuthenticationProtocol: gosnmp.NoAuth, PrivacyProtocol: gosnmp.NoPriv}
	g.Version = gosnmp.Version3
	g.SecurityModel = gosnmp.UserSecurityModel
	g.ContextName = cred.ContextName
	g.ContextEngineID = cred.ContextEngineIDBytes()
	switch cred.SecurityLevel {
	case config.NoAuthNoPriv:
		g.MsgFlags = gosnmp.NoAuthNoPriv
	case config.AuthNoPriv, config.AuthPriv:
		g.MsgFlags = gosnmp.AuthNoPriv
		var ok bool
		if sp.AuthenticationProtocol, ok = authProtocols[cred.AuthProtocol]; !ok {
			return fmt.Errorf("unknown auth protocol %q", cred.AuthProtocol)
		}
		sp.AuthenticationPassphrase = cred.AuthPassphrase.Reveal()
		if cred.SecurityLevel == config.AuthPriv {
			g.MsgFlags = gosnmp.AuthPriv
			if sp.PrivacyProtocol, ok = privProtocols[cred.PrivProtocol]; !ok {
				return fmt.Errorf("unknown privacy protocol %q", cred.PrivProtocol)
			}
			sp.PrivacyPassphrase = cred.PrivPassphrase.Reveal()
		}
	default:
		return fmt.Errorf("unknown security level %q", cred.SecurityLevel)
	}
	g.SecurityParameters = sp
	return nil
}

// bind makes ctx govern the session's requests. gosnmp checks the context
// only between retries, so a cancel also expires the socket's read deadline
// to wake a read that is blocked waiting for the agent. A session polls one
// device once: a wake-up that comes after release finds the poll ending.
func (s *Session) bind(ctx context.Context) (release func()) {
	s.g.Context = ctx
	conn := s.g.Conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	return func() { stop() }
}

// Close releases the socket and remembers what the session learnt of an
// SNMPv3 engine, for the next session to the same agent.
func (s *Session) Close() error {
	if sp, ok := s.g.SecurityParameters.(*gosnmp.UsmSecurityParameters); ok && s.g.Version == gosnmp.Version3 {
		s.opts.Engines.store(s.addr, sp, time.Now())
	}
	return s.g.Close()
}

// Get fetches oids in PDUs of at most MaxOids and calls fn for each varbind,
// in request order. An OID the agent does not have is a varbind of type
// NoSuchObject/NoSuchInstance (v1's noSuchName becomes NoSuchObject), not an error.
func (s *Session) Get(ctx context.Context, oids []string, fn func(*task.Varbind)) error {
	defer s.bind(ctx)()
	step := max(s.opts.MaxOids, 1)
	for i := 0; i < len(oids); i += step {
		if err := s.getChunk(ctx, oids[i:min(i+step, len(oids))], fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) getChunk(ctx context.Context, oids []string, fn func(*task.Varbind)) error {
	if len(oids) == 0 {
		return nil
	}
	pkt, err := s.g.Get(oids)
	if err != nil {
		return s.opErr(ctx, "get", oids[0], err)
	}
	switch pkt.Error {
	case gosnmp.NoError:
		if len(pkt.Variables) != len(oids) {
			return fmt.Errorf("get %s on %s: %w: asked for %d OIDs, got %d", oids[0], s.name, ErrProtocol, len(oids), len(pkt.Variables))
		}
		var vb task.Varbind
		for i := range pkt.Variables {
			if err := s.convert(&pkt.Variables[i], &vb); err != nil {
				return fmt.Errorf("get %s on %s: %w: %w", pkt.Variables[i].Name, s.name, ErrProtocol, err)
			}
			fn(&vb)
		}
		return nil
	case gosnmp.NoSuchName:
		// SNMPv1 fails the whole PDU for one missing OID: report that one and ask again for the rest.
		idx := int(pkt.ErrorIndex)
		if idx < 1 || idx > len(oids) {
			return fmt.Errorf("get %s on %s: %w: noSuchName with error index %d of %d", oids[0], s.name, ErrProtocol, idx, len(oids))
		}
		if err := s.getChunk(ctx, oids[:idx-1], fn); err != nil {
			return err
		}
		fn(&task.Varbind{OID: canonical(oids[idx-1]), Type: task.TypeNoSuchObject})
		return s.getChunk(ctx, oids[idx:], fn)
	case gosnmp.TooBig:
		if len(oids) == 1 {
			return fmt.Errorf("get %s on %s: %w: tooBig for a single OID", oids[0], s.name, ErrProtocol)
		}
		half := len(oids) / 2
		if err := s.getChunk(ctx, oids[:half], fn); err != nil {
			return err
		}
		return s.getChunk(ctx, oids[half:], fn)
	default:
		return fmt.Errorf("get %s on %s: %w: agent answered %s (error index %d)", failedOID(oids, pkt.ErrorIndex), s.name, ErrProtocol, pkt.Error, pkt.ErrorIndex)
	}
}

// Walk visits every object below root in order: GETBULK on v2c, GETNEXT on
// v1. Unlike gosnmp's BulkWalk it fails, rather than stopping quietly, when
// the agent answers with an error status or returns non-increasing OIDs; on
// tooBig it halves max-repetitions and asks again. As net-snmp's walk does,
// a root that is itself an object and has nothing below it is fetched with GET.
func (s *Session) Walk(ctx context.Context, root string, fn func(*task.Varbind)) error {
	defer s.bind(ctx)()
	root = canonical(root)
	cur := root
	maxRep := uint32(max(s.opts.MaxRepetitions, 1))
	seen := 0
	var vb task.Varbind
	for {
		var pkt *gosnmp.SnmpPacket
		var err error
		if s.g.Version == gosnmp.Version1 || s.opts.NoBulk {
			pkt, err = s.g.GetNext([]string{cur})
		} else {
			pkt, err = s.g.GetBulk([]string{cur}, 0, maxRep)
		}
		if err != nil {
			if errors.Is(classify(err), ErrTimeout) && ctx.Err() == nil && s.bulkRefused([]string{cur}) {
				continue // walk on with GETNEXT
			}
			return s.opErr(ctx, "walk "+root+" at", cur, err)
		}
		switch {
		case pkt.Error == gosnmp.NoSuchName && s.g.Version == gosnmp.Version1:
			return s.walkEnd(ctx, root, seen, fn) // v1's end of MIB view
		case pkt.Error == gosnmp.TooBig && maxRep > 1:
			maxRep /= 2
			learnRepetitions(&s.learned, int(maxRep))
			continue
		case pkt.Error != gosnmp.NoError:
			return fmt.Errorf("walk %s on %s: %w: agent answered %s after %s (max-repetitions %d)", root, s.name, ErrProtocol, pkt.Error, cur, maxRep)
		case len(pkt.Variables) == 0:
			return fmt.Errorf("walk %s on %s: %w: empty answer after %s", root, s.name, ErrProtocol, cur)
		}
		for i := range pkt.Variables {
			p := &pkt.Variables[i]
			if p.Type == gosnmp.EndOfMibView {
				return s.walkEnd(ctx, root, seen, fn)
			}
			// Order first: an answer at or before where we asked is a broken
			// agent, even when it lies outside the subtree (it would loop).
			if c := oid.CompareStrings(p.Name, cur); c == 0 || (c < 0 && !s.opts.AllowNonIncreasing) {
				return fmt.Errorf("walk %s on %s: %w: OID %s is not increasing after %s", root, s.name, ErrProtocol, p.Name, cur)
			}
			if !oid.InSubtree(p.Name, root) {
				return s.walkEnd(ctx, root, seen, fn)
			}
			if err := s.convert(p, &vb); err != nil {
				return fmt.Errorf("walk %s on %s: %w: %w", root, s.name, ErrProtocol, err)
			}
			fn(&vb)
			seen++
			cur = p.Name
			if seen >= s.opts.maxVarbinds() {
				return fmt.Errorf("walk %s on %s: %w: more than %d varbinds: an agent that walks forever?", root, s.name, ErrProtocol, seen)
			}
		}
		if err := ctx.Err(); err != nil {
			return s.opErr(ctx, "walk "+root+" at", cur, err)
		}
	}
}

func (s *Session) walkEnd(ctx context.Context, root string, seen int, fn func(*task.Varbind)) error {
	if seen > 0 {
		return nil
	}
	var found *task.Varbind
	err := s.getChunk(ctx, []string{root}, func(vb *task.Varbind) {
		if !vb.Type.IsException() {
			c := *vb
			found = &c
		}
	})
	if err != nil {
		return err
	}
	if found != nil {
		fn(found)
	}
	return nil
}

// opErr wraps a gosnmp error with what we were doing, classified.
func (s *Session) opErr(ctx context.Context, op, at string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(ctxErr, context.Canceled) {
		return fmt.Errorf("%s %s on %s: %w", op, at, s.name, ctxErr)
	}
	err = classify(err)
	if errors.Is(err, ErrTimeout) && s.g.Version == gosnmp.Version3 && s.g.MsgFlags&gosnmp.AuthPriv == gosnmp.AuthPriv && s.privacyIsWrong(ctx) {
		return fmt.Errorf("%s %s on %s: %w: the agent answers authenticated requests without privacy but not encrypted ones: "+
			"the privacy passphrase or protocol is wrong (agents drop what they cannot decrypt)", op, at, s.name, ErrAuth)
	}
	return fmt.Errorf("%s %s on %s: %w", op, at, s.name, err)
}

// privacyIsWrong tells an agent that is down from one that cannot decrypt
// us: agents drop undecryptable requests silently, so both look like a
// timeout. It asks once with authentication but no privacy; any answer,
// even an access error, shows the agent and the auth key are fine.
func (s *Session) privacyIsWrong(ctx context.Context) bool {
	sp, ok := s.g.SecurityParameters.(*gosnmp.UsmSecurityParameters)
	if !ok || sp.AuthoritativeEngineID == "" {
		return false // never heard from the agent: nothing to tell
	}
	probe := &gosnmp.GoSNMP{
		Target: s.g.Target, Port: s.g.Port, Transport: s.g.Transport, Version: gosnmp.Version3, LocalAddr: s.g.LocalAddr,
		Timeout: min(s.opts.Timeout, time.Second), Retries: 0, Context: ctx,
		SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthNoPriv, ContextName: s.g.ContextName,
		SecurityParameters: &gosnmp.UsmSecurityParameters{
			UserName: sp.UserName, AuthenticationProtocol: sp.AuthenticationProtocol,
			AuthenticationPassphrase: sp.AuthenticationPassphrase, PrivacyProtocol: gosnmp.NoPriv,
			AuthoritativeEngineID: sp.AuthoritativeEngineID, AuthoritativeEngineBoots: sp.AuthoritativeEngineBoots,
			AuthoritativeEngineTime: sp.AuthoritativeEngineTime,
		},
	}
	if err := probe.Connect(); err != nil {
		return false
	}
	defer probe.Close()
	_, err := probe.Get([]string{".1.3.6.1.2.1.1.3.0"})
	// An answer, an error status, or a report that the level is not allowed: all are answers.
	return err == nil || errors.Is(err, gosnmp.ErrUnknownSecurityLevel)
}

// classify maps a gosnmp or network error to one of this package's sentinels, keeping the cause.
func classify(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, gosnmp.ErrMaxRetriesExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case isAsyncError(err), // the ICMP errors an unconnected socket reports later
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE): // a TCP agent that hangs up
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case errors.Is(err, gosnmp.ErrUnknownUsername), errors.Is(err, gosnmp.ErrWrongDigest),
		errors.Is(err, gosnmp.ErrDecryption), errors.Is(err, gosnmp.ErrUnknownSecurityLevel):
		return fmt.Errorf("%w: %w", ErrAuth, err)
	case strings.Contains(err.Error(), "not authentic"), strings.Contains(err.Error(), "is not authenticated"):
		// gosnmp's own text (no sentinel) when the agent's report does not
		// verify with our key: a wrong auth passphrase or an unknown user.
		return fmt.Errorf("%w: the agent rejected the user or the authentication passphrase/protocol (%w)", ErrAuth, err)
	}
	return fmt.Errorf("%w: %w", ErrProtocol, err)
}

func canonical(s string) string {
	if c, err := oid.Normalize(s); err == nil {
		return c
	}
	return s
}

func failedOID(oids []string, index uint8) string {
	if i := int(index); i >= 1 && i <= len(oids) {
		return oids[i-1]
	}
	return oids[0] + " (+" + strconv.Itoa(len(oids)-1) + " more)"
}

// convert is Convert for the session's answers. Over TCP, gosnmp reads
// each answer into the session's one receive buffer and its values point
// into it (UDP answers get a buffer each): the next request would
// overwrite an OctetString already handed on, so it is copied.
func (s *Session) convert(p *gosnmp.SnmpPDU, vb *task.Varbind) error {
	if err := Convert(p, vb); err != nil {
		return err
	}
	if s.opts.TCP && len(vb.Bytes) > 0 {
		vb.Bytes = append([]byte(nil), vb.Bytes...)
	}
	return nil
}
