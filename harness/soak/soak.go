// Package soak runs Flock as an operator would, as separate processes on
// loopback (nats-server, two dispatchers, pollers, a simulated fleet),
// breaks it on purpose for a bounded time (pollers SIGKILLed, NATS
// restarted, the leading dispatcher SIGKILLed, then stopped) and then
// counts what was lost or written twice.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/harness/procs"
)

// Config sizes a soak.
type Config struct {
	Devices  int           // simulated devices
	Pollers  int           // poller processes
	Interval time.Duration // poll interval of every host
	AckWait  time.Duration
	Duration time.Duration // the chaos phase
	Kills    int           // poller SIGKILLs during the chaos phase
	Dir      string        // work directory: binaries, logs, stores, records
	Log      io.Writer     // progress lines
}

// Result is what the soak counted.
type Result struct {
	Secs               float64
	Cycles             int
	Kills              int
	NATSRestarts       int
	DispatcherRestarts int     // leaders stopped with SIGTERM (handing over) and started again
	LeaderKills        int     // leaders SIGKILLed and started again
	TakeoverSecs       float64 // longest time from a leader's SIGKILL to a standby's lead
	Tasks              int     // distinct tasks queued up to the end of the chaos phase
	Records            int     // lines written to the sink
	Missing            int     // queued tasks with no record after the redelivery window
	Duplicates         int     // records written to the sinks more than once, beyond those counted as possible duplicates
	PossibleDuplicates int     // counted by the dispatchers: records redelivered after a leader died
	LeakedGoroutines   int
	LeakedSockets      int
	UnpublishedSlots   int // host-cycles never queued (the dispatcher or NATS was down)
	ErrorRecords       int // records with an error (dead, broken devices; undelivered)
}

// Line is the soak's last line.
func (r Result) Line() string {
	return fmt.Sprintf("soak: secs=%.0f cycles=%d kills=%d nats_restarts=%d dispatcher_restarts=%d leader_kills=%d takeover_secs=%.1f tasks=%d records=%d missing=%d duplicates=%d possible_duplicates=%d leaked_goroutines=%d leaked_sockets=%d unpublished_slots=%d error_records=%d",
		r.Secs, r.Cycles, r.Kills, r.NATSRestarts, r.DispatcherRestarts, r.LeaderKills, r.TakeoverSecs, r.Tasks, r.Records, r.Missing, r.Duplicates,
		r.PossibleDuplicates, r.LeakedGoroutines, r.LeakedSockets, r.UnpublishedSlots, r.ErrorRecords)
}

// Pass reports whether the soak met the bar.
func (r Result) Pass() bool {
	return r.Kills >= 20 && r.LeaderKills >= 1 && r.Missing == 0 && r.Duplicates == 0 && r.LeakedGoroutines == 0 && r.LeakedSockets == 0
}

type soak struct {
	cfg     Config
	natsURL string
	natsArg []string
	env     []string
	logf    func(format string, args ...any)

	mu    sync.Mutex
	tasks map[string]time.Time // task id -> slot start
}

