package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/harness/syncbuf"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// lockedBuffer is safe for a writer and a reader.
type lockedBuffer = syncbuf.Buffer

func withInterval(cfg *config.Config, iv time.Duration) *config.Config {
	for i := range cfg.Hosts {
		cfg.Hosts[i].Interval = iv
		cfg.Hosts[i].PollTimeout = iv
	}
	return cfg
}

type running struct {
	r      *dispatch.Runner
	cancel context.CancelFunc
	done   chan error
	log    *lockedBuffer
}

func startRunner(t *testing.T, d *natsbus.Bus, cfg *config.Config, sinks []dispatch.Sink, reload chan struct{}, load func() (*config.Config, error)) *running {
	t.Helper()
	return startRunnerWith(t, d, cfg, sinks, reload, load, nil)
}

func startRunnerWith(t *testing.T, d *natsbus.Bus, cfg *config.Config, sinks []dispatch.Sink, reload chan struct{}, load func() (*config.Config, error), reg prometheus.Registerer) *running {
	t.Helper()
	return startRunnerOpts(t, d, cfg, dispatch.RunOptions{Sinks: sinks, Reload: reload, LoadConfig: load, Registerer: reg})
}

// startRunnerOpts runs a runner with o, completed with the host state
// bucket and a log the test can read.
func startRunnerOpts(t *testing.T, d *natsbus.Bus, cfg *config.Config, o dispatch.RunOptions) *running {
	t.Helper()
	state, err := d.Bucket(context.Background(), natsbus.HostStateBucket, "test")
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	o.State, o.Log = state, slog.New(slog.NewTextHandler(logBuf, nil))
	r := dispatch.NewRunner(d, cfg, o)
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{r: r, cancel: cancel, done: make(chan error, 1), log: logBuf}
	go func() { rn.done <- r.Run(ctx) }()
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

func (rn *running) stop(t *testing.T) {
	t.Helper()
	if rn.cancel == nil {
		return
	}
	rn.cancel()
	rn.cancel = nil
	if err := <-rn.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunSchedulesCollectsAndRemembers(t *testing.T) {
	fleet, srv, d := setup(t, 4)
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	servePoller(t, srv, cfg)
	out := &lockedBuffer{}
	file := filepath.Join(t.TempDir(), "sub", "records.jsonl")
	sinks, err := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}, {Type: "file", Path: file}}, out)
	if err != nil {
		t.Fatal(err)
	}
	rn := startRunner(t, d, cfg, sinks, nil, nil)
	time.Sleep(3500 * time.Millisecond)
	rn.stop(t)

	perHost := map[string]map[string]bool{}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		r, err := task.DecodeRecord([]byte(l))
		if err != nil {
			t.Fatalf("sink line: %v", err)
		}
		if perHost[r.Host] == nil {
			perHost[r.Host] = map[string]bool{}
		}
		if perHost[r.Host][r.TaskID] {
			t.Fatalf("task %s written twice", r.TaskID)
		}
		perHost[r.Host][r.TaskID] = true
	}
	for _, dev := range fleet.Devices() {
		if n := len(perHost[dev.Name]); n < 2 {
			t.Errorf("host %s: %d polls in 3.5s at a 1s interval", dev.Name, n)
		}
	}
	fileData, err := os.ReadFile(file)
	if err != nil || string(fileData) != out.String() {
		t.Errorf("file sink differs from stdout sink (%v)", err)
	}
	st := rn.r.Stats()
	if st.Records != len(lines) || st.Overruns != 0 {
		t.Errorf("stats %+v, %d lines", st, len(lines))
	}
	key := task.DefaultSite + "." + fleet.Devices()[0].Name
	hs, ok := rn.r.States().Get(key)
	if !ok || hs.LastSuccessAt.IsZero() || hs.ConsecutiveFailures != 0 || hs.LastDurationMS <= 0 {
		t.Fatalf("state of %s: %+v", key, hs)
	}
	// A restarted dispatcher starts from the saved state, read when it
	// begins to lead.
	again := startRunner(t, d, cfg, nil, nil, nil)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(again.log.String(), "msg=scheduling"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted runner did not begin its term:\n%s", again.log.String())
		}
	}
	restored, ok := again.r.States().Get(key)
	if !ok || !restored.LastSuccessAt.Equal(hs.LastSuccessAt) || restored.LastTaskID != hs.LastTaskID {
		t.Fatalf("restored state %+v, want %+v", restored, hs)
	}
}

