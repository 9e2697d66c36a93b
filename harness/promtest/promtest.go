// Package promtest runs Debian's Prometheus (remote-write receiver on) or
// VictoriaMetrics for tests, on loopback, with its store in the test's
// temporary directory; it stops when the test ends, and can be stopped and
// started again meanwhile.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/procs"
)

// Server is a running Prometheus (or VictoriaMetrics, which answers the
// same query API).
type Server struct {
	// URL is its base, http://127.0.0.1:<port>.
	URL string
	tb  testing.TB
	// what, args, log and ready say how to start it again (Restart).
	what  string
	args  []string
	log   string
	ready string
	cmd   *exec.Cmd
}

// WriteURL is its remote-write endpoint.
func (s *Server) WriteURL() string { return s.URL + "/api/v1/write" }

// Start runs prometheus (it must be installed: apt-get install prometheus)
// until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1m}\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	addr := freeAddr(tb)
	return run(tb, "prometheus", "apt-get install prometheus", addr, "/-/ready", filepath.Join(dir, "prometheus.log"),
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver", "--log.level=warn")
}

// StartVictoriaMetrics runs Debian's victoria-metrics (single node; apt-get
// install victoria-metrics) until the test ends. Its remote-write endpoint
// is WriteURL, its InfluxDB line protocol one InfluxWriteURL; what it is
// sent is searchable at once (no latency offset).
func StartVictoriaMetrics(tb testing.TB) *Server {
	tb.Helper()
	dir := tb.TempDir()
	addr := freeAddr(tb)
	return run(tb, "victoria-metrics", "apt-get install victoria-metrics", addr, "/health", filepath.Join(dir, "victoria-metrics.log"),
		"-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(dir, "data"), "-retentionPeriod=1",
		"-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN")
}

// InfluxWriteURL is VictoriaMetrics' InfluxDB line protocol endpoint; a
// field f of measurement m is stored as the series m_f.
func (s *Server) InfluxWriteURL() string { return s.URL + "/write?db=flock" }

func freeAddr(tb testing.TB) string {
	port, err := procs.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func run(tb testing.TB, what, install, addr, ready, logPath string, args ...string) *Server {
	s := &Server{URL: "http://" + addr, tb: tb, what: what, args: args, log: logPath, ready: ready}
	if _, err := exec.LookPath(what); err != nil {
		tb.Fatalf("%s is not installed (%s): %v", what, install, err)
	}
	tb.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Stop stops the server (SIGTERM, as a service manager does), keeping its
// data for Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Restart starts the server (again, after Stop) on the same address and
// data, and waits until it is ready.
func (s *Server) Restart() {
	tb := s.tb
	tb.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.what, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", s.what, err)
	}
	s.cmd = cmd
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(s.URL + s.ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.log)
			tb.Fatalf("%s not ready on %s within 30 s:\n%s", s.what, s.URL, log)
		}
	}
}

// Result is one series of an instant query's answer.
type Result struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant PromQL query at time at.
func (s *Server) Query(ctx context.Context, query string, at time.Time) ([]Result, error) {
	u := s.URL + "/api/v1/query?" + url.Values{"query": {query}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", query, body.Error)
	}
	out := make([]Result, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", query, r.Value[1], err)
		}
		out = append(out, Result{Labels: r.Metric, Value: v})
	}
	return out, nil
}
