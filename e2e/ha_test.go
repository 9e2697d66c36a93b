package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/netcut"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

const (
	haHosts    = 50
	haInterval = 2 * time.Second
	haTTL      = 3 * time.Second
)

// haDispatcher is one of the two dispatchers: its process, its link to
// NATS (a proxy the test can cut), its sink and its telemetry address.
type haDispatcher struct {
	name, sink, metrics string
	link                *netcut.Proxy
	p                   *proc
	linesAtEnd          int // records in its sink when the run's end began (before the other stopped)
}

func (d *haDispatcher) role(t *testing.T) string {
	t.Helper()
	code, body := getQuiet("http://" + d.metrics + "/readyz")
	if code != 200 {
		return "down"
	}
	return strings.TrimPrefix(strings.TrimSpace(body), "ready: role ")
}

// logTime is the time of the first JSON log line of d with msg.
func (d *haDispatcher) logTime(msg string) (time.Time, bool) {
	for _, l := range strings.Split(d.p.stderr.String(), "\n") {
		var e struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == msg {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// possibleDuplicates are the task ids the dispatcher logged as possibly
// written twice.
func (d *haDispatcher) possibleDuplicates() map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(d.p.stderr.String(), "\n") {
		var e struct {
			Msg    string `json:"msg"`
			TaskID string `json:"task_id"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && strings.HasPrefix(e.Msg, "possible duplicate:") {
			out[e.TaskID] = true
		}
	}
	return out
}

// stopped is the dispatcher's "stopped" line: its counters.
func (d *haDispatcher) stopped(t *testing.T) (records, possibleDuplicates int) {
	t.Helper()
	for _, l := range strings.Split(d.p.stderr.String(), "\n") {
		var e struct {
			Msg        string `json:"msg"`
			Records    int    `json:"records"`
			Duplicates int    `json:"possible_duplicates"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "stopped" {
			return e.Records, e.Duplicates
		}
	}
	t.Fatalf("%s logged no stopped line:\n%s", d.name, tail(d.p.stderr.String(), 20))
	return 0, 0
}

// testLeaderLoss runs two dispatchers with the same inventory (50 hosts
// every 2 s, lease TTL 3 s) on an external nats-server, takes the leader
// away with lose, and checks the takeover: the standby leads within
// within, every slot after the takeover is polled and written once (bar
// the counted at-least-once duplicates), and every stored record of the
// run reached a sink.
func testLeaderLoss(t *testing.T, lose func(t *testing.T, leader *haDispatcher), within time.Duration) (leader, standby *haDispatcher) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: haHosts, Interfaces: 1})
	srv := natstest.RunJetStream(t)
	var hosts bytes.Buffer
	if err := fleet.WriteHosts(&hosts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk := func(name string) *haDispatcher {
		link, err := netcut.Start(strings.TrimPrefix(srv.ClientURL(), "nats://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(link.Close)
		d := &haDispatcher{name: name, link: link, sink: filepath.Join(dir, name+".jsonl"), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		cfg := fmt.Sprintf(`nats: {url: "nats://%s", ack_wait: 2s}
dispatcher: {name: %s, lease_ttl: %s}
poller: {concurrency: 32, heartbeat: 500ms}
metrics: {listen: %q}
sinks: [{type: file, path: %s}]
defaults: {interval: %s, timeout: 300ms, retries: 0, get: [sysName.0]}
hosts:
%s`, link.Addr(), name, haTTL, d.metrics, d.sink, haInterval, hosts.String())
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		d.p = start(t, name, "dispatcher", []string{"FLOCK_LOG_FORMAT=json"}, "--config", path)
		return d
	}
	a := mk("disp-a")
	waitUntil(t, "disp-a to lead", func() bool { return a.role(t) == "leader" })
	b := mk("disp-b")
	waitUntil(t, "disp-b to stand by", func() bool { return b.role(t) == "standby" })
	pollerCfg := filepath.Join(dir, "disp-a.yaml")
	for i := 1; i <= 2; i++ {
		start(t, fmt.Sprintf("poller-%d", i), "poller", []string{"FLOCK_NATS_URL=" + srv.ClientURL(), fmt.Sprintf("FLOCK_POLLER_NAME=poller-%d", i),
			"FLOCK_METRICS_LISTEN=127.0.0.1:0"}, "--config", pollerCfg)
	}
	// Never two leaders: asked in this order (the standby first), the
	// first leader saying it leads after the standby said so would be two
	// at once, since a leader stops before its lease can pass on.
	both := make(chan string, 1)
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if b.role(t) == "leader" && a.role(t) == "leader" {
				select {
				case both <- time.Now().Format("15:04:05.000"):
				default:
				}
			}
			time.Sleep(25 * time.Millisecond)
		}
	}()
	defer func() {
		stopSampling()
		<-sampled
		select {
		case at := <-both:
			t.Errorf("both dispatchers said they led at %s", at)
		default:
		}
	}()
	time.Sleep(3 * haInterval) // a few cycles under the first leader
	if a.role(t) != "leader" || b.role(t) != "standby" {
		t.Fatalf("roles before the loss: %s %s", a.role(t), b.role(t))
	}
	_, body := get(t, "http://"+b.metrics+"/metrics")
	if metric(t, body, "flock_dispatcher_leader") != 0 {
		t.Fatal("the standby says it leads")
	}
	if _, err := os.Stat(b.sink); err == nil && len(completeLines(b.sink)) > 0 {
		t.Fatal("the standby wrote records")
	}

	lost := time.Now()
	lose(t, a)
	for b.role(t) != "leader" {
		if time.Since(lost) > within+5*time.Second {
			t.Fatalf("disp-b did not take over within %s", within+5*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(lost)
	t.Logf("takeover after %s (bound %s)", took.Round(time.Millisecond), within)
	if took > within {
		t.Fatalf("takeover after %s, want within %s", took, within)
	}
	takeover := time.Now()
	time.Sleep(5 * haInterval)
	if a.link.Silenced() {
		// The partition heals: the old leader rejoins as a standby.
		a.link.Restore()
		waitUntil(t, "disp-a to stand by again", func() bool { return a.role(t) == "standby" })
		if b.role(t) != "leader" {
			t.Fatalf("disp-b is %s after disp-a came back", b.role(t))
		}
	}
	end := time.Now()
	a.linesAtEnd, b.linesAtEnd = len(completeLines(a.sink)), len(completeLines(b.sink))
	_ = b.p.cmd.Process.Signal(syscall.SIGTERM) // disp-a, if alive, may lead again from here
	if code := b.p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("disp-b exit %d after SIGTERM", code)
	}
	select {
	case <-a.p.done:
	default:
		_ = a.p.cmd.Process.Signal(syscall.SIGTERM)
		a.p.wait(t, 30*time.Second)
	}

	// What the sinks hold, across both dispatchers.
	written := map[string]int{}
	for _, d := range []*haDispatcher{a, b} {
		for _, l := range completeLines(d.sink) {
			r, err := task.DecodeRecord([]byte(l))
			if err != nil {
				t.Fatalf("%s sink: %v", d.name, err)
			}
			written[r.TaskID]++
		}
	}
	// A record written twice must be one a dispatcher named as a possible
	// duplicate (sinks are at-least-once), and counted.
	possible := b.possibleDuplicates()
	for id := range a.possibleDuplicates() {
		possible[id] = true
	}
	dups := 0
	for id, n := range written {
		dups += n - 1
		if n > 1 && !possible[id] {
			t.Errorf("record %s written %d times, not named as a possible duplicate", id, n)
		}
	}
	_, counted := b.stopped(t)
	t.Logf("records written %d, duplicates %d, counted as possible by disp-b %d", len(written), dups, counted)
	if dups > counted || len(b.possibleDuplicates()) != counted {
		t.Fatalf("%d records written twice, %d counted as possible duplicates, %d named", dups, counted, len(b.possibleDuplicates()))
	}
	// Every slot of every host from the one current at the takeover (the
	// new leader picks it up) is in a sink; for a host whose next slot
	// began just after the takeover, from that next one (a slot is caught
	// up only with dispatch.CatchUpMargin of it left; 300 ms allow for the
	// takeover having begun before this test saw it).
	missing := 0
	for _, d := range fleet.Devices() {
		key, _ := task.HostKey(d.Name)
		first := dispatch.SlotStart(key, haInterval, takeover)
		if first.Add(haInterval).Sub(takeover) < dispatch.CatchUpMargin(haInterval)+300*time.Millisecond {
			first = first.Add(haInterval)
		}
		for s := first; s.Add(2 * haInterval).Before(end); s = s.Add(haInterval) {
			if written[task.SlotID(task.DefaultSite, key, s)] == 0 {
				missing++
				if missing < 5 {
					t.Errorf("no record of %s's slot %s", d.Name, s.Format("15:04:05.000"))
				}
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d slots from the takeover on have no record", missing)
	}
	// Every record stored before the end reached a sink: none was lost
	// between the two leaders.
	bus := natstest.Connect(t, srv, "checker")
	cons, err := bus.JetStream().OrderedConsumer(context.Background(), natsbus.ResultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	lostRecords := 0
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		md, _ := m.Metadata()
		h, err := task.ReadHead(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if md.Timestamp.Before(end.Add(-haInterval)) && written[h.TaskID] == 0 {
			lostRecords++
			t.Errorf("record %s stored at %s is in no sink", h.TaskID, md.Timestamp.Format("15:04:05.000"))
		}
	}
	if lostRecords > 0 {
		t.Fatalf("%d records lost", lostRecords)
	}
	return a, b
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// getQuiet is GET that reports a failure as status 0.
func getQuiet(url string) (int, string) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestHALeaderKilled: the leader is SIGKILLed; the standby takes over
// within the lease TTL plus one renewal.
func TestHALeaderKilled(t *testing.T) {
	testLeaderLoss(t, func(t *testing.T, leader *haDispatcher) {
		_ = leader.p.cmd.Process.Kill()
	}, haTTL+haTTL/3)
}

// TestHALeaderCutOff: the leader is partitioned from NATS, silently (its
// connection stays open, nothing passes): it stops leading (and writing)
// before the standby takes over, and rejoins as a standby when the link
// is back.
func TestHALeaderCutOff(t *testing.T) {
	var cutAt time.Time
	linesAtStepDown := make(chan int, 1)
	a, b := testLeaderLoss(t, func(t *testing.T, leader *haDispatcher) {
		cutAt = time.Now()
		leader.link.Silence()
		go func() {
			for {
				if _, ok := leader.logTime("stepped down: no longer the leading dispatcher; standing by"); ok {
					linesAtStepDown <- len(completeLines(leader.sink))
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}, haTTL+haTTL/3)
	down, ok := a.logTime("stepped down: no longer the leading dispatcher; standing by")
	up, ok2 := b.logTime("took over: this dispatcher leads now")
	if !ok || !ok2 {
		t.Fatalf("step down logged %v, takeover logged %v", ok, ok2)
	}
	t.Logf("cut at %s, disp-a stepped down %s after, disp-b took over %s after", cutAt.Format("15:04:05.000"), down.Sub(cutAt), up.Sub(cutAt))
	if !down.Before(up) {
		t.Fatalf("disp-a stepped down at %s, after disp-b took over at %s", down, up)
	}
	// Nothing written by the cut-off leader after its step-down.
	select {
	case n := <-linesAtStepDown:
		if a.linesAtEnd != n {
			t.Fatalf("disp-a wrote %d records after it stepped down (while disp-b led)", a.linesAtEnd-n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("disp-a's step-down not seen")
	}
	if !strings.Contains(a.p.stderr.String(), `"reason":"lease not renewed"`) {
		t.Errorf("disp-a stepped down for another reason than its failed renewal:\n%s", tail(a.p.stderr.String(), 10))
	}
}

// TestHALeaderStopped: SIGTERM hands the lease over at once.
func TestHALeaderStopped(t *testing.T) {
	a, _ := testLeaderLoss(t, func(t *testing.T, leader *haDispatcher) {
		_ = leader.p.cmd.Process.Signal(syscall.SIGTERM)
	}, time.Second)
	if code := a.p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("disp-a exit %d after SIGTERM", code)
	}
	if _, ok := a.logTime("lease handed over: stopped leading"); !ok {
		t.Fatalf("disp-a did not hand the lease over:\n%s", tail(a.p.stderr.String(), 20))
	}
}
