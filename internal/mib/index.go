package mib

import (
	"strconv"
	"strings"
)

// indexEncoding is how one INDEX object's value sits in a row's OID
// (RFC 2578, 7.7): one sub-identifier for an integer, four for an
// IpAddress, a length then the octets for a string (or no length when it
// is IMPLIED, the last), anything else the rest.
type indexEncoding uint8

const (
	encInteger indexEncoding = iota
	encIPAddress
	encString
	encImplied
	encRest
)

// indexObject is one object of a table entry's INDEX clause.
type indexObject struct {
	name string
	enc  indexEncoding
}

// rowIndex is a table entry's INDEX clause as Object hands it out, made
// once per entry.
type rowIndex struct {
	names []string
	enc   []indexEncoding
	key   string // the names, comma-separated
}

func newRowIndex(ix []indexObject) *rowIndex {
	r := &rowIndex{}
	for _, o := range ix {
		r.names = append(r.names, o.name)
		r.enc = append(r.enc, o.enc)
	}
	r.key = strings.Join(r.names, ",")
	return r
}

// builtinIndexes are the INDEX clauses of the built-in tables' entries
// (ifXEntry AUGMENTS ifEntry, hrProcessorEntry is indexed by hrDeviceIndex).
var builtinIndexes = map[string][]indexObject{
	"sysOREntry":       {{"sysORIndex", encInteger}},
	"ifEntry":          {{"ifIndex", encInteger}},
	"ifXEntry":         {{"ifIndex", encInteger}},
	"hrStorageEntry":   {{"hrStorageIndex", encInteger}},
	"hrDeviceEntry":    {{"hrDeviceIndex", encInteger}},
	"hrProcessorEntry": {{"hrDeviceIndex", encInteger}},
}

// Object is what the resolver knows of the object an instance OID belongs
// to: a scalar, or a table's column.
type Object struct {
	Module, Name string
	// Table is the column's table ("ifXTable"); "" for a scalar.
	Table string
	// Index names the row's INDEX objects, in order; empty for a scalar,
	// or for a table whose INDEX clause is not known. Shared: do not modify.
	Index []string
	// IndexKey is Index comma-separated: rows of tables with the same
	// IndexKey and suffix are the same row (ifTable's and ifXTable's).
	IndexKey string
	enc      []indexEncoding
}

// IndexValue is one INDEX object's value in a row's OID.
type IndexValue struct{ Name, Value string }

// Object returns the scalar or column that the instance OID dotted
// (leading dot) belongs to, and the instance's suffix after it ("0" for a
// scalar, the row's index for a column, no leading dot); false when no
// known scalar or column holds it.
func (r *Resolver) Object(dotted string) (Object, string, bool) {
	for p := dotted; p != ""; {
		if e := r.byOID[p]; e != nil {
			if e.kind != kindScalar && e.kind != kindColumn {
				return Object{}, "", false
			}
			o := Object{Module: e.module, Name: e.name}
			if e.kind == kindColumn {
				row := r.byOID[p[:strings.LastIndexByte(p, '.')]]
				if row != nil && row.kind == kindEntry {
					if table := r.byOID[row.oid[:strings.LastIndexByte(row.oid, '.')]]; table != nil {
						o.Table = table.name
					}
					if row.rowIndex != nil {
						o.Index, o.enc, o.IndexKey = row.rowIndex.names, row.rowIndex.enc, row.rowIndex.key
					}
				}
			}
			return o, strings.TrimPrefix(dotted[len(p):], "."), true
		}
		i := strings.LastIndexByte(p, '.')
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return Object{}, "", false
}

// IndexValues decodes a row's suffix into its INDEX objects' values,
// appended to dst: integers in decimal, IpAddresses dotted, strings as
// their octets when printable (else their sub-identifiers, dotted). A
// suffix that does not fit the INDEX clause (or an unknown clause) gives
// one value, the whole suffix, named after the first INDEX object (or
// "index").
func (o Object) IndexValues(suffix string, dst []IndexValue) []IndexValue {
	if len(o.Index) == 0 {
		return append(dst, IndexValue{"index", suffix})
	}
	start := len(dst)
	rest := suffix
	for i, name := range o.Index {
		var v string
		var ok bool
		switch o.enc[i] {
		case encInteger:
			v, rest, ok = take(rest, 1)
		case encIPAddress:
			v, rest, ok = take(rest, 4)
		case encString:
			var n string
			if n, rest, ok = take(rest, 1); ok {
				var l int
				if l, ok = atoi(n); ok {
					v, rest, ok = take(rest, l)
					v = octets(v)
				}
			}
		case encImplied:
			v, rest, ok = octets(rest), "", rest != ""
		default:
			v, rest, ok = rest, "", rest != ""
		}
		if !ok {
			return append(dst[:start], IndexValue{o.Index[0], suffix})
		}
		dst = append(dst, IndexValue{name, v})
	}
	if rest != "" {
		return append(dst[:start], IndexValue{o.Index[0], suffix})
	}
	return dst
}

// take splits n sub-identifiers off s.
func take(s string, n int) (head, rest string, ok bool) {
	if n == 0 {
		return "", s, true
	}
	end := 0
	for i := 0; i < n; i++ {
		if end >= len(s) {
			return "", "", false
		}
		j := strings.IndexByte(s[end:], '.')
		if j < 0 {
			if i != n-1 {
				return "", "", false
			}
			return s, "", true
		}
		end += j + 1
	}
	return s[:end-1], s[end:], true
}

func atoi(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n <= 128
}

// octets renders dotted sub-identifiers as the string they encode when
// every one is a printable ASCII octet, else leaves them as they are.
func octets(s string) string {
	if s == "" {
		return s
	}
	var b strings.Builder
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0x20 || n > 0x7e {
			return s
		}
		b.WriteByte(byte(n))
	}
	return b.String()
}
