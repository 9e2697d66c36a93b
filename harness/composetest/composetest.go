// Package composetest checks Flock under docker compose on this machine's
// Docker engine: the whole stack up, pollers scaled to three, one poller
// container killed mid-cycle, the nats container restarted, and everything
// torn down, counting what each step cost. The compose profile "tsdb" is on:
// the TSDB writer's samples must reach its VictoriaMetrics for every host,
// after the nats restart too.
package composetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/flock-snmp/flock/harness/composectl"
	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/harness/promtest"
)

// vmImage is the profile tsdb's VictoriaMetrics, built by scripts/images.sh
// from Debian's victoria-metrics.
const vmImage = "flock/victoria-metrics:local"

// Config sets up a run.
type Config struct {
	Compose  []string      // composectl.Command()
	Project  string        // compose project name
	Interval time.Duration // the compose config's poll interval
	Hosts    int           // hosts in the compose config
	Log      io.Writer
}

// Result is what the run counted.
type Result struct {
	Hosts, Cycles, Pollers int
	Shares                 []int
	Killed, Missed         int
	SubscriberRecords      int
	DispatcherRecords      int
	NATSRestartRecovered   bool
	LeftoverContainers     int
	HostsSeenBySubscriber  int
	// Healthy of Checked dispatcher and poller containers reported healthy
	// (their compose health checks ask /readyz) after the first cycles.
	Healthy, Checked int
	// AuthUsers are the users the NATS server saw the stack's connections
	// authenticate as (from its monitoring /connz), when it requires auth.
	AuthUsers []string
	// TSDBHosts and TSDBSysUpTimeHosts are the hosts with a flock_poll_up
	// and a sysUpTime sample in VictoriaMetrics (written by the tsdb-writer
	// service); TSDBHostsAfterRestart those with a flock_poll_up sample of a
	// poll started more than an interval after the nats restart.
	TSDBHosts, TSDBSysUpTimeHosts, TSDBHostsAfterRestart int
}

// Line is the run's last line.
func (r Result) Line() string {
	shares := make([]string, len(r.Shares))
	for i, s := range r.Shares {
		shares[i] = fmt.Sprint(s)
	}
	yes := "no"
	if r.NATSRestartRecovered {
		yes = "yes"
	}
	return fmt.Sprintf("compose-test: hosts=%d cycles=%d pollers=%d poller_shares=%s killed=%d missed=%d subscriber_records=%d dispatcher_records=%d nats_restart_recovered=%s leftover_containers=%d subscriber_hosts=%d healthy=%d/%d",
		r.Hosts, r.Cycles, r.Pollers, strings.Join(shares, "/"), r.Killed, r.Missed, r.SubscriberRecords, r.DispatcherRecords,
		yes, r.LeftoverContainers, r.HostsSeenBySubscriber, r.Healthy, r.Checked) + " nats_auth_users=" + strings.Join(r.AuthUsers, ",") +
		fmt.Sprintf(" tsdb_hosts=%d tsdb_sysuptime_hosts=%d tsdb_hosts_after_restart=%d", r.TSDBHosts, r.TSDBSysUpTimeHosts, r.TSDBHostsAfterRestart)
}

// Pass reports whether every check held.
func (r Result) Pass() bool {
	if r.Checked == 0 || r.Healthy != r.Checked || strings.Join(r.AuthUsers, ",") != "dispatcher,poller,reader" {
		return false
	}
	if r.Missed != 0 || !r.NATSRestartRecovered || r.LeftoverContainers != 0 || r.Killed != 1 || r.HostsSeenBySubscriber != r.Hosts {
		return false
	}
	if r.TSDBHosts != r.Hosts || r.TSDBSysUpTimeHosts != r.Hosts || r.TSDBHostsAfterRestart != r.Hosts {
		return false
	}
	for _, s := range r.Shares {
		if s == 0 {
			return false
		}
	}
	return len(r.Shares) == r.Pollers && r.Cycles >= 6
}

type runner struct {
	cfg  Config
	proj composectl.Project
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "compose-test: "+format+"\n", args...)
}

