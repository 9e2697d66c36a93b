package dispatch

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

func TestStatusViewSorts(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	hosts := []config.Host{{Name: "a.example.net", Key: "a", Site: "default"}, {Name: "b.example.net", Key: "b", Site: "default"},
		{Name: "c.example.net", Key: "c", Site: "default"}, {Name: "d.example.net", Key: "d", Site: "default"}}
	states := map[string]HostState{
		"default.a": {LastPollAt: now, LastSuccessAt: now, LastDurationMS: 5},
		"default.b": {LastPollAt: now, LastSuccessAt: now.Add(-time.Hour), LastDurationMS: 900, ConsecutiveFailures: 3,
			LastError: &task.Error{Kind: task.KindTimeout, Message: "no answer from b"}},
		"default.c": {LastPollAt: now, LastSuccessAt: now.Add(-time.Minute), LastDurationMS: 40},
	}
	rows := BuildStatus(hosts, states)
	order := func(key string) string {
		if err := SortStatus(rows, key); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.Host[:1]+"="+r.State)
		}
		return strings.Join(names, " ")
	}
	for key, want := range map[string]string{
		"duration":     "b=failing c=ok a=ok d=unknown",
		"name":         "a=ok b=failing c=ok d=unknown",
		"state":        "b=failing d=unknown a=ok c=ok",
		"last_success": "d=unknown b=failing c=ok a=ok",
		"failures":     "b=failing a=ok c=ok d=unknown",
	} {
		if got := order(key); got != want {
			t.Errorf("sort %s: %s, want %s", key, got, want)
		}
	}
	if err := SortStatus(rows, "size"); err == nil || !strings.Contains(err.Error(), "duration, name") {
		t.Errorf("unknown sort key: %v", err)
	}
	_ = SortStatus(rows, "duration")
	var out bytes.Buffer
	if err := WriteStatusText(&out, rows, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[1], "b.example.net") || !strings.Contains(lines[1], "900.0ms") ||
		!strings.Contains(lines[1], "1h0m0s ago") || !strings.Contains(lines[1], "timeout: no answer from b") || !strings.Contains(lines[4], "never") {
		t.Fatalf("status text:\n%s", out.String())
	}

	h := StatusHandler(func() FleetView {
		return BuildFleet(BuildStatus(hosts, states), []string{"default"}, nil, nil, now)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status?sort=failures", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	page := string(body)
	if rec.Code != 200 || strings.Index(page, "b.example.net") > strings.Index(page, "a.example.net") || !strings.Contains(page, "failing: 1") ||
		!strings.Contains(page, "unknown: 1") {
		t.Fatalf("status page %d:\n%s", rec.Code, page)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status?sort=bogus", nil))
	if rec.Code != 400 {
		t.Fatalf("bad sort key: %d", rec.Code)
	}
}
