package dispatch_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/pollertest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/poller"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var quiet = slog.New(slog.DiscardHandler)

func fleetConfig(t *testing.T, fleet *snmpsim.Fleet, onceTimeout time.Duration) *config.Config {
	t.Helper()
	cfg, err := config.Load("", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dispatcher.OnceTimeout = onceTimeout
	for _, d := range fleet.Devices() {
		key, _ := task.HostKey(d.Name)
		cfg.Hosts = append(cfg.Hosts, config.Host{
			Name: d.Name, Key: key, Site: task.DefaultSite, Address: d.AddrPort().Addr().String(), Port: d.AddrPort().Port(), Credentials: "public",
			Timeout: 300 * time.Millisecond, Retries: 0, Get: []string{snmpsim.OIDSysName}, MaxOids: 32, MaxRepetitions: 10,
			PollTimeout: 2 * time.Second,
		})
	}
	return cfg
}

// setup starts a fleet of n devices and a server whose streams exist, and
// returns them with the dispatcher's connection.
func setup(t *testing.T, n int) (*snmpsim.Fleet, *natsbus.Embedded, *natsbus.Bus) {
	t.Helper()
	fleet := simtest.Start(t, snmpsim.Config{Devices: n, Interfaces: 1})
	srv, d := natstest.RunFlock(t, 5*time.Second, 3)
	return fleet, srv, d
}

func servePoller(t *testing.T, srv *natsbus.Embedded, cfg *config.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, done := pollertest.Serve(t, ctx, natstest.Connect(t, srv, "poller"), task.DefaultSite,
		poller.Options{Name: "p", Workers: 4, ShutdownGrace: time.Second, Log: quiet}, poll.New("p", cfg.Credentials, nil).Start)
	t.Cleanup(func() { cancel(); <-done })
}

func TestRunOnceNoPollers(t *testing.T) {
	fleet, _, d := setup(t, 3)
	var out bytes.Buffer
	sum, err := dispatch.RunOnce(context.Background(), d, fleetConfig(t, fleet, 1500*time.Millisecond), &out, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Hosts != 3 || sum.Missing != 3 || sum.OK != 0 || sum.Complete() || out.Len() != 0 {
		t.Fatalf("summary %s, output %q; want 3 missing hosts and no records", sum, out.String())
	}
	// The missing hosts are reported by site: this one has no poller at all.
	if !strings.HasPrefix(sum.String(), "flock: hosts=3 ok=0 failed=0 missing=3 (site default: no poller) duplicates=0 elapsed=") {
		t.Errorf("summary line %q", sum)
	}
}

func TestRunOnceRetriesHostWithStaleTask(t *testing.T) {
	fleet, srv, d := setup(t, 2)
	cfg := fleetConfig(t, fleet, 20*time.Second)
	// An earlier run left a task for the first host in the queue.
	stale := dispatch.Tasks(cfg, time.Now().Add(-time.Hour), 2*time.Hour)[:1] // valid for another hour
	if errs := d.PublishTasks(context.Background(), stale); errs[0] != nil {
		t.Fatal(errs[0])
	}
	type result struct {
		sum dispatch.Summary
		err error
	}
	done := make(chan result, 1)
	var out bytes.Buffer
	go func() {
		sum, err := dispatch.RunOnce(context.Background(), d, cfg, &out, quiet)
		done <- result{sum, err}
	}()
	time.Sleep(300 * time.Millisecond) // the run meets the stale task first
	servePoller(t, srv, cfg)
	r := <-done
	if r.err != nil || !r.sum.Complete() || r.sum.OK != 2 {
		t.Fatalf("summary %s, err %v; want both hosts answered once the stale task was polled", r.sum, r.err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d records printed, want 2 (the stale task's record belongs to another run):\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		rec, err := task.DecodeRecord([]byte(l))
		if err != nil || rec.TaskID == stale[0].ID {
			t.Errorf("record %s (err %v): the stale task's record must not be printed", rec.TaskID, err)
		}
	}
}

// brokenWriter is a stdout that refuses every write (a closed pipe, a full disk).
type brokenWriter struct{ writes int }

func (w *brokenWriter) Write([]byte) (int, error) {
	w.writes++
	return 0, errors.New("write /dev/stdout: broken pipe")
}

// A one-shot run whose output fails still counts every host that answered,
// ends when all have (not at its timeout), tries the output once and
// returns its error.
func TestRunOnceBrokenOutput(t *testing.T) {
	fleet, srv, d := setup(t, 4)
	cfg := fleetConfig(t, fleet, time.Minute)
	servePoller(t, srv, cfg)
	out := &brokenWriter{}
	start := time.Now()
	sum, err := dispatch.RunOnce(context.Background(), d, cfg, out, quiet)
	if err == nil || err.Error() != "write records: write /dev/stdout: broken pipe" {
		t.Fatalf("err %v, want the output's error", err)
	}
	if sum.OK != 4 || sum.Missing != 0 || out.writes != 1 || time.Since(start) > 30*time.Second {
		t.Fatalf("summary %s after %s, %d writes: want 4 hosts answered, one write tried, no wait for the timeout", sum, time.Since(start), out.writes)
	}
}

// Tasks the queue refused can never be answered: the run ends when the
// queued ones are, with the refused hosts missing, not at its timeout.
func TestRunOnceEndsWhenTheQueuedTasksAnswered(t *testing.T) {
	fleet, srv, d := setup(t, 20)
	if err := d.EnsureStreams(context.Background(), natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: 5 * time.Second, MaxDeliver: 3, MaxQueued: 2}); err != nil {
		t.Fatal(err)
	}
	cfg := fleetConfig(t, fleet, time.Minute)
	servePoller(t, srv, cfg)
	var out bytes.Buffer
	start := time.Now()
	sum, err := dispatch.RunOnce(context.Background(), d, cfg, &out, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unpublished < 1 || sum.Missing != sum.Unpublished || sum.OK != 20-sum.Unpublished || time.Since(start) > 30*time.Second {
		t.Fatalf("summary %s after %s: want the queued hosts answered, the refused ones missing, and no wait for the 1m timeout", sum, time.Since(start))
	}
}
