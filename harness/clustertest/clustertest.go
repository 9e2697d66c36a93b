// Package clustertest checks Flock on a three-node NATS cluster under docker
// compose (docker-compose.cluster.yml) on this machine's Docker engine: one
// node killed mid-cycle, a rolling restart of all three, a remote site's
// leaf link cut for half a minute, with every slot's record counted.
package clustertest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flock-snmp/flock/harness/composectl"
	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/internal/task"
)

// Nodes is how many NATS nodes docker-compose.cluster.yml runs: nats-1..3.
const Nodes = 3

// Config sets up a run.
type Config struct {
	Compose  []string      // composectl.Command()
	File     string        // the compose file, docker-compose.cluster.yml
	Project  string        // compose project name
	Interval time.Duration // the inventory's poll interval
	// Hosts are the inventory's hosts by site (config/compose-cluster.yaml).
	Hosts    map[string]int
	LeafSite string        // the site behind the leaf node nats-leaf
	Pollers  int           // pollers of site default
	AckWait  time.Duration // the inventory's nats.ack_wait: the redelivery window
	Cut      time.Duration // how long the leaf's link to the hub is cut
	// LogDir, when set, receives every container's logs (<service>_<n>.log)
	// when a check fails, before the stack is torn down.
	LogDir string
	Log    io.Writer
}

