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
	MaxInFlight              int // most polls running at once, from the records' start times and durations
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
		perUS(r.NATSCPU, r.Polls), perUS(r.SimCPU, r.Polls), r.Errors, r.MaxInFlight)
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
	simArgs := []string{"--devices", fmt.Sprint(sc.Devices), "--interfaces", fmt.Sprint(sc.Interfaces), "--hosts-out", hosts,
		"--delay", sc.Delay.String(), "--jitter", sc.Jitter.String(), "--dead-every", fmt.Sprint(sc.DeadEvery)}
	sim, err := procs.Start(dir, "snmpsim-"+sc.Name, "snmpsim", nil, simArgs...)
	if err != nil {
		return res, err
	}
	defer sim.Stop(syscall.SIGTERM)
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
	for _, p := range append([]*procs.Proc{poller, sim}, servers...) {
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
	sim.Stop(syscall.SIGTERM)
	for _, n := range servers {
		n.Stop(syscall.SIGTERM)
	}
	if err := readRecords(disp.Log, &res); err != nil {
		return res, err
	}
	res.PollerCPU, res.DispatcherCPU, res.SimCPU = cycleCPU[poller], disp.CPU(), cycleCPU[sim]
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
	cfg := fmt.Sprintf(`nats: {url: %q, ack_wait: 60s, replicas: %d}
poller: {concurrency: %d}
dispatcher: {once_timeout: 5m}
defaults:
  timeout: %s
  retries: %d
  get: %s
  walk: %s
%s`, url, max(sc.Replicas, 1), sc.Concurrency, sc.Timeout, sc.Retries, list(sc.Get), list(sc.Walk), hosts)
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
	cfg := fmt.Sprintf("nats: {url: %q, ack_wait: 60s, replicas: %d}\ndefaults: {get: [sysDescr.0], timeout: 5s}\nhosts:\n%s\n", url, max(sc.Replicas, 1), first)
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
