package oid

import (
	"errors"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "leading dot", in: ".1.3.6.1.2.1.1.1.0", want: ".1.3.6.1.2.1.1.1.0"},
		{name: "no leading dot", in: "1.3.6.1.2.1.1.1.0", want: ".1.3.6.1.2.1.1.1.0"},
		{name: "leading zeros normalised", in: "1.3.06.1", want: ".1.3.6.1"},
		{name: "max sub-identifier", in: "1.3.4294967295", want: ".1.3.4294967295"},
		{name: "overflow", in: "1.3.4294967296", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "dot only", in: ".", wantErr: true},
		{name: "double dot", in: "1.3..6", wantErr: true},
		{name: "trailing dot", in: "1.3.6.", wantErr: true},
		{name: "letters", in: "1.3.six", wantErr: true},
		{name: "mib name", in: "sysDescr.0", wantErr: true},
		{name: "single arc is a walk root", in: "1", want: ".1"},
		{name: "first arc too big", in: "3.1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrSyntax) {
					t.Fatalf("Normalize(%q) = %q, %v; want ErrSyntax", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestOrderIsNumeric(t *testing.T) {
	in := []string{".1.3.6.1.2.1.2.2.1.10.1", ".1.3.6.1.2.1.2.2.1.2.1", ".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.2.2.1.2.10", ".1.3.6.1.2.1.2.2.1.2.9"}
	want := []string{".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.2.2.1.2.1", ".1.3.6.1.2.1.2.2.1.2.9", ".1.3.6.1.2.1.2.2.1.2.10", ".1.3.6.1.2.1.2.2.1.10.1"}
	parsed := make([]OID, len(in))
	for i, s := range in {
		parsed[i], _ = Parse(s)
	}
	slices.SortFunc(parsed, Compare)
	strs := slices.Clone(in)
	slices.SortFunc(strs, CompareStrings)
	for i := range want {
		if parsed[i].String() != want[i] || strs[i] != want[i] {
			t.Fatalf("position %d: Compare gave %s, CompareStrings gave %s, want %s", i, parsed[i], strs[i], want[i])
		}
	}
}

func TestSubtree(t *testing.T) {
	if !InSubtree(".1.3.6.1.2.1.2.2.1.1.1", "1.3.6.1.2.1.2.2") {
		t.Error("ifIndex.1 should be in ifTable")
	}
	if InSubtree(".1.3.6.1.2.1.2.20", ".1.3.6.1.2.1.2.2") {
		t.Error(".2.20 is not under .2.2")
	}
	if InSubtree(".1.3.6.1.2.1.2.2", ".1.3.6.1.2.1.2.2") {
		t.Error("the root itself is not strictly below itself")
	}
	a, _ := Parse(".1.3.6.1.2.1.2.2.1")
	p, _ := Parse(".1.3.6.1.2.1.2.2")
	if !a.HasPrefix(p) || p.HasPrefix(a) {
		t.Error("HasPrefix wrong")
	}
}

// Normalize hands back an OID already canonical without allocating, and
// takes that path exactly when parsing and printing would give s back.
func TestNormalizeCanonicalFastPath(t *testing.T) {
	long := ""
	for range MaxLen + 1 {
		long += ".1"
	}
	for _, s := range []string{".1.3.6.1.2.1.1.1.0", ".1", ".0.0", ".2.999", ".1.3.4294967295", ".1.3.4294967296",
		".1.03.6", ".1.3..6", ".1.3.6.", ".3.1", ".", "", "1.3.6", ".1.3.x", ".00", ".1.0", long[:2*MaxLen], long} {
		o, err := Parse(s)
		want := err == nil && o.String() == s
		if got := canonicalForm(s); got != want {
			t.Errorf("canonicalForm(%q) = %v, want %v", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Normalize(".1.3.6.1.2.1.31.1.1.1.6") }); n != 0 {
		t.Errorf("Normalize of a canonical OID allocates %v times", n)
	}
}
