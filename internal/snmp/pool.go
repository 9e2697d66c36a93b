package snmp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// Pool reuses gosnmp sessions from poll to poll. gosnmp's Connect allocates
// a 64 KiB receive buffer and draws a random request id through crypto/rand
// every time; a pooled session keeps both, and keeps its connected UDP
// socket too: the next Dial re-aims it with connect(2) (see reaim), so ICMP
// "port unreachable" still reaches the poll, without a socket, an epoll
// registration and a close per poll. SNMPv3 sessions (engine state) and
// unconnected sockets take the full Dial. A Pool is safe for concurrent use;
// each Session still serves one poll at a time.
//
// It is a plain free list, not a sync.Pool: a sync.Pool drops its entries
// at garbage collections, and every session made again means a new 64 KiB
// buffer that the runtime zeroes, so all its pages become resident. Kept,
// a buffer only ever has the pages a response touched resident. The list
// never holds more sessions than were once in use at the same time, which
// the poller's concurrency bounds.
type Pool struct {
	mu   sync.Mutex
	free []*Session
}

// Close closes the sockets of the pooled sessions.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.free {
		if s.g.Conn != nil {
			_ = s.g.Conn.Close()
		}
	}
	p.free = nil
}

func (p *Pool) get() *Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.free)
	if n == 0 {
		return nil
	}
	s := p.free[n-1]
	p.free[n-1] = nil
	p.free = p.free[:n-1]
	return s
}

func (p *Pool) put(s *Session) {
	p.mu.Lock()
	p.free = append(p.free, s)
	p.mu.Unlock()
}

// Dial returns a session to addr, reusing a pooled one when it can. Close
// the session to return it.
func (p *Pool) Dial(name string, addr netip.AddrPort, cred *config.Credential, opts Options) (*Session, error) {
	if cred.Version == config.Version3 || opts.UnconnectedUDP {
		return Dial(name, addr, cred, opts)
	}
	s := p.get()
	if s == nil {
		s, err := Dial(name, addr, cred, opts)
		if err == nil {
			s.pool = p
		}
		return s, err
	}
	g := s.g
	if err := reaim(g.Conn, s.addr, addr); err != nil || s.opts.Source != opts.Source {
		if g.Conn != nil {
			_ = g.Conn.Close()
		}
		conn, err := net.DialUDP("udp", opts.local(addr), net.UDPAddrFromAddrPort(addr))
		if err != nil {
			g.Conn = nil
			p.put(s)
			return nil, fmt.Errorf("dial %s (%s): %w", name, addr, classify(err))
		}
		g.Conn = conn
	}
	g.Target, g.Port = addr.Addr().String(), addr.Port()
	g.Timeout, g.Retries, g.MaxOids, g.MaxRepetitions = opts.Timeout, opts.Retries, opts.MaxOids, uint32(opts.MaxRepetitions)
	g.Community = cred.Community.Reveal()
	opts.Counters.attach(g)
	g.Version = gosnmp.Version2c
	if cred.Version == config.Version1 {
		g.Version = gosnmp.Version1
	}
	s.name, s.addr, s.opts, s.learned = name, addr, opts, task.Quirks{}
	return s, nil
}