// Run runs the checks. The images must exist (make images).
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	r := &runner{cfg: cfg, proj: composectl.Project{Command: cfg.Compose, Name: cfg.Project}}
	if _, err := composectl.Docker(ctx, "image", "inspect", "-f", "{{.Id}}", vmImage); err != nil {
		return res, fmt.Errorf("no image %s (apt-get install victoria-metrics, then make images): %w", vmImage, err)
	}
	port, err := procs.FreePort()
	if err != nil {
		return res, err
	}
	vmPort, err := procs.FreePort()
	if err != nil {
		return res, err
	}
	// The profile tsdb: the tsdb-writer service and its victoria-metrics.
	r.proj.Env = []string{fmt.Sprintf("FLOCK_NATS_MONITOR_PORT=%d", port), fmt.Sprintf("FLOCK_VM_PORT=%d", vmPort), "COMPOSE_PROFILES=tsdb"}
	if os.Getenv("FLOCK_NATS_IMAGE") == "" {
		r.proj.Env = append(r.proj.Env, "FLOCK_NATS_IMAGE=flock/nats-server:local") // no registry here
	}
	res.Hosts, res.Pollers = cfg.Hosts, 3
	defer func() {
		// 5: down -v leaves nothing running, whatever happened.
		if _, derr := r.proj.Compose(context.Background(), "down", "-v", "--timeout", "20"); derr != nil && err == nil {
			err = derr
		}
		left, _ := r.proj.Containers(context.Background(), "")
		res.LeftoverContainers = len(left)
	}()
	if _, err := r.proj.Compose(ctx, "up", "-d", "--scale", "poller=3"); err != nil {
		return res, err
	}
	started := time.Now()
	r.logf("stack up: nats, snmpsim (%d devices), dispatcher, 3 pollers, results, tsdb-writer, victoria-metrics", cfg.Hosts)
	pollers, err := r.proj.Containers(ctx, "poller")
	if err != nil {
		return res, err
	}
	if len(pollers) != 3 {
		return res, fmt.Errorf("%d poller containers, want 3", len(pollers))
	}
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	// 1, 2: two full cycles with three pollers.
	if err := sleep(3 * cfg.Interval); err != nil {
		return res, err
	}
	// The health checks (/readyz through the binaries' --probe) pass.
	disp, err := r.proj.Containers(ctx, "dispatcher")
	if err != nil {
		return res, err
	}
	for _, id := range append(disp, pollers...) {
		res.Checked++
		status, err := composectl.Docker(ctx, "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
		if err == nil && strings.TrimSpace(status) == "healthy" {
			res.Healthy++
		} else {
			r.logf("container %s health: %q %v", id[:12], strings.TrimSpace(status), err)
		}
	}
	// Authentication is on, and each service is its role.
	if res.AuthUsers, err = authUsers(ctx, port); err != nil {
		return res, err
	}
	// 3: one poller killed in the middle of a cycle.
	if _, err := composectl.Docker(ctx, "kill", pollers[0]); err != nil {
		return res, err
	}
	res.Killed = 1
	r.logf("poller container %s killed", pollers[0][:12])
	if err := sleep(2*cfg.Interval + cfg.Interval/2); err != nil {
		return res, err
	}
	// 4: the nats container restarted.
	if _, err := r.proj.Compose(ctx, "restart", "nats"); err != nil {
		return res, err
	}
	natsBack := time.Now()
	r.logf("nats restarted")
	if err := sleep(3 * cfg.Interval); err != nil {
		return res, err
	}
	ended := time.Now()

	recs, err := r.dispatcherRecords(ctx)
	if err != nil {
		return res, err
	}
	res.DispatcherRecords = len(recs)
	subHosts, subCount, err := r.subscriberRecords(ctx)
	if err != nil {
		return res, err
	}
	res.SubscriberRecords, res.HostsSeenBySubscriber = subCount, len(subHosts)
	if err := r.tsdbSamples(ctx, vmPort, natsBack, ended, &res); err != nil {
		return res, err
	}
	res.Cycles = int(ended.Sub(started) / cfg.Interval)

	// Shares per initial poller container (poller names are <hostname>-<pid>;
	// a container's hostname is its short id).
	shares := map[string]int{}
	slots := map[string][]int64{}
	recovered := map[string]bool{}
	for _, rec := range recs {
		shares[strings.SplitN(rec.Poller, "-", 2)[0]]++
		slots[rec.Host] = append(slots[rec.Host], rec.slot)
		if time.UnixMilli(rec.slot).After(natsBack.Add(cfg.Interval)) {
			recovered[rec.Host] = true
		}
	}
	for _, id := range pollers {
		res.Shares = append(res.Shares, shares[id[:12]])
	}
	res.NATSRestartRecovered = len(recovered) == cfg.Hosts
	// No host misses a cycle: its slots are consecutive from its first
	// record to its last (the last cycle may still be in flight).
	iv := cfg.Interval.Milliseconds()
	for host, s := range slots {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		for i := 1; i < len(s); i++ {
			if gap := s[i] - s[i-1]; gap > iv {
				res.Missed += int(gap/iv) - 1
				r.logf("host %s: no record between slots %d and %d", host, s[i-1], s[i])
			}
		}
	}
	if len(slots) != cfg.Hosts {
		res.Missed += cfg.Hosts - len(slots)
	}
	return res, nil
}

