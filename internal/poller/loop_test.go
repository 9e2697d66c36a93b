package poller_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/pollertest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/poller"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var creds = []config.Credential{{Name: "public", Version: config.Version2c, Community: "public"}}

// collector gathers records by task id.
type collector struct {
	mu   sync.Mutex
	recs map[string][]task.HostRecord
	bad  []error
}

func (c *collector) add(_ string, data []byte) {
	r, err := task.DecodeRecord(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, err)
		return
	}
	if c.recs == nil {
		c.recs = map[string][]task.HostRecord{}
	}
	c.recs[r.TaskID] = append(c.recs[r.TaskID], r)
}

// watch collects every record stored from now on.
func watch(t *testing.T, b *natsbus.Bus) *collector {
	t.Helper()
	c := &collector{}
	stop, err := b.WatchRecords(context.Background(), time.Now().Add(-time.Second), c.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return c
}

func (c *collector) waitFor(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		got := len(c.recs)
		c.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("got records for %d tasks within %s, want %d", len(c.recs), within, n)
}

func servePoller(t *testing.T, ctx context.Context, b *natsbus.Bus, name string, workers int, grace time.Duration) <-chan error {
	t.Helper()
	p := poll.New(name, creds, nil)
	_, done := pollertest.Serve(t, ctx, b, task.DefaultSite, poller.Options{Name: name, Workers: workers, ShutdownGrace: grace}, p.Start)
	return done
}

func TestTasksToRecords(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 20, Interfaces: 4})
	srv, disp := natstest.RunFlock(t, 5*time.Second, 5)

	c := watch(t, disp)
	// A plain core subscriber (what `nats sub 'flock.results.>'` does) sees records live too.
	core, err := natstest.Connect(t, srv, "nats-sub").Conn().SubscribeSync("flock.results.>")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	d1 := servePoller(t, ctx, natstest.Connect(t, srv, "p1"), "p1", 4, time.Second)
	d2 := servePoller(t, ctx, natstest.Connect(t, srv, "p2"), "p2", 4, time.Second)

	tasks := simtest.Tasks(fleet.Devices(), 1, 3*time.Second)
	for i, err := range disp.PublishTasks(context.Background(), tasks) {
		if err != nil {
			t.Fatalf("publish task %d: %v", i, err)
		}
	}
	c.waitFor(t, len(tasks), 20*time.Second)
	cancel()
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		t.Fatalf("undecodable records: %v", c.bad)
	}
	for i, tk := range tasks {
		recs := c.recs[tk.ID]
		if len(recs) != 1 {
			t.Fatalf("task %s has %d records, want exactly 1", tk.ID, len(recs))
		}
		r := recs[0]
		if r.Error != nil || r.Host != tk.Host || len(r.Varbinds) != 1+4*17 || string(r.Varbinds[0].Bytes) != fleet.Devices()[i].Name {
			t.Errorf("record for %s: err %v, %d varbinds, first %q", tk.Host, r.Error, len(r.Varbinds), r.Varbinds[0].Bytes)
		}
		if r.Poller != "p1" && r.Poller != "p2" {
			t.Errorf("record from unknown poller %q", r.Poller)
		}
	}
	for i := range tasks {
		m, err := core.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("core subscriber got %d of %d records: %v", i, len(tasks), err)
		}
		if _, err := task.DecodeRecord(m.Data); err != nil || !strings.HasPrefix(m.Subject, task.ResultPrefix+task.DefaultSite+".sim-") {
			t.Fatalf("core subscriber got %s: %v", m.Subject, err)
		}
	}
	// Every task was acked: the work queue is empty.
	if n := waitQueueEmpty(t, disp, 3*time.Second); n != 0 {
		t.Errorf("%d tasks left in %s after all records arrived", n, natsbus.TaskStream)
	}
}