// Run runs the soak in cfg.Dir and returns its counts.
func Run(ctx context.Context, cfg Config) (Result, error) {
	s := &soak{cfg: cfg, tasks: map[string]time.Time{}}
	s.logf = func(format string, args ...any) { fmt.Fprintf(cfg.Log, "soak: "+format+"\n", args...) }
	began := time.Now()
	var res Result
	for _, d := range []string{"bin", "logs", "nats"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return res, err
		}
	}
	if err := procs.Build(ctx, cfg.Dir); err != nil {
		return res, err
	}
	port, err := procs.FreePort()
	if err != nil {
		return res, err
	}
	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	s.natsArg = []string{"-js", "-sd", filepath.Join(cfg.Dir, "nats"), "-a", "127.0.0.1", "-p", fmt.Sprint(port)}
	natsProc, err := s.start("nats", "nats-server", nil, s.natsArg...)
	if err != nil {
		return res, err
	}
	defer func() { natsProc.Stop(syscall.SIGTERM) }()

	hosts := filepath.Join(cfg.Dir, "hosts.yaml")
	sim, err := s.start("snmpsim", "snmpsim", nil, "--devices", fmt.Sprint(cfg.Devices), "--interfaces", "2",
		"--hosts-out", hosts, "--dead-every", "50", "--slow-every", "10", "--slow-delay", "200ms", "--broken-every", "40")
	if err != nil {
		return res, err
	}
	defer sim.Stop(syscall.SIGTERM)
	if err := procs.WaitFile(hosts, 30*time.Second); err != nil {
		return res, fmt.Errorf("simulator: %w (see %s)", err, sim.Log)
	}
	// Two dispatchers with the same inventory: one leads, one stands by.
	disps := make([]*dispatcher, 2)
	for i, name := range []string{"dispatcher-a", "dispatcher-b"} {
		port, err := procs.FreePort()
		if err != nil {
			return res, err
		}
		d := &dispatcher{name: name, records: filepath.Join(cfg.Dir, name+".jsonl"), metrics: fmt.Sprintf("127.0.0.1:%d", port)}
		if d.cfg, err = s.writeConfig(name, hosts, d.records, d.metrics); err != nil {
			return res, err
		}
		disps[i] = d
	}
	// Debug: the dispatcher then logs each task the stream refused (overrun, full queue).
	s.env = []string{"FLOCK_LOG_FORMAT=json", "FLOCK_LOG_LEVEL=debug"}
	pollerEnv := append([]string{"FLOCK_CONFIG=" + disps[0].cfg, "FLOCK_METRICS_LISTEN=127.0.0.1:0"}, s.env...)

	observer, err := s.observe()
	if err != nil {
		return res, err
	}
	defer observer.Close()

	for _, d := range disps {
		if err := s.startDispatcher(d); err != nil {
			return res, err
		}
		if d == disps[0] {
			if err := waitRole(d, "leader", 30*time.Second); err != nil {
				return res, err
			}
		}
	}
	pollers := make([]*procs.Proc, cfg.Pollers)
	for i := range pollers {
		if pollers[i], err = s.start(fmt.Sprintf("poller-%d", i+1), "poller", append(pollerEnv, fmt.Sprintf("FLOCK_POLLER_NAME=poller-%d", i+1))); err != nil {
			return res, err
		}
	}
	if err := procs.WaitFile(disps[0].records, 60*time.Second); err != nil {
		return res, fmt.Errorf("no record within a minute: %w (see %s)", err, disps[0].p.Log)
	}
	s.logf("fleet of %d devices polled every %s by %d pollers, two dispatchers; chaos for %s", cfg.Devices, cfg.Interval, cfg.Pollers, cfg.Duration)

	// Chaos: SIGKILL a poller every so often and start it again; restart
	// NATS once; SIGKILL the leading dispatcher once and, later, stop the
	// leader with SIGTERM (a handover), starting each again as a standby.
	chaosStart := time.Now()
	killEvery := cfg.Duration / time.Duration(cfg.Kills+1)
	natsAt, leaderKillAt, dispAt := chaosStart.Add(cfg.Duration*2/5), chaosStart.Add(cfg.Duration*11/20), chaosStart.Add(cfg.Duration*7/10)
	rng := rand.New(rand.NewPCG(uint64(chaosStart.UnixNano()), 7))
	for next := chaosStart.Add(killEvery); time.Since(chaosStart) < cfg.Duration; next = next.Add(killEvery) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Until(next)):
		}
		if res.NATSRestarts == 0 && time.Now().After(natsAt) {
			natsProc.Stop(syscall.SIGTERM)
			if natsProc, err = s.start("nats", "nats-server", nil, s.natsArg...); err != nil {
				return res, err
			}
			res.NATSRestarts++
			s.logf("NATS restarted")
		}
		if res.LeaderKills == 0 && time.Now().After(leaderKillAt) {
			took, err := s.replaceLeader(disps, syscall.SIGKILL)
			if err != nil {
				return res, err
			}
			res.LeaderKills++
			res.TakeoverSecs = max(res.TakeoverSecs, took.Seconds())
			s.logf("leading dispatcher SIGKILLed; the standby led %.1fs later", took.Seconds())
		}
		if res.DispatcherRestarts == 0 && time.Now().After(dispAt) {
			took, err := s.replaceLeader(disps, syscall.SIGTERM)
			if err != nil {
				return res, err
			}
			res.DispatcherRestarts++
			s.logf("leading dispatcher stopped; the standby led %.1fs later", took.Seconds())
		}
		i := rng.IntN(len(pollers))
		pollers[i].Stop(syscall.SIGKILL)
		if pollers[i], err = s.start(fmt.Sprintf("poller-%d", i+1), "poller", append(pollerEnv, fmt.Sprintf("FLOCK_POLLER_NAME=poller-%d", i+1))); err != nil {
			return res, err
		}
		res.Kills++
	}
	chaosEnd := time.Now()
	res.Cycles = int(chaosEnd.Sub(chaosStart) / cfg.Interval)
	// Let every task of the chaos phase finish: a poll, a redelivery or two,
	// a poll again; and the records a killed leader held reach the next.
	settle := cfg.Interval + max(3*cfg.AckWait, 2*leaseTTL) + 5*time.Second
	s.logf("%d kills done; settling for %s", res.Kills, settle)
	time.Sleep(settle)

	for _, d := range disps {
		d.p.Stop(syscall.SIGTERM)
		res.PossibleDuplicates += possibleDuplicates(d.p.Log)
	}
	for _, p := range pollers {
		p.Stop(syscall.SIGTERM)
	}
	refused, err := refusedTasks(filepath.Join(cfg.Dir, "logs"))
	if err != nil {
		return res, err
	}
	s.mu.Lock()
	for id := range refused { // seen on the subject, but not stored: not queued
		delete(s.tasks, id)
	}
	s.mu.Unlock()
	for _, p := range append([]*procs.Proc{disps[0].p, disps[1].p}, pollers...) {
		g, sk, err := leakLine(p.Log)
		if err != nil {
			return res, fmt.Errorf("%s: %w", p.Name, err)
		}
		res.LeakedGoroutines += g
		res.LeakedSockets += sk
	}
	if err := s.count(&res, []string{disps[0].records, disps[1].records}, chaosStart, chaosEnd, hosts); err != nil {
		return res, err
	}
	res.Secs = time.Since(began).Seconds()
	return res, nil
}

