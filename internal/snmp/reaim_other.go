//go:build !unix

package snmp

import (
	"errors"
	"net"
	"net/netip"
)

// reaim is not available here: every poll opens a new socket.
func reaim(net.Conn, netip.AddrPort, netip.AddrPort) error {
	return errors.New("socket reuse is not implemented on this platform")
}
