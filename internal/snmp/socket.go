package snmp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/gosnmp/gosnmp"
)

// socket is one of the engine's shared UDP sockets: unconnected, so it
// sends to every agent of its address family, with one reader goroutine
// that hands each answer to the poll waiting for it. On Linux it also
// receives the ICMP errors its requests cause (IP_RECVERR): a closed port
// is reported as unreachable at once, as a connected socket would.
type socket struct {
	e    *Engine
	conn *net.UDPConn
	buf  []byte         // the reader's receive buffer
	dec  *gosnmp.GoSNMP // the reader's decoder (v1/v2c need no session state)
	ans  answer         // the reader's decoded answer, reused
}

func openSocket(e *Engine, v6 bool, source netip.Addr) (*socket, error) {
	network, local := "udp4", &net.UDPAddr{IP: net.IPv4zero}
	if v6 {
		network, local = "udp6", &net.UDPAddr{IP: net.IPv6unspecified}
	}
	if source.IsValid() && source.Is4() != v6 {
		local = net.UDPAddrFromAddrPort(netip.AddrPortFrom(source, 0))
	}
	conn, err := net.ListenUDP(network, local)
	if err != nil {
		return nil, fmt.Errorf("open a %s socket on %s: %w", network, local, err)
	}
	_ = conn.SetReadBuffer(4 << 20) // bursts of answers; the kernel caps it at rmem_max
	_ = conn.SetWriteBuffer(1 << 20)
	if err := recvErrors(conn, v6); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%s socket: receive ICMP errors: %w", network, err)
	}
	return &socket{e: e, conn: conn, buf: make([]byte, 65536), dec: &gosnmp.GoSNMP{}}, nil
}

// read hands every datagram to the engine until the socket is closed.
func (s *socket) read() {
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(s.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP error one of our requests caused (ECONNREFUSED and
			// kin): the details wait in the socket's error queue. The
			// reader holds no poll: it hands each error over at once.
			drainErrors(s.conn, s.e.icmpError)
			continue
		}
		// Without a zone: the kernel names a link-local sender's interface
		// its own way (eth0, not the %2 a configuration may have written).
		s.e.answer(s, s.buf[:n], netip.AddrPortFrom(from.Addr().Unmap().WithZone(""), from.Port()))
	}
}

// send writes one request. An unconnected socket reports a pending ICMP
// error of an earlier datagram on the next send too, without sending: the
// queued errors go to the timer goroutine (the sender holds a poll, maybe
// the very one an error is for) and the send is tried again. Only a
// routing error that repeats is this send's own.
func (s *socket) send(b []byte, to netip.AddrPort) error {
	var err error
	for range 4 {
		if _, err = s.conn.WriteToUDPAddrPort(b, to); err == nil {
			return nil
		}
		if !isAsyncError(err) {
			return err
		}
		drainErrors(s.conn, s.e.icmpLater)
	}
	return err
}

// isAsyncError: errors an unconnected socket reports on a later call for
// an earlier datagram.
func isAsyncError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

// messageID reads the version and request id of an SNMPv1/v2c message
// (request or answer) without decoding the rest: enough to find the poll
// it belongs to. ok is false for anything else (SNMPv3, garbage).
func messageID(b []byte) (version int, id uint32, ok bool) {
	b, ok = berEnter(b, 0x30) // Message
	if !ok {
		return 0, 0, false
	}
	v, b, ok := berInt(b, 5)
	if !ok || (v != int64(gosnmp.Version1) && v != int64(gosnmp.Version2c)) {
		return 0, 0, false
	}
	if b, ok = berSkip(b, 0x04); !ok { // community
		return 0, 0, false
	}
	if len(b) == 0 || b[0]&0xe0 != 0xa0 { // a context-specific constructed PDU
		return 0, 0, false
	}
	if b, ok = berEnter(b, b[0]); !ok {
		return 0, 0, false
	}
	rid, _, ok := berInt(b, 5)
	if !ok || rid < 0 || rid > 0x7fffffff {
		return 0, 0, false
	}
	return int(v), uint32(rid), true
}

// berHeader reads a tag and a definite length; it returns the content's
// start and length.
func berHeader(b []byte, tag byte) (start, n int, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return 0, 0, false
	}
	l := int(b[1])
	start = 2
	if l&0x80 != 0 {
		k := l & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k {
			return 0, 0, false
		}
		l = 0
		for _, c := range b[2 : 2+k] {
			l = l<<8 | int(c)
		}
		start += k
	}
	return start, l, true
}

// berEnter returns the content of a constructed value (possibly cut short:
// only its start matters).
func berEnter(b []byte, tag byte) ([]byte, bool) {
	start, _, ok := berHeader(b, tag)
	if !ok {
		return nil, false
	}
	return b[start:], true
}

func berSkip(b []byte, tag byte) ([]byte, bool) {
	start, n, ok := berHeader(b, tag)
	if !ok || start+n > len(b) {
		return nil, false
	}
	return b[start+n:], true
}

// berInt reads an INTEGER of one to maxLen bytes.
func berInt(b []byte, maxLen int) (int64, []byte, bool) {
	start, n, ok := berHeader(b, 0x02)
	if !ok || n < 1 || n > maxLen || start+n > len(b) {
		return 0, nil, false
	}
	return beInt(b[start : start+n]), b[start+n:], true
}

// beInt is a big-endian two's-complement integer of 1 to 8 bytes.
func beInt(c []byte) int64 {
	v := int64(int8(c[0])) // sign
	for _, d := range c[1:] {
		v = v<<8 | int64(d)
	}
	return v
}