// waitQueueEmpty returns the number of tasks left in the work queue once it
// is empty or within has passed: an ack is a plain publish that follows the
// record's, so the server may apply it a moment after the record arrived
// (redelivery would take AckWait and more).
func waitQueueEmpty(t *testing.T, disp *natsbus.Bus, within time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, err := disp.JetStream().Stream(context.Background(), natsbus.TaskStream)
		if err != nil {
			t.Fatal(err)
		}
		n := s.CachedInfo().State.Msgs
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGarbageTaskIsAnsweredAndTerminated(t *testing.T) {
	srv, disp := natstest.RunFlock(t, 5*time.Second, 5)
	c := watch(t, disp)
	ctx, cancel := context.WithCancel(context.Background())
	done := servePoller(t, ctx, natstest.Connect(t, srv, "p1"), "p1", 2, time.Second)
	if _, err := disp.JetStream().Publish(context.Background(), task.TaskSubject(task.DefaultSite, "broken-sw"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 1, 10*time.Second)
	cancel()
	<-done
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, recs := range c.recs {
		r := recs[0]
		if r.HostKey != "broken-sw" || r.Error == nil || r.Error.Kind != task.KindBadTask {
			t.Fatalf("record = %+v, want a bad_task error for broken-sw", r)
		}
	}
	if n := waitQueueEmpty(t, disp, 3*time.Second); n != 0 {
		t.Fatalf("garbage task still queued (%d messages): it must be terminated", n)
	}
}

func TestShutdownHandsTaskBack(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	dev := fleet.Devices()[0]
	dev.SetDead(true)
	srv, disp := natstest.RunFlock(t, 30*time.Second, 5)
	c := watch(t, disp)

	ctx, cancel := context.WithCancel(context.Background())
	done := servePoller(t, ctx, natstest.Connect(t, srv, "first"), "first", 1, 100*time.Millisecond)
	tasks := simtest.Tasks(fleet.Devices(), 1, 20*time.Second) // a long poll of a dead device
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for dev.Requests() == 0 { // wait until the poll is under way
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The first poller handed the task back (Nak) instead of waiting out AckWait (30s)
	// or publishing a half-done record: a second poller gets it at once, as attempt 2.
	dev.SetDead(false)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	servePoller(t, ctx2, natstest.Connect(t, srv, "second"), "second", 1, time.Second)
	c.waitFor(t, 1, 10*time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := c.recs[tasks[0].ID]
	if len(recs) != 1 || recs[0].Poller != "second" || recs[0].Attempt != 2 || recs[0].Error != nil {
		t.Fatalf("records = %+v; want one good record from the second poller, attempt 2", recs)
	}
}

func TestRecordTooLarge(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 400})
	srv := natstest.Run(t, natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxPayload: 64 << 10})
	disp := natstest.Dispatcher(t, srv, natsbus.StreamOptions{AckWait: 5 * time.Second, MaxDeliver: 5})
	c := watch(t, disp)
	ctx, cancel := context.WithCancel(context.Background())
	done := servePoller(t, ctx, natstest.Connect(t, srv, "p1"), "p1", 1, time.Second)
	tasks := simtest.Tasks(fleet.Devices(), 1, 10*time.Second) // walks ifTable: 400 x 17 varbinds, several hundred KB
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil {
		t.Fatal(errs[0])
	}
	c.waitFor(t, 1, 20*time.Second)
	cancel()
	<-done
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.recs[tasks[0].ID][0]
	if r.Error == nil || r.Error.Kind != task.KindTooLarge || !strings.Contains(r.Error.Message, fleet.Devices()[0].Name) || len(r.Varbinds) != 0 {
		t.Fatalf("record = error %+v, %d varbinds; want a too_large error naming the host", r.Error, len(r.Varbinds))
	}
	if n := waitQueueEmpty(t, disp, 3*time.Second); n != 0 {
		t.Fatalf("the task was not acked (%d queued): a too-large record must not loop", n)
	}
}

func TestLastDeliveryIsAnsweredNotHandedBack(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	dev := fleet.Devices()[0]
	dev.SetDead(true)
	srv, disp := natstest.RunFlock(t, 30*time.Second, 2)
	c := watch(t, disp)
	tasks := simtest.Tasks(fleet.Devices(), 1, 20*time.Second)
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// Two pollers in turn take the task and are stopped mid-poll.
	for i := 1; i <= 2; i++ {
		before := dev.Requests()
		ctx, cancel := context.WithCancel(context.Background())
		done := servePoller(t, ctx, natstest.Connect(t, srv, fmt.Sprintf("p%d", i)), fmt.Sprintf("p%d", i), 1, 50*time.Millisecond)
		for dev.Requests() == before {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
	}
	c.waitFor(t, 1, 5*time.Second)
	c.mu.Lock()
	r := c.recs[tasks[0].ID][0]
	c.mu.Unlock()
	if r.Error == nil || r.Error.Kind != task.KindUndelivered || r.Attempt != 2 || r.Poller != "p2" {
		t.Fatalf("record %+v: want the second poller's final undelivered record", r)
	}
	// The task is terminated right after its record is published.
	if n := waitQueueEmpty(t, disp, 5*time.Second); n != 0 {
		t.Fatalf("%d tasks left: the last delivery must be terminated, not handed back", n)
	}
}

// A live poller on a poll longer than AckWait reports progress, so its task
// is not handed to another poller in the meantime.
func TestLongPollIsNotRedelivered(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 30})
	dev := fleet.Devices()[0]
	dev.SetDelay(100 * time.Millisecond) // ifTable in ~25 GETBULKs: about 2.5s, over twice AckWait
	srv, disp := natstest.RunFlock(t, time.Second, 5)
	c := watch(t, disp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servePoller(t, ctx, natstest.Connect(t, srv, "p1"), "p1", 1, time.Second)
	servePoller(t, ctx, natstest.Connect(t, srv, "p2"), "p2", 1, time.Second) // idle, ready to steal a lapsed task
	tasks := simtest.Tasks(fleet.Devices(), 1, 20*time.Second)
	tasks[0].Get, tasks[0].MaxRepetitions = nil, 20
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil {
		t.Fatal(errs[0])
	}
	c.waitFor(t, 1, 20*time.Second)
	time.Sleep(1500 * time.Millisecond) // a redelivered copy would show up by now
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := c.recs[tasks[0].ID]
	if len(recs) != 1 || recs[0].Attempt != 1 || recs[0].Error != nil || recs[0].DurationMS < 2000 {
		t.Fatalf("records %+v: want one first-attempt record of a poll longer than AckWait", recs)
	}
	// The device saw one walk, not two.
	if n := dev.Requests(); n > 40 {
		t.Fatalf("the device got %d requests: the task was polled twice", n)
	}
}

// A poller that cannot publish its record (the server went away during the
// poll) does not ack: the task comes back and is answered.
func TestUnpublishableRecordComesBack(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1, Delay: 700 * time.Millisecond})
	opts := natstest.FixedOptions(t)
	srv, err := natsbus.StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	disp := natstest.Dispatcher(t, srv, natsbus.StreamOptions{AckWait: 2 * time.Second, MaxDeliver: 5})
	pb := natstest.Connect(t, srv, "p1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := poll.New("p1", creds, nil)
	pollertest.Serve(t, ctx, pb, task.DefaultSite, poller.Options{Name: "p1", Workers: 1, ShutdownGrace: time.Second,
		PublishTimeout: 300 * time.Millisecond}, p.Start)
	tasks := simtest.Tasks(fleet.Devices(), 1, 5*time.Second)
	tasks[0].Walk, tasks[0].TimeoutMS = nil, 2000
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil {
		t.Fatal(errs[0])
	}
	dev := fleet.Devices()[0]
	for dev.Requests() == 0 { // the poll is under way...
		time.Sleep(5 * time.Millisecond)
	}
	srv.Close() // ...when the server goes away; its record cannot be published
	// Down for longer than a publication waits for its acknowledgement (2 s):
	// a record published before the server is back would otherwise be
	// stored after all, and its task acked, with nothing to come back.
	time.Sleep(3 * time.Second)
	srv2, err := natsbus.StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	// The task was never acked, so it comes back and is polled again.
	deadline := time.Now().Add(20 * time.Second)
	for dev.Requests() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the task never came back after its record could not be published")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Exactly one good record is stored, whichever delivery's publish landed
	// (a client may flush a buffered publish after reconnecting): the task id is the message id.
	deadline = time.Now().Add(10 * time.Second)
	for {
		s, err := disp.JetStream().Stream(context.Background(), natsbus.ResultStream)
		if err == nil && s.CachedInfo().State.Msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("want exactly one stored record for the task")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // a second record, if any, would be stored by now
	s, _ := disp.JetStream().Stream(context.Background(), natsbus.ResultStream)
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d records stored for one task", n)
	}
}

