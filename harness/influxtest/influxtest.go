// Package influxtest runs Debian's InfluxDB (1.x) for tests, on loopback,
// with its data in the test's temporary directory; it stops when the test
// ends.
package influxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/procs"
)

// Server is a running influxd.
type Server struct {
	// URL is its HTTP API's base, http://127.0.0.1:<port>.
	URL string
}

// WriteURL is the v1 write URL of database db.
func (s *Server) WriteURL(db string) string { return s.URL + "/write?db=" + url.QueryEscape(db) }

// Start runs influxd (it must be installed: apt-get install influxdb)
// until the test ends, with database db made.
func Start(tb testing.TB, db string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("influxd")
	if err != nil {
		tb.Fatalf("influxd is not installed (apt-get install influxdb): %v", err)
	}
	dir := tb.TempDir()
	httpPort, err := procs.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	rpcPort, err := procs.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`, rpcPort, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpPort)
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "influxd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start influxd: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(s.URL + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "influxd.log"))
			tb.Fatalf("influxd not ready within 30 s:\n%s", log)
		}
	}
	if _, err := s.Query(context.Background(), "", "CREATE DATABASE "+db); err != nil {
		tb.Fatal(err)
	}
	return s
}

// Query runs an InfluxQL query on db and returns the first series' rows,
// each column by name.
func (s *Server) Query(ctx context.Context, db, q string) ([]map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/query?"+url.Values{"db": {db}, "q": {q}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Columns []string `json:"columns"`
				Values  [][]any  `json:"values"`
			} `json:"series"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if body.Error != "" || len(body.Results) == 0 || body.Results[0].Error != "" {
		return nil, fmt.Errorf("query %s: %s", q, strings.TrimSpace(body.Error+" "+first(body.Results)))
	}
	var out []map[string]any
	for _, ser := range body.Results[0].Series {
		for _, v := range ser.Values {
			m := map[string]any{}
			for i, c := range ser.Columns {
				m[c] = v[i]
			}
			out = append(out, m)
		}
	}
	return out, nil
}

func first[T any](rs []T) string {
	if len(rs) == 0 {
		return "no result"
	}
	return fmt.Sprint(rs[0])
}