func TestRunOverrunsAreCountedAndLoggedOnce(t *testing.T) {
	fleet, _, d := setup(t, 2)
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	// No poller: each host's first task stays queued, so later slots overrun.
	reg := prometheus.NewRegistry()
	rn := startRunnerWith(t, d, cfg, nil, nil, nil, reg)
	// Until the first tasks are past their deadline (1 s) and
	// dispatch.MissedGrace, and swept (once a second).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st := rn.r.Stats(); st.Published >= 2 && st.Overruns >= 2 && st.Missed >= st.Overruns+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no missed slot counted for the first tasks within 30 s: %+v", rn.r.Stats())
		}
	}
	rn.stop(t)
	st := rn.r.Stats()
	if st.Published < 2 || st.Overruns < 2 {
		t.Fatalf("stats %+v: want each host's first task published and later slots counted as overruns", st)
	}
	logs := rn.log.String()
	for _, dev := range fleet.Devices() {
		if n := strings.Count(logs, "host="+dev.Name); n != 1 {
			t.Errorf("host %s named in %d overrun log lines, want 1:\n%s", dev.Name, n, logs)
		}
	}
	// Every slot without a record is missed: the overruns at once, the
	// first tasks once their deadline and grace passed; reported by site,
	// never by host.
	// (At least the overruns and the 2 first tasks: waited for above; the
	// overruns of the last second may not be swept yet.)
	if st.Missed < 2 || st.Missed > st.Overruns+st.Published {
		t.Errorf("missed %d: want the 2 first tasks, at most every slot (%d overruns, %d published)", st.Missed, st.Overruns, st.Published)
	}
	if got := siteCounter(reg, "flock_dispatcher_slots_missed_total", task.DefaultSite); int(got) != st.Missed {
		t.Errorf("flock_dispatcher_slots_missed_total{site=default} %v, stats say %d", got, st.Missed)
	}
	reported := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="slots missed: no record by their deadline"`) {
			if !strings.Contains(l, "site=default") || strings.Contains(l, "host=") {
				t.Errorf("missed-slots line without its site, or naming a host: %s", l)
			}
			var n int
			if _, err := fmt.Sscanf(l[strings.Index(l, "missed=")+len("missed="):], "%d", &n); err != nil {
				t.Fatalf("missed-slots line %q: %v", l, err)
			}
			reported += n
		}
	}
	if reported != st.Missed {
		t.Errorf("missed-slots lines report %d, stats %d:\n%s", reported, st.Missed, logs)
	}
	// Each task expires after its interval: the queue empties by itself.
	s, err := d.JetStream().Stream(context.Background(), natsbus.TaskStream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.CachedInfo().State.Msgs != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		s, _ = d.JetStream().Stream(context.Background(), natsbus.TaskStream)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("%d tasks still queued long after their interval", n)
	}
}

func TestRunReload(t *testing.T) {
	fleet, srv, d := setup(t, 3)
	full := withInterval(fleetConfig(t, fleet, 0), time.Second)
	first := *full
	first.Hosts = full.Hosts[:2]
	servePoller(t, srv, full)
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)
	reload := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	load := func() (*config.Config, error) { // first a bad file, then the good one
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return nil, errors.New("flock.yaml: hosts[2].get[0]: malformed OID")
		}
		return full, nil
	}
	rn := startRunner(t, d, &first, sinks, reload, load)
	time.Sleep(1500 * time.Millisecond)
	reload <- struct{}{} // the bad file: rejected, the two hosts go on
	time.Sleep(1500 * time.Millisecond)
	third := fleet.Devices()[2].Name
	if strings.Contains(out.String(), `"host":"`+third+`"`) {
		t.Fatal("a host that is not in the inventory yet was polled")
	}
	reload <- struct{}{} // the good file adds the third host
	time.Sleep(2500 * time.Millisecond)
	rn.stop(t)
	st := rn.r.Stats()
	if st.Rejected != 1 || st.Reloads != 1 {
		t.Fatalf("stats %+v: want one rejected and one applied reload", st)
	}
	if !strings.Contains(rn.log.String(), "reload rejected; the running inventory is kept") || !strings.Contains(rn.log.String(), "malformed OID") {
		t.Errorf("rejection not logged with its reason:\n%s", rn.log.String())
	}
	if !strings.Contains(out.String(), `"host":"`+third+`"`) {
		t.Errorf("the host added by reload was never polled")
	}
	if n := strings.Count(out.String(), `"host":"`+fleet.Devices()[0].Name+`"`); n < 4 {
		t.Errorf("the first host was polled %d times in 5.5s; the rejected reload must not stop it", n)
	}
}

// A task whose pollers keep dying with it reaches max_deliver: the
// dispatcher answers it with a final record and frees the host's slot.
func TestRunAnswersExhaustedTasks(t *testing.T) {
	fleet, srv, d := setup(t, 1)
	// Streams again with max_deliver 2 and a short ack wait.
	if err := d.EnsureStreams(context.Background(), natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: time.Second, MaxDeliver: 2}); err != nil {
		t.Fatal(err)
	}
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Minute) // one slot only during the test
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)
	// NewRunner schedules the first slot up to a minute ahead; publish it now instead.
	rn := startRunner(t, d, cfg, sinks, nil, nil)
	tk := dispatch.Tasks(cfg, time.Now(), time.Minute)[0]
	if errs := d.PublishTasks(context.Background(), []task.PollTask{tk}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// A "poller" that takes the task and never answers it: each delivery
	// lapses after the ack wait, as when a poller dies mid-poll.
	victim, err := natstest.Connect(t, srv, "dying-poller").BindTasks(context.Background(), task.DefaultSite, nil)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := make(chan int, 8)
	stopVictim, err := victim.Consume(1, func(m *natsbus.TaskMsg) {
		if m.Subject() == task.TaskSubject(tk.Site, tk.HostKey) {
			deliveries <- m.Attempt()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopVictim()
	for i := 1; i <= 2; i++ {
		select {
		case got := <-deliveries:
			if got != i {
				t.Fatalf("delivery %d came as attempt %d", i, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("delivery %d never came", i)
		}
	}
	// The server notices the second lapse while a pull request is waiting
	// (nats-server#1716): the victim's consumer keeps one open.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), `"kind":"undelivered"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no final record; stats %+v", rn.r.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), tk.ID) || rn.r.Stats().Exhausted != 1 {
		t.Fatalf("final record %q, stats %+v", out.String(), rn.r.Stats())
	}
	// The slot is free: the host's next task is accepted.
	next := dispatch.Tasks(cfg, time.Now().Add(time.Minute), time.Minute)[0]
	if errs := d.PublishTasks(context.Background(), []task.PollTask{next}); errs[0] != nil {
		t.Fatalf("next slot after the exhausted one: %v", errs[0])
	}
}

