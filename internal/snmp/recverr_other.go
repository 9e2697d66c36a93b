//go:build !linux

package snmp

import (
	"net"
	"net/netip"
	"syscall"
)

// recvErrors: only Linux queues ICMP errors for unconnected sockets; here an
// unreachable agent is reported as a timeout.
func recvErrors(*net.UDPConn, bool) error { return nil }

func drainErrors(*net.UDPConn, func([]byte, netip.AddrPort, syscall.Errno)) {}