func (s *soak) start(name, bin string, env []string, args ...string) (*procs.Proc, error) {
	return procs.Start(s.cfg.Dir, name, bin, env, args...)
}

// leaseTTL is the dispatchers' lease in the soak.
const leaseTTL = 5 * time.Second

// dispatcher is one of the soak's two dispatchers.
type dispatcher struct {
	name, cfg, records, metrics string
	p                           *procs.Proc
}

func (s *soak) startDispatcher(d *dispatcher) (err error) {
	d.p, err = s.start(d.name, "dispatcher", append([]string{"FLOCK_CONFIG=" + d.cfg}, s.env...))
	return err
}

// role asks the dispatcher's /readyz: leader, standby, or "" when it does not answer.
func (d *dispatcher) role() string {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + d.metrics + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.TrimPrefix(strings.TrimSpace(string(body)), "ready: role ")
}

func waitRole(d *dispatcher, role string, within time.Duration) error {
	for start := time.Now(); d.role() != role; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > within {
			return fmt.Errorf("%s is not %s after %s (see %s)", d.name, role, within, d.p.Log)
		}
	}
	return nil
}

// replaceLeader stops the leading dispatcher with sig, waits for the other
// to lead, starts the stopped one again (a standby) and returns how long
// the takeover took.
func (s *soak) replaceLeader(disps []*dispatcher, sig syscall.Signal) (time.Duration, error) {
	leader, other := disps[0], disps[1]
	if other.role() == "leader" {
		leader, other = other, leader
	}
	if leader.role() != "leader" {
		return 0, fmt.Errorf("no dispatcher leads (see %s, %s)", disps[0].p.Log, disps[1].p.Log)
	}
	at := time.Now()
	if sig == syscall.SIGKILL {
		leader.p.Stop(syscall.SIGKILL)
	} else {
		go leader.p.Stop(sig)
	}
	if err := waitRole(other, "leader", 3*leaseTTL); err != nil {
		return 0, err
	}
	took := time.Since(at)
	if sig != syscall.SIGKILL {
		if _, err := leader.p.Wait(30 * time.Second); err != nil {
			return 0, err
		}
	}
	return took, s.startDispatcher(leader)
}