func TestRunQueueFull(t *testing.T) {
	fleet, _, d := setup(t, 6)
	if err := d.EnsureStreams(context.Background(), natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: 5 * time.Second, MaxDeliver: 3, MaxQueued: 3}); err != nil {
		t.Fatal(err)
	}
	cfg := withInterval(fleetConfig(t, fleet, 0), 1*time.Second)
	reg := prometheus.NewRegistry()
	rn := startRunnerWith(t, d, cfg, nil, nil, nil, reg) // no poller: the queue fills
	time.Sleep(2500 * time.Millisecond)
	rn.stop(t)
	st := rn.r.Stats()
	// The metric says the same as the counters.
	got, err := testutil.GatherAndCount(reg, "flock_dispatcher_tasks_total")
	if err != nil || got != 5 {
		t.Fatalf("flock_dispatcher_tasks_total series: %d, %v", got, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "flock_dispatcher_tasks_total" && m.GetLabel()[0].GetValue() == "queue_full" && int(m.GetCounter().GetValue()) != st.QueueFull {
				t.Fatalf("metric queue_full = %v, counter %d", m.GetCounter().GetValue(), st.QueueFull)
			}
		}
	}
	if st.QueueFull < 3 || st.Published < 3 || st.Failed != 0 {
		t.Fatalf("stats %+v: want 3 queued and the rest refused as queue full\n%s", st, rn.log.String())
	}
	if !strings.Contains(rn.log.String(), "task queue full") {
		t.Errorf("a full queue must be reported:\n%s", rn.log.String())
	}
	s, _ := d.JetStream().Stream(context.Background(), natsbus.TaskStream)
	if n := s.CachedInfo().State.Msgs; n > 3 {
		t.Fatalf("%d tasks queued past the limit of 3", n)
	}
}

