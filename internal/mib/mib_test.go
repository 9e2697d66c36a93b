package mib

import (
	"errors"
	"fmt"
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

// Object names an instance's scalar or column, its table and the row's
// INDEX objects, built-in or from MIB files (an AUGMENTS entry takes its
// base's index), and decodes the row's index values.
func TestObjectAndIndex(t *testing.T) {
	r, err := Load([]string{"testdata/mibs"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		oid, name, table, suffix string
		index                    []IndexValue
	}{
		{".1.3.6.1.2.1.1.3.0", "sysUpTime", "", "0", nil},
		{".1.3.6.1.2.1.31.1.1.1.6.2", "ifHCInOctets", "ifXTable", "2", []IndexValue{{"ifIndex", "2"}}},
		{".1.3.6.1.2.1.2.2.1.10.12", "ifInOctets", "ifTable", "12", []IndexValue{{"ifIndex", "12"}}},
		{".1.3.6.1.2.1.25.2.3.1.6.31", "hrStorageUsed", "hrStorageTable", "31", []IndexValue{{"hrStorageIndex", "31"}}},
		{".1.3.6.1.2.1.25.3.3.1.2.196608", "hrProcessorLoad", "hrProcessorTable", "196608", []IndexValue{{"hrDeviceIndex", "196608"}}},
		{".1.3.6.1.4.1.99999.1.2.1.3.7", "flockWidgetOctets", "flockWidgetTable", "7", []IndexValue{{"flockWidgetIndex", "7"}}},
		// The test MIBs' types do not resolve without SNMPv2-SMI's file:
		// the first INDEX object takes the whole suffix (decoding by type
		// is tested below).
		{".1.3.6.1.4.1.99999.1.3.1.3.3.115.119.49.22", "flockPortOctets", "flockPortTable", "3.115.119.49.22",
			[]IndexValue{{"flockPortHost", "3.115.119.49.22"}}},
		// A suffix that does not fit the INDEX clause: kept whole.
		{".1.3.6.1.2.1.31.1.1.1.6.2.5", "ifHCInOctets", "ifXTable", "2.5", []IndexValue{{"ifIndex", "2.5"}}},
	} {
		o, suffix, ok := r.Object(c.oid)
		if !ok || o.Name != c.name || o.Table != c.table || suffix != c.suffix {
			t.Errorf("Object(%s) = %+v, %q, %v; want %s in %q, suffix %q", c.oid, o, suffix, ok, c.name, c.table, c.suffix)
			continue
		}
		if c.table == "" {
			continue
		}
		got := o.IndexValues(suffix, nil)
		if fmt.Sprint(got) != fmt.Sprint(c.index) {
			t.Errorf("IndexValues(%s) = %v; want %v", c.oid, got, c.index)
		}
	}
	for _, unknown := range []string{".1.3.6.1.4.1.12345.1.0", ".1.3.6.1.2.1.2.2", ".1.3.6.1.2.1.2.2.1"} {
		if o, _, ok := r.Object(unknown); ok {
			t.Errorf("Object(%s) = %+v; want none (not a scalar or column)", unknown, o)
		}
	}
}

// IndexValues decodes each INDEX encoding of RFC 2578 7.7.
func TestIndexEncodings(t *testing.T) {
	o := Object{Index: []string{"host", "addr", "port", "tag"}, enc: []indexEncoding{encString, encIPAddress, encInteger, encImplied}}
	// "sw1" (length 3), 192.0.2.1, 22, implied "ab"
	got := o.IndexValues("3.115.119.49.192.0.2.1.22.97.98", nil)
	want := []IndexValue{{"host", "sw1"}, {"addr", "192.0.2.1"}, {"port", "22"}, {"tag", "ab"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("IndexValues = %v; want %v", got, want)
	}
	// Not printable: the octets stay sub-identifiers.
	bin := Object{Index: []string{"mac"}, enc: []indexEncoding{encString}}
	if got := bin.IndexValues("6.0.17.34.51.68.85", nil); fmt.Sprint(got) != "[{mac 0.17.34.51.68.85}]" {
		t.Errorf("binary string index = %v", got)
	}
	// Too short, or too long, for the clause: the whole suffix, once.
	for _, s := range []string{"3.115.119", "3.115.119.49.192.0.2", "1.2"} {
		if got := o.IndexValues(s, nil); len(got) != 1 || got[0].Value != s || got[0].Name != "host" {
			t.Errorf("IndexValues(%q) = %v; want the whole suffix under host", s, got)
		}
	}
	two := Object{Index: []string{"a", "b"}, enc: []indexEncoding{encInteger, encInteger}}
	if got := two.IndexValues("1.2.3", []IndexValue{{"x", "y"}}); fmt.Sprint(got) != "[{x y} {a 1.2.3}]" {
		t.Errorf("suffix longer than the clause, appended to dst: %v", got)
	}
}
