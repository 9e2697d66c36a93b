package snmp

import (
	"fmt"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/task"
)

// Convert turns a gosnmp PDU into a task.Varbind, reusing dst. It fails on a
// value whose Go type does not match its SNMP type, which only a broken
// agent (or a gosnmp change) can cause.
func Convert(p *gosnmp.SnmpPDU, dst *task.Varbind) error {
	*dst = task.Varbind{OID: p.Name}
	var ok bool
	switch p.Type {
	case gosnmp.Integer:
		dst.Type = task.TypeInteger
		var n int
		n, ok = p.Value.(int)
		dst.Int = int64(n)
	case gosnmp.Uinteger32:
		dst.Type = task.TypeUinteger32
		ok = setUint(dst, p.Value)
	case gosnmp.Counter32:
		dst.Type = task.TypeCounter32
		ok = setUint(dst, p.Value)
	case gosnmp.Gauge32:
		dst.Type = task.TypeGauge32
		ok = setUint(dst, p.Value)
	case gosnmp.TimeTicks:
		dst.Type = task.TypeTimeTicks
		ok = setUint(dst, p.Value)
	case gosnmp.Counter64:
		dst.Type = task.TypeCounter64
		ok = setUint(dst, p.Value)
	case gosnmp.OctetString, gosnmp.Opaque, gosnmp.BitString:
		dst.Type = task.TypeOctetString
		if p.Type == gosnmp.Opaque {
			dst.Type = task.TypeOpaque
		} else if p.Type == gosnmp.BitString {
			dst.Type = task.TypeBitString
		}
		dst.Bytes, ok = p.Value.([]byte)
	case gosnmp.ObjectIdentifier:
		dst.Type = task.TypeObjectIdentifier
		dst.Str, ok = p.Value.(string)
	case gosnmp.IPAddress:
		dst.Type = task.TypeIPAddress
		if p.Value == nil { // buggy agents send a zero-length IpAddress
			return nil
		}
		dst.Str, ok = p.Value.(string)
	case gosnmp.OpaqueFloat:
		dst.Type = task.TypeOpaqueFloat
		var f float32
		f, ok = p.Value.(float32)
		dst.Float = float64(f)
	case gosnmp.OpaqueDouble:
		dst.Type = task.TypeOpaqueDouble
		dst.Float, ok = p.Value.(float64)
	case gosnmp.Null:
		dst.Type, ok = task.TypeNull, true
	case gosnmp.NoSuchObject:
		dst.Type, ok = task.TypeNoSuchObject, true
	case gosnmp.NoSuchInstance:
		dst.Type, ok = task.TypeNoSuchInstance, true
	case gosnmp.EndOfMibView:
		dst.Type, ok = task.TypeEndOfMibView, true
	default:
		return fmt.Errorf("OID %s: unsupported SNMP type %#x", p.Name, byte(p.Type))
	}
	if !ok {
		return fmt.Errorf("OID %s: %s value of Go type %T", p.Name, p.Type, p.Value)
	}
	return nil
}

func setUint(dst *task.Varbind, v any) bool {
	switch n := v.(type) {
	case uint:
		dst.Uint = uint64(n)
	case uint32:
		dst.Uint = uint64(n)
	case uint64:
		dst.Uint = n
	default:
		return false
	}
	return true
}
