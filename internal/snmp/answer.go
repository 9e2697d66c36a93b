package snmp

import (
	"fmt"
	"strconv"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/task"
)

// answer is an agent's response, decoded into Flock's varbinds.
type answer struct {
	version   gosnmp.SnmpVersion
	requestID uint32
	errStatus gosnmp.SNMPError
	errIndex  uint8
	vbs       []task.Varbind
	// badAt is the index of the first varbind whose value did not convert
	// (badErr says why), -1 when all did: it fails the poll only where a
	// walk reaches it, as before.
	badAt  int
	badErr error
}

// decode fills a from a datagram (b is the answer's own copy: octet
// strings point into it). The common case, a GetResponse of the SMI's usual
// types, is read directly, without gosnmp's intermediate values; anything
// else (Opaque, BitString, an IPv6 IpAddress, an integer or length in an
// unusual form) goes through gosnmp's decoder and Convert, so both read
// every message alike (FuzzAnswer compares them).
func (a *answer) decode(dec *gosnmp.GoSNMP, b []byte) (err error) {
	if a.decodeFast(b) {
		return nil
	}
	defer func() { // gosnmp's own send recovers from its decoder's panics; so does this
		if r := recover(); r != nil {
			err = fmt.Errorf("undecodable answer (%v)", r)
		}
	}()
	pkt, err := dec.SnmpDecodePacket(b)
	if err != nil {
		return err
	}
	if pkt.PDUType != gosnmp.GetResponse {
		return fmt.Errorf("a %v where a response was due", pkt.PDUType)
	}
	a.version, a.requestID, a.errStatus, a.errIndex = pkt.Version, pkt.RequestID, pkt.Error, pkt.ErrorIndex
	a.vbs, a.badAt, a.badErr = a.vbs[:0], -1, nil
	for i := range pkt.Variables {
		var vb task.Varbind
		if err := Convert(&pkt.Variables[i], &vb); err != nil && a.badAt < 0 {
			a.badAt, a.badErr = i, err
		}
		a.vbs = append(a.vbs, vb)
	}
	return nil
}

// decodeFast reads a v1/v2c GetResponse whose every part is in the plain
// form agents send; false means "not that", never "broken".
func (a *answer) decodeFast(b []byte) bool {
	msg, ok := berContent(b, 0x30)
	if !ok {
		return false
	}
	v, msg, ok := berInt(msg, 4)
	if !ok || (v != int64(gosnmp.Version1) && v != int64(gosnmp.Version2c)) {
		return false
	}
	if msg, ok = berSkip(msg, 0x04); !ok { // community
		return false
	}
	pdu, ok := berContent(msg, byte(gosnmp.GetResponse))
	if !ok {
		return false
	}
	rid, pdu, ok := berInt(pdu, 4)
	if !ok || rid < 0 || rid > 0x7fffffff {
		return false
	}
	status, pdu, ok := berInt(pdu, 4)
	if !ok || status < 0 || status > 255 {
		return false
	}
	index, pdu, ok := berInt(pdu, 4)
	if !ok || index < 0 || index > 255 {
		return false
	}
	list, ok := berContent(pdu, 0x30)
	if !ok {
		return false
	}
	a.vbs, a.badAt, a.badErr = a.vbs[:0], -1, nil
	for len(list) > 0 {
		start, n, ok := berHeader(list, 0x30)
		if !ok || start+n > len(list) {
			return false
		}
		vb := list[start : start+n]
		list = list[start+n:]
		os, on, ok := berHeader(vb, 0x06)
		if !ok || on == 0 || os+on > len(vb) {
			return false
		}
		name, ok := oidString(vb[os : os+on])
		if !ok {
			return false
		}
		val := vb[os+on:]
		a.vbs = append(a.vbs, task.Varbind{OID: name})
		if !decodeValue(val, &a.vbs[len(a.vbs)-1]) {
			return false
		}
	}
	a.version, a.requestID, a.errStatus, a.errIndex = gosnmp.SnmpVersion(v), uint32(rid), gosnmp.SNMPError(status), uint8(index)
	return true
}

