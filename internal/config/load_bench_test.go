package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLoad10kHosts loads an inventory of 10,000 hosts, as a
// dispatcher --once does before its cycle.
func BenchmarkLoad10kHosts(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("defaults: {timeout: 2s, retries: 1, get: [sysDescr.0]}\nhosts:\n")
	for i := range 10_000 {
		fmt.Fprintf(&sb, "  - {name: sim-%05d, address: 127.0.0.1, port: %d}\n", i, 20000+i)
	}
	path := filepath.Join(b.TempDir(), "hosts.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := Load(path, noEnv)
		if err != nil || len(cfg.Hosts) != 10_000 {
			b.Fatalf("%d hosts, %v", len(cfg.Hosts), err)
		}
	}
}