// Result is what the run counted.
type Result struct {
	Nodes  int
	Killed string // the node killed: the leader of the task stream then
	// RollingRestarts are the nodes restarted one after the other, each
	// back in the cluster before the next; RollingMissed the slots of the
	// hub's site missed across them.
	RollingRestarts, RollingMissed int
	// Missed are the slots with no record between each host's first
	// record and the end (and before its first record, from when the
	// dispatcher began scheduling), but for the leaf site's slots while its
	// link was cut (CutMissed, with an interval either side), and but for
	// the slots that began within the redelivery window of the kill
	// (KillMissed: from an interval before it to an interval and the
	// consumer's ack wait after; a task stored while the stream elected its
	// leader and handed to a pull request that died with the node comes
	// back only after the ack wait, possibly past its slot).
	Missed, CutMissed, KillMissed int
	// Duplicates are task ids written more than once that the dispatcher
	// did not name as possible duplicates.
	Duplicates int
	Records    int
	LeafSite   string
	// LeafCutRecovered: every host of the leaf site polled again within
	// an interval of the link's return, the dispatcher reported the cut's
	// missed slots (ReportedMissed, by site) and nothing stayed queued.
	LeafCutRecovered   bool
	ReportedMissed     map[string]int
	LeftoverContainers int
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// RollingRestart reports whether all the nodes were restarted in turn with
// no slot of the hub's site missed.
func (r Result) RollingRestart() bool { return r.RollingRestarts == Nodes && r.RollingMissed == 0 }

// Line is the run's last line.
func (r Result) Line() string {
	return fmt.Sprintf("cluster-test: nodes=%d killed=%s rolling_restart=%s missed=%d duplicates=%d leaf_site=%s leaf_cut_recovered=%s leftover_containers=%d",
		r.Nodes, cmp.Or(r.Killed, "none"), yesNo(r.RollingRestart()), r.Missed, r.Duplicates, r.LeafSite, yesNo(r.LeafCutRecovered), r.LeftoverContainers)
}

// clock is t's UTC time of day, as the slots are logged.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }

// Pass reports whether every check held.
func (r Result) Pass() bool {
	return r.Nodes == Nodes && r.Killed != "" && r.RollingRestart() && r.Missed == 0 && r.Duplicates == 0 &&
		r.LeafCutRecovered && r.LeftoverContainers == 0
}

type runner struct {
	cfg   Config
	proj  composectl.Project
	nodes []string       // nats-1, nats-2, nats-3
	ports map[string]int // each node's monitoring port on 127.0.0.1
	// healing is what is left of the time the nodes may take, all told,
	// to come back after the kill and the restarts: it bounds the run.
	healing time.Duration
}

// healingBudget bounds the waits for nodes to come back, all together
// (they take seconds each when all is well).
const healingBudget = 3 * time.Minute

// wait polls ok every second until it holds, or for at most 90 s and what
// is left of the healing budget; it returns the last reason ok gave.
func (r *runner) wait(ctx context.Context, ok func() string) (bool, string) {
	start := time.Now()
	defer func() { r.healing -= time.Since(start) }()
	last := ""
	for deadline := start.Add(min(90*time.Second, r.healing)); ; {
		if last = ok(); last == "" {
			return true, ""
		}
		if !time.Now().Before(deadline) || sleep(ctx, time.Second) != nil {
			return false, last
		}
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "cluster-test: "+format+"\n", args...)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// saveLogs writes every container's logs of the project to
// LogDir/<project>/<service>_<n>.log (stdout, then stderr).
func (r *runner) saveLogs(ctx context.Context) (string, error) {
	out, err := composectl.Docker(ctx, "ps", "-a", "--filter", "label=com.docker.compose.project="+r.cfg.Project,
		"--format", `{{.ID}} {{.Label "com.docker.compose.service"}}_{{.Label "com.docker.compose.container-number"}}`)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(r.cfg.LogDir, r.cfg.Project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		file, err := os.Create(filepath.Join(dir, f[1]+".log"))
		if err != nil {
			return "", err
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "docker", "logs", "--timestamps", f[0])
		cmd.Stdout, cmd.Stderr = file, &stderr
		err = cmd.Run()
		file.Write(stderr.Bytes())
		file.Close()
		if err != nil {
			return "", fmt.Errorf("docker logs %s: %w", f[1], err)
		}
	}
	return dir, nil
}

// Run runs the checks. The images must exist (make images).
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	r := &runner{cfg: cfg, ports: map[string]int{}, healing: healingBudget,
		proj: composectl.Project{Command: cfg.Compose, File: cfg.File, Name: cfg.Project}}
	res.LeafSite, res.Nodes = cfg.LeafSite, Nodes
	used := map[int]bool{}
	for i := 1; i <= Nodes; i++ {
		port, err := procs.FreePort()
		for err == nil && used[port] {
			port, err = procs.FreePort()
		}
		if err != nil {
			return res, err
		}
		used[port] = true
		name := fmt.Sprintf("nats-%d", i)
		r.nodes = append(r.nodes, name)
		r.ports[name] = port
		r.proj.Env = append(r.proj.Env, fmt.Sprintf("FLOCK_NATS_%d_MONITOR_PORT=%d", i, port))
	}
	if os.Getenv("FLOCK_NATS_IMAGE") == "" {
		r.proj.Env = append(r.proj.Env, "FLOCK_NATS_IMAGE=flock/nats-server:local") // no registry here
	}
	defer func() {
		if cfg.LogDir != "" && (err != nil || !res.Pass()) {
			if dir, lerr := r.saveLogs(context.Background()); lerr != nil {
				r.logf("container logs not saved: %v", lerr)
			} else {
				r.logf("container logs saved in %s", dir)
			}
		}
		// down -v leaves nothing running, whatever happened.
		if _, derr := r.proj.Compose(context.Background(), "down", "-v", "--timeout", "20"); derr != nil && err == nil {
			err = derr
		}
		left, _ := r.proj.Containers(context.Background(), "")
		res.LeftoverContainers = len(left)
	}()
	iv := cfg.Interval

	// a: the stack up; records of every host of both sites, two cycles in.
	if _, err := r.proj.Compose(ctx, "up", "-d", "--scale", fmt.Sprintf("poller=%d", cfg.Pollers)); err != nil {
		return res, err
	}
	started := time.Now()
	r.logf("stack up: %s, dispatcher, %d pollers of site default; site %s: nats-leaf, poller-%[3]s (monitoring ports %d %d %d)",
		strings.Join(r.nodes, " "), cfg.Pollers, cfg.LeafSite, r.ports["nats-1"], r.ports["nats-2"], r.ports["nats-3"])
	for {
		recs, err := r.dispatcherOut(ctx)
		if err != nil {
			return res, err
		}
		seen := hostsBySite(recs.records, func(record) bool { return true })
		all := true
		for site, n := range cfg.Hosts {
			all = all && seen[site] == n
		}
		if all && time.Since(started) >= 2*iv {
			r.logf("records of every host of both sites after %.0fs", time.Since(started).Seconds())
			break
		}
		if time.Since(started) > 2*time.Minute {
			r.logf("after 2 minutes, hosts with records by site: %v (want %v)", seen, cfg.Hosts)
			break
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return res, err
		}
	}

	// b: the task stream's leader killed mid-cycle, started again later.
	leader, err := r.streamLeader(ctx, "FLOCK_TASKS")
	if err != nil {
		return res, err
	}
	ctr, err := r.proj.Container(ctx, leader)
	if err != nil {
		return res, err
	}
	if _, err := composectl.Docker(ctx, "kill", ctr); err != nil {
		return res, err
	}
	res.Killed = leader
	killedAt := time.Now()
	r.logf("%s, the leader of FLOCK_TASKS, killed (SIGKILL) at %s", leader, clock(killedAt))
	if err := sleep(ctx, 2*iv+iv/2); err != nil {
		return res, err
	}
	if _, err := composectl.Docker(ctx, "start", ctr); err != nil {
		return res, err
	}
	back := time.Now()
	w := countWindows{kill: killedAt}
	if r.waitNode(ctx, leader) && r.waitSettled(ctx) {
		r.logf("%s started again at %s: back in the cluster, every stream's replicas current, after %.1fs", leader, clock(back), time.Since(back).Seconds())
		if err := r.restartAndCut(ctx, &res, &w); err != nil {
			return res, err
		}
	} else {
		r.logf("no rolling restart, no cut: the cluster did not heal from the kill")
	}

	// e: what the dispatcher wrote and logged.
	err = r.figures(ctx, &res, w)
	return res, err
}

// restartAndCut restarts the nodes one after the other (c), then cuts the
// leaf's link for a while (d), noting when each happened in w.
func (r *runner) restartAndCut(ctx context.Context, res *Result, w *countWindows) error {
	cfg, iv := r.cfg, r.cfg.Interval
	// c: a rolling restart, one node after the other.
	w.rollStart = time.Now()
	for _, node := range r.nodes {
		ctr, err := r.proj.Container(ctx, node)
		if err != nil {
			return err
		}
		t := time.Now()
		if _, err := composectl.Docker(ctx, "restart", "--time", "10", ctr); err != nil {
			return err
		}
		if !r.waitNode(ctx, node) || !r.waitSettled(ctx) {
			break
		}
		res.RollingRestarts++
		r.logf("rolling restart: %s restarted at %s, back in the cluster, every stream's replicas current, after %.1fs", node, clock(t), time.Since(t).Seconds())
	}
	w.rollEnd = time.Now()
	if err := sleep(ctx, iv); err != nil {
		return err
	}

	// d: the leaf's link to the hub cut, then back.
	leaf, err := r.proj.Container(ctx, "nats-leaf")
	if err != nil {
		return err
	}
	hub := r.cfg.Project + "_hub"
	if _, err := composectl.Docker(ctx, "network", "disconnect", hub, leaf); err != nil {
		return err
	}
	w.cutStart = time.Now()
	r.logf("site %s cut off at %s: nats-leaf disconnected from network %s for %s", cfg.LeafSite, clock(w.cutStart), hub, cfg.Cut)
	if err := sleep(ctx, cfg.Cut); err != nil {
		return err
	}
	if _, err := composectl.Docker(ctx, "network", "connect", "--alias", "nats-leaf", hub, leaf); err != nil {
		return err
	}
	cutEnd := time.Now()
	w.cutEnd = cutEnd
	nets, _ := composectl.Docker(ctx, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", leaf)
	r.logf("nats-leaf connected to %s again at %s (its networks: %s)", hub, clock(cutEnd), strings.TrimSpace(nets))
	// Three cycles at least; longer (up to six) while the site has not
	// polled every host since.
	polledAgain := time.Time{}
	for {
		if polledAgain.IsZero() {
			recs, err := r.dispatcherOut(ctx)
			if err != nil {
				return err
			}
			after := hostsBySite(recs.records, func(rec record) bool { return rec.slot > cutEnd.UnixMilli() })
			if after[cfg.LeafSite] == cfg.Hosts[cfg.LeafSite] {
				polledAgain = time.Now()
				r.logf("site %s: every host polled again %.0fs after the link came back", cfg.LeafSite, polledAgain.Sub(cutEnd).Seconds())
			}
		}
		since := time.Since(cutEnd)
		if since >= 3*iv+iv/2 && (!polledAgain.IsZero() || since >= 6*iv) {
			break
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// figures counts what the run cost from the dispatcher's records and logs
// and the leaf site's consumer.
func (r *runner) figures(ctx context.Context, res *Result, w countWindows) error {
	cfg, iv := r.cfg, r.cfg.Interval
	pending, ackPending, err := r.consumerBacklog(ctx, "FLOCK_TASKS", task.PollerConsumer(cfg.LeafSite))
	if err != nil {
		r.logf("%v", err)
		pending = math.MaxInt32 // unknown: not shown empty
	}
	out, err := r.dispatcherOut(ctx)
	if err != nil {
		return err
	}
	w.end = time.Now()
	end, cutEnd := w.end, w.cutEnd
	r.count(res, out, w)
	// (i) every host of the leaf site has records of slots from an
	// interval after the link came back; (iii) nothing of its stays queued:
	// its last cycle's records are in, its consumer holds no more than a
	// cycle of tasks.
	recovered, current := 0, 0
	last := map[string]int64{}
	for _, rec := range out.records {
		if rec.site == cfg.LeafSite && rec.slot > last[rec.host] {
			last[rec.host] = rec.slot
		}
	}
	for _, s := range last {
		if s >= cutEnd.Add(iv).UnixMilli() {
			recovered++
		}
		if s >= end.Add(-2*iv).UnixMilli() {
			current++
		}
	}
	for _, l := range out.missedLines {
		if l.Site != cfg.LeafSite {
			r.logf("the dispatcher reported %d slots of site %s missed at %s", l.Missed, l.Site, clock(l.Time))
		}
	}
	reported := out.missedSince(cfg.LeafSite, w.cutStart)
	// The hub's site during and after the cut: slots missed around the
	// kill are reported up to an interval and the grace after it, before.
	hubDuringCut := out.missedSince(task.DefaultSite, w.cutStart)
	n := cfg.Hosts[cfg.LeafSite]
	r.logf("site %s after the cut: %d/%d hosts polled from an interval after the link came back, %d/%d in the last cycle; %d slots with no record in the cut window, the dispatcher reported %d missed since the cut (site default: %d since the cut, %d in the whole run); consumer %s: %d pending, %d unacknowledged",
		cfg.LeafSite, recovered, n, current, n, res.CutMissed, reported, hubDuringCut, res.ReportedMissed[task.DefaultSite],
		task.PollerConsumer(cfg.LeafSite), pending, ackPending)
	res.LeafCutRecovered = !cutEnd.IsZero() && recovered == n && current == n && res.CutMissed > 0 && reported >= res.CutMissed &&
		hubDuringCut == 0 && pending+uint64(ackPending) <= uint64(n)
	return nil
}

type countWindows struct {
	kill               time.Time
	end                time.Time
	rollStart, rollEnd time.Time
	cutStart, cutEnd   time.Time
}

// count fills in the figures from the dispatcher's records and logs.
func (r *runner) count(res *Result, out *dispatcherOutput, w countWindows) {
	iv := r.cfg.Interval.Milliseconds()
	res.Records = len(out.records)
	res.ReportedMissed = out.missed
	// Duplicates: a task id written twice that the dispatcher did not name.
	ids := map[string]int{}
	for _, rec := range out.records {
		ids[rec.taskID]++
	}
	for id, n := range ids {
		if n > 1 && !out.namedDuplicates[id] {
			res.Duplicates += n - 1
			r.logf("task %s written %d times, not named a possible duplicate", id, n)
		}
	}
	// Records that carry an error (a poll that failed) are records; they
	// are shown, by site and kind.
	failed := map[string]int{}
	for _, rec := range out.records {
		if rec.errKind != "" {
			failed[rec.site+" "+rec.errKind]++
		}
	}
	bySite := map[string]int{}
	for _, rec := range out.records {
		bySite[rec.site]++
	}
	r.logf("%d records in the dispatcher's sink (by site %v), of them with an error (by site and kind) %v", len(out.records), bySite, failed)
	// Missed: the slots of each host with no record, from its first
	// record to the end (a slot's record is due an interval after it,
	// with 5 s to reach the dispatcher's sink), and those before its first
	// record that began after the dispatcher began scheduling.
	slots := map[string][]int64{}
	site := map[string]string{}
	for _, rec := range out.records {
		slots[rec.host] = append(slots[rec.host], rec.slot)
		site[rec.host] = rec.site
	}
	seen := map[string]int{}
	due := w.end.UnixMilli() - iv - 5000
	cutFrom, cutTo := w.cutStart.UnixMilli()-iv, w.cutEnd.UnixMilli()+iv
	rollFrom, rollTo := w.rollStart.UnixMilli()-iv, w.rollEnd.UnixMilli()+iv
	killFrom, killTo := w.kill.UnixMilli()-iv, w.kill.UnixMilli()+iv+r.cfg.AckWait.Milliseconds()
	shown := 0
	for host, s := range slots {
		seen[site[host]]++
		for _, m := range missing(s, iv, out.scheduling.UnixMilli(), due) {
			if site[host] == r.cfg.LeafSite && m >= cutFrom && m <= cutTo {
				res.CutMissed++
				continue
			}
			if !w.kill.IsZero() && m >= killFrom && m <= killTo {
				res.KillMissed++
				r.logf("host %s (site %s): no record of slot %s, within the redelivery window of the kill", host, site[host], clock(time.UnixMilli(m)))
				continue
			}
			res.Missed++
			if site[host] == task.DefaultSite && m >= rollFrom && m <= rollTo {
				res.RollingMissed++
			}
			if shown < 20 {
				shown++
				r.logf("host %s (site %s): no record of slot %s", host, site[host], clock(time.UnixMilli(m)))
			}
		}
	}
	if res.KillMissed > 0 {
		r.logf("%d slots with no record within the redelivery window of the kill (from an interval before it to an interval and the ack wait, %s, after): allowed", res.KillMissed, r.cfg.AckWait)
	}
	for s, n := range r.cfg.Hosts {
		if seen[s] < n {
			res.Missed += n - seen[s]
			r.logf("site %s: %d hosts with no record at all", s, n-seen[s])
		}
	}
}

// missing lists the slots, an interval apart from those in slots, from
// from to due that are not in slots.
func missing(slots []int64, iv, from, due int64) []int64 {
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	var out []int64
	if from > 0 {
		for m := slots[0] - iv; m >= from; m -= iv {
			out = append(out, m)
		}
	}
	for i := 1; i < len(slots); i++ {
		for m := slots[i-1] + iv; m < slots[i]-iv/2; m += iv {
			out = append(out, m)
		}
	}
	for m := slots[len(slots)-1] + iv; m <= due; m += iv {
		out = append(out, m)
	}
	return out
}

func hostsBySite(recs []record, keep func(record) bool) map[string]int {
	hosts := map[string]map[string]bool{}
	for _, rec := range recs {
		if !keep(rec) {
			continue
		}
		if hosts[rec.site] == nil {
			hosts[rec.site] = map[string]bool{}
		}
		hosts[rec.site][rec.host] = true
	}
	n := map[string]int{}
	for s, h := range hosts {
		n[s] = len(h)
	}
	return n
}

type record struct {
	taskID, site, host string
	slot               int64  // Unix milliseconds
	errKind            string // the poll's error, if any
}

type logLine struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Site   string    `json:"site"`
	Missed int       `json:"missed"`
	TaskID string    `json:"task_id"`
}

type dispatcherOutput struct {
	records         []record
	namedDuplicates map[string]bool // task ids of "possible duplicate:" lines
	missed          map[string]int  // by site, from "slots missed:" lines
	missedLines     []logLine
	scheduling      time.Time // when it first began scheduling
}

// missedSince sums the slots of site the dispatcher reported missed from t on.
func (o *dispatcherOutput) missedSince(site string, t time.Time) int {
	n := 0
	for _, l := range o.missedLines {
		if l.Site == site && !l.Time.Before(t) {
			n += l.Missed
		}
	}
	return n
}

// dispatcherOut reads the dispatcher's stdout (its sink: one JSON record a
// line) and its JSON log lines on stderr.
func (r *runner) dispatcherOut(ctx context.Context) (*dispatcherOutput, error) {
	id, err := r.proj.Container(ctx, "dispatcher")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "docker", "logs", id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker logs %s: %w", id, err)
	}
	out := &dispatcherOutput{namedDuplicates: map[string]bool{}, missed: map[string]int{}}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		h, err := task.ReadHead(sc.Bytes())
		if err != nil {
			continue
		}
		at := strings.LastIndex(h.TaskID, "@")
		var slot int64
		if at < 0 || strings.HasPrefix(h.TaskID[at+1:], "now-") {
			continue // a poll-now record has no slot
		}
		if _, err := fmt.Sscanf(h.TaskID[at+1:], "%d", &slot); err != nil {
			continue
		}
		rec := record{taskID: h.TaskID, site: h.Site, host: h.Host, slot: slot}
		if h.Error != nil {
			rec.errKind = h.Error.Kind
		}
		out.records = append(out.records, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sc = bufio.NewScanner(&stderr)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch {
		case strings.HasPrefix(l.Msg, "possible duplicate:"):
			out.namedDuplicates[l.TaskID] = true
		case l.Msg == "scheduling" && out.scheduling.IsZero():
			out.scheduling = l.Time
		case l.Msg == "slots missed: no record by their deadline":
			out.missed[l.Site] += l.Missed
			out.missedLines = append(out.missedLines, l)
		}
	}
	return out, sc.Err()
}

// The parts of a node's /jsz?acc=$G&streams=true&consumers=true&config=true
// used here.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	Accounts []accountDetail `json:"account_details"`
}

type accountDetail struct {
	Name    string         `json:"name"`
	Streams []streamDetail `json:"stream_detail"`
}

type streamDetail struct {
	Name    string       `json:"name"`
	Cluster *clusterInfo `json:"cluster"`
	Config  *struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	Consumers []consumerDetail `json:"consumer_detail"`
}

type consumerDetail struct {
	Name    string       `json:"name"`
	Cluster *clusterInfo `json:"cluster"`
	Config  *struct {
		Durable  string `json:"durable_name"`
		Replicas int    `json:"num_replicas"`
	} `json:"config"`
	NumPending    uint64 `json:"num_pending"`
	NumAckPending int    `json:"num_ack_pending"`
}

// stream is the detail of stream in this view, or nil.
func (j *jsz) stream(name string) *streamDetail {
	if j == nil {
		return nil
	}
	for i := range j.Accounts {
		for k := range j.Accounts[i].Streams {
			if j.Accounts[i].Streams[k].Name == name {
				return &j.Accounts[i].Streams[k]
			}
		}
	}
	return nil
}

// consumer is the detail of stream's consumer name in this view, or nil.
func (j *jsz) consumer(stream, name string) *consumerDetail {
	s := j.stream(stream)
	if s == nil {
		return nil
	}
	for i := range s.Consumers {
		if s.Consumers[i].Name == name {
			return &s.Consumers[i]
		}
	}
	return nil
}

type clusterInfo struct {
	Leader   string    `json:"leader"`
	Replicas []replica `json:"replicas"`
}

type replica struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
}

// get GETs path from node's monitoring port and decodes its JSON into v
// (when v is not nil); the status is returned with a non-nil error only
// when the request failed.
func (r *runner) get(ctx context.Context, node, path string, v any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", r.ports[node], path), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s monitoring %s: %w", node, path, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s monitoring %s: %w", node, path, err)
		}
	}
	return resp.StatusCode, nil
}

