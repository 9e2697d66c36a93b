package task

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Type is the SNMP type of a varbind value, named as in the SMI.
type Type uint8

// SNMP value types.
const (
	TypeUnknown Type = iota
	TypeInteger
	TypeOctetString
	TypeNull
	TypeObjectIdentifier
	TypeIPAddress
	TypeCounter32
	TypeGauge32
	TypeTimeTicks
	TypeOpaque
	TypeCounter64
	TypeUinteger32
	TypeOpaqueFloat
	TypeOpaqueDouble
	TypeBitString
	TypeNoSuchObject
	TypeNoSuchInstance
	TypeEndOfMibView
	numTypes
)

var typeNames = [numTypes]string{
	TypeUnknown:          "Unknown",
	TypeInteger:          "Integer",
	TypeOctetString:      "OctetString",
	TypeNull:             "Null",
	TypeObjectIdentifier: "ObjectIdentifier",
	TypeIPAddress:        "IpAddress",
	TypeCounter32:        "Counter32",
	TypeGauge32:          "Gauge32",
	TypeTimeTicks:        "TimeTicks",
	TypeOpaque:           "Opaque",
	TypeCounter64:        "Counter64",
	TypeUinteger32:       "Uinteger32",
	TypeOpaqueFloat:      "OpaqueFloat",
	TypeOpaqueDouble:     "OpaqueDouble",
	TypeBitString:        "BitString",
	TypeNoSuchObject:     "NoSuchObject",
	TypeNoSuchInstance:   "NoSuchInstance",
	TypeEndOfMibView:     "EndOfMibView",
}

func (t Type) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), nil
		}
	}
	return TypeUnknown, fmt.Errorf("unknown SNMP type %q", s)
}

// IsException reports whether t is one of the v2 exception values, which carry no value.
func (t Type) IsException() bool {
	return t == TypeNoSuchObject || t == TypeNoSuchInstance || t == TypeEndOfMibView
}

// Varbind is one OID and its typed value. Which value field is meaningful
// depends on Type: Int (Integer), Uint (Counter32, Gauge32, TimeTicks,
// Uinteger32, Counter64), Bytes (OctetString, Opaque, BitString), Str
// (IpAddress, ObjectIdentifier), Float (OpaqueFloat, OpaqueDouble).
type Varbind struct {
	OID   string
	Type  Type
	Int   int64
	Uint  uint64
	Float float64
	Str   string
	Bytes []byte
}

// Printable reports whether b is shown as text: valid UTF-8 whose runes are
// all printable or one of tab, newline and carriage return.
func Printable(b []byte) bool {
	for len(b) > 0 {
		if c := b[0]; c < utf8.RuneSelf { // ASCII, most of what agents send: no rune decoding
			if (c < 0x20 || c == 0x7f) && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		if !unicode.IsPrint(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
		b = b[size:]
	}
	return true
}

// AppendJSON appends {"oid":…,"type":…,"value":…} to b.
func (v *Varbind) AppendJSON(b []byte) []byte {
	b = append(b, `{"oid":`...)
	b = appendString(b, v.OID)
	b = append(b, `,"type":"`...)
	b = append(b, v.Type.String()...)
	b = append(b, `","value":`...)
	switch v.Type {
	case TypeInteger:
		b = appendInt(b, v.Int)
	case TypeCounter32, TypeGauge32, TypeTimeTicks, TypeUinteger32, TypeCounter64:
		b = appendUint(b, v.Uint)
	case TypeOctetString, TypeOpaque, TypeBitString:
		if Printable(v.Bytes) {
			b = appendStringBytes(b, v.Bytes)
		} else {
			b = append(b, '"')
			b = hex.AppendEncode(b, v.Bytes)
			b = append(b, `","encoding":"hex`...)
			b = append(b, '"')
		}
	case TypeIPAddress, TypeObjectIdentifier:
		b = appendString(b, v.Str)
	case TypeOpaqueFloat, TypeOpaqueDouble:
		b = appendFloat(b, v.Float)
	default:
		b = append(b, "null"...)
	}
	return append(b, '}')
}

// MarshalJSON encodes the varbind as AppendJSON does.
func (v Varbind) MarshalJSON() ([]byte, error) { return v.AppendJSON(nil), nil }

type wireVarbind struct {
	OID      string          `json:"oid"`
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	Encoding string          `json:"encoding"`
}

// UnmarshalJSON decodes a varbind, parsing numbers exactly for their type.
func (v *Varbind) UnmarshalJSON(data []byte) error {
	var w wireVarbind
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	t, err := ParseType(w.Type)
	if err != nil {
		return fmt.Errorf("varbind %s: %w", w.OID, err)
	}
	*v = Varbind{OID: w.OID, Type: t}
	raw := string(w.Value)
	fail := func(err error) error { return fmt.Errorf("varbind %s: %s value %s: %w", w.OID, t, raw, err) }
	switch t {
	case TypeInteger:
		if v.Int, err = strconv.ParseInt(raw, 10, 64); err != nil {
			return fail(err)
		}
	case TypeCounter32, TypeGauge32, TypeTimeTicks, TypeUinteger32, TypeCounter64:
		bits := 32
		if t == TypeCounter64 {
			bits = 64
		}
		if v.Uint, err = strconv.ParseUint(raw, 10, bits); err != nil {
			return fail(err)
		}
	case TypeOctetString, TypeOpaque, TypeBitString:
		var s string
		if err := json.Unmarshal(w.Value, &s); err != nil {
			return fail(err)
		}
		if w.Encoding == "hex" {
			if v.Bytes, err = hex.DecodeString(s); err != nil {
				return fail(err)
			}
		} else {
			v.Bytes = []byte(s)
		}
	case TypeIPAddress, TypeObjectIdentifier:
		if err := json.Unmarshal(w.Value, &v.Str); err != nil {
			return fail(err)
		}
	case TypeOpaqueFloat, TypeOpaqueDouble:
		if v.Float, err = strconv.ParseFloat(raw, 64); err != nil {
			return fail(err)
		}
	default:
		if raw != "null" && raw != "" {
			return fail(fmt.Errorf("want null"))
		}
	}
	return nil
}

// --- reflection-free JSON helpers ---

const hexDigits = "0123456789abcdef"

func appendInt(b []byte, n int64) []byte   { return strconv.AppendInt(b, n, 10) }
func appendUint(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, `"0001-01-01T00:00:00Z"`...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscapedByte(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendStringBytes is appendString for a byte slice, without copying it:
// the string view does not outlive the call.
func appendStringBytes(b []byte, s []byte) []byte {
	return appendString(b, unsafe.String(unsafe.SliceData(s), len(s)))
}

func appendEscapedByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
