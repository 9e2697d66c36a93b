package mib

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	r := Builtin()
	for in, want := range map[string]string{
		"sysDescr.0":                         ".1.3.6.1.2.1.1.1.0",
		"SNMPv2-MIB::sysDescr.0":             ".1.3.6.1.2.1.1.1.0",
		"IF-MIB::ifHCInOctets":               ".1.3.6.1.2.1.31.1.1.1.6",
		"IF-MIB::ifTable":                    ".1.3.6.1.2.1.2.2",
		"ifDescr.12":                         ".1.3.6.1.2.1.2.2.1.2.12",
		"HOST-RESOURCES-MIB::hrStorageTable": ".1.3.6.1.2.1.25.2.3",
		"1.3.6.1.2.1.1.5.0":                  ".1.3.6.1.2.1.1.5.0",
		".1.3.6.1.2.1.1.5.0":                 ".1.3.6.1.2.1.1.5.0",
		"system":                             ".1.3.6.1.2.1.1",
	} {
		got, err := r.Resolve(in)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"sysDescripton.0":        `unknown MIB name "sysDescripton.0": no object "sysDescripton" is known`,
		"IF-MIB::sysDescr.0":     `unknown MIB name "IF-MIB::sysDescr.0": IF-MIB has no object "sysDescr"`,
		"CISCO-MIB::cpmCPUTotal": `unknown MIB name "CISCO-MIB::cpmCPUTotal"`,
		"sysDescr.x":             `"sysDescr.x": index "x"`,
	} {
		_, err := r.Resolve(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Resolve(%q) = %v, want error containing %q", in, err, want)
		}
	}
	if _, err := r.Resolve("nope"); !errors.Is(err, ErrUnknownName) {
		t.Errorf("want ErrUnknownName, got %v", err)
	}
}

func TestColumnsAndName(t *testing.T) {
	r := Builtin()
	cols, ok := r.Columns(".1.3.6.1.2.1.2.2")
	if !ok || len(cols) != 22 || cols[0] != ".1.3.6.1.2.1.2.2.1.1" || cols[9] != ".1.3.6.1.2.1.2.2.1.10" {
		t.Fatalf("ifTable columns = %v", cols)
	}
	if x, ok := r.Columns(".1.3.6.1.2.1.31.1.1.1"); !ok || len(x) != 19 {
		t.Fatalf("ifXEntry columns = %v", x)
	}
	if _, ok := r.Columns(".1.3.6.1.2.1.1"); ok {
		t.Fatal("system is a group, not a table")
	}
	if n := r.Name(".1.3.6.1.2.1.31.1.1.1.6.3"); n != "IF-MIB::ifHCInOctets.3" {
		t.Fatalf("Name = %q", n)
	}
	if n := r.Name(".1.3.6.1.4.1.9.9"); n != "" {
		t.Fatalf("Name of an unknown OID = %q", n)
	}
}

func TestLoadMIBFiles(t *testing.T) {
	r, err := Load([]string{"testdata/mibs"})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"FLOCK-TEST-MIB::flockWidgetCount.0": ".1.3.6.1.4.1.99999.1.1.0",
		"flockWidgetName.7":                  ".1.3.6.1.4.1.99999.1.2.1.2.7",
		"sysDescr.0":                         ".1.3.6.1.2.1.1.1.0", // the built-in objects stay
	} {
		if got, err := r.Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	cols, ok := r.Columns(".1.3.6.1.4.1.99999.1.2")
	if !ok || len(cols) != 3 || cols[2] != ".1.3.6.1.4.1.99999.1.2.1.3" {
		t.Errorf("columns of flockWidgetTable = %v", cols)
	}
	// The broken file did not stop the others, and is named when a name is missing.
	_, err = r.Resolve("flockGadgetCount.0")
	if err == nil || !strings.Contains(err.Error(), "BROKEN-MIB.txt: does not parse") {
		t.Errorf("unknown name: %v; want the unusable file named", err)
	}
	if _, err := Load([]string{"testdata/no-such-dir"}); err == nil || !strings.Contains(err.Error(), "testdata/no-such-dir") {
		t.Errorf("missing directory: %v", err)
	}
}

func TestLoadNeverPrints(t *testing.T) {
	// gosmi prints what it cannot load to stdout; Load must keep it from doing so.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	res, loadErr := Load([]string{"testdata/mibs"})
	os.Stdout = saved
	_ = w.Close()
	out, _ := io.ReadAll(r)
	if loadErr != nil || len(out) != 0 {
		t.Fatalf("Load printed %q (err %v)", out, loadErr)
	}
	if _, err := res.Resolve("needsThing"); err == nil || !strings.Contains(err.Error(), "imports OTHER-VENDOR-MIB, which is not in mib_dirs") {
		t.Fatalf("module with a missing import: %v", err)
	}
}
