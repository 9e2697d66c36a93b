package procs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// CPUSoFar reads a running process's CPU time: it grows while the process
// computes and stays put while it sleeps.
func TestCPUSoFar(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	p, err := Start(dir, "burner", "sh", nil, "-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(syscall.SIGKILL)
	var busy time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for busy < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stuck at %s while the shell computes", busy)
		}
		time.Sleep(50 * time.Millisecond)
		if busy, err = p.CPUSoFar(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("CPU so far: %s", busy)
}
