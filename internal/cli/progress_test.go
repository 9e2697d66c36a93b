package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/dispatch"
)

func TestOnceProgress(t *testing.T) {
	var buf bytes.Buffer
	update, finish := OnceProgress(&buf, false, 10)
	if update != nil {
		t.Fatal("progress shown although stderr is not a terminal")
	}
	finish()
	if buf.Len() != 0 {
		t.Fatalf("wrote %q without a terminal", buf.String())
	}
	if IsTerminal(&buf) {
		t.Fatal("a buffer is not a terminal")
	}
	update, finish = OnceProgress(&buf, true, 10)
	time.Sleep(150 * time.Millisecond) // past the bar's redraw throttle
	update(dispatch.Summary{Hosts: 10, OK: 3, Failed: 1})
	out := buf.String()
	finish()
	if !strings.Contains(out, "ok=3 failed=1 remaining=6") || !strings.Contains(out, "4/10") || !strings.Contains(out, "records/s") {
		t.Fatalf("progress output %q", out)
	}
}
