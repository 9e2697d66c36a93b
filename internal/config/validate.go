package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// problems collects "file: key: message" errors.
type problems struct {
	file string
	errs []error
}

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s: %s", p.file, key, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(p.errs...))
}

func (c *Config) validate(file string, getenv func(string) string) error {
	p := &problems{file: file}
	c.loadResolver(p)
	c.validateNATS(p)
	c.validateNATSAuth(p, getenv)
	if c.Poller.Concurrency < 1 || c.Poller.Concurrency > 100_000 {
		p.add("poller.concurrency", "%d is out of range 1..100000", c.Poller.Concurrency)
	}
	if c.Poller.MaxPacketsPerSecond < 0 || c.Poller.MaxPacketsPerSecond > 10_000_000 {
		p.add("poller.max_packets_per_second", "%g is out of range 0..10000000 (0: unbounded)", c.Poller.MaxPacketsPerSecond)
	}
	if err := task.CheckSite(c.Poller.Site); err != nil {
		p.add("poller.site", "%v", err)
	}
	if a := c.Poller.SourceAddress; a != "" {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" {
			p.add("poller.source_address", "%q is not an IP address (the local address SNMP requests are sent from)", a)
		}
	}
	if c.Poller.ShutdownGrace < 0 {
		p.add("poller.shutdown_grace", "%s is negative", c.Poller.ShutdownGrace)
	}
	if c.Poller.Heartbeat < 100*time.Millisecond {
		p.add("poller.heartbeat", "%s is shorter than 100ms", c.Poller.Heartbeat)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		p.add("log.format", "%q is not text or json", c.Log.Format)
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			p.add("metrics.listen", "%q is not host:port: %v", l, err)
		}
	}
	if c.Dispatcher.OnceTimeout < 0 {
		p.add("dispatcher.once_timeout", "%s is negative", c.Dispatcher.OnceTimeout)
	}
	if c.Dispatcher.LeaseTTL < time.Second {
		p.add("dispatcher.lease_ttl", "%s is shorter than 1s", c.Dispatcher.LeaseTTL)
	}
	c.validateCredentials(p, getenv)
	c.validateModules(p)
	c.checkLevel(p, "defaults", &c.Defaults, nil)
	c.validateSinks(p, getenv)
	c.buildGroups(p)
	c.buildHosts(p)
	// The lists as written are done with: a 100,000-host inventory's raw
	// maps would otherwise stay in memory for the life of the process.
	c.RawGroups, c.RawHosts = nil, nil
	return p.err()
}

// validateNATSAuth resolves the password (FLOCK_NATS_PASSWORD, the value or
// password_file), makes file paths absolute and checks that the files can
// be read and that at most one way of authenticating is given.
func (c *Config) validateNATSAuth(p *problems, getenv func(string) string) {
	n := &c.NATS
	baseDir := ""
	if c.File != "" {
		baseDir = filepath.Dir(c.File)
	}
	if getenv(EnvPrefix+"_NATS_PASSWORD") != "" && n.PasswordFile != "" {
		n.PasswordFile = "" // the environment wins over the file, as for credentials
	}
	resolveSecret(p, "nats.password", &n.Password, n.PasswordFile, EnvPrefix+"_NATS_PASSWORD", baseDir, getenv)
	ways := []string{}
	if n.User != "" || n.Password != "" {
		ways = append(ways, "user/password")
		if n.User == "" {
			p.add("nats.user", "is empty but a password is given")
		}
		if n.Password == "" {
			p.add("nats.password", "is missing for nats.user %q (give password, password_file or %s_NATS_PASSWORD)", n.User, EnvPrefix)
		}
	}
	for _, f := range []struct {
		key string
		dst *string
		way string
	}{{"nats.nkey_seed_file", &n.NKeySeedFile, "nkey"}, {"nats.creds_file", &n.CredsFile, "creds"}, {"nats.embedded.config_file", &n.Embedded.ConfigFile, ""},
		{"nats.tls.ca_file", &n.TLS.CAFile, ""}, {"nats.tls.cert_file", &n.TLS.CertFile, ""}, {"nats.tls.key_file", &n.TLS.KeyFile, ""}} {
		if *f.dst == "" {
			continue
		}
		if f.way != "" {
			ways = append(ways, f.way)
		}
		if !filepath.IsAbs(*f.dst) && baseDir != "" {
			*f.dst = filepath.Join(baseDir, *f.dst)
		}
		if fh, err := os.Open(*f.dst); err != nil {
			p.add(f.key, "cannot read %s: %v", *f.dst, errUnwrapPath(err))
		} else {
			_ = fh.Close()
		}
	}
	if len(ways) > 1 {
		p.add("nats", "give one way to authenticate, not %s", strings.Join(ways, " and "))
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		p.add("nats.tls", "cert_file and key_file go together (a client certificate needs its key)")
	}
}

func (c *Config) validateNATS(p *problems) {
	n := &c.NATS
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			u = strings.TrimSpace(u)
			if !strings.Contains(u, "://") {
				p.add("nats.url", "%q is not a URL (want nats://host:port)", u)
			}
		}
	}
	if host, _, err := net.SplitHostPort(n.Embedded.Listen); err != nil {
		p.add("nats.embedded.listen", "%q is not host:port: %v", n.Embedded.Listen, err)
	} else if ip := net.ParseIP(host); n.URL == "" && n.Embedded.ConfigFile == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		p.add("nats.embedded.listen", "%q is beyond this machine: the embedded server listens there only with authentication "+
			"(set nats.embedded.config_file to a nats-server configuration with users, such as config/nats-server.conf)", n.Embedded.Listen)
	}
	if n.Embedded.StoreDir == "" {
		p.add("nats.embedded.store_dir", "is empty")
	}
	if n.AckWait < time.Second {
		p.add("nats.ack_wait", "%s is shorter than 1s", n.AckWait)
	}
	if n.MaxDeliver < 1 {
		p.add("nats.max_deliver", "%d is less than 1", n.MaxDeliver)
	}
	if n.MaxQueuedTasks < 1 {
		p.add("nats.max_queued_tasks", "%d is less than 1", n.MaxQueuedTasks)
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add("nats.replicas", "%d is out of range 1..5 (JetStream keeps at most 5 replicas; 3 on a 3-node cluster)", n.Replicas)
	}
	if n.ConnectTimeout < 0 {
		p.add("nats.connect_timeout", "%s is negative", n.ConnectTimeout)
	}
}

func (c *Config) credentialNames() string { return names(c.Credentials) }
