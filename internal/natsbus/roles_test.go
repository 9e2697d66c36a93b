package natsbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/harness/pollertest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/poller"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var rolePasswords = map[string]string{"dispatcher": "disp-pw-7f3a", "poller": "poll-pw-91c2", "reader": "read-pw-44d0"}

// startSecured runs nats-server from the shipped config/nats-server.conf,
// the passwords taken from the environment as operators give them.
func startSecured(t *testing.T) *natsbus.Embedded {
	t.Helper()
	t.Setenv("FLOCK_DISPATCHER_PASSWORD", rolePasswords["dispatcher"])
	t.Setenv("FLOCK_POLLER_PASSWORD", rolePasswords["poller"])
	t.Setenv("FLOCK_POLLER_BRANCH_7_PASSWORD", "branch-7-pw-5e1b")
	t.Setenv("FLOCK_READER_PASSWORD", rolePasswords["reader"])
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{
		Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ConfigFile: filepath.Join("..", "..", "config", "nats-server.conf"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func connectAs(t *testing.T, srv *natsbus.Embedded, role, inbox string) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: srv.ClientURL(), Name: role, InboxPrefix: inbox, Timeout: 5 * time.Second,
		Auth: natsbus.Auth{User: role, Password: rolePasswords[role]}, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("role", role)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rawAs is a plain connection that reports the server's permission errors.
func rawAs(t *testing.T, srv *natsbus.Embedded, role string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(role, rolePasswords[role]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func wantViolation(t *testing.T, errs <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("%s: %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the server did not refuse", what)
	}
}

// Each role of config/nats-server.conf can do its job through Flock's own
// code, and nothing more.
func TestRolesOfShippedServerConfig(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 2, Interfaces: 2})
	srv := startSecured(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Dispatcher: streams, consumer, buckets, tasks.
	disp := connectAs(t, srv, "dispatcher", natsbus.DispatcherInbox)
	if err := disp.EnsureStreams(ctx, natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: 5 * time.Second, MaxDeliver: 5, MaxQueued: 1000}); err != nil {
		t.Fatalf("dispatcher cannot set up the streams: %v", err)
	}
	hosts, err := disp.Bucket(ctx, natsbus.HostStateBucket, "host state")
	if err != nil {
		t.Fatal(err)
	}
	if err := hosts.Put(ctx, "default.x", []byte(`{}`)); err != nil {
		t.Fatalf("dispatcher cannot keep host state: %v", err)
	}
	var mu sync.Mutex
	got := map[string]task.HostRecord{}
	stopWatch, err := disp.WatchRecords(ctx, time.Time{}, func(_ string, data []byte) {
		r, err := task.DecodeRecord(data)
		if err == nil {
			mu.Lock()
			got[r.Host] = r
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("dispatcher cannot watch records: %v", err)
	}
	defer stopWatch()
	stopExh, err := disp.WatchExhausted(ctx, func(string, []byte, int) {})
	if err != nil {
		t.Fatalf("dispatcher cannot watch max-delivery advisories: %v", err)
	}
	defer stopExh()
	tasks := simtest.Tasks(fleet.Devices(), 1, 5*time.Second)
	for i, err := range disp.PublishTasks(ctx, tasks) {
		if err != nil {
			t.Fatalf("dispatcher cannot publish task %d: %v", i, err)
		}
	}

	// Reader: a live subscription and its own consumer on the results stream.
	reader := connectAs(t, srv, "reader", "")
	live := make(chan *nats.Msg, 16)
	if _, err := reader.Conn().ChanSubscribe(task.ResultPrefix+">", live); err != nil {
		t.Fatal(err)
	}
	if err := reader.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	// Poller: device memory, tasks, records, heartbeats, poll now.
	pol := connectAs(t, srv, "poller", natsbus.PollerInbox(task.DefaultSite))
	memory, err := pol.DeviceMemory(ctx)
	if err != nil {
		t.Fatalf("poller cannot open the device memory: %v", err)
	}
	defer memory.Close()
	p := poll.New("poller-sec", creds, simtest.NoDNS).WithMemory(memory)
	if err := memory.Learn(ctx, "default.learnt", task.Quirks{NoBulk: true}); err != nil {
		t.Fatalf("poller cannot record what a device taught it: %v", err)
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	loop, served := pollertest.Serve(t, serveCtx, pol, task.DefaultSite, poller.Options{Name: "poller-sec", Workers: 4, ShutdownGrace: time.Second}, p.Start)
	beats := make(chan *nats.Msg, 256)
	if _, err := disp.Conn().ChanSubscribe(task.HeartbeatPrefix+">", beats); err != nil {
		t.Fatal(err)
	}
	_ = disp.Conn().Flush()
	beatCtx, stopBeats := context.WithCancel(ctx)
	go pol.SendHeartbeats(beatCtx, "poller-sec", 100*time.Millisecond, func() task.Heartbeat { return task.Heartbeat{ID: "poller-sec"} })
	defer stopBeats()
	stopPollTasks, err := pol.ServePollTasks(task.DefaultSite, func(r *natsbus.Request) { loop.PollNow(ctx, r) })
	if err != nil {
		t.Fatal(err)
	}
	defer stopPollTasks()
	stopPollNow, err := disp.ServePollNow(func(req *natsbus.Request) {
		go func() { // as the dispatcher forwards a poll-now request to a poller of the site
			tk := tasks[0]
			tk.ID += "-now"
			rec, err := disp.RequestPoll(ctx, task.DefaultSite, tk.AppendJSON(nil))
			if err != nil {
				_ = req.Refuse(err.Error())
				return
			}
			_ = req.Respond(rec)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopPollNow()

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == len(tasks) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dispatcher has %d of %d records through the secured server", n, len(tasks))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range fleet.Devices() {
		if r := got[d.Name]; r.Error != nil || len(r.Varbinds) == 0 {
			t.Fatalf("record of %s: %+v", d.Name, r.Error)
		}
	}
	select {
	case m := <-live:
		if !strings.HasPrefix(m.Subject, task.ResultPrefix) {
			t.Fatalf("reader got %s", m.Subject)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader's live subscription got no record")
	}
	cons, err := reader.JetStream().OrderedConsumer(ctx, natsbus.ResultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("reader cannot make its own consumer on the results: %v", err)
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || !strings.HasPrefix(msg.Subject(), task.ResultPrefix) {
		t.Fatalf("reader's consumer: %v", err)
	}
	// The reader as a TSDB writer: a metric sink's durable consumer, its
	// records fetched and acknowledged, its pending counted; metrics_subject's
	// line protocol published and read (Telegraf logs in as reader).
	sinkCons, err := reader.SinkRecords(ctx, "roles", 10)
	if err != nil {
		t.Fatalf("reader cannot make a metric sink's consumer: %v", err)
	}
	fetched, err := sinkCons.Fetch(10, 2*time.Second, nil)
	if err != nil || len(fetched) == 0 {
		t.Fatalf("reader's sink consumer fetched %d records: %v", len(fetched), err)
	}
	for _, m := range fetched {
		if err := m.Ack(); err != nil {
			t.Fatalf("reader cannot acknowledge a sink's record: %v", err)
		}
	}
	if _, err := sinkCons.Progress(ctx); err != nil {
		t.Fatalf("reader cannot read its sink's progress: %v", err)
	}
	if last, err := sinkCons.LastStored(ctx); err != nil || last == 0 {
		t.Fatalf("reader cannot read the results stream's last sequence: %d %v", last, err)
	}
	if err := sinkCons.Release(ctx); err != nil {
		t.Fatalf("reader cannot release its sink's consumer for the next writer: %v", err)
	}
	metrics := make(chan *nats.Msg, 1)
	if _, err := reader.Conn().ChanSubscribe(task.MetricsPrefix+">", metrics); err != nil {
		t.Fatal(err)
	}
	if err := reader.PublishCore(task.MetricsSubject(task.DefaultSite, "sw1"), []byte("snmp,host=sw1 up=1i")); err != nil {
		t.Fatal(err)
	}
	if err := reader.FlushCore(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-metrics:
	case <-time.After(5 * time.Second):
		t.Fatal("reader got nothing on flock.metrics.>")
	}
	select {
	case m := <-beats:
		var hb task.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil || hb.ID != "poller-sec" {
			t.Fatalf("heartbeat %s: %v", m.Data, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat reached the dispatcher")
	}
	cli := connectAs(t, srv, "dispatcher", natsbus.DispatcherInbox)
	data, err := cli.PollNow(ctx, fleet.Devices()[0].Name)
	if err != nil {
		t.Fatalf("poll now through the secured server: %v", err)
	}
	if r, err := task.DecodeRecord(data); err != nil || r.Error != nil || !strings.HasSuffix(r.TaskID, "-now") {
		t.Fatalf("poll-now record: %v %s", err, data)
	}
	stopServe()
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	// What the poller may not do.
	before, err := disp.Queue(ctx, task.DefaultSite)
	if err != nil {
		t.Fatal(err)
	}
	pjs := pol.JetStream()
	shortCtx, shortCancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := pjs.Publish(shortCtx, task.TaskSubject(task.DefaultSite, "injected"), []byte(`{"schema":1}`)); err == nil {
		t.Fatal("poller published a task")
	}
	shortCancel()
	shortCtx, shortCancel = context.WithTimeout(ctx, 3*time.Second)
	if _, err := pjs.CreateOrUpdateConsumer(shortCtx, natsbus.TaskStream, jetstream.ConsumerConfig{Durable: "evil"}); err == nil {
		t.Fatal("poller created a consumer on the task stream")
	}
	shortCancel()
	shortCtx, shortCancel = context.WithTimeout(ctx, 3*time.Second)
	if err := pjs.DeleteStream(shortCtx, natsbus.ResultStream); err == nil {
		t.Fatal("poller deleted the results stream")
	}
	shortCancel()
	shortCtx, shortCancel = context.WithTimeout(ctx, 3*time.Second)
	if _, err := pjs.KeyValue(shortCtx, natsbus.HostStateBucket); err == nil {
		t.Fatal("poller opened the dispatcher's host state")
	}
	shortCancel()
	after, err := disp.Queue(ctx, task.DefaultSite)
	if err != nil {
		t.Fatal(err)
	}
	if after.Queued != before.Queued {
		t.Fatalf("task queue went from %d to %d after the poller's attempt", before.Queued, after.Queued)
	}
	if _, err := disp.JetStream().Consumer(ctx, natsbus.TaskStream, "evil"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer evil: %v, want not found", err)
	}

	nc, perr := rawAs(t, srv, "poller")
	for _, subject := range []string{task.TaskPrefix + ">", task.ResultPrefix + ">", natsbus.DispatcherInbox + ".>", "_INBOX.>", natsbus.PollNowSubject, "$KV.flock_hosts.>"} {
		if _, err := nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, perr, "poller subscribing to "+subject)
	}
	_ = nc.Publish(task.TaskSubject(task.DefaultSite, "core-injected"), []byte("x"))
	wantViolation(t, perr, "poller publishing a task on core NATS")
	_ = nc.Publish(task.MetricsSubject(task.DefaultSite, "forged"), []byte("x"))
	wantViolation(t, perr, "poller publishing samples on flock.metrics")

	// What the reader may not do.
	rc, rerr := rawAs(t, srv, "reader")
	for _, subject := range []string{task.ResultSubject(task.DefaultSite, "forged"), task.TaskSubject(task.DefaultSite, "x"), natsbus.PollNowSubject, "$KV.flock_hosts.x"} {
		_ = rc.Publish(subject, []byte("x"))
		wantViolation(t, rerr, "reader publishing to "+subject)
	}
	for _, subject := range []string{task.TaskPrefix + ">", natsbus.PollerInbox(task.DefaultSite) + ".>", task.HeartbeatPrefix + ">"} {
		if _, err := rc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, rerr, "reader subscribing to "+subject)
	}

	// Wrong credentials fail at once, saying who was refused.
	_, err = natsbus.Connect(ctx, natsbus.ConnectOptions{URL: srv.ClientURL(), Timeout: 5 * time.Second,
		Auth: natsbus.Auth{User: "poller", Password: "not-" + rolePasswords["poller"]}})
	if err == nil || !strings.Contains(err.Error(), `user "poller"`) || strings.Contains(err.Error(), rolePasswords["poller"]) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestEmbeddedRefusesOpenListenWithoutAuth(t *testing.T) {
	_, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "0.0.0.0:0", StoreDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "refusing to listen on 0.0.0.0:0") || !strings.Contains(err.Error(), "nats.embedded.config_file") {
		t.Fatalf("open listen without auth: %v", err)
	}
	t.Setenv("FLOCK_DISPATCHER_PASSWORD", "a")
	t.Setenv("FLOCK_POLLER_PASSWORD", "b")
	t.Setenv("FLOCK_POLLER_BRANCH_7_PASSWORD", "b7")
	t.Setenv("FLOCK_READER_PASSWORD", "c")
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "0.0.0.0:0", StoreDir: t.TempDir(),
		ConfigFile: filepath.Join("..", "..", "config", "nats-server.conf")})
	if err != nil {
		t.Fatalf("open listen with the shipped users: %v", err)
	}
	srv.Close()
}
