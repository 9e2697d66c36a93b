package config

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/flock-snmp/flock/internal/oid"
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

func (c *Config) validate(file string) error {
	p := &problems{file: file}
	c.validateNATS(p)
	if c.Poller.Concurrency < 1 || c.Poller.Concurrency > 100_000 {
		p.add("poller.concurrency", "%d is out of range 1..100000", c.Poller.Concurrency)
	}
	if c.Poller.ShutdownGrace < 0 {
		p.add("poller.shutdown_grace", "%s is negative", c.Poller.ShutdownGrace)
	}
	if c.Dispatcher.OnceTimeout < 0 {
		p.add("dispatcher.once_timeout", "%s is negative", c.Dispatcher.OnceTimeout)
	}
	c.validateCredentials(p)
	d := &c.Defaults
	checkPollSettings(p, "defaults", d.settings(), nil)
	d.Get = checkOIDs(p, "defaults.get", d.Get)
	d.Walk = checkOIDs(p, "defaults.walk", d.Walk)
	if _, ok := c.Credential(d.Credentials); !ok {
		p.add("defaults.credentials", "%q is not a defined credential profile (defined: %s)", d.Credentials, c.credentialNames())
	}
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
	if n.ConnectTimeout < 0 {
		p.add("nats.connect_timeout", "%s is negative", n.ConnectTimeout)
	}
}

func (c *Config) validateCredentials(p *problems) {
	seen := map[string]int{}
	for i, cr := range c.Credentials {
		key := fmt.Sprintf("credentials[%d]", i)
		switch {
		case cr.Name == "":
			p.add(key+".name", "is empty")
		case strings.ContainsAny(cr.Name, " \t*>."):
			p.add(key+".name", "%q may not contain spaces, '.', '*' or '>'", cr.Name)
		}
		if j, dup := seen[cr.Name]; dup && cr.Name != "" {
			p.add(key+".name", "%q is already defined by credentials[%d]", cr.Name, j)
		}
		seen[cr.Name] = i
		switch cr.Version {
		case Version1, Version2c:
			if cr.Community == "" {
				p.add(key+".community", "is empty (SNMP v%s needs a community)", cr.Version)
			}
		case Version3:
			p.add(key+".version", "SNMPv3 is not supported yet")
		default:
			p.add(key+".version", "%q is not an SNMP version (want 1 or 2c)", cr.Version)
		}
	}
}