// decodeValue reads a varbind's value (all of val) into vb.
func decodeValue(val []byte, vb *task.Varbind) bool {
	if len(val) < 2 {
		return false
	}
	tag := val[0]
	start, n, ok := berHeader(val, tag)
	if !ok || start+n != len(val) {
		return false
	}
	c := val[start:]
	switch gosnmp.Asn1BER(tag) {
	case gosnmp.Integer:
		if n < 1 || n > 8 {
			return false
		}
		x := beInt(c)
		if int64(int(x)) != x {
			return false
		}
		vb.Type, vb.Int = task.TypeInteger, x
	case gosnmp.OctetString:
		vb.Type, vb.Bytes = task.TypeOctetString, c
	case gosnmp.ObjectIdentifier:
		if n == 0 {
			return false
		}
		s, ok := oidString(c)
		if !ok {
			return false
		}
		vb.Type, vb.Str = task.TypeObjectIdentifier, s
	case gosnmp.IPAddress:
		if n != 4 {
			return false
		}
		vb.Type = task.TypeIPAddress
		vb.Str = strconv.Itoa(int(c[0])) + "." + strconv.Itoa(int(c[1])) + "." + strconv.Itoa(int(c[2])) + "." + strconv.Itoa(int(c[3]))
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks:
		u, ok := unsigned(c, 4)
		if !ok {
			return false
		}
		vb.Type, vb.Uint = tagTypes[tag], u
	case gosnmp.Counter64:
		u, ok := unsigned(c, 8)
		if !ok {
			return false
		}
		vb.Type, vb.Uint = task.TypeCounter64, u
	case gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
		if n != 0 {
			return false
		}
		vb.Type = tagTypes[tag]
	default:
		return false
	}
	return true
}

// tagTypes are the varbind types of the BER tags whose type is their tag
// alone (the numbers and the empty values).
var tagTypes = [256]task.Type{
	byte(gosnmp.Counter32): task.TypeCounter32, byte(gosnmp.Gauge32): task.TypeGauge32, byte(gosnmp.TimeTicks): task.TypeTimeTicks,
	byte(gosnmp.Null): task.TypeNull, byte(gosnmp.NoSuchObject): task.TypeNoSuchObject,
	byte(gosnmp.NoSuchInstance): task.TypeNoSuchInstance, byte(gosnmp.EndOfMibView): task.TypeEndOfMibView,
}

// unsigned reads a non-negative integer of at most size bytes (plus the
// leading zero BER puts before a set top bit), without a leading zero
// otherwise and without a sign bit.
func unsigned(c []byte, size int) (uint64, bool) {
	if len(c) == 0 || c[0]&0x80 != 0 {
		return 0, false
	}
	if len(c) > 1 && c[0] == 0 && c[1]&0x80 == 0 {
		return 0, false // a zero gosnmp would accept, but not the shortest form: leave it to gosnmp
	}
	if c[0] == 0 && len(c) > 1 {
		c = c[1:]
	}
	if len(c) > size {
		return 0, false
	}
	var u uint64
	for _, d := range c {
		u = u<<8 | uint64(d)
	}
	return u, true
}

// oidString writes a BER object identifier's content in Flock's form,
// ".1.3.6.1...", each arc at most 32 bits.
func oidString(c []byte) (string, bool) {
	var buf [128]byte
	out := buf[:0]
	var arc uint64
	first := true
	for i, d := range c {
		if arc == 0 && d == 0x80 {
			return "", false // a padded arc
		}
		arc = arc<<7 | uint64(d&0x7f)
		if arc > 0xffffffff {
			return "", false
		}
		if d&0x80 != 0 {
			if i == len(c)-1 {
				return "", false // cut off mid-arc
			}
			continue
		}
		if first {
			x, y := arc/40, arc%40
			if arc >= 80 {
				x, y = 2, arc-80
			}
			out = append(out, '.')
			out = strconv.AppendUint(out, x, 10)
			out = append(out, '.')
			out = strconv.AppendUint(out, y, 10)
			first = false
		} else {
			out = append(out, '.')
			out = appendArc(out, arc)
		}
		arc = 0
	}
	return string(out), true
}

// appendArc appends an arc in decimal; most are below 100.
func appendArc(dst []byte, v uint64) []byte {
	switch {
	case v < 10:
		return append(dst, byte('0'+v))
	case v < 100:
		return append(dst, byte('0'+v/10), byte('0'+v%10))
	}
	return strconv.AppendUint(dst, v, 10)
}

// berContent returns the content of a value with the given tag, exactly
// as long as its length says (trailing bytes are not allowed).
func berContent(b []byte, tag byte) ([]byte, bool) {
	start, n, ok := berHeader(b, tag)
	if !ok || start+n != len(b) {
		return nil, false
	}
	return b[start:], true
}
