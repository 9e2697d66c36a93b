package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
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
	if c.Poller.Concurrency < 1 || c.Poller.Concurrency > 100_000 {
		p.add("poller.concurrency", "%d is out of range 1..100000", c.Poller.Concurrency)
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
	c.validateCredentials(p, getenv)
	c.validateModules(p)
	c.checkLevel(p, "defaults", &c.Defaults, nil)
	c.validateSinks(p)
	c.buildGroups(p)
	c.buildHosts(p)
	return p.err()
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
	if _, _, err := net.SplitHostPort(n.Embedded.Listen); err != nil {
		p.add("nats.embedded.listen", "%q is not host:port: %v", n.Embedded.Listen, err)
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
	if n.ConnectTimeout < 0 {
		p.add("nats.connect_timeout", "%s is negative", n.ConnectTimeout)
	}
}

func (c *Config) credentialNames() string { return names(c.Credentials) }
