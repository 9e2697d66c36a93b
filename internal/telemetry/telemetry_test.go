package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flock-snmp/flock/internal/task"
)

func TestServeHealthReadyMetrics(t *testing.T) {
	reg := NewRegistry()
	var notReady error = errors.New("not connected to NATS yet")
	m := NewPollerMetrics(reg, PollerSources{PacketsSent: func() uint64 { return 7 }, StrayAnswers: func() uint64 { return 3 }})
	srv, err := Serve("metrics.listen", "127.0.0.1:0", ServerOptions{Registry: reg, Ready: func(context.Context) error { return notReady }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "not connected to NATS yet") {
		t.Fatalf("/readyz while not ready: %d %q", code, body)
	}
	if err := Probe(context.Background(), base+"/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Probe of a 503: %v", err)
	}
	notReady = nil
	if err := Probe(context.Background(), base+"/readyz"); err != nil {
		t.Fatalf("Probe when ready: %v", err)
	}
	m.PollStarted()
	m.PollStarted()
	m.PollDone(&task.HostRecord{DurationMS: 12}, 1)
	_, body := get("/metrics")
	for _, want := range []string{`flock_poller_polls_total{outcome="ok"} 1`, "flock_poller_polls_in_flight 1", "flock_poller_snmp_packets_sent_total 7", "flock_poller_snmp_stray_answers_total 3",
		"flock_poller_poll_duration_seconds_count 1", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if err := Probe(context.Background(), "http://"+srv.Addr()+"/nothing"); err == nil {
		t.Fatal("Probe of a 404 succeeded")
	}
	if _, err := Serve("metrics.listen", srv.Addr(), ServerOptions{Registry: reg}); err == nil || !strings.Contains(err.Error(), "metrics.listen "+srv.Addr()) {
		t.Fatalf("second listener on the same address: %v", err)
	}
}

func TestPollerMetricsOutcomes(t *testing.T) {
	reg := NewRegistry()
	m := NewPollerMetrics(reg, PollerSources{})
	for _, tc := range []struct {
		rec     *task.HostRecord
		attempt int
	}{
		{&task.HostRecord{}, 1},
		{&task.HostRecord{Error: &task.Error{Kind: task.KindTimeout}}, 2},
		{&task.HostRecord{Error: &task.Error{Kind: task.KindTimeout}}, 1},
		{&task.HostRecord{Error: &task.Error{Kind: "brand_new"}}, 1},
		{nil, 3},
	} {
		m.PollStarted()
		m.PollDone(tc.rec, tc.attempt)
	}
	for outcome, want := range map[string]float64{"ok": 1, "timeout": 2, "brand_new": 1, "handed_back": 1, "auth": 0} {
		if got := testutil.ToFloat64(m.polls.WithLabelValues(outcome)); got != want {
			t.Errorf("polls{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.ToFloat64(m.redelivered); got != 2 {
		t.Errorf("redelivered = %v, want 2", got)
	}
	if m.InFlight() != 0 || m.Polls() != 4 {
		t.Errorf("in flight %d, polls %d; want 0, 4", m.InFlight(), m.Polls())
	}
}
