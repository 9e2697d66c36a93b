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
	return runCluster(tb, n, func(int) *server.Options {
		return &server.Options{JetStream: true, Cluster: server.ClusterOpts{Name: "flock-test"}}
	})
}

// RunClusterFrom starts n nodes configured by the nats-server
// configuration file conf, as a deployment would run it (its variables
// resolved from the environment the test set, FLOCK_NATS_NAME and
// FLOCK_ROUTE_URL_1..3 included), but on loopback: ports, routes, stores
// and server names are the harness's. Each node has a leaf node port
// (LeafAddr) when conf has one; it does not advertise the others', so a
// leaf dialling one node through a proxy stays behind the proxy.
func RunClusterFrom(tb testing.TB, conf string, n int) *Cluster {
	tb.Helper()
	return runCluster(tb, n, func(i int) *server.Options {
		o, err := server.ProcessConfigFile(conf)
		if err != nil {
			tb.Fatalf("%s: %v", conf, err)
		}
		return o
	})
}

func runCluster(tb testing.TB, n int, base func(i int) *server.Options) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	dir := tb.TempDir()
	port := func() int {
		p, err := procs.FreePort()
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		clientPorts[i], routePorts[i] = port(), port()
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range n {
		o := base(i)
		o.ServerName, o.Host, o.Port, o.NoSigs, o.NoLog = fmt.Sprintf("n%d", i+1), "127.0.0.1", clientPorts[i], true, true
		o.HTTPPort, o.HTTPSPort = 0, 0
		o.StoreDir, o.MaxPayload = filepath.Join(dir, fmt.Sprintf("n%d", i+1)), 8<<20
		o.JetStreamMaxMemory, o.JetStreamMaxStore = 64<<20, 8<<30 // limits, not allocations: FLOCK_RESULTS may hold 2 GiB
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		if o.Cluster.Username != "" { // the routes log in as the file says
			for _, r := range o.Routes {
				r.User = url.UserPassword(o.Cluster.Username, o.Cluster.Password)
			}
		}
		if o.LeafNode.Port != 0 {
			o.LeafNode.Host, o.LeafNode.Port, o.LeafNode.NoAdvertise = "127.0.0.1", port(), true
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

// LeafAddr is node i's leaf node address (host:port), "" when it has none.
func (c *Cluster) LeafAddr(i int) string {
	if c.opts[i].LeafNode.Port == 0 {
		return ""
	}
	return fmt.Sprintf("127.0.0.1:%d", c.opts[i].LeafNode.Port)
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

// RunLeaf starts a server configured by conf (a leaf node's configuration,
// its variables from the environment the test set) on a loopback port of
// its own; it stops when the test ends.
func RunLeaf(tb testing.TB, conf string) *server.Server {
	tb.Helper()
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		tb.Fatalf("%s: %v", conf, err)
	}
	p, err := procs.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	o.Host, o.Port, o.HTTPPort, o.HTTPSPort, o.NoSigs, o.NoLog = "127.0.0.1", p, 0, 0, true, true
	return Serve(tb, o)
}

// Serve starts a server with o as it is, waits until it takes
// connections and stops it when the test ends.
func Serve(tb testing.TB, o *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("nats-server %s: %v", o.ServerName, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatalf("nats-server %s not ready", o.ServerName)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
