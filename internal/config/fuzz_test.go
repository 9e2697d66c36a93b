package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any file gives a configuration or an error; a configuration
// error wraps ErrInvalid and names the file. Never a panic.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"good.yaml", "good-issue3.yaml", "bad-values.yaml", "bad-issue3.yaml", "bad-host-types.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("hosts: [{name: a, groups: [x]}, {name: a}]\ngroups: [{name: x, interval: -1s}]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, func(string) string { return "" })
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Load error does not wrap ErrInvalid: %v", err)
		}
	})
}