// Records published while the dispatcher is down are collected when it is
// back, each written once.
func TestRunDispatcherRestart(t *testing.T) {
	fleet, srv, d := setup(t, 5)
	for _, dev := range fleet.Devices() {
		dev.SetDelay(400 * time.Millisecond) // polls outlive the first dispatcher
	}
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	for i := range cfg.Hosts {
		cfg.Hosts[i].PollTimeout = 3 * time.Second
	}
	servePoller(t, srv, cfg)
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)

	first := startRunner(t, d, cfg, sinks, nil, nil)
	time.Sleep(2200 * time.Millisecond)
	first.stop(t)
	down := time.Now()
	time.Sleep(1500 * time.Millisecond) // polls in flight finish and publish meanwhile
	up := time.Now()
	second := startRunner(t, d, cfg, sinks, nil, nil)
	time.Sleep(1500 * time.Millisecond)
	second.stop(t)

	seen := map[string]int{}
	whileDown := 0
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		r, err := task.DecodeRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		seen[r.TaskID]++
		if end := r.StartedAt.Add(time.Duration(r.DurationMS * float64(time.Millisecond))); end.After(down) && end.Before(up) {
			whileDown++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %s written %d times", id, n)
		}
	}
	if whileDown == 0 {
		t.Fatalf("no record finished while the dispatcher was down; the test did not test a restart (%d records)", len(seen))
	}
	t.Logf("%d records, %d finished while the dispatcher was down and were collected after", len(seen), whileDown)
}

// The NATS server restarts (same store) during a run: dispatcher and
// poller reconnect by themselves and every host keeps being answered.
func TestRunSurvivesNATSRestart(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 4, Interfaces: 1})
	opts := natstest.FixedOptions(t)
	srv, err := natsbus.StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	d := natstest.Dispatcher(t, srv, natsbus.StreamOptions{AckWait: 2 * time.Second, MaxDeliver: 5})
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	servePoller(t, srv, cfg)
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)
	rn := startRunner(t, d, cfg, sinks, nil, nil)
	time.Sleep(2 * time.Second)

	srv.Close() // the server goes away...
	time.Sleep(time.Second)
	restarted := time.Now()
	srv2, err := natsbus.StartEmbedded(opts) // ...and comes back on the same port and store
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)

	// Every host answered again after the restart.
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if r, err := task.DecodeRecord([]byte(line)); err == nil && r.StartedAt.After(restarted) && r.Error == nil {
				after[r.Host] = true
			}
		}
		if len(after) == len(fleet.Devices()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart only %d of %d hosts were answered; stats %+v\n%s", len(after), len(fleet.Devices()), rn.r.Stats(), rn.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	rn.stop(t)
}