func (c *Config) credentialNames() string {
	names := make([]string, len(c.Credentials))
	for i, cr := range c.Credentials {
		names[i] = cr.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// pollSettings are the per-host knobs that defaults set and hosts override.
type pollSettings struct {
	port, retries, maxOids, maxRep int
	timeout, pollTimeout           time.Duration
}

// checkPollSettings validates s under key. A value equal to the one in
// inherited (the defaults, already checked) is not reported again.
func checkPollSettings(p *problems, key string, s pollSettings, inherited *pollSettings) {
	fresh := func(same bool) bool { return inherited == nil || !same }
	if fresh(inherited != nil && s.port == inherited.port) && (s.port < 1 || s.port > 65535) {
		p.add(key+".port", "%d is not a port number (1..65535)", s.port)
	}
	if fresh(inherited != nil && s.timeout == inherited.timeout) && s.timeout <= 0 {
		p.add(key+".timeout", "%s is not positive", s.timeout)
	}
	if fresh(inherited != nil && s.retries == inherited.retries) && (s.retries < 0 || s.retries > 100) {
		p.add(key+".retries", "%d is out of range 0..100", s.retries)
	}
	if fresh(inherited != nil && s.maxOids == inherited.maxOids) && (s.maxOids < 1 || s.maxOids > 128) {
		p.add(key+".max_oids", "%d is out of range 1..128", s.maxOids)
	}
	if fresh(inherited != nil && s.maxRep == inherited.maxRep) && (s.maxRep < 1 || s.maxRep > 1000) {
		p.add(key+".max_repetitions", "%d is out of range 1..1000", s.maxRep)
	}
	if fresh(inherited != nil && s.pollTimeout == inherited.pollTimeout) && s.pollTimeout < 0 {
		p.add(key+".poll_timeout", "%s is negative", s.pollTimeout)
	}
}

func (d *HostDefaults) settings() pollSettings {
	return pollSettings{port: d.Port, retries: d.Retries, maxOids: d.MaxOids, maxRep: d.MaxRepetitions,
		timeout: d.Timeout, pollTimeout: d.PollTimeout}
}

// checkOIDs validates and canonicalises a list of numeric OIDs.
func checkOIDs(p *problems, key string, in []string) []string {
	out := make([]string, 0, len(in))
	for i, s := range in {
		o, err := oid.Normalize(strings.TrimSpace(s))
		if err != nil {
			p.add(fmt.Sprintf("%s[%d]", key, i), "%v (MIB names are not supported yet: write the numeric OID)", err)
			continue
		}
		out = append(out, o)
	}
	return out
}

// hostSpec is one entry of the hosts list when it is an object.
type hostSpec struct {
	Name           string         `mapstructure:"name"`
	Address        string         `mapstructure:"address"`
	Port           *int           `mapstructure:"port"`
	Credentials    *string        `mapstructure:"credentials"`
	Timeout        *time.Duration `mapstructure:"timeout"`
	Retries        *int           `mapstructure:"retries"`
	Get            []string       `mapstructure:"get"`
	Walk           []string       `mapstructure:"walk"`
	MaxOids        *int           `mapstructure:"max_oids"`
	MaxRepetitions *int           `mapstructure:"max_repetitions"`
	PollTimeout    *time.Duration `mapstructure:"poll_timeout"`
}

var hostKeys = []string{"name", "address", "port", "credentials", "timeout", "retries", "get", "walk", "max_oids", "max_repetitions", "poll_timeout"}

func (c *Config) buildHosts(p *problems) {
	d := &c.Defaults
	type seenHost struct {
		index int
		name  string
	}
	byKey := map[string]seenHost{}
	for i, raw := range c.RawHosts {
		key := fmt.Sprintf("hosts[%d]", i)
		var spec hostSpec
		switch h := raw.(type) {
		case string:
			spec.Name = h
		case map[string]any:
			if !decodeHost(p, key, h, &spec) {
				continue
			}
		default:
			p.add(key, "want a host name or an object with name/address, got %v", raw)
			continue
		}
		spec.Name = strings.TrimSpace(spec.Name)
		if spec.Name == "" {
			p.add(key+".name", "is empty")
			continue
		}
		h := Host{
			Name: spec.Name, Address: spec.Address, Port: uint16(d.Port), Credentials: d.Credentials,
			Timeout: d.Timeout, Retries: d.Retries, Get: d.Get, Walk: d.Walk,
			MaxOids: d.MaxOids, MaxRepetitions: d.MaxRepetitions, PollTimeout: d.PollTimeout,
		}
		if h.Address == "" {
			h.Address = h.Name
		}
		if strings.ContainsAny(h.Address, " \t/") {
			p.add(key+".address", "%q is not a host name or IP address", h.Address)
		}
		k, err := task.HostKey(h.Name)
		if err != nil {
			p.add(key+".name", "%v", err)
		} else if prev, dup := byKey[k]; dup {
			p.add(key+".name", "host %q has host key %q, the same as hosts[%d] (%q): host names must differ in more than case, '.', ':' and '-'",
				h.Name, k, prev.index, prev.name)
		} else {
			byKey[k] = seenHost{i, h.Name}
		}
		h.Key = k
		port := d.Port
		if spec.Port != nil {
			port = *spec.Port
		}
		override(&h.Credentials, spec.Credentials)
		override(&h.Timeout, spec.Timeout)
		override(&h.Retries, spec.Retries)
		override(&h.MaxOids, spec.MaxOids)
		override(&h.MaxRepetitions, spec.MaxRepetitions)
		override(&h.PollTimeout, spec.PollTimeout)
		if spec.Get != nil {
			h.Get = checkOIDs(p, key+".get", spec.Get)
		}
		if spec.Walk != nil {
			h.Walk = checkOIDs(p, key+".walk", spec.Walk)
		}
		inherited := d.settings()
		checkPollSettings(p, key, pollSettings{port: port, retries: h.Retries, maxOids: h.MaxOids, maxRep: h.MaxRepetitions,
			timeout: h.Timeout, pollTimeout: h.PollTimeout}, &inherited)
		h.Port = uint16(port)
		if _, ok := c.Credential(h.Credentials); !ok {
			p.add(key+".credentials", "%q is not a defined credential profile (defined: %s)", h.Credentials, c.credentialNames())
		}
		if len(h.Get) == 0 && len(h.Walk) == 0 {
			p.add(key, "host %q has nothing to poll: get and walk are both empty", h.Name)
		}
		if h.PollTimeout == 0 {
			h.PollTimeout = derivedPollTimeout(h.Timeout, h.Retries)
		}
		c.Hosts = append(c.Hosts, h)
	}
}

// derivedPollTimeout allows a dead host its full timeout and retries twice
// over (a GET then a walk), plus a second of slack for live hosts' walks.
func derivedPollTimeout(timeout time.Duration, retries int) time.Duration {
	return 2*timeout*time.Duration(retries+1) + time.Second
}

func override[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

func decodeHost(p *problems, key string, m map[string]any, spec *hostSpec) bool {
	var unknown []string
	for k := range m {
		known := false
		for _, hk := range hostKeys {
			if k == hk {
				known = true
				break
			}
		}
		if !known {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		p.add(key, "unknown key(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(hostKeys, ", "))
		return false
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: spec, WeaklyTypedInput: true, TagName: "mapstructure", DecodeHook: decodeHooks,
	})
	if err == nil {
		err = dec.Decode(m)
	}
	if err != nil {
		addDecodeProblems(p, key, err)
		return false
	}
	return true
}
