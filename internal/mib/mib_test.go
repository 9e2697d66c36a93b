package mib

import (
	"errors"
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
