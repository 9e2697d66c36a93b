package clustertest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestMissing(t *testing.T) {
	const iv = 10
	for _, c := range []struct {
		name      string
		slots     []int64
		from, due int64
		want      []int64
	}{
		{"none", []int64{100, 110, 120}, 0, 125, nil},
		{"a gap", []int64{100, 130, 140}, 0, 145, []int64{110, 120}},
		{"the tail", []int64{100, 110}, 0, 135, []int64{120, 130}},
		{"the head, from the start of scheduling", []int64{120, 130}, 95, 135, []int64{110, 100}},
		{"unordered", []int64{140, 100, 120}, 0, 140, []int64{110, 130}},
	} {
		if got := missing(c.slots, iv, c.from, c.due); !slices.Equal(got, c.want) {
			t.Errorf("%s: missing = %v, want %v", c.name, got, c.want)
		}
	}
}

// A view of each node as /jsz gives it: the stream's leader alone lists
// its followers' state.
func views(t *testing.T, followerCurrent bool) map[string]*jsz {
	t.Helper()
	leader := `{"meta_cluster": {"leader": "nats-1"}, "account_details": [{"name": "$G", "stream_detail": [
		{"name": "FLOCK_TASKS", "config": {"num_replicas": 3},
		 "cluster": {"leader": "nats-2", "replicas": [{"name": "nats-1", "current": true}, {"name": "nats-3", "current": CUR}]},
		 "consumer_detail": [
			{"name": "pollers-default", "config": {"durable_name": "pollers-default"},
			 "cluster": {"leader": "nats-2", "replicas": [{"name": "nats-1", "current": true}, {"name": "nats-3", "current": true}]}},
			{"name": "eph", "config": {}, "cluster": {"leader": "nats-3"}}]}]}]}`
	follower := `{"meta_cluster": {"leader": "nats-1"}, "account_details": [{"name": "$G", "stream_detail": [
		{"name": "FLOCK_TASKS", "config": {"num_replicas": 3},
		 "cluster": {"leader": "nats-2", "replicas": [{"name": "nats-1", "current": false}, {"name": "nats-3", "current": false}]}}]}]}`
	out := map[string]*jsz{}
	for node, text := range map[string]string{"nats-1": follower, "nats-2": strings.Replace(leader, "CUR", map[bool]string{true: "true", false: "false"}[followerCurrent], 1), "nats-3": follower} {
		var j jsz
		if err := json.Unmarshal([]byte(text), &j); err != nil {
			t.Fatal(err)
		}
		out[node] = &j
	}
	return out
}

func TestSettled(t *testing.T) {
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	if why := settled(nodes, views(t, true)); why != "" {
		t.Errorf("settled: %q, want settled", why)
	}
	if why := settled(nodes, views(t, false)); why != "stream FLOCK_TASKS: 1 of 2 followers current" {
		t.Errorf("a follower behind: %q", why)
	}
	v := views(t, true)
	delete(v, "nats-3")
	if why := settled(nodes, v); why != "2 of 3 nodes answer /jsz" {
		t.Errorf("a node down: %q", why)
	}
}

func TestLine(t *testing.T) {
	r := Result{Nodes: 3, Killed: "nats-2", RollingRestarts: 3, LeafSite: "branch-7", LeafCutRecovered: true}
	const want = "cluster-test: nodes=3 killed=nats-2 rolling_restart=yes missed=0 duplicates=0 leaf_site=branch-7 leaf_cut_recovered=yes leftover_containers=0"
	if r.Line() != want || !r.Pass() {
		t.Errorf("%s (pass %v), want %s", r.Line(), r.Pass(), want)
	}
	r.RollingMissed = 1
	if r.Pass() || !strings.Contains(r.Line(), "rolling_restart=no") {
		t.Errorf("a slot missed in the rolling restart: %s, pass %v", r.Line(), r.Pass())
	}
}