const jszPath = "/jsz?acc=%24G&streams=true&consumers=true&config=true"

// views asks every node that answers for its /jsz.
func (r *runner) views(ctx context.Context) map[string]*jsz {
	views := map[string]*jsz{}
	for _, node := range r.nodes {
		var j jsz
		if code, err := r.get(ctx, node, jszPath, &j); err == nil && code == http.StatusOK {
			views[node] = &j
		}
	}
	return views
}

// streamLeader is the node that leads stream, as the nodes see it.
func (r *runner) streamLeader(ctx context.Context, stream string) (string, error) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		for _, v := range r.views(ctx) {
			if s := v.stream(stream); s != nil && s.Cluster != nil && s.Cluster.Leader != "" {
				return s.Cluster.Leader, nil
			}
		}
		if err := sleep(ctx, time.Second); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no node names a leader of stream %s", stream)
}

// consumerBacklog is what consumer of stream holds, as its leader sees it:
// tasks not yet delivered, delivered and not acknowledged.
func (r *runner) consumerBacklog(ctx context.Context, stream, consumer string) (pending uint64, ackPending int, err error) {
	views := r.views(ctx)
	for _, v := range views {
		if c := v.consumer(stream, consumer); c != nil && c.Cluster != nil {
			if lc := views[c.Cluster.Leader].consumer(stream, consumer); lc != nil {
				return lc.NumPending, lc.NumAckPending, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("consumer %s of %s: no node answers as its leader", consumer, stream)
}

// waitNode waits until node's container is healthy and the node reports
// itself current (/healthz: its streams and consumers caught up).
func (r *runner) waitNode(ctx context.Context, node string) bool {
	ctr, err := r.proj.Container(ctx, node)
	if err != nil {
		r.logf("%s: %v", node, err)
		return false
	}
	ok, why := r.wait(ctx, func() string {
		status, err := composectl.Docker(ctx, "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", ctr)
		if status = strings.TrimSpace(status); err != nil || status != "healthy" {
			return fmt.Sprintf("container health %q %v", status, err)
		}
		if code, err := r.get(ctx, node, "/healthz", nil); err != nil || code != http.StatusOK {
			return fmt.Sprintf("/healthz: %d %v", code, err)
		}
		return ""
	})
	if !ok {
		r.logf("%s not back in time: %s", node, why)
	}
	return ok
}

// waitSettled waits until every node answers, they agree on a JetStream
// meta leader, and every stream and durable consumer has a leader that
// sees all its other replicas current.
func (r *runner) waitSettled(ctx context.Context) bool {
	ok, why := r.wait(ctx, func() string { return settled(r.nodes, r.views(ctx)) })
	if !ok {
		r.logf("the cluster did not settle in time: %s", why)
	}
	return ok
}

// settled says what keeps the cluster from being settled, or "".
func settled(nodes []string, views map[string]*jsz) string {
	if len(views) != len(nodes) {
		return fmt.Sprintf("%d of %d nodes answer /jsz", len(views), len(nodes))
	}
	meta := ""
	for node, v := range views {
		if v.Meta == nil || v.Meta.Leader == "" {
			return node + " knows no meta leader"
		}
		if meta != "" && v.Meta.Leader != meta {
			return fmt.Sprintf("meta leader %s or %s", meta, v.Meta.Leader)
		}
		meta = v.Meta.Leader
	}
	// A group's leader alone knows whether its followers are current.
	current := func(kind, name string, ci *clusterInfo, want int, own func(*jsz) *clusterInfo) string {
		if ci == nil || ci.Leader == "" {
			return fmt.Sprintf("%s %s has no leader", kind, name)
		}
		lc := own(views[ci.Leader])
		if lc == nil || lc.Leader != ci.Leader {
			return fmt.Sprintf("%s %s: its leader %s does not lead it", kind, name, ci.Leader)
		}
		n := 0
		for _, rep := range lc.Replicas {
			if rep.Current && !rep.Offline {
				n++
			}
		}
		if n < want-1 {
			return fmt.Sprintf("%s %s: %d of %d followers current", kind, name, n, want-1)
		}
		return ""
	}
	for _, v := range views {
		for _, a := range v.Accounts {
			for _, s := range a.Streams {
				want := Nodes
				if s.Config != nil && s.Config.Replicas > 0 {
					want = s.Config.Replicas
				}
				own := func(j *jsz) *clusterInfo {
					if ls := j.stream(s.Name); ls != nil {
						return ls.Cluster
					}
					return nil
				}
				if why := current("stream", s.Name, s.Cluster, want, own); why != "" {
					return why
				}
				for _, c := range s.Consumers {
					if c.Config == nil || c.Config.Durable == "" {
						continue // ephemeral (KV watchers): they come and go with their clients
					}
					cwant := want
					if c.Config.Replicas > 0 {
						cwant = c.Config.Replicas
					}
					own := func(j *jsz) *clusterInfo {
						if lc := j.consumer(s.Name, c.Name); lc != nil {
							return lc.Cluster
						}
						return nil
					}
					if why := current("consumer", s.Name+"/"+c.Name, c.Cluster, cwant, own); why != "" {
						return why
					}
				}
			}
		}
	}
	return ""
}
