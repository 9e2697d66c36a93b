// Package mib resolves MIB names to numeric OIDs, wherever Flock accepts an
// OID: "sysDescr.0", "SNMPv2-MIB::sysDescr.0", "IF-MIB::ifHCInOctets",
// numeric always. A built-in table covers the common objects, so usual
// configurations need no MIB files; MIB files in directories the
// configuration names add the rest. It also knows the columns of a table,
// for multi-column walks.
package mib

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/flock-snmp/flock/internal/oid"
)

// ErrUnknownName is wrapped when a name is not known.
var ErrUnknownName = errors.New("unknown MIB name")

type kind uint8

const (
	kindScalar kind = iota
	kindGroup
	kindTable
	kindEntry
	kindColumn
)

type object struct {
	name, oid string
	kind      kind
}

type entry struct {
	module, name string
	oid          string // canonical, leading dot
	kind         kind
	rowIndex     *rowIndex // a table entry's INDEX clause, when known
}

// Resolver maps names to OIDs. Build it once, then use it from any goroutine.
type Resolver struct {
	byName      map[string][]*entry
	byQualified map[string]*entry
	byOID       map[string]*entry
	problems    []string // MIB files that could not be used, see Load
}

// Builtin returns a resolver that knows the built-in objects only.
func Builtin() *Resolver {
	r := &Resolver{byName: map[string][]*entry{}, byQualified: map[string]*entry{}, byOID: map[string]*entry{}}
	for _, m := range builtinModules {
		for _, o := range m.objects {
			r.add(m.module, o.name, "."+o.oid, o.kind)
			if ix, ok := builtinIndexes[o.name]; ok {
				r.byQualified[m.module+"::"+o.name].rowIndex = newRowIndex(ix)
			}
		}
	}
	return r
}

func (r *Resolver) add(module, name, dotted string, k kind) {
	q := module + "::" + name
	if _, dup := r.byQualified[q]; dup {
		return
	}
	e := &entry{module: module, name: name, oid: dotted, kind: k}
	r.byQualified[q] = e
	r.byName[name] = append(r.byName[name], e)
	if _, ok := r.byOID[dotted]; !ok {
		r.byOID[dotted] = e
	}
}

// Resolve returns the canonical numeric OID (leading dot) for a numeric OID
// or a name such as "sysDescr.0", "SNMPv2-MIB::sysDescr.0" or "IF-MIB::ifTable".
func (r *Resolver) Resolve(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty", oid.ErrSyntax)
	}
	if c := s[0]; c == '.' || (c >= '0' && c <= '9') {
		return oid.Normalize(s)
	}
	module, rest, qualified := strings.Cut(s, "::")
	if !qualified {
		module, rest = "", s
	}
	name, suffix, _ := strings.Cut(rest, ".")
	var e *entry
	if qualified {
		e = r.byQualified[module+"::"+name]
		if e == nil {
			return "", fmt.Errorf("%w %q: %s has no object %q known here (built in: %s; add the MIB's directory to mib_dirs)%s",
				ErrUnknownName, s, module, name, strings.Join(builtinNames(), ", "), r.problemNote())
		}
	} else {
		cands := r.byName[name]
		switch {
		case len(cands) == 0:
			return "", fmt.Errorf("%w %q: no object %q is known (built in: %s; add the MIB's directory to mib_dirs)%s",
				ErrUnknownName, s, name, strings.Join(builtinNames(), ", "), r.problemNote())
		case sameOID(cands): // one object defined by several modules (IF-MIB and RFC1213-MIB, say)
			e = cands[0]
		default:
			mods := make([]string, len(cands))
			for i, c := range cands {
				mods[i] = c.module
			}
			return "", fmt.Errorf("%w %q: %q is defined by %s; write MODULE::%s", ErrUnknownName, s, name, strings.Join(mods, " and "), rest)
		}
	}
	if suffix == "" {
		return e.oid, nil
	}
	full, err := oid.Normalize(e.oid + "." + suffix)
	if err != nil {
		return "", fmt.Errorf("%q: index %q: %w", s, suffix, err)
	}
	return full, nil
}

// Columns returns the columns of the table (or table entry) at the dotted
// OID, in OID order, or false when it is not a known table.
func (r *Resolver) Columns(dotted string) ([]string, bool) {
	e := r.byOID[dotted]
	if e == nil || (e.kind != kindTable && e.kind != kindEntry) {
		return nil, false
	}
	entryOID := e.oid
	if e.kind == kindTable {
		entryOID += ".1"
	}
	var cols []string
	for o, c := range r.byOID {
		if c.kind == kindColumn && oid.InSubtree(o, entryOID) && strings.Count(o, ".") == strings.Count(entryOID, ".")+1 {
			cols = append(cols, o)
		}
	}
	if len(cols) == 0 {
		return nil, false
	}
	slices.SortFunc(cols, oid.CompareStrings)
	return cols, true
}

// Name returns "MODULE::name.index" for a dotted OID below a known object,
// or "" when no known object contains it.
func (r *Resolver) Name(dotted string) string {
	for p := dotted; p != ""; {
		if e := r.byOID[p]; e != nil {
			return e.module + "::" + e.name + dotted[len(p):]
		}
		i := strings.LastIndexByte(p, '.')
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

func sameOID(es []*entry) bool {
	for _, e := range es[1:] {
		if e.oid != es[0].oid {
			return false
		}
	}
	return true
}

func builtinNames() []string {
	out := make([]string, len(builtinModules))
	for i, m := range builtinModules {
		out[i] = m.module
	}
	sort.Strings(out)
	return out
}

// problemNote lists MIB files that could not be used, for errors.
func (r *Resolver) problemNote() string {
	if len(r.problems) == 0 {
		return ""
	}
	shown := r.problems
	more := ""
	if len(shown) > 3 {
		shown, more = shown[:3], fmt.Sprintf("; and %d more", len(r.problems)-3)
	}
	return fmt.Sprintf(" (MIB files not usable: %s%s)", strings.Join(shown, "; "), more)
}
