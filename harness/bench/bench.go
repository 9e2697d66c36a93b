// Package bench is Flock's load harness: nats-server, the dispatcher, a
// poller and the simulator as separate processes on loopback, one --once
// cycle per scenario, with each process's CPU time and peak memory taken
// from the kernel. It reports; it never fails on a number.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/harness/procs"
)

// Scenario is one measured cycle.
type Scenario struct {
	Name        string
	Devices     int
	Interfaces  int
	Get, Walk   []string
	Delay       time.Duration // simulated round trip
	Jitter      time.Duration
	DeadEvery   int // every Nth device never answers
	Timeout     time.Duration
	Retries     int
	Concurrency int // the poller's
	// HostsPerDevice > 1 names each simulated device that many times (hosts
	// sharing an agent address), with MaxOutstanding requests allowed to it.
	HostsPerDevice, MaxOutstanding int
	// Snmpd > 0 polls that many Debian snmpd agents instead of the
	// simulator, Devices hosts spread over them.
	Snmpd int
	// Replicas > 1 runs that many nats-servers as a JetStream cluster with
	// nats.replicas at that number; the line's scenario gets "-r<N>".
	Replicas int
}

// Scenarios are the issue's: get1, walk, wan, dead20 (gosnmp-only runs the get1 load without Flock).
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "get1", Devices: 10_000, Interfaces: 1, Get: []string{"sysDescr.0"}, Timeout: 2 * time.Second, Retries: 1, Concurrency: 512},
		{Name: "walk", Devices: 1_000, Interfaces: 48, Walk: []string{"IF-MIB::ifTable", "IF-MIB::ifXTable"}, Timeout: 2 * time.Second, Retries: 1, Concurrency: 64},
		{Name: "wan", Devices: 10_000, Interfaces: 1, Get: []string{"sysDescr.0"}, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond,
			Timeout: 2 * time.Second, Retries: 1, Concurrency: 2000},
		{Name: "dead20", Devices: 10_000, Interfaces: 1, Get: []string{"sysDescr.0"}, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond,
			DeadEvery: 5, Timeout: time.Second, Retries: 1, Concurrency: 4000},
		// mem5k holds 5,000 polls in flight at once (1.5 s answers) for the
		// poller's memory figure; max_in_flight shows it was reached.
		{Name: "mem5k", Devices: 10_000, Interfaces: 1, Get: []string{"sysDescr.0"}, Delay: 1500 * time.Millisecond,
			Timeout: 5 * time.Second, Retries: 0, Concurrency: 5000},
		// mem50k: 50,000 in flight (3 s answers): 10,000 simulated devices,
		// each polled as 5 hosts with max_outstanding 5.
		{Name: "mem50k", Devices: 10_000, HostsPerDevice: 5, MaxOutstanding: 5, Interfaces: 1, Get: []string{"sysDescr.0"},
			Delay: 3 * time.Second, Timeout: 10 * time.Second, Retries: 0, Concurrency: 50_000},
		// once10k: dispatcher --once of 10,000 hosts on two Debian snmpd
		// agents (max_outstanding 1 each): the command's wall time against
		// the cycle it reports.
		{Name: "once10k", Devices: 10_000, Snmpd: 2, Get: []string{"sysDescr.0", "sysUpTime.0"}, Timeout: 2 * time.Second,
			Retries: 1, Concurrency: 10_000},
	}
}

// Result is one scenario's line.
type Result struct {
	Scenario                 string
	Hosts, Polls, Varbinds   int
	Secs                     float64
	P50, P99                 float64 // ms
	PollerCPU, DispatcherCPU time.Duration
	NATSCPU, SimCPU          time.Duration
	PollerRSS, DispatcherRSS float64 // MB
	Errors                   int
	MaxInFlight              int     // most polls running at once, from the records' start times and durations
	CycleSecs                float64 // the dispatcher's own elapsed= (publishing to the last record)
	// Base is the gosnmp-only run of the same sitting: the line then says
	// each figure as a ratio to it.
	Base *Result
}

