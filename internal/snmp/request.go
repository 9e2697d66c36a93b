package snmp

import (
	"fmt"

	"github.com/gosnmp/gosnmp"
)

// appendRequest appends an SNMPv1/v2c request to dst: a GET, GETNEXT or
// GETBULK (reps is max-repetitions, non-repeaters 0) of oids, each with a
// NULL value. It writes the same BER gosnmp's SnmpPacket.MarshalMsg does
// (TestRequestsDecodeAsGosnmp reads them back with gosnmp), into a reused
// buffer and without its intermediate buffers.
func appendRequest(dst []byte, version gosnmp.SnmpVersion, community string, pdu gosnmp.PDUType,
	id uint32, reps int, oids []string) ([]byte, error) {
	// The OIDs' contents first: every length depends on them.
	var encBuf [1024]byte
	var endBuf [64]int
	enc, ends := encBuf[:0], endBuf[:0]
	for _, o := range oids {
		var err error
		if enc, err = appendOID(enc, o); err != nil {
			return dst, err
		}
		ends = append(ends, len(enc))
	}
	vbl := 0
	start := 0
	for _, end := range ends {
		vb := tlvLen(end-start) + 2 // the OID and a NULL
		vbl += tlvLen(vb)
		start = end
	}
	second, third := 0, 0 // error status and index, or non-repeaters and max-repetitions
	if pdu == gosnmp.GetBulkRequest {
		third = reps
	}
	pduLen := tlvLen(intLen(int64(id))) + tlvLen(intLen(int64(second))) + tlvLen(intLen(int64(third))) + tlvLen(vbl)
	msgLen := tlvLen(1) + tlvLen(len(community)) + tlvLen(pduLen)

	dst = appendHeader(dst, 0x30, msgLen)
	dst = appendInt(dst, int64(version))
	dst = appendHeader(dst, 0x04, len(community))
	dst = append(dst, community...)
	dst = appendHeader(dst, byte(pdu), pduLen)
	dst = appendInt(dst, int64(id))
	dst = appendInt(dst, int64(second))
	dst = appendInt(dst, int64(third))
	dst = appendHeader(dst, 0x30, vbl)
	start = 0
	for _, end := range ends {
		n := end - start
		dst = appendHeader(dst, 0x30, tlvLen(n)+2)
		dst = appendHeader(dst, 0x06, n)
		dst = append(dst, enc[start:end]...)
		dst = append(dst, 0x05, 0x00)
		start = end
	}
	return dst, nil
}

// appendOID appends the BER content of a dotted OID (".1.3.6.1...").
func appendOID(dst []byte, s string) ([]byte, error) {
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
	}
	var arcs [2]uint64
	n := 0
	for i := 0; i <= len(s); {
		j := i
		var v uint64
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			v = v*10 + uint64(s[j]-'0')
			if v > 0xffffffff {
				return dst, fmt.Errorf("OID %q: an arc is larger than 32 bits", s)
			}
			j++
		}
		if j == i || (j < len(s) && s[j] != '.') {
			return dst, fmt.Errorf("OID %q is not numeric", s)
		}
		switch {
		case n < 2:
			arcs[n] = v
			if n == 1 {
				if arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
					return dst, fmt.Errorf("OID %q does not start with 0.x, 1.x (x < 40) or 2.x", s)
				}
				dst = appendBase128(dst, arcs[0]*40+arcs[1])
			}
		default:
			dst = appendBase128(dst, v)
		}
		n++
		i = j + 1
	}
	if n < 2 {
		return dst, fmt.Errorf("OID %q has fewer than two arcs", s)
	}
	return dst, nil
}

func appendBase128(dst []byte, v uint64) []byte {
	var buf [10]byte
	i := len(buf) - 1
	buf[i] = byte(v & 0x7f)
	for v >>= 7; v > 0; v >>= 7 {
		i--
		buf[i] = byte(v&0x7f) | 0x80
	}
	return append(dst, buf[i:]...)
}

// tlvLen is the size of a value of n content bytes with its tag and length.
func tlvLen(n int) int { return 1 + lenLen(n) + n }

func lenLen(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n < 0x100:
		return 2
	case n < 0x10000:
		return 3
	}
	return 4
}

func appendHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n < 0x100:
		return append(dst, 0x81, byte(n))
	case n < 0x10000:
		return append(dst, 0x82, byte(n>>8), byte(n))
	}
	return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
}

// intLen is the size of v's shortest two's complement form.
func intLen(v int64) int {
	n := 1
	for v > 127 || v < -128 {
		v >>= 8
		n++
	}
	return n
}

func appendInt(dst []byte, v int64) []byte {
	n := intLen(v)
	dst = append(dst, 0x02, byte(n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}