// The dispatcher reads only a record's head: a record of a schema it does
// not know, or one it cannot read, is refused with a log line naming it
// and counted, never half-read into the sinks or the host state; a good
// record next to them is written as the bytes that came.
func TestRunRefusesRecordsItCannotRead(t *testing.T) {
	fleet, _, d := setup(t, 1)
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Hour) // no slot comes during the test
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)
	reg := prometheus.NewRegistry()
	rn := startRunnerWith(t, d, cfg, sinks, nil, nil, reg)
	key := cfg.Hosts[0].Key
	subject := task.ResultSubject(task.DefaultSite, key)
	future := `{"schema":2,"task_id":"default.` + key + `@1","site":"default","host":"h","host_key":"` + key + `","samples":[]}`
	good := task.HostRecord{Schema: task.Schema, TaskID: "default." + key + "@3", Site: task.DefaultSite, Host: cfg.Hosts[0].Name, HostKey: key,
		StartedAt: time.Now(), Varbinds: []task.Varbind{{OID: ".1.3.6.1.2.1.1.5.0", Type: task.TypeOctetString, Bytes: []byte("x")}}}
	ctx := context.Background()
	// The runner's durable consumer takes the records published from its creation on.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := d.JetStream().Consumer(ctx, natsbus.ResultStream, dispatch.RecordsDurable); err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the runner made no record consumer")
		}
	}
	for id, data := range map[string][]byte{"default." + key + "@1": []byte(future), "default." + key + "@2": []byte("{not json"), good.TaskID: good.AppendJSON(nil)} {
		if err := d.PublishRecord(ctx, subject, id, data); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for counter(reg, "flock_dispatcher_records_total", "refused") < 2 || rn.r.Stats().Records < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("refused %v, records %d\n%s", counter(reg, "flock_dispatcher_records_total", "refused"), rn.r.Stats().Records, rn.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rn.stop(t)
	if out.String() != string(good.AppendJSON(nil))+"\n" {
		t.Fatalf("sink got %q, want only the good record as published", out.String())
	}
	log := rn.log.String()
	if !strings.Contains(log, `msg="record of an unknown schema refused; not collected: upgrade this dispatcher to read it" subject=`+subject+
		` task_id=default.`+key+`@1 schema=2 readable_schema=1`) {
		t.Fatalf("no refusal naming the record of schema 2:\n%s", log)
	}
	if !strings.Contains(log, `msg="unreadable record on the results stream refused; not collected" subject=`+subject) {
		t.Fatalf("no refusal of the unreadable record:\n%s", log)
	}
	if hs, _ := rn.r.States().Get(task.HostStateKey(task.DefaultSite, key)); hs.LastTaskID != good.TaskID || len(hs.Recent) != 1 {
		t.Fatalf("host state %+v: only the good record may count", hs)
	}
}

// counter is the value of the counter name{outcome="outcome"} in reg.
// counter sums the series of name whose outcome label is outcome (over sites).
// siteCounter is counter name's value for site.
func siteCounter(reg *prometheus.Registry, name, site string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == "site" && l.GetValue() == site {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func counter(reg *prometheus.Registry, name, outcome string) float64 {
	mfs, _ := reg.Gather()
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == "outcome" && l.GetValue() == outcome {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// A site comes with the inventory (its consumer made at the term's start)
// and goes with it: a reload that drops it removes its consumer once no
// task of the site is queued, not before.
func TestRunSitesComeAndGo(t *testing.T) {
	fleet, srv, d := setup(t, 3)
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	cfg.Hosts[2].Site, cfg.Hosts[2].Interval = "lab", 4*time.Second // no poller serves lab: its task waits
	servePoller(t, srv, cfg)
	without := *cfg
	without.Hosts = cfg.Hosts[:2]
	reload := make(chan struct{})
	streams := natsbus.StreamOptions{AckWait: 5 * time.Second, MaxDeliver: 3}
	loads := []*config.Config{&without, cfg} // lab goes, then comes back
	rn := startRunnerOpts(t, d, cfg, dispatch.RunOptions{
		Reload: reload, LoadConfig: func() (*config.Config, error) { c := loads[0]; loads = loads[1:]; return c, nil },
		AddSite:    func(ctx context.Context, site string) error { return d.EnsureSite(ctx, streams, site) },
		RemoveSite: d.RemoveSite,
	})
	ctx := context.Background()
	labPending := func() (uint64, bool) {
		c, err := d.JetStream().Consumer(ctx, natsbus.TaskStream, natsbus.PollerConsumer("lab"))
		if err != nil {
			return 0, false
		}
		return c.CachedInfo().NumPending, true
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if n, ok := labPending(); ok && n == 1 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no consumer pollers-lab with lab's task queued\n%s", rn.log.String())
		}
	}
	if got := strings.Join(rn.r.Sites(), ","); got != "default,lab" {
		t.Fatalf("sites %s", got)
	}
	reload <- struct{}{}
	time.Sleep(1500 * time.Millisecond) // a retirement round or more
	if n, ok := labPending(); !ok || n != 1 {
		t.Fatalf("pollers-lab removed (or emptied: %d) while its task was still queued\n%s", n, rn.log.String())
	}
	// The task expires at the end of its slot: the site goes then.
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := labPending(); !ok && strings.Contains(rn.log.String(), "site removed") {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("pollers-lab still there after its queue emptied\n%s", rn.log.String())
		}
	}
	if !strings.Contains(rn.log.String(), "site removed: it left the inventory and its queue is empty") || rn.r.Sites()[0] != "default" {
		t.Fatalf("removal not logged:\n%s", rn.log.String())
	}
	if _, err := d.JetStream().Consumer(ctx, natsbus.TaskStream, natsbus.PollerConsumer("default")); err != nil {
		t.Fatalf("the remaining site's consumer: %v", err)
	}
	reload <- struct{}{} // lab is back: its consumer is made at once
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := labPending(); ok {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no consumer pollers-lab after the reload that brought lab back\n%s", rn.log.String())
		}
	}
}

// A standby applies reloads, so that it schedules the inventory it was last
// given when it takes over; it publishes and writes nothing meanwhile.
func TestStandbyAppliesReloads(t *testing.T) {
	fleet, _, d := setup(t, 2)
	cfg := withInterval(fleetConfig(t, fleet, 0), time.Second)
	first := *cfg
	first.Hosts = cfg.Hosts[:1]
	state, err := d.Bucket(context.Background(), natsbus.HostStateBucket, "test")
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	out := &lockedBuffer{}
	sinks, _ := dispatch.OpenSinks([]config.Sink{{Type: "stdout"}}, out)
	r := dispatch.NewRunner(d, &first, dispatch.RunOptions{Sinks: sinks, State: state, Reload: reload,
		LoadConfig: func() (*config.Config, error) { return cfg, nil }, Leading: func() bool { return false }, Log: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Standby(ctx) }()
	reload <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for len(r.Status()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the standby's inventory after a reload: %d hosts, want 2", len(r.Status()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if st := r.Stats(); st.Reloads != 1 || st.Published != 0 || out.String() != "" {
		t.Fatalf("standby: %+v, output %q", st, out.String())
	}
}
