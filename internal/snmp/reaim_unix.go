//go:build unix

package snmp

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// reaim points a pooled session's connected UDP socket at a new agent with
// connect(2) on the same descriptor, then empties it: datagrams the old
// agent sent late, and an ICMP error it caused, are still queued on the
// socket (the kernel only filters what arrives after the connect). An
// error means: open a new socket instead.
func reaim(c net.Conn, from, to netip.AddrPort) error {
	conn, ok := c.(*net.UDPConn)
	if !ok || from.Addr().Is4() != to.Addr().Is4() {
		return errors.New("no socket of that family to reuse")
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var sa syscall.Sockaddr
	if to.Addr().Is4() {
		sa = &syscall.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if opErr = syscall.Connect(int(fd), sa); opErr != nil {
			return
		}
		var buf [1]byte
		for i := 0; i < 1024; i++ { // bounded: a flood from the old agent cannot hold us here
			_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
				return
			}
			// A datagram, or a pending error such as ECONNREFUSED from the
			// old agent: both consumed; go on until the queue is empty.
		}
		opErr = errors.New("socket still receiving from the previous agent")
	})
	if err != nil {
		return err
	}
	return opErr
}
