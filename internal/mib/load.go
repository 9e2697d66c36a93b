package mib

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sleepinggenius2/gosmi"
	"github.com/sleepinggenius2/gosmi/parser"
	"github.com/sleepinggenius2/gosmi/types"
)

// gosmiMu serialises use of gosmi, which keeps its parsed modules in
// package-level state of its own.
var gosmiMu sync.Mutex

// Load returns a resolver that knows the built-in objects and those of every
// MIB file in dirs. A file that cannot be loaded, or a module whose OIDs do
// not resolve because a module it imports is missing, does not fail the
// load: vendor MIB directories often hold some. Those problems are listed
// in the error of any name that is then not found. It fails on a directory
// that cannot be read.
func Load(dirs []string) (*Resolver, error) {
	r := Builtin()
	dirs = append([]string(nil), dirs...)
	if len(dirs) == 0 {
		return r, nil
	}
	var files []string
	for i, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("MIB directory %s: %w", dir, err)
		}
		dirs[i] = abs
		entries, err := os.ReadDir(abs)
		if err != nil {
			return nil, fmt.Errorf("MIB directory %s: %w", dir, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(abs, e.Name()))
			}
		}
	}
	// Parse first: gosmi prints (to stdout) the errors of what it cannot
	// load, which would corrupt a dispatcher's JSON-lines output. Only files
	// that parse and whose imports are at hand reach gosmi.LoadModule.
	type parsedFile struct {
		path    string
		imports []string
	}
	parsed := map[string]parsedFile{}
	for _, f := range files {
		m, err := parser.ParseFile(f)
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("%s: does not parse: %v", f, err))
			continue
		}
		pf := parsedFile{path: f}
		for _, imp := range m.Body.Imports {
			pf.imports = append(pf.imports, string(imp.Module))
		}
		parsed[string(m.Name)] = pf
	}
	usable := map[string]bool{}
	var check func(name string, depth int) bool
	check = func(name string, depth int) bool {
		if ok, seen := usable[name]; seen {
			return ok
		}
		pf, ok := parsed[name]
		if !ok {
			return smiBase[name] // gosmi copes with the SMI's own modules missing
		}
		usable[name] = true // assume so while checking, for import cycles
		for _, imp := range pf.imports {
			if depth > 50 || !check(imp, depth+1) {
				usable[name] = false
				r.problems = append(r.problems, fmt.Sprintf("%s: imports %s, which is not in mib_dirs", pf.path, imp))
				return false
			}
		}
		return true
	}
	gosmiMu.Lock()
	defer gosmiMu.Unlock()
	gosmi.Init()
	defer gosmi.Exit()
	gosmi.SetPath(strings.Join(dirs, string(os.PathListSeparator)))
	fromFile := map[string]string{}
	for name, pf := range parsed {
		if !check(name, 0) {
			continue
		}
		if _, err := gosmi.LoadModule(filepath.Base(pf.path)); err != nil {
			r.problems = append(r.problems, fmt.Sprintf("%s: not loaded: %v", pf.path, err))
			continue
		}
		fromFile[name] = pf.path
	}
	for _, m := range gosmi.GetLoadedModules() {
		if strings.HasPrefix(m.Name, "<") {
			continue
		}
		unresolved := 0
		for _, n := range m.GetNodes() {
			if n.OidLen == 0 {
				unresolved++
				continue
			}
			r.add(m.Name, n.Name, "."+n.RenderNumeric(), kindOf(n.Kind))
			if n.Kind == types.NodeRow {
				if e := r.byQualified[m.Name+"::"+n.Name]; e != nil && e.rowIndex == nil {
					if ix := indexOf(n); len(ix) > 0 {
						e.rowIndex = newRowIndex(ix)
					}
				}
			}
		}
		if unresolved > 0 {
			file := fromFile[m.Name]
			if file == "" {
				file = m.Name
			}
			r.problems = append(r.problems, fmt.Sprintf("%s: %d objects of %s have no OID (a module it imports, such as SNMPv2-SMI, is not in mib_dirs)",
				file, unresolved, m.Name))
		}
	}
	sort.Strings(r.problems)
	return r, nil
}

// smiBase are the SMI's own modules, which gosmi handles when their files are absent.
var smiBase = map[string]bool{"SNMPv2-SMI": true, "SNMPv2-TC": true, "SNMPv2-CONF": true,
	"RFC1155-SMI": true, "RFC-1212": true, "RFC-1215": true, "RFC1065-SMI": true}

// indexOf reads a table entry's INDEX clause (its AUGMENTS' for an
// augmenting entry) and how each object sits in a row's OID. An object
// whose type gosmi could not resolve (its module's imports not all in
// mib_dirs) takes the rest of the suffix.
func indexOf(n gosmi.SmiNode) []indexObject {
	nodes := n.GetIndex()
	out := make([]indexObject, 0, len(nodes))
	for i, ix := range nodes {
		enc := encRest
		if full, err := gosmi.GetNode(ix.Name, n.GetModule()); err == nil { // with its type
			ix = full
		}
		if t := ix.Type; t != nil {
			switch t.BaseType {
			case types.BaseTypeInteger32, types.BaseTypeUnsigned32, types.BaseTypeEnum, types.BaseTypeInteger64, types.BaseTypeUnsigned64:
				enc = encInteger
			case types.BaseTypeOctetString:
				switch {
				case t.Name == "IpAddress":
					enc = encIPAddress
				case i == len(nodes)-1 && n.GetImplied():
					enc = encImplied
				default:
					enc = encString
				}
			}
		}
		out = append(out, indexObject{name: ix.Name, enc: enc})
	}
	return out
}

func kindOf(k types.NodeKind) kind {
	switch k {
	case types.NodeScalar:
		return kindScalar
	case types.NodeTable:
		return kindTable
	case types.NodeRow:
		return kindEntry
	case types.NodeColumn:
		return kindColumn
	}
	return kindGroup
}