// possibleDuplicates reads the count a dispatcher logs when it stops.
func possibleDuplicates(log string) int {
	data, _ := os.ReadFile(log)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		var l struct {
			Msg string `json:"msg"`
			N   int    `json:"possible_duplicates"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "stopped" {
			n += l.N
		}
	}
	return n
}

func (s *soak) writeConfig(name, hostsFile, records, metrics string) (string, error) {
	hosts, err := os.ReadFile(hostsFile)
	if err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`nats: {url: %q, ack_wait: %s, max_deliver: 5}
dispatcher: {name: %s, lease_ttl: %s}
metrics: {listen: %q}
poller: {concurrency: 300, shutdown_grace: 5s}
defaults:
  interval: %s
  timeout: 500ms
  retries: 1
  get: [sysDescr.0, sysUpTime.0]
  walk: [IF-MIB::ifDescr]
sinks: [{type: file, path: %q}]
%s`, s.natsURL, s.cfg.AckWait, name, leaseTTL, metrics, s.cfg.Interval, records, hosts)
	path := filepath.Join(s.cfg.Dir, name+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// observe records every task queued: a plain subscriber on the task
// subjects receives a copy of each publish the stream stores.
func (s *soak) observe() (*nats.Conn, error) {
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	_, err = nc.Subscribe("flock.tasks.>", func(m *nats.Msg) {
		var t struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m.Data, &t) != nil || t.ID == "" {
			return
		}
		ms := int64(0)
		fmt.Sscanf(t.ID[strings.LastIndex(t.ID, "@")+1:], "%d", &ms)
		s.mu.Lock()
		s.tasks[t.ID] = time.UnixMilli(ms)
		s.mu.Unlock()
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nc.Flush()
}

// count compares the tasks queued during the chaos phase with the records
// written to the sinks.
func (s *soak) count(res *Result, sinks []string, chaosStart, chaosEnd time.Time, hostsFile string) error {
	written := map[string]int{}
	for _, path := range sinks {
		if err := readSink(res, path, written); err != nil {
			return err
		}
	}
	for _, n := range written {
		if n > 1 {
			res.Duplicates += n - 1
		}
	}
	res.Duplicates = max(0, res.Duplicates-res.PossibleDuplicates)
	s.mu.Lock()
	defer s.mu.Unlock()
	perHost := map[string]int{}
	for id, slot := range s.tasks {
		if slot.Before(chaosStart) || slot.After(chaosEnd) {
			continue
		}
		res.Tasks++
		perHost[id[:strings.LastIndex(id, "@")]]++
		if written[id] == 0 {
			res.Missing++
			if res.Missing <= 10 {
				s.logf("missing: %s", id)
			}
		}
	}
	// Slots per host in the chaos phase, against those queued.
	expected := int(chaosEnd.Sub(chaosStart)/s.cfg.Interval) * s.cfg.Devices
	res.UnpublishedSlots = max(0, expected-res.Tasks)
	return nil
}

// readSink counts a file sink's records by task id.
func readSink(res *Result, path string, written map[string]int) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a dispatcher that never led writes nothing
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r struct {
			TaskID string           `json:"task_id"`
			Error  *json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("sink line: %w", err)
		}
		written[r.TaskID]++
		res.Records++
		if r.Error != nil && string(*r.Error) != "null" {
			res.ErrorRecords++
		}
	}
	return sc.Err()
}

// refusedTasks reads the task ids the dispatchers logged as refused by the stream.
func refusedTasks(logDir string) (map[string]bool, error) {
	files, err := filepath.Glob(filepath.Join(logDir, "dispatcher*.log"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			var l struct {
				Msg    string `json:"msg"`
				TaskID string `json:"task_id"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "task refused" {
				out[l.TaskID] = true
			}
		}
	}
	return out, nil
}

// leakLine reads the leak check a binary logs at its graceful exit.
func leakLine(path string) (goroutines, sockets int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct {
			Msg        string `json:"msg"`
			Goroutines int    `json:"leaked_goroutines"`
			Sockets    int    `json:"open_sockets"`
		}
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l.Msg == "leak check" {
			return l.Goroutines, l.Sockets, nil
		}
	}
	return 0, 0, errors.New("no leak check line: it did not exit gracefully (see " + path + ")")
}
