package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// readRecords finds the most polls running at once from the records' start
// times and durations; a poll ending as another starts does not overlap it.
func TestReadRecordsMaxInFlight(t *testing.T) {
	lines := `{"schema":1,"started_at":"2026-11-26T00:00:00Z","duration_ms":100,"varbinds":[{"oid":".1"}],"error":null}
{"schema":1,"started_at":"2026-11-26T00:00:00.050Z","duration_ms":100,"varbinds":[],"error":{"kind":"timeout"}}
{"schema":1,"started_at":"2026-11-26T00:00:00.060Z","duration_ms":10,"varbinds":[{"oid":".1"},{"oid":".2"}],"error":null}
{"schema":1,"started_at":"2026-11-26T00:00:00.150Z","duration_ms":5,"varbinds":[],"error":null}
flock: hosts=4 ok=3 failed=1
`
	path := filepath.Join(t.TempDir(), "records")
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := readRecords(path, &res); err != nil {
		t.Fatal(err)
	}
	if res.Polls != 4 || res.Varbinds != 3 || res.Errors != 1 {
		t.Fatalf("polls=%d varbinds=%d errors=%d, want 4 3 1", res.Polls, res.Varbinds, res.Errors)
	}
	// 0.060-0.070 has three polls running; at 0.150 the second ends as the fourth starts.
	if res.MaxInFlight != 3 {
		t.Fatalf("max in flight %d, want 3", res.MaxInFlight)
	}
}
