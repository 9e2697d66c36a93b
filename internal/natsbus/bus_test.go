package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

var creds = []config.Credential{{Name: "public", Version: config.Version2c, Community: "public"}}

func TestOneTaskPerHostAndDedup(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 1})
	_, disp := natstest.RunFlock(t, 5*time.Second, 5)
	ctx := context.Background()
	first := simtest.Tasks(fleet.Devices(), 1, time.Second)
	if errs := disp.PublishTasks(ctx, first); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// The same task again (a restarted dispatcher): stored once, no error.
	if errs := disp.PublishTasks(ctx, first); errs[0] != nil {
		t.Fatalf("republishing the same task: %v", errs[0])
	}
	// The next slot while the first is still queued: an overrun.
	second := simtest.Tasks(fleet.Devices(), 2, time.Second)
	if errs := disp.PublishTasks(ctx, second); !errors.Is(errs[0], task.ErrHostBusy) {
		t.Fatalf("second task for a busy host: %v, want ErrHostBusy", errs[0])
	}
	s, err := disp.JetStream().Stream(ctx, natsbus.TaskStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d tasks queued, want 1", n)
	}
}

// The poll handler's records reach the results stream with the task id as
// message id, so a redelivered task's second record is not stored twice.
func TestRecordDedupByTaskID(t *testing.T) {
	_, disp := natstest.RunFlock(t, 5*time.Second, 5)
	ctx := context.Background()
	rec := task.HostRecord{Schema: task.Schema, TaskID: "default.h@1", Site: task.DefaultSite, Host: "h", HostKey: "h"}
	for range 2 {
		if _, err := disp.JetStream().Publish(ctx, task.ResultSubject(task.DefaultSite, "h"), rec.AppendJSON(nil), jetstream.WithMsgID(rec.TaskID)); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := disp.JetStream().Stream(ctx, natsbus.ResultStream)
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}

// twoPollersSharingMemory starts a NATS server with Flock's streams and
// buckets, and two pollers, a and b, each following the device memory
// through its own connection.
func twoPollersSharingMemory(t *testing.T) (memA, memB *natsbus.DeviceMemory, pollA, pollB *poll.Poller) {
	t.Helper()
	srv, _ := natstest.RunFlock(t, 5*time.Second, 5)
	memory := func(name string) *natsbus.DeviceMemory {
		m, err := natstest.Connect(t, srv, name).DeviceMemory(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	memA, memB = memory("a"), memory("b")
	pollA, pollB = poll.New("a", creds, nil).WithMemory(memA), poll.New("b", creds, nil).WithMemory(memB)
	t.Cleanup(pollA.Close)
	t.Cleanup(pollB.Close)
	return memA, memB, pollA, pollB
}

func TestDeviceMemorySharedByPollers(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 10})
	dev := fleet.Devices()[0]
	dev.SetFault(snmpsim.FaultNoBulk)
	ctx := context.Background()
	_, memB, pollA, pollB := twoPollersSharingMemory(t)
	tk := simtest.Tasks(fleet.Devices(), 1, 5*time.Second)[0]
	tk.Get, tk.Retries = nil, 0
	key := tk.Site + "." + tk.HostKey

	run := func(p *poll.Poller) (uint64, task.HostRecord) {
		before := dev.Requests()
		var rec task.HostRecord
		if err := p.Poll(ctx, &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		return dev.Requests() - before, rec
	}
	reqA, recA := run(pollA)
	if recA.Error != nil || len(recA.Varbinds) != 10*17 {
		t.Fatalf("first poll: %v, %d varbinds", recA.Error, len(recA.Varbinds))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if q, ok := memB.Quirks(key); ok && q.NoBulk && q.Poller == "a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("poller b never heard that the device refuses GETBULK")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reqB, recB := run(pollB)
	if recB.Error != nil || len(recB.Varbinds) != len(recA.Varbinds) {
		t.Fatalf("second poll: %v, %d varbinds", recB.Error, len(recB.Varbinds))
	}
	// a paid one unanswered GETBULK, a one-varbind GETNEXT probe (answered:
	// the agent is up) and a one-repetition GETBULK probe (unanswered: no
	// GETBULK at any size); b went straight to GETNEXT.
	if reqA != reqB+3 {
		t.Fatalf("requests: %d for the poller that learnt, %d for the one that knew; want a difference of 3", reqA, reqB)
	}
}

// An agent silent on large requests teaches one poller the size it answers;
// the others apply it at once (not one request the agent ignores), and
// after six hours a poll tries the configured size again: learning it
// afresh while the agent is still silent, forgetting it once it answers.
func TestLearntRequestSizeSharedByPollers(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: 1, Interfaces: 10})
	dev := fleet.Devices()[0]
	dev.SetSilentAbove(6)
	ctx := context.Background()
	memA, memB, pollA, pollB := twoPollersSharingMemory(t)
	tk := simtest.Tasks(fleet.Devices(), 1, 20*time.Second)[0]
	key := tk.Site + "." + tk.HostKey
	run := func(p *poll.Poller) (silenced uint64) {
		t.Helper()
		before := dev.Silenced()
		var rec task.HostRecord
		if err := p.Poll(ctx, &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Error != nil || len(rec.Varbinds) != 1+10*17 {
			t.Fatalf("poll by %s: %v, %d varbinds", rec.Poller, rec.Error, len(rec.Varbinds))
		}
		return dev.Silenced() - before
	}
	learnt := func(mem *natsbus.DeviceMemory, what string, ok func(task.Quirks) bool) task.Quirks {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if q, _ := mem.Quirks(key); ok(q) {
				return q
			}
			if time.Now().After(deadline) {
				q, _ := mem.Quirks(key)
				t.Fatalf("the device memory never said %s: %+v", what, q)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := run(pollA); n == 0 {
		t.Fatal("the agent ignored no request: nothing to learn")
	}
	q := learnt(memB, "the size poller a learnt", func(q task.Quirks) bool { return q.MaxVarbinds > 0 && q.Poller == "a" })
	if q.MaxVarbinds > 6 || q.NoBulk {
		t.Fatalf("learnt %+v, want at most 6 varbinds per request and GETBULK kept", q)
	}
	if n := run(pollB); n != 0 {
		t.Fatalf("poller b, knowing the size, still sent %d requests the agent ignored", n)
	}

	// Six hours on: the configured size is tried again.
	old := q
	old.LearnedAt = time.Now().Add(-7 * time.Hour)
	if err := memA.Learn(ctx, key, old); err != nil {
		t.Fatal(err)
	}
	learnt(memB, "the aged entry", func(q task.Quirks) bool { return q.LearnedAt.Before(time.Now().Add(-6 * time.Hour)) })
	if n := run(pollB); n == 0 {
		t.Fatal("after six hours the poll did not try the configured size")
	}
	learnt(memA, "the size learnt again", func(q task.Quirks) bool {
		return q.Poller == "b" && q.MaxVarbinds > 0 && time.Since(q.LearnedAt) < time.Minute
	})
	dev.SetSilentAbove(0) // the agent was upgraded
	aged := old
	if err := memA.Learn(ctx, key, aged); err != nil {
		t.Fatal(err)
	}
	learnt(memB, "the aged entry", func(q task.Quirks) bool { return q.LearnedAt.Before(time.Now().Add(-6 * time.Hour)) })
	run(pollB)
	learnt(memA, "the size forgotten", func(q task.Quirks) bool { return q.MaxVarbinds == 0 && q.Poller == "b" })
}

// More tasks at once than nats.go keeps unacknowledged (4,000) all reach
// the queue, even from a server slow to acknowledge (here: every write
// synced to disk): none is lost to the client's "stalled" refusal.
func TestPublishManyTasksFromASlowServer(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "slow.conf")
	if err := os.WriteFile(conf, []byte("jetstream { sync_interval: always }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Run(t, natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ConfigFile: conf})
	d := natstest.Dispatcher(t, srv, natsbus.StreamOptions{AckWait: 5 * time.Second, MaxDeliver: 3})
	ctx := context.Background()
	now := time.Now()
	tasks := make([]task.PollTask, 12_000)
	for i := range tasks {
		key := fmt.Sprintf("h%05d", i)
		tasks[i] = task.PollTask{Schema: task.Schema, ID: task.SlotID(task.DefaultSite, key, now), Site: task.DefaultSite, Host: key, HostKey: key,
			Address: "127.0.0.1", Port: 161, Credentials: "public", Get: []string{".1.3.6.1.2.1.1.5.0"}, TimeoutMS: 100, PollTimeoutMS: 1000,
			MaxOids: 8, MaxRepetitions: 10, ScheduledAt: now, Deadline: now.Add(time.Minute)}
	}
	failed := map[string]int{}
	for _, err := range d.PublishTasks(ctx, tasks) {
		if err != nil {
			failed[err.Error()[strings.Index(err.Error(), ":")+1:]]++
		}
	}
	if len(failed) > 0 {
		t.Fatalf("tasks not published: %v", failed)
	}
	q, err := d.Queue(ctx, task.DefaultSite)
	if err != nil || q.Queued != uint64(len(tasks)) {
		t.Fatalf("%d tasks queued (%v), want %d", q.Queued, err, len(tasks))
	}
}
