package natsbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

func clusterTasks(n int, from int) []task.PollTask {
	now := time.Now()
	out := make([]task.PollTask, n)
	for i := range out {
		key := fmt.Sprintf("h%03d", from+i)
		out[i] = task.PollTask{Schema: task.Schema, ID: task.SlotID(task.DefaultSite, key, now), Site: task.DefaultSite, Host: key, HostKey: key,
			Address: "127.0.0.1", Port: 161, Credentials: "public", Get: []string{".1.3.6.1.2.1.1.5.0"}, TimeoutMS: 100, PollTimeoutMS: 500,
			ScheduledAt: now, Deadline: now.Add(time.Minute)}
	}
	return out
}

// nats.replicas on a 3-node cluster: streams and buckets made with R1 are
// scaled to R3 in place (nothing queued is lost, and the first
// publication after does not stall), and the task queue survives its
// stream leader's node.
func TestReplicatedStreamsSurviveTheirLeader(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: c.URL(), Name: "dispatcher"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: 5 * time.Second, MaxDeliver: 3, Replicas: 1}
	if err := d.EnsureStreams(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Bucket(ctx, natsbus.HostStateBucket, "test"); err != nil {
		t.Fatal(err)
	}
	if errs := d.PublishTasks(ctx, clusterTasks(5, 0)); errs[0] != nil || errs[4] != nil {
		t.Fatalf("publish: %v", errs)
	}
	replicas := func(want int) {
		t.Helper()
		for _, name := range []string{natsbus.TaskStream, natsbus.ResultStream, natsbus.PollerStream, "KV_" + natsbus.DeviceBucket, "KV_" + natsbus.HostStateBucket} {
			s, err := d.JetStream().Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if r := max(s.CachedInfo().Config.Replicas, 1); r != want {
				t.Fatalf("%s has %d replicas, want %d", name, r, want)
			}
		}
	}
	replicas(1)

	// The same streams with nats.replicas 3: scaled up in place, each
	// waited for until its followers are current.
	o.Replicas = 3
	if err := d.EnsureStreams(ctx, o); err != nil {
		t.Fatal(err)
	}
	replicas(3)
	s, err := d.JetStream().Stream(ctx, natsbus.TaskStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("%s after scaling up: %+v %v", natsbus.TaskStream, info, err)
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current {
			t.Fatalf("%s: follower %s not current after EnsureStreams returned", natsbus.TaskStream, r.Name)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	errs := d.PublishTasks(pctx, clusterTasks(5, 5))
	pcancel()
	if errs[0] != nil || errs[4] != nil {
		t.Fatalf("first publication after scaling up: %v", errs)
	}
	if q, err := d.Queue(ctx, task.DefaultSite); err != nil || q.Queued != 10 || q.Pending != 10 {
		t.Fatalf("queue after scaling up: %+v, %v; want the 5 tasks from before and 5 new", q, err)
	}

	leader := c.Node(info.Cluster.Leader)
	t.Logf("stopping %s, the leader of %s (this client is on %s)", info.Cluster.Leader, natsbus.TaskStream, d.Conn().ConnectedServerName())
	c.Stop(leader)
	// The queue goes on with the two others: what was queued is still
	// there, and new tasks are taken.
	more := clusterTasks(5, 10) // published again with the same ids until acknowledged: a copy is a no-op
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if errs = d.PublishTasks(ctx, more); errs[0] == nil && errs[4] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publication after the leader's node stopped: %v", errs)
		}
	}
	// The consumer elects its own leader apart from the stream's: until it
	// has one its info answers 503, and its new leader's count of pending
	// tasks may lag the stream a moment (both seen on CI), so ask again
	// meanwhile.
	var q natsbus.QueueStats
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		q, err = d.Queue(ctx, task.DefaultSite)
		if err == nil && q.Queued == 15 && q.Pending == 15 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || q.Queued != 15 || q.Pending != 15 {
		t.Fatalf("queue after losing the stream leader: %+v, %v; want the 10 tasks from before and 5 new", q, err)
	}
	c.Start(leader) // back: it catches up as a follower
	c.WaitForLeader()

	// A dispatcher whose configuration says 1 (or lacks nats.replicas)
	// does not take the copies away: it refuses, naming what to do.
	o.Replicas = 1
	err = d.EnsureStreams(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "stream FLOCK_TASKS has 3 replicas and nats.replicas is 1") ||
		!strings.Contains(err.Error(), "never down") || !strings.Contains(err.Error(), "nats stream edit --replicas 1") {
		t.Fatalf("EnsureStreams with R1 over R3 streams: %v", err)
	}
	replicas(3)
}

// Three replicas on one server cannot be: the error says so, and why.
func TestReplicasBeyondTheServers(t *testing.T) {
	srv := natstest.RunJetStream(t)
	d := natstest.Connect(t, srv, "dispatcher")
	err := d.EnsureStreams(context.Background(), natsbus.StreamOptions{Sites: []string{task.DefaultSite}, AckWait: time.Second, MaxDeliver: 1, Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "stream FLOCK_TASKS with 3 replicas (nats.replicas)") ||
		!strings.Contains(err.Error(), "needs a JetStream cluster of at least 3 servers") {
		t.Fatalf("R3 on one server: %v", err)
	}
}
