package natstest

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flock-snmp/flock/harness/procs"
)

// Cluster is a JetStream cluster of nats-servers in this process, on
// loopback, each with its own store, which a test can stop and start again.
type Cluster struct {
	tb    testing.TB
	opts  []*server.Options
	Nodes []*server.Server
}

// RunCluster starts n clustered JetStream servers and waits for their
// meta leader; they stop when the test ends.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	dir := tb.TempDir()
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		var err error
		if clientPorts[i], err = procs.FreePort(); err != nil {
			tb.Fatal(err)
		}
		if routePorts[i], err = procs.FreePort(); err != nil {
			tb.Fatal(err)
		}
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: clientPorts[i], NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), MaxPayload: 8 << 20,
			JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 8 << 30, // limits, not allocations: FLOCK_RESULTS may hold 2 GiB
			Cluster: server.ClusterOpts{Name: "flock-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.opts = append(c.opts, o)
		c.Nodes = append(c.Nodes, nil)
	}
	for i := range n {
		c.Start(i)
	}
	tb.Cleanup(func() {
		for _, s := range c.Nodes {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	c.WaitForLeader()
	return c
}

// Start starts node i (again, on its own store and ports).
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.tb.Fatalf("node %d: %v", i+1, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.tb.Fatalf("node %d not ready", i+1)
	}
	c.Nodes[i] = s
}

// Stop stops node i, as a crash would to its clients.
func (c *Cluster) Stop(i int) {
	c.Nodes[i].Shutdown()
	c.Nodes[i].WaitForShutdown()
	c.Nodes[i] = nil
}

// Node is the index of the node named name, or -1.
func (c *Cluster) Node(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// WaitForLeader waits until a running node is the JetStream meta leader.
func (c *Cluster) WaitForLeader() {
	c.tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, s := range c.Nodes {
			if s != nil && s.JetStreamIsLeader() {
				return
			}
		}
	}
	c.tb.Fatal("no JetStream meta leader within 20s")
}

// URL lists every node's client URL, comma-separated (as nats.url takes them).
func (c *Cluster) URL() string {
	var us []string
	for _, o := range c.opts {
		us = append(us, (&url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", o.Port)}).String())
	}
	return strings.Join(us, ",")
}