func perUS(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// Line is the bench line of the form, with more keys after.
func (r Result) Line() string {
	return fmt.Sprintf("bench: scenario=%s hosts=%d polls=%d varbinds=%d secs=%.2f polls_per_s=%.0f varbinds_per_s=%.0f p50_ms=%.2f p99_ms=%.2f "+
		"poller_cpu_us_per_poll=%.1f poller_cpu_us_per_varbind=%.2f dispatcher_cpu_us_per_poll=%.1f poller_rss_mb=%.1f dispatcher_rss_mb=%.1f "+
		"nats_cpu_us_per_poll=%.1f sim_cpu_us_per_poll=%.1f error_records=%d max_in_flight=%d",
		r.Scenario, r.Hosts, r.Polls, r.Varbinds, r.Secs, float64(r.Polls)/r.Secs, float64(r.Varbinds)/r.Secs, r.P50, r.P99,
		perUS(r.PollerCPU, r.Polls), perUS(r.PollerCPU, r.Varbinds), perUS(r.DispatcherCPU, r.Polls), r.PollerRSS, r.DispatcherRSS,
		perUS(r.NATSCPU, r.Polls), perUS(r.SimCPU, r.Polls), r.Errors, r.MaxInFlight) + r.extra()
}

// extra is the line's figures beyond the first form: the
// dispatcher per varbind, the command against its cycle, the ratios to
// gosnmp-only.
func (r Result) extra() string {
	var b strings.Builder
	if r.Varbinds > 0 && r.DispatcherCPU > 0 {
		fmt.Fprintf(&b, " dispatcher_cpu_us_per_varbind=%.3f", perUS(r.DispatcherCPU, r.Varbinds))
	}
	if r.CycleSecs > 0 {
		fmt.Fprintf(&b, " cycle_secs=%.2f command_over_cycle=%.2f", r.CycleSecs, r.Secs/r.CycleSecs)
	}
	if g := r.Base; g != nil && g.Polls > 0 && r.Polls > 0 && g.Secs > 0 && r.Secs > 0 {
		gPerPoll := float64(g.PollerCPU) / float64(g.Polls)
		fmt.Fprintf(&b, " x_gosnmp_polls_per_s=%.2f x_gosnmp_poller_cpu_per_poll=%.2f x_gosnmp_total_cpu_per_poll=%.2f",
			(float64(r.Polls)/r.Secs)/(float64(g.Polls)/g.Secs),
			float64(r.PollerCPU)/float64(r.Polls)/gPerPoll,
			float64(r.PollerCPU+r.DispatcherCPU+r.NATSCPU)/float64(r.Polls)/gPerPoll)
	}
	return b.String()
}

// Run measures one scenario in dir (binaries in dir/bin, see procs.Build).
func Run(ctx context.Context, dir string, sc Scenario) (Result, error) {
	res := Result{Scenario: sc.Name, Hosts: sc.Devices}
	if sc.Replicas > 1 {
		res.Scenario = fmt.Sprintf("%s-r%d", sc.Name, sc.Replicas)
	}
	servers, url, err := startNATS(dir, sc)
	for _, n := range servers {
		defer n.Stop(syscall.SIGTERM)
	}
	if err != nil {
		return res, err
	}
	hosts := filepath.Join(dir, "hosts-"+sc.Name+".yaml")
	var sims []*procs.Proc // the agents: the simulator, or snmpd processes
	if sc.Snmpd > 0 {
		sims, err = startSnmpds(dir, sc, hosts)
	} else {
		simArgs := []string{"--devices", fmt.Sprint(sc.Devices), "--interfaces", fmt.Sprint(sc.Interfaces), "--hosts-out", hosts,
			"--delay", sc.Delay.String(), "--jitter", sc.Jitter.String(), "--dead-every", fmt.Sprint(sc.DeadEvery)}
		var sim *procs.Proc
		sim, err = procs.Start(dir, "snmpsim-"+sc.Name, "snmpsim", nil, simArgs...)
		sims = []*procs.Proc{sim}
	}
	if err != nil {
		return res, err
	}
	for _, sim := range sims {
		defer sim.Stop(syscall.SIGTERM)
	}
	if err := procs.WaitFile(hosts, 60*time.Second); err != nil {
		return res, err
	}
	cfg, err := writeConfig(dir, sc, url, hosts)
	if err != nil {
		return res, err
	}
	warm, err := writeWarmup(dir, sc, url, hosts)
	if err != nil {
		return res, err
	}
	env := []string{"FLOCK_LOG_LEVEL=warn"}
	poller, err := procs.Start(dir, "poller-"+sc.Name, "poller", append(env, "FLOCK_CPUPROFILE="+filepath.Join(dir, "poller-"+sc.Name+".pprof")), "--config", cfg)
	if err != nil {
		return res, err
	}
	// A one-host cycle first: streams, consumer and the poller's binding are
	// then in place, so the measured cycle is only polling. A cluster may
	// still be electing its JetStream leader: tried again for a while.
	for attempt := 1; ; attempt++ {
		w, err := procs.Start(dir, fmt.Sprintf("warmup-%s-%d", sc.Name, attempt), "dispatcher", env, "--config", warm, "--once")
		if err != nil {
			return res, err
		}
		code, err := w.Wait(2 * time.Minute)
		if err == nil && code == 0 {
			break
		}
		if attempt == 10 {
			return res, fmt.Errorf("warm-up cycle: exit %d, %v (see %s)", code, err, w.Log)
		}
		time.Sleep(2 * time.Second)
	}
	// The long-running processes' CPU is taken around the measured cycle
	// only: their start-up (the poller also loads the inventory file) and
	// the warm-up are not the cycle's.
	cpuBefore := map[*procs.Proc]time.Duration{}
	for _, p := range append(append([]*procs.Proc{poller}, sims...), servers...) {
		if cpuBefore[p], err = p.CPUSoFar(); err != nil {
			return res, err
		}
	}
	start := time.Now()
	disp, err := procs.Start(dir, "dispatcher-"+sc.Name, "dispatcher", append(env, "FLOCK_CPUPROFILE="+filepath.Join(dir, "dispatcher-"+sc.Name+".pprof")), "--config", cfg, "--once")
	if err != nil {
		return res, err
	}
	if _, err := disp.Wait(10 * time.Minute); err != nil {
		return res, err
	}
	res.Secs = time.Since(start).Seconds()
	cycleCPU := map[*procs.Proc]time.Duration{}
	for p, before := range cpuBefore {
		after, err := p.CPUSoFar()
		if err != nil {
			return res, err
		}
		cycleCPU[p] = after - before
	}
	poller.Stop(syscall.SIGTERM)
	for _, sim := range sims {
		sim.Stop(syscall.SIGTERM)
	}
	for _, n := range servers {
		n.Stop(syscall.SIGTERM)
	}
	if err := readRecords(disp.Log, &res); err != nil {
		return res, err
	}
	res.CycleSecs = cycleSecs(disp.Log)
	res.PollerCPU, res.DispatcherCPU = cycleCPU[poller], disp.CPU()
	for _, sim := range sims {
		res.SimCPU += cycleCPU[sim]
	}
	for _, n := range servers { // every node's: what the replicas cost
		res.NATSCPU += cycleCPU[n]
	}
	res.PollerRSS, res.DispatcherRSS = poller.MaxRSSMB(), disp.MaxRSSMB()
	_ = os.RemoveAll(filepath.Join(dir, "nats-"+sc.Name))
	return res, nil
}

// startNATS starts one nats-server, or sc.Replicas of them clustered, each
// with its store under dir, and returns them with the URL listing all.
func startNATS(dir string, sc Scenario) ([]*procs.Proc, string, error) {
	n := max(sc.Replicas, 1)
	ports, routes := make([]int, n), make([]string, n)
	for i := range n {
		var err error
		if ports[i], err = procs.FreePort(); err != nil {
			return nil, "", err
		}
		rp, err := procs.FreePort()
		if err != nil {
			return nil, "", err
		}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", rp)
	}
	var servers []*procs.Proc
	var urls []string
	for i := range n {
		name := fmt.Sprintf("nats-%s-%d", sc.Name, i+1)
		args := []string{"-js", "-sd", filepath.Join(dir, "nats-"+sc.Name, fmt.Sprint(i+1)), "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]), "-n", name}
		if n > 1 {
			args = append(args, "--cluster_name", "bench", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		}
		p, err := procs.Start(dir, name, "nats-server", nil, args...)
		if err != nil {
			return servers, "", err
		}
		servers = append(servers, p)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	return servers, strings.Join(urls, ","), nil
}

func writeConfig(dir string, sc Scenario, url, hostsFile string) (string, error) {
	hosts, err := os.ReadFile(hostsFile)
	if err != nil {
		return "", err
	}
	list := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	if sc.HostsPerDevice > 1 {
		hosts = []byte(repeatHosts(string(hosts), sc.HostsPerDevice))
	}
	creds := ""
	if sc.Snmpd > 0 {
		creds = fmt.Sprintf("credentials: [{name: public, version: 2c, community: %s}]\n", snmpdCommunity)
	}
	cfg := fmt.Sprintf(`nats: {url: %q, ack_wait: 60s, replicas: %d}
poller: {concurrency: %d}
dispatcher: {once_timeout: 5m}
%sdefaults:
  timeout: %s
  retries: %d
  max_outstanding: %d
  get: %s
  walk: %s
%s`, url, max(sc.Replicas, 1), sc.Concurrency, creds, sc.Timeout, sc.Retries, max(sc.MaxOutstanding, 1), list(sc.Get), list(sc.Walk), hosts)
	path := filepath.Join(dir, "bench-"+sc.Name+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

func writeWarmup(dir string, sc Scenario, url, hostsFile string) (string, error) {
	f, err := os.Open(hostsFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc2 := bufio.NewScanner(f)
	var first string
	for sc2.Scan() {
		if strings.HasPrefix(sc2.Text(), "  - ") {
			first = sc2.Text()
			break
		}
	}
	creds := ""
	if sc.Snmpd > 0 {
		creds = fmt.Sprintf("credentials: [{name: public, version: 2c, community: %s}]\n", snmpdCommunity)
	}
	cfg := fmt.Sprintf("nats: {url: %q, ack_wait: 60s, replicas: %d}\n%sdefaults: {get: [sysDescr.0], timeout: 5s}\nhosts:\n%s\n", url, max(sc.Replicas, 1), creds, first)
	path := filepath.Join(dir, "warmup-"+sc.Name+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// readRecords counts records, varbinds and errors, and the poll durations'
// percentiles, without decoding whole records.
func readRecords(path string, res *Result) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var durations []float64
	var edges []edge // poll starts (+1) and ends (-1)
	for {
		line, err := r.ReadBytes('\n')
		if bytes.HasPrefix(line, []byte(`{"schema"`)) {
			res.Polls++
			res.Varbinds += bytes.Count(line, []byte(`{"oid":`))
			if !bytes.Contains(line, []byte(`"error":null`)) {
				res.Errors++
			}
			if i := bytes.Index(line, []byte(`"duration_ms":`)); i >= 0 {
				rest := line[i+len(`"duration_ms":`):]
				if j := bytes.IndexByte(rest, ','); j > 0 {
					if d, err := strconv.ParseFloat(string(rest[:j]), 64); err == nil {
						durations = append(durations, d)
						if t, ok := startedAt(line); ok {
							edges = append(edges, edge{t, 1}, edge{t.Add(time.Duration(d * float64(time.Millisecond))), -1})
						}
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	sort.Float64s(durations)
	if n := len(durations); n > 0 {
		res.P50, res.P99 = durations[n/2], durations[min(n-1, n*99/100)]
	}
	res.MaxInFlight = maxInFlight(edges)
	return nil
}

type edge struct {
	at time.Time
	d  int
}

// maxInFlight sweeps the polls' start and end times; an end sorts before a
// start at the same instant.
func maxInFlight(edges []edge) int {
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].d < edges[j].d
		}
		return edges[i].at.Before(edges[j].at)
	})
	n, peak := 0, 0
	for _, e := range edges {
		n += e.d
		peak = max(peak, n)
	}
	return peak
}

func startedAt(line []byte) (time.Time, bool) {
	const key = `"started_at":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

// GosnmpOnly does the get1 load with a plain loop of gosnmp sessions at the
// same concurrency, no NATS and no dispatcher: the yardstick for what the
// bus and the pipeline cost. The simulator runs as a separate process.
func GosnmpOnly(ctx context.Context, dir string, sc Scenario) (Result, error) {
	res := Result{Scenario: "gosnmp-only", Hosts: sc.Devices}
	hosts := filepath.Join(dir, "hosts-gosnmp-only.yaml")
	sim, err := procs.Start(dir, "snmpsim-gosnmp-only", "snmpsim", nil, "--devices", fmt.Sprint(sc.Devices), "--interfaces", "1", "--hosts-out", hosts)
	if err != nil {
		return res, err
	}
	defer sim.Stop(syscall.SIGTERM)
	if err := procs.WaitFile(hosts, 60*time.Second); err != nil {
		return res, err
	}
	ports, err := hostPorts(hosts)
	if err != nil {
		return res, err
	}
	simBefore, err := sim.CPUSoFar()
	if err != nil {
		return res, err
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	work := make(chan int)
	var mu sync.Mutex
	var durations []float64
	var wg sync.WaitGroup
	for w := 0; w < sc.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for port := range work {
				t0 := time.Now()
				g := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(port), Community: "public", Version: gosnmp.Version2c,
					Timeout: sc.Timeout, Retries: sc.Retries, Context: ctx}
				ok := g.Connect() == nil
				if ok {
					if pkt, err := g.Get([]string{".1.3.6.1.2.1.1.1.0"}); err == nil {
						mu.Lock()
						res.Varbinds += len(pkt.Variables)
						mu.Unlock()
					} else {
						ok = false
					}
					_ = g.Conn.Close()
				}
				mu.Lock()
				res.Polls++
				if !ok {
					res.Errors++
				}
				durations = append(durations, float64(time.Since(t0).Microseconds())/1000)
				mu.Unlock()
			}
		}()
	}
	for _, p := range ports {
		work <- p
	}
	close(work)
	wg.Wait()
	res.Secs = time.Since(start).Seconds()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	res.PollerCPU = time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	res.PollerRSS = float64(after.Maxrss) / 1024
	sort.Float64s(durations)
	if n := len(durations); n > 0 {
		res.P50, res.P99 = durations[n/2], durations[min(n-1, n*99/100)]
	}
	simAfter, err := sim.CPUSoFar()
	if err != nil {
		return res, err
	}
	res.SimCPU = simAfter - simBefore
	sim.Stop(syscall.SIGTERM)
	return res, nil
}

func hostPorts(path string) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ports []int
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "port: "); i >= 0 {
			p, err := strconv.Atoi(strings.TrimRight(line[i+6:], "}"))
			if err != nil {
				return nil, fmt.Errorf("hosts line %q: %w", line, err)
			}
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// Inventory runs the dispatcher in run mode over an inventory of n hosts
// (no poller: only the dispatcher's own cost counts) for a little more than
// one publishing burst, and reports its peak memory and CPU.
func Inventory(ctx context.Context, dir string, n int) (string, error) {
	port, err := procs.FreePort()
	if err != nil {
		return "", err
	}
	store := filepath.Join(dir, "nats-inventory")
	nats, err := procs.Start(dir, "nats-inventory", "nats-server", nil, "-js", "-sd", store, "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	if err != nil {
		return "", err
	}
	defer nats.Stop(syscall.SIGTERM)
	var b strings.Builder
	fmt.Fprintf(&b, "nats: {url: \"nats://127.0.0.1:%d\"}\ndefaults: {interval: 10s, get: [sysDescr.0, sysUpTime.0, sysName.0], walk: [IF-MIB::ifTable]}\nsinks: [{type: file, path: %s}]\nhosts:\n",
		port, filepath.Join(dir, "inventory-records.jsonl"))
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {name: dev%06d.example.net, address: 127.0.0.1, port: %d}\n", i, 20000+i%40000)
	}
	cfg := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	start := time.Now()
	disp, err := procs.Start(dir, "dispatcher-inventory", "dispatcher", []string{"FLOCK_LOG_LEVEL=warn"}, "--config", cfg)
	if err != nil {
		return "", err
	}
	select { // one full interval: every host's task is published once
	case <-ctx.Done():
	case <-time.After(12 * time.Second):
	}
	disp.Stop(syscall.SIGTERM)
	return fmt.Sprintf("bench: scenario=inventory%dk hosts=%d secs=%.1f dispatcher_rss_mb=%.1f dispatcher_cpu_s=%.2f",
		n/1000, n, time.Since(start).Seconds(), disp.MaxRSSMB(), disp.CPU().Seconds()), nil
}

// repeatHosts lists every host of a hosts file n times, as <name>-1 … <name>-n:
// hosts that share an agent address and port.
func repeatHosts(hosts string, n int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(hosts, "\n") {
		const key = "{name: "
		i := strings.Index(line, key)
		if i < 0 {
			b.WriteString(line)
			continue
		}
		j := strings.IndexByte(line[i:], ',')
		if j < 0 {
			b.WriteString(line)
			continue
		}
		for k := 1; k <= n; k++ {
			fmt.Fprintf(&b, "%s-%d%s", line[:i+j], k, line[i+j:])
		}
	}
	return b.String()
}

const snmpdCommunity = "flock-bench"

// startSnmpds runs sc.Snmpd Debian snmpd agents on free loopback ports and
// writes a hosts file of sc.Devices hosts spread over them.
func startSnmpds(dir string, sc Scenario, hostsFile string) ([]*procs.Proc, error) {
	bin, err := exec.LookPath("snmpd")
	if err != nil {
		bin = "/usr/sbin/snmpd"
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("scenario %s needs Debian's snmpd (apt-get install snmpd): %w", sc.Name, err)
		}
	}
	var agents []*procs.Proc
	var ports []int
	for i := range sc.Snmpd {
		port, err := procs.FreeUDPPort()
		if err != nil {
			return nil, err
		}
		adir := filepath.Join(dir, fmt.Sprintf("snmpd-%s-%d", sc.Name, i))
		if err := os.MkdirAll(adir, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("agentAddress udp:127.0.0.1:%d\nrocommunity %s 127.0.0.1\nsysName bench-%d.example.net\nmaster no\n", port, snmpdCommunity, i)
		confPath := filepath.Join(adir, "snmpd.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		p, err := procs.Start(dir, fmt.Sprintf("snmpd-%s-%d", sc.Name, i), bin, []string{"SNMP_PERSISTENT_DIR=" + filepath.Join(adir, "persist")},
			"-f", "-Lf", filepath.Join(adir, "snmpd.log"), "-C", "-c", confPath, "-p", filepath.Join(adir, "snmpd.pid"), "-M", "/dev/null", "-m", "")
		if err != nil {
			for _, a := range agents {
				a.Stop(syscall.SIGTERM)
			}
			return nil, err
		}
		agents = append(agents, p)
		ports = append(ports, port)
	}
	for _, port := range ports { // answering?
		if err := waitAgent(port, 15*time.Second); err != nil {
			for _, a := range agents {
				a.Stop(syscall.SIGTERM)
			}
			return nil, err
		}
	}
	var b strings.Builder
	b.WriteString("hosts:\n")
	for i := range sc.Devices {
		fmt.Fprintf(&b, "  - {name: h%05d, address: 127.0.0.1, port: %d}\n", i, ports[i%len(ports)])
	}
	if err := os.WriteFile(hostsFile, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return agents, nil
}

// waitAgent waits until an agent on 127.0.0.1:port answers a GET.
func waitAgent(port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		g := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(port), Community: snmpdCommunity, Version: gosnmp.Version2c,
			Timeout: 200 * time.Millisecond, Retries: 0}
		if err := g.Connect(); err == nil {
			_, err = g.Get([]string{".1.3.6.1.2.1.1.5.0"})
			_ = g.Conn.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("snmpd on 127.0.0.1:%d did not answer within %s", port, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cycleSecs is the elapsed= of the dispatcher's summary line: its cycle
// from publishing the tasks to the last record.
func cycleSecs(log string) float64 {
	data, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	i := bytes.LastIndex(data, []byte(" elapsed="))
	if i < 0 {
		return 0
	}
	rest := data[i+len(" elapsed="):]
	j := bytes.IndexByte(rest, 's')
	if j < 0 {
		return 0
	}
	v, err := strconv.ParseFloat(string(rest[:j]), 64)
	if err != nil {
		return 0
	}
	return v
}
