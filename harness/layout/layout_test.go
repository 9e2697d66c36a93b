package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/flock-snmp/flock/"

// A rule says which directories may import a package (a path prefix).
type rule struct {
	imports string
	only    []string // directories (and their subdirectories) allowed to import it
	tests   bool     // the rule holds for _test.go files too
	why     string
}

var rules = []rule{
	{"github.com/nats-io/nats.go", []string{"internal/natsbus", "cmd/results", "harness", "e2e"}, true,
		"internal/natsbus is the one adapter of NATS (cmd/results is the example subscriber of another program)"},
	{"github.com/nats-io/nats-server/v2", []string{"internal/natsbus", "harness", "e2e"}, true,
		"internal/natsbus embeds the server; tests run it through harness/natstest"},
	{"github.com/gosnmp/gosnmp", []string{"internal/snmp", "internal/snmpsim", "harness", "e2e"}, true,
		"internal/snmp is the one adapter of gosnmp; internal/snmpsim is the project's agent"},
	{"github.com/spf13/viper", []string{"internal/config"}, true,
		"internal/config is the one reader of configuration"},
	{module + "internal/natsbus", []string{"internal/natsbus", "cmd", "harness", "e2e"}, false,
		"domain packages declare what they need of the bus; only mains wire natsbus in"},
	{module + "internal/snmp", []string{"internal/snmp", "internal/poll", "cmd/poller", "harness", "e2e"}, false,
		"only the poll of one task uses the SNMP adapter"},
	{module + "harness", []string{"harness", "e2e"}, false,
		"the product does not depend on the harnesses (tests may)"},
}

// taskImports is all the project the wire contract may import: any
// subscriber depends on internal/task, so it must stay plain data.
var taskImports = []string{module + "internal/oid", module + "internal/agent"}

// leaves parse the wire's values (OIDs, agent addresses) for task and
// config alike: they import nothing of the project.
var leaves = []string{"internal/oid", "internal/agent"}

// file is one Go file: its directory relative to the module root and the
// packages it imports.
type file struct {
	path, dir string
	test      bool
	imports   []string
}

func allowed(dir string, only []string) bool {
	for _, a := range only {
		if dir == a || strings.HasPrefix(dir, a+"/") {
			return true
		}
	}
	return false
}

func matches(imp, prefix string) bool { return imp == prefix || strings.HasPrefix(imp, prefix+"/") }

// violations lists every import that breaks a rule, one line each.
func violations(files []file) []string {
	var out []string
	for _, f := range files {
		for _, imp := range f.imports {
			for _, r := range rules {
				if matches(imp, r.imports) && (r.tests || !f.test) && !allowed(f.dir, r.only) {
					out = append(out, f.path+" imports "+imp+": "+r.why)
				}
			}
			if f.dir == "internal/task" && !f.test && strings.HasPrefix(imp, module) && !allowed(strings.TrimPrefix(imp, module), leaves) {
				out = append(out, f.path+" imports "+imp+": internal/task is the wire contract, plain data; it imports only "+strings.Join(taskImports, ", "))
			}
			if slices.Contains(leaves, f.dir) && !f.test && strings.HasPrefix(imp, module) {
				out = append(out, f.path+" imports "+imp+": "+f.dir+" reads one kind of wire value and imports nothing of the project")
			}
		}
	}
	sort.Strings(out)
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func readTree(t *testing.T, root string) []file {
	t.Helper()
	var files []file
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		fl := file{path: filepath.ToSlash(rel), dir: filepath.ToSlash(filepath.Dir(rel)), test: strings.HasSuffix(name, "_test.go")}
		for _, is := range f.Imports {
			p, _ := strconv.Unquote(is.Path.Value)
			fl.imports = append(fl.imports, p)
		}
		files = append(files, fl)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The layout rules hold for every Go file of the repository.
func TestLayout(t *testing.T) {
	files := readTree(t, moduleRoot(t))
	for _, v := range violations(files) {
		t.Error(v)
	}
	// The walk saw the tree: each adapter is found importing its library.
	seen := map[string]bool{}
	for _, f := range files {
		for _, imp := range f.imports {
			seen[f.dir+" "+imp] = true
		}
	}
	for _, want := range []string{"internal/natsbus github.com/nats-io/nats.go", "internal/snmp github.com/gosnmp/gosnmp",
		"internal/config github.com/spf13/viper", "cmd/poller " + module + "internal/poller"} {
		if !seen[want] {
			t.Errorf("the walk did not find %s: is it reading the repository?", want)
		}
	}
}

// Each rule catches what it forbids, and lets pass what it allows.
func TestLayoutRulesCatch(t *testing.T) {
	got := violations([]file{
		{path: "internal/poll/x.go", dir: "internal/poll", imports: []string{"github.com/nats-io/nats.go/jetstream"}},
		{path: "internal/dispatch/x_test.go", dir: "internal/dispatch", test: true, imports: []string{"github.com/nats-io/nats.go"}},
		{path: "internal/dispatch/x.go", dir: "internal/dispatch", imports: []string{module + "internal/natsbus"}},
		{path: "internal/poller/x.go", dir: "internal/poller", imports: []string{module + "internal/snmp"}},
		{path: "internal/telemetry/x.go", dir: "internal/telemetry", imports: []string{"github.com/gosnmp/gosnmp"}},
		{path: "cmd/poller/main.go", dir: "cmd/poller", imports: []string{"github.com/spf13/viper", module + "harness/procs"}},
		{path: "internal/task/x.go", dir: "internal/task", imports: []string{module + "internal/config"}},
		{path: "internal/agent/x.go", dir: "internal/agent", imports: []string{module + "internal/task"}},
		// Allowed:
		{path: "internal/dispatch/x_test.go", dir: "internal/dispatch", test: true, imports: []string{module + "internal/natsbus", module + "harness/natstest"}},
		{path: "internal/natsbus/x.go", dir: "internal/natsbus", imports: []string{"github.com/nats-io/nats.go", "github.com/nats-io/nats-server/v2/server"}},
		{path: "internal/snmpsim/x.go", dir: "internal/snmpsim", imports: []string{"github.com/gosnmp/gosnmp"}},
		{path: "harness/soak/x.go", dir: "harness/soak", imports: []string{"github.com/nats-io/nats.go"}},
		{path: "internal/task/x.go", dir: "internal/task", imports: []string{module + "internal/oid", module + "internal/agent"}},
		{path: "internal/agent/x_test.go", dir: "internal/agent", test: true, imports: []string{module + "internal/task"}},
	})
	want := []string{
		"cmd/poller/main.go imports " + module + "harness/procs",
		"cmd/poller/main.go imports github.com/spf13/viper",
		"internal/agent/x.go imports " + module + "internal/task",
		"internal/dispatch/x.go imports " + module + "internal/natsbus",
		"internal/dispatch/x_test.go imports github.com/nats-io/nats.go",
		"internal/poll/x.go imports github.com/nats-io/nats.go/jetstream",
		"internal/poller/x.go imports " + module + "internal/snmp",
		"internal/task/x.go imports " + module + "internal/config",
		"internal/telemetry/x.go imports github.com/gosnmp/gosnmp",
	}
	if len(got) != len(want) {
		t.Fatalf("violations:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]+": ") {
			t.Errorf("violation %d: %q, want %q", i, got[i], want[i])
		}
	}
}