type record struct {
	Host   string `json:"host"`
	TaskID string `json:"task_id"`
	Poller string `json:"poller"`
	slot   int64
}

// dispatcherRecords reads the JSON lines the dispatcher wrote to stdout
// (its default sink), one per record; log lines are on stderr.
func (r *runner) dispatcherRecords(ctx context.Context) ([]record, error) {
	ids, err := r.proj.Containers(ctx, "dispatcher")
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("dispatcher container: %v %v", ids, err)
	}
	cmd := exec.CommandContext(ctx, "docker", "logs", ids[0])
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, io.Discard
	if err := cmd.Run(); err != nil {
		return nil, err
	}
	var out []record
	seen := map[string]bool{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var rec record
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.TaskID == "" {
			continue
		}
		if seen[rec.TaskID] {
			return nil, fmt.Errorf("task %s written twice by the dispatcher", rec.TaskID)
		}
		seen[rec.TaskID] = true
		fmt.Sscanf(rec.TaskID[strings.LastIndex(rec.TaskID, "@")+1:], "%d", &rec.slot)
		out = append(out, rec)
	}
	return out, sc.Err()
}

// subscriberRecords counts the lines the example subscriber printed.
func (r *runner) subscriberRecords(ctx context.Context) (map[string]bool, int, error) {
	ids, err := r.proj.Containers(ctx, "results")
	if err != nil || len(ids) != 1 {
		return nil, 0, fmt.Errorf("results container: %v %v", ids, err)
	}
	out, err := composectl.Docker(ctx, "logs", ids[0])
	if err != nil {
		return nil, 0, err
	}
	hosts := map[string]bool{}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "record host=") {
			continue
		}
		n++
		hosts[strings.Fields(strings.TrimPrefix(line, "record host="))[0]] = true
	}
	return hosts, n, nil
}

// tsdbSamples asks VictoriaMetrics (its port published on loopback) how
// many hosts have samples there, as of ended: over the whole run, and of
// polls started more than an interval after the nats restart. The writer
// writes in batches behind the polls, so it waits up to two more intervals
// for every host to arrive.
func (r *runner) tsdbSamples(ctx context.Context, port int, natsBack, ended time.Time, res *Result) error {
	vm := &promtest.Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	window := ended.Sub(natsBack.Add(r.cfg.Interval)).Round(time.Second)
	hosts := func(query string) (int, error) {
		out, err := vm.Query(ctx, "count(count by (host) ("+query+"))", ended)
		if err != nil || len(out) == 0 {
			return 0, err
		}
		return int(out[0].Value), nil
	}
	deadline := time.Now().Add(2 * r.cfg.Interval)
	for {
		var err error
		if res.TSDBHosts, err = hosts("flock_poll_up"); err != nil {
			return fmt.Errorf("victoria-metrics: %w", err)
		}
		if res.TSDBSysUpTimeHosts, err = hosts("sysUpTime"); err != nil {
			return fmt.Errorf("victoria-metrics: %w", err)
		}
		if res.TSDBHostsAfterRestart, err = hosts(fmt.Sprintf("count_over_time(flock_poll_up[%ds])", int(window.Seconds()))); err != nil {
			return fmt.Errorf("victoria-metrics: %w", err)
		}
		n := r.cfg.Hosts
		if res.TSDBHosts == n && res.TSDBSysUpTimeHosts == n && res.TSDBHostsAfterRestart == n {
			return nil
		}
		if time.Now().After(deadline) {
			r.logf("victoria-metrics: hosts with flock_poll_up %d, with sysUpTime %d, polled after the nats restart %d; want %d",
				res.TSDBHosts, res.TSDBSysUpTimeHosts, res.TSDBHostsAfterRestart, n)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// authUsers asks the NATS server's monitoring port (published on loopback)
// whether it requires authentication and which users its clients are.
func authUsers(ctx context.Context, port int) ([]string, error) {
	get := func(path string, v any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("nats monitoring %s: %w", path, err)
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var varz struct {
		AuthRequired bool `json:"auth_required"`
	}
	if err := get("/varz", &varz); err != nil {
		return nil, err
	}
	if !varz.AuthRequired {
		return nil, nil
	}
	var connz struct {
		Connections []struct {
			User string `json:"authorized_user"`
		} `json:"connections"`
	}
	if err := get("/connz?auth=true&limit=1000", &connz); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range connz.Connections {
		seen[c.User] = true
	}
	users := make([]string, 0, len(seen))
	for u := range seen {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, nil
}
