// Package oid parses, orders and prints numeric SNMP object identifiers.
//
// Flock writes OIDs the way net-snmp's -On prints them: a leading dot and
// decimal sub-identifiers (".1.3.6.1.2.1.1.1.0"). Ordering is numeric, sub-
// identifier by sub-identifier, as GETNEXT and GETBULK require; a lexical
// string comparison would put ".1.3.6.1.2.1.2.2.1.10" before ".1.3.6.1.2.1.2.2.1.2".
package oid

import (
	"errors"
	"fmt"
	"strconv"
)

// MaxLen is the largest number of sub-identifiers an OID may have (RFC 2578 §7.1.3).
const MaxLen = 128

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("malformed OID")

// OID is a parsed numeric object identifier.
type OID []uint32

// Parse reads a numeric OID with or without its leading dot.
func Parse(s string) (OID, error) {
	return AppendParse(nil, s)
}

// AppendParse parses s and appends its sub-identifiers to dst, so callers on
// a hot path can reuse one buffer.
func AppendParse(dst OID, s string) (OID, error) {
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
	}
	if s == "" {
		return dst, fmt.Errorf("%w %q: empty", ErrSyntax, s)
	}
	start := len(dst)
	var n uint64
	digits := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 {
				return dst[:start], fmt.Errorf("%w %q: empty sub-identifier", ErrSyntax, s)
			}
			dst = append(dst, uint32(n))
			if len(dst)-start > MaxLen {
				return dst[:start], fmt.Errorf("%w %q: more than %d sub-identifiers", ErrSyntax, s, MaxLen)
			}
			n, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' {
			return dst[:start], fmt.Errorf("%w %q: unexpected %q", ErrSyntax, s, c)
		}
		n = n*10 + uint64(c-'0')
		digits++
		if n > 0xFFFFFFFF {
			return dst[:start], fmt.Errorf("%w %q: sub-identifier exceeds 4294967295", ErrSyntax, s)
		}
	}
	if dst[start] > 2 {
		return dst[:start], fmt.Errorf("%w %q: first sub-identifier must be 0, 1 or 2", ErrSyntax, s)
	}
	return dst, nil
}

// Normalize returns s in canonical form (leading dot, no leading zeros), or
// an error. An OID already in that form is returned as it is, without
// allocating: pollers normalize every walk root of every poll.
func Normalize(s string) (string, error) {
	if canonicalForm(s) {
		return s, nil
	}
	o, err := Parse(s)
	if err != nil {
		return "", err
	}
	return o.String(), nil
}

// canonicalForm says whether s is what Normalize would return for it: a
// leading dot, then at most MaxLen sub-identifiers of decimal digits
// without leading zeros, each at most 4294967295, the first at most 2.
func canonicalForm(s string) bool {
	if len(s) < 2 || s[0] != '.' {
		return false
	}
	arcs := 0
	for i := 1; i < len(s); {
		j := i
		var n uint64
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			n = n*10 + uint64(s[j]-'0')
			if n > 0xFFFFFFFF {
				return false
			}
			j++
		}
		switch {
		case j == i, s[i] == '0' && j-i > 1, arcs == 0 && n > 2:
			return false
		}
		if arcs++; arcs > MaxLen {
			return false
		}
		if j == len(s) {
			return true
		}
		if s[j] != '.' {
			return false
		}
		i = j + 1
	}
	return false // a trailing dot
}

// String prints the OID with a leading dot.
func (o OID) String() string {
	return string(o.Append(make([]byte, 0, len(o)*4)))
}

// Append appends the dotted form of o to b.
func (o OID) Append(b []byte) []byte {
	for _, n := range o {
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(n), 10)
	}
	return b
}

// Compare orders a and b numerically: -1, 0 or +1. A prefix sorts first.
func Compare(a, b OID) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// HasPrefix reports whether o lies in the subtree rooted at prefix (o itself included).
func (o OID) HasPrefix(prefix OID) bool {
	if len(o) < len(prefix) {
		return false
	}
	for i, n := range prefix {
		if o[i] != n {
			return false
		}
	}
	return true
}

// CompareStrings orders two dotted OIDs numerically without allocating. Both
// must be well formed (as gosnmp returns them); malformed input orders by
// whatever digits it has.
func CompareStrings(a, b string) int {
	i, j := 0, 0
	for {
		if i < len(a) && a[i] == '.' {
			i++
		}
		if j < len(b) && b[j] == '.' {
			j++
		}
		if i >= len(a) || j >= len(b) {
			switch {
			case i >= len(a) && j >= len(b):
				return 0
			case i >= len(a):
				return -1
			default:
				return 1
			}
		}
		var x, y uint64
		for i < len(a) && a[i] != '.' {
			x = x*10 + uint64(a[i]-'0')
			i++
		}
		for j < len(b) && b[j] != '.' {
			y = y*10 + uint64(b[j]-'0')
			j++
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
}

// InSubtree reports whether the dotted OID s lies strictly below the dotted root.
func InSubtree(s, root string) bool {
	if len(root) > 0 && root[0] != '.' {
		root = "." + root
	}
	if len(s) > 0 && s[0] != '.' {
		s = "." + s
	}
	return len(s) > len(root) && s[:len(root)] == root && s[len(root)] == '.'
}
