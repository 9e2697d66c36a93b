package snmp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
)

// recvErrors asks the kernel to queue the ICMP errors the socket's
// datagrams cause, with the datagram and its destination (ip(7) IP_RECVERR):
// an unconnected socket is told nothing otherwise.
func recvErrors(conn *net.UDPConn, v6 bool) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR, 1)
		} else {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVERR, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// drainErrors reads every queued error of a socket: the request it
// answers (as much of it as the ICMP message quoted), where it was sent,
// and the error. The reader and senders may drain at once: each uses
// buffers of its own.
func drainErrors(conn *net.UDPConn, fn func(payload []byte, to netip.AddrPort, errno syscall.Errno)) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	var payload [512]byte
	var oob [256]byte
	_ = rc.Control(func(fd uintptr) {
		for range 1024 { // bounded: a flood of errors cannot hold the reader here
			n, oobn, _, from, err := syscall.Recvmsg(int(fd), payload[:], oob[:], syscall.MSG_ERRQUEUE|syscall.MSG_DONTWAIT)
			if err != nil {
				return // EAGAIN: empty
			}
			errno := extendedErrno(oob[:oobn])
			if errno == 0 {
				continue
			}
			var to netip.AddrPort
			switch sa := from.(type) {
			case *syscall.SockaddrInet4:
				to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
			case *syscall.SockaddrInet6:
				to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
			default:
				continue
			}
			fn(payload[:n], to, errno)
		}
	})
}

// extendedErrno is the ee_errno of the sock_extended_err in a control message.
func extendedErrno(oob []byte) syscall.Errno {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if (m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_RECVERR) ||
			(m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_RECVERR) {
			if len(m.Data) >= 4 {
				return syscall.Errno(binary.NativeEndian.Uint32(m.Data[:4]))
			}
		}
	}
	return 0
}