// Dead devices hold a worker each for their poll's budget; the other hosts
// are answered meanwhile, not after them.
func TestDeadHostsDoNotDelayOthers(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 12, Interfaces: 1})
	fleet.Devices()[0].SetDead(true)
	fleet.Devices()[1].SetDead(true)
	srv, disp := natstest.RunFlock(t, 10*time.Second, 5)
	c := watch(t, disp)
	core, err := natstest.Connect(t, srv, "order").Conn().SubscribeSync("flock.results.>") // in arrival order
	if err != nil {
		t.Fatal(err)
	}
	defer core.Unsubscribe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servePoller(t, ctx, natstest.Connect(t, srv, "p1"), "p1", 4, time.Second)
	tasks := simtest.Tasks(fleet.Devices(), 1, 10*time.Second)
	for i := range tasks {
		tasks[i].TimeoutMS, tasks[i].Retries = 1000, 2 // a dead device takes 3s
	}
	if errs := disp.PublishTasks(context.Background(), tasks); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	c.waitFor(t, 12, 30*time.Second)
	var order []string
	for {
		m, err := core.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		order = append(order, m.Subject)
	}
	if len(order) != 12 {
		t.Fatalf("%d records", len(order))
	}
	for _, subj := range order[:10] {
		if strings.HasSuffix(subj, fleet.Devices()[0].Name) || strings.HasSuffix(subj, fleet.Devices()[1].Name) {
			t.Fatalf("a dead host was answered before the healthy ones were: %v", order)
		}
	}
}
