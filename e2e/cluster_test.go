package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

const (
	clusterHosts    = 40
	clusterInterval = 10 * time.Second
)

// TestClusterSurvivesNodeLoss runs the dispatcher and two pollers on an
// in-process 3-node JetStream cluster with nats.replicas 3, kills the node
// that leads the task stream mid-cycle and brings it back later, then
// restarts the three nodes one by one. Across all of it no slot of any host
// goes without a record, and no record is written twice but those the
// dispatcher counted as possible duplicates.
func TestClusterSurvivesNodeLoss(t *testing.T) {
	fleet := simtest.Start(t, snmpsim.Config{Devices: clusterHosts, Interfaces: 1})
	c := natstest.RunCluster(t, 3)
	var hosts bytes.Buffer
	if err := fleet.WriteHosts(&hosts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sink := filepath.Join(dir, "records.jsonl")
	cfgPath := filepath.Join(dir, "flock.yaml")
	cfg := fmt.Sprintf(`nats: {url: %q, ack_wait: 2s, replicas: 3}
dispatcher: {name: disp-cluster}
poller: {concurrency: 32, heartbeat: 1s}
sinks: [{type: file, path: %s}]
defaults: {interval: %s, timeout: 300ms, retries: 1, get: [sysName.0, sysUpTime.0]}
hosts:
%s`, c.URL(), sink, clusterInterval, hosts.String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"FLOCK_LOG_FORMAT=json", "FLOCK_METRICS_LISTEN=127.0.0.1:0"}
	disp := start(t, "dispatcher", "dispatcher", env, "--config", cfgPath)
	for i := 1; i <= 2; i++ {
		start(t, fmt.Sprintf("poller-%d", i), "poller", append(env, fmt.Sprintf("FLOCK_POLLER_NAME=poller-%d", i)), "--config", cfgPath)
	}
	waitUntil(t, "a record of every host", func() bool { return len(decodeAll(t, completeLines(sink))) == clusterHosts })
	// Slots missed while the cluster settled at the start (the streams
	// scaled, their leaders elected) are reported by now: a slot is missed
	// an interval and dispatch.MissedGrace after it began.
	time.Sleep(dispatch.MissedGrace(&task.PollTask{PollTimeoutMS: 1000}))
	began := time.Now()
	time.Sleep(clusterInterval / 2) // mid-cycle

	// The node leading the task stream, found through the servers' API,
	// dies (as a crash would to its clients) and comes back two cycles later.
	leader := -1
	for i, s := range c.Nodes {
		if s.JetStreamIsStreamLeader("$G", natsbus.TaskStream) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("no node leads %s", natsbus.TaskStream)
	}
	t.Logf("killing n%d, the leader of %s", leader+1, natsbus.TaskStream)
	c.Stop(leader)
	time.Sleep(clusterInterval + clusterInterval/2)
	c.Start(leader)
	waitCurrent(t, c, leader)
	time.Sleep(clusterInterval / 2)

	// A rolling restart: each node in turn, the next once the last is
	// current again.
	for i := range c.Nodes {
		t.Logf("restarting n%d", i+1)
		c.Stop(i)
		time.Sleep(clusterInterval / 3)
		c.Start(i)
		waitCurrent(t, c, i)
	}
	time.Sleep(clusterInterval + clusterInterval/2)
	end := time.Now()
	_ = disp.cmd.Process.Signal(syscall.SIGTERM)
	if code := disp.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("dispatcher exit %d", code)
	}

	written := map[string]int{}
	slots := map[string][]time.Time{}
	for _, l := range completeLines(sink) {
		r, err := task.DecodeRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		written[r.TaskID]++
		if written[r.TaskID] == 1 {
			slots[r.Host] = append(slots[r.Host], slotOf(t, r.TaskID))
		}
	}
	// No slot from the first full cycle to the last finished one goes
	// without a record.
	missing := 0
	for _, d := range fleet.Devices() {
		s := slots[d.Name]
		sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
		have := map[time.Time]bool{}
		for _, at := range s {
			have[at] = true
		}
		if len(s) == 0 {
			t.Fatalf("no record of %s", d.Name)
		}
		for at := s[0]; at.Add(2 * clusterInterval).Before(end); at = at.Add(clusterInterval) {
			if at.After(began) && !have[at] {
				missing++
				t.Errorf("no record of %s's slot %s", d.Name, at.Format("15:04:05.000"))
			}
		}
	}
	// A record written twice is one the dispatcher named and counted.
	named := map[string]bool{}
	stopped := map[string]any{}
	for _, l := range strings.Split(disp.stderr.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, "possible duplicate:") {
			named[fmt.Sprint(e["task_id"])] = true
		} else if msg == "stopped" {
			stopped = e
		}
	}
	dups := 0
	for id, n := range written {
		if n > 1 {
			dups += n - 1
			if !named[id] {
				t.Errorf("record %s written %d times, not named as a possible duplicate", id, n)
			}
		}
	}
	t.Logf("records %d, missing slots %d, duplicates %d (named %d); dispatcher: %v", len(written), missing, dups, len(named), stopped)
	if m := missedBySite(disp, began); len(m) != 0 || stopped["terms"] != 1.0 {
		t.Errorf("the dispatcher reported missed slots %v after the settling, in %v terms; want none, in 1", m, stopped["terms"])
	}
}

// slotOf is the slot start a task id names (<site>.<hostkey>@<unix ms>).
func slotOf(t *testing.T, id string) time.Time {
	t.Helper()
	var ms int64
	if _, err := fmt.Sscanf(id[strings.LastIndex(id, "@")+1:], "%d", &ms); err != nil {
		t.Fatalf("task id %q: %v", id, err)
	}
	return time.UnixMilli(ms)
}

// waitCurrent waits until node i is back in the cluster: JetStream current,
// and the task stream's replica on it caught up.
func waitCurrent(t *testing.T, c *natstest.Cluster, i int) {
	t.Helper()
	c.WaitForLeader()
	// Every stream and bucket, as an operator's rolling restart waits for:
	// restarting the next node while the lease bucket is current on one
	// node only leaves it without a quorum, and the lease runs out (seen on
	// CI when only the task stream was waited for).
	streams := []string{natsbus.TaskStream, natsbus.ResultStream, natsbus.PollerStream,
		"KV_" + natsbus.LeaseBucket, "KV_" + natsbus.HostStateBucket, "KV_" + natsbus.DeviceBucket}
	waitUntil(t, fmt.Sprintf("n%d current", i+1), func() bool {
		s := c.Nodes[i]
		if !s.JetStreamIsCurrent() {
			return false
		}
		for _, name := range streams {
			if !s.JetStreamIsStreamCurrent("$G", name) {
				return false
			}
		}
		return true
	})
}
