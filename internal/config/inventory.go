package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/flock-snmp/flock/internal/agent"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/task"
)

// Module is a named, reusable set of OIDs (snmp_exporter's sense).
type Module struct {
	Name string   `mapstructure:"name"`
	Get  []string `mapstructure:"get"`
	Walk []string `mapstructure:"walk"`
	// Lookups name table columns (ifName) whose values label, in metric
	// outputs, the rows of their table and of tables with the same index;
	// a lookup column that get and walk do not cover is walked as well.
	Lookups []string `mapstructure:"lookups"`
	// Info names string objects (sysDescr, ifDescr) that metric outputs
	// show as <name>_info samples, the string as a label and 1 as value.
	Info []string `mapstructure:"info"`
	// LookupOIDs and InfoOIDs are Lookups and Info resolved (numeric).
	LookupOIDs []string `mapstructure:"-"`
	InfoOIDs   []string `mapstructure:"-"`
}

// HostDefaults are the settings every host gets unless a group it joins or
// the host itself overrides them.
type HostDefaults struct {
	// Site is where the host is polled from: only pollers of that site
	// (poller.site) take its tasks.
	Site           string        `mapstructure:"site"`
	Credentials    string        `mapstructure:"credentials"`
	Port           int           `mapstructure:"port"`
	Timeout        time.Duration `mapstructure:"timeout"`
	Retries        int           `mapstructure:"retries"`
	Get            []string      `mapstructure:"get"`
	Walk           []string      `mapstructure:"walk"`
	Modules        []string      `mapstructure:"modules"`
	MaxOids        int           `mapstructure:"max_oids"`
	MaxRepetitions int           `mapstructure:"max_repetitions"`
	// PollTimeout bounds a whole poll of one host; 0 derives it from timeout and retries.
	PollTimeout time.Duration `mapstructure:"poll_timeout"`
	// Interval between polls of a host; Jitter adds up to that much delay to each poll.
	Interval time.Duration `mapstructure:"interval"`
	Jitter   time.Duration `mapstructure:"jitter"`
	// Bulk false walks with GETNEXT even on v2c/v3, for agents that mishandle GETBULK.
	Bulk bool `mapstructure:"bulk"`
	// AllowNonIncreasingOIDs lets walks continue through agents that return OIDs out of order.
	AllowNonIncreasingOIDs bool `mapstructure:"allow_nonincreasing_oids"`
	// UnconnectedUDP accepts answers from another address than the one asked (multi-homed agents).
	UnconnectedUDP bool `mapstructure:"unconnected_udp"`
	// MaxOutstanding bounds the requests in flight to one agent address
	// (hosts that share an address and port share it), as net-snmp's tools
	// send one at a time.
	MaxOutstanding int `mapstructure:"max_outstanding"`
}

// overrides are the settings a group or a host may set; nil means "inherit".
type overrides struct {
	Site                   *string        `mapstructure:"site"`
	Credentials            *string        `mapstructure:"credentials"`
	Port                   *int           `mapstructure:"port"`
	Timeout                *time.Duration `mapstructure:"timeout"`
	Retries                *int           `mapstructure:"retries"`
	Get                    []string       `mapstructure:"get"`
	Walk                   []string       `mapstructure:"walk"`
	Modules                []string       `mapstructure:"modules"`
	MaxOids                *int           `mapstructure:"max_oids"`
	MaxRepetitions         *int           `mapstructure:"max_repetitions"`
	PollTimeout            *time.Duration `mapstructure:"poll_timeout"`
	Interval               *time.Duration `mapstructure:"interval"`
	Jitter                 *time.Duration `mapstructure:"jitter"`
	Bulk                   *bool          `mapstructure:"bulk"`
	AllowNonIncreasingOIDs *bool          `mapstructure:"allow_nonincreasing_oids"`
	UnconnectedUDP         *bool          `mapstructure:"unconnected_udp"`
	MaxOutstanding         *int           `mapstructure:"max_outstanding"`
}

var overrideKeys = []string{"site", "credentials", "port", "timeout", "retries", "get", "walk", "modules", "max_oids",
	"max_repetitions", "poll_timeout", "interval", "jitter", "bulk", "allow_nonincreasing_oids", "unconnected_udp",
	"max_outstanding"}

func (o *overrides) applyTo(s *HostDefaults) {
	override(&s.Site, o.Site)
	override(&s.Credentials, o.Credentials)
	override(&s.Port, o.Port)
	override(&s.Timeout, o.Timeout)
	override(&s.Retries, o.Retries)
	override(&s.MaxOids, o.MaxOids)
	override(&s.MaxRepetitions, o.MaxRepetitions)
	override(&s.PollTimeout, o.PollTimeout)
	override(&s.Interval, o.Interval)
	override(&s.Jitter, o.Jitter)
	override(&s.Bulk, o.Bulk)
	override(&s.AllowNonIncreasingOIDs, o.AllowNonIncreasingOIDs)
	override(&s.UnconnectedUDP, o.UnconnectedUDP)
	override(&s.MaxOutstanding, o.MaxOutstanding)
	if o.Get != nil {
		s.Get = o.Get
	}
	if o.Walk != nil {
		s.Walk = o.Walk
	}
	if o.Modules != nil {
		s.Modules = o.Modules
	}
}

func override[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// Group is a named set of overrides that hosts join.
type Group struct {
	Name string
	overrides
}

// Host is one device to poll, with defaults, groups and its own settings applied.
type Host struct {
	Name string
	Key  string // subject-safe token, see task.HostKey
	Site string // which site's pollers take its tasks
	// Address is the agent's host, a name or an IP literal (IPv6 without
	// brackets), and Port and Transport how to reach it: read from the
	// address or name as written (see package agent). Transport is empty
	// for plain udp, as in tasks (task.PollTask.Transport).
	Address     string
	Port        uint16
	Transport   string
	Groups      []string
	Credentials string
	Timeout     time.Duration
	Retries     int
	Modules     []string
	// Lookups and Info are the numeric OIDs of the modules' lookup and info
	// objects, for metric outputs (see Module).
	Lookups []string
	Info    []string
	// Get and Walk are the union of the modules' OIDs and the host's own,
	// numeric and canonical (leading dot), without duplicates. Walk roots
	// that are known tables are in Tables instead, with their columns.
	Get                    []string
	Walk                   []string
	Tables                 []task.Table
	MaxOids                int
	MaxRepetitions         int
	PollTimeout            time.Duration
	Interval               time.Duration
	Jitter                 time.Duration
	Bulk                   bool
	AllowNonIncreasingOIDs bool
	UnconnectedUDP         bool
	MaxOutstanding         int
}

// checkLevel validates the settings a level sets: every one for defaults
// (set == nil), only the overridden ones for a group or host.
func (c *Config) checkLevel(p *problems, key string, s *HostDefaults, set *overrides) {
	all := set == nil
	if all || set.Site != nil {
		if err := task.CheckSite(s.Site); err != nil {
			p.add(key+".site", "%v", err)
		}
	}
	if all || set.Port != nil {
		if s.Port < 1 || s.Port > 65535 {
			p.add(key+".port", "%d is not a port number (1..65535)", s.Port)
		}
	}
	if (all || set.Timeout != nil) && s.Timeout <= 0 {
		p.add(key+".timeout", "%s is not positive", s.Timeout)
	}
	if (all || set.Retries != nil) && (s.Retries < 0 || s.Retries > 100) {
		p.add(key+".retries", "%d is out of range 0..100", s.Retries)
	}
	if (all || set.MaxOutstanding != nil) && (s.MaxOutstanding < 1 || s.MaxOutstanding > 256) {
		p.add(key+".max_outstanding", "%d is out of range 1..256", s.MaxOutstanding)
	}
	if (all || set.MaxOids != nil) && (s.MaxOids < 1 || s.MaxOids > 128) {
		p.add(key+".max_oids", "%d is out of range 1..128", s.MaxOids)
	}
	if (all || set.MaxRepetitions != nil) && (s.MaxRepetitions < 1 || s.MaxRepetitions > 1000) {
		p.add(key+".max_repetitions", "%d is out of range 1..1000", s.MaxRepetitions)
	}
	if (all || set.PollTimeout != nil) && s.PollTimeout < 0 {
		p.add(key+".poll_timeout", "%s is negative", s.PollTimeout)
	}
	if (all || set.Interval != nil) && s.Interval < time.Second {
		p.add(key+".interval", "%s is shorter than 1s", s.Interval)
	}
	if (all || set.Jitter != nil) && (s.Jitter < 0 || (s.Interval > 0 && s.Jitter >= s.Interval)) {
		p.add(key+".jitter", "%s must be at least 0 and shorter than the interval (%s)", s.Jitter, s.Interval)
	}
	if set != nil && set.Credentials != nil { // defaults' profile is checked where a host uses it
		if _, ok := c.Credential(s.Credentials); !ok {
			p.add(key+".credentials", "%q is not a defined credential profile (defined: %s)", s.Credentials, c.credentialNames())
		}
	}
	if all || set.Get != nil {
		s.Get = c.resolveOIDs(p, key+".get", s.Get)
	}
	if all || set.Walk != nil {
		s.Walk = c.resolveOIDs(p, key+".walk", s.Walk)
	}
	if all || set.Modules != nil {
		for i, m := range s.Modules {
			if _, ok := c.module(m); !ok {
				p.add(fmt.Sprintf("%s.modules[%d]", key, i), "%q is not a defined module (defined: %s)", m, c.moduleNames())
			}
		}
	}
}

// resolveOIDs turns names and numeric OIDs into canonical numeric OIDs.
func (c *Config) resolveOIDs(p *problems, key string, in []string) []string {
	out := make([]string, 0, len(in))
	for i, s := range in {
		o, err := c.Resolver.Resolve(s)
		if err != nil {
			p.add(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			continue
		}
		out = append(out, o)
	}
	return out
}

// named is anything configured under a name: credentials, modules, groups.
type named interface{ name() string }

func (m Module) name() string     { return m.Name }
func (g Group) name() string      { return g.Name }
func (c Credential) name() string { return c.Name }

// byName finds the item called name.
func byName[T named](items []T, name string) (*T, bool) {
	for i := range items {
		if items[i].name() == name {
			return &items[i], true
		}
	}
	return nil, false
}

// names lists the items' names for error messages.
func names[T named](items []T) string {
	if len(items) == 0 {
		return "none"
	}
	out := make([]string, len(items))
	for i := range items {
		out[i] = items[i].name()
	}
	return strings.Join(out, ", ")
}

func (c *Config) module(name string) (*Module, bool) { return byName(c.Modules, name) }
func (c *Config) moduleNames() string                { return names(c.Modules) }
func (c *Config) group(name string) (*Group, bool)   { return byName(c.Groups, name) }
func (c *Config) groupNames() string                 { return names(c.Groups) }

func (c *Config) validateModules(p *problems) {
	seen := map[string]int{}
	for i := range c.Modules {
		m := &c.Modules[i]
		key := fmt.Sprintf("modules[%d]", i)
		if m.Name == "" {
			p.add(key+".name", "is empty")
		} else if j, dup := seen[m.Name]; dup {
			p.add(key+".name", "%q is already defined by modules[%d]", m.Name, j)
		}
		seen[m.Name] = i
		m.Get = c.resolveOIDs(p, key+".get", m.Get)
		m.Walk = c.resolveOIDs(p, key+".walk", m.Walk)
		if len(m.Get) == 0 && len(m.Walk) == 0 {
			p.add(key, "module %q has nothing to poll: get and walk are both empty", m.Name)
		}
		m.LookupOIDs = c.resolveObjects(p, key+".lookups", m.Lookups, true)
		m.InfoOIDs = c.resolveObjects(p, key+".info", m.Info, false)
	}
}

// resolveObjects resolves MIB object names (no instance) for lookups
// (columns only) and info; every name must be a MIB object Flock knows.
func (c *Config) resolveObjects(p *problems, key string, names []string, columns bool) []string {
	var out []string
	for i, n := range names {
		k := fmt.Sprintf("%s[%d]", key, i)
		full, err := c.Resolver.Resolve(n)
		if err != nil {
			p.add(k, "%v", err)
			continue
		}
		o, suffix, ok := c.Resolver.Object(full + ".1")
		switch {
		case !ok || suffix != "1":
			p.add(k, "%q (%s) is not a MIB object Flock knows by name (give an object, not an instance or a table)", n, full)
		case columns && o.Table == "":
			p.add(k, "%q is a scalar, not a table column: only a column's values can label rows", n)
		default:
			out = append(out, full)
		}
	}
	return out
}

func (c *Config) buildGroups(p *problems) {
	seen := map[string]int{}
	for i, raw := range c.RawGroups {
		key := fmt.Sprintf("groups[%d]", i)
		m, ok := raw.(map[string]any)
		if !ok {
			p.add(key, "want an object with a name and settings, got %v", raw)
			continue
		}
		var spec struct {
			Name      string `mapstructure:"name"`
			overrides `mapstructure:",squash"`
		}
		if !decodeStrict(p, key, m, append([]string{"name"}, overrideKeys...), &spec) {
			continue
		}
		if spec.Name == "" {
			p.add(key+".name", "is empty")
			continue
		}
		if j, dup := seen[spec.Name]; dup {
			p.add(key+".name", "%q is already defined by groups[%d]", spec.Name, j)
			continue
		}
		seen[spec.Name] = i
		s := c.Defaults
		spec.overrides.applyTo(&s)
		c.checkLevel(p, key, &s, &spec.overrides)
		// Keep the resolved OID lists, so hosts get canonical OIDs.
		if spec.Get != nil {
			spec.Get = s.Get
		}
		if spec.Walk != nil {
			spec.Walk = s.Walk
		}
		c.Groups = append(c.Groups, Group{Name: spec.Name, overrides: spec.overrides})
	}
}

func (c *Config) buildHosts(p *problems) {
	type seenHost struct {
		index int
		name  string
	}
	byKey := map[string]seenHost{}
	for i, raw := range c.RawHosts {
		key := fmt.Sprintf("hosts[%d]", i)
		var spec struct {
			Name      string   `mapstructure:"name"`
			Address   string   `mapstructure:"address"`
			Groups    []string `mapstructure:"groups"`
			overrides `mapstructure:",squash"`
		}
		switch h := raw.(type) {
		case string:
			spec.Name = h
		case map[string]any:
			if name, address, port, groups, ok := plainHost(h); ok {
				// Most entries of a large inventory: decoded without
				// reflection (10,000 hosts load in a fraction of the time).
				spec.Name, spec.Address, spec.Groups = name, address, groups
				if port != nil {
					spec.Port = port
				}
			} else if !decodeStrict(p, key, h, hostKeys, &spec) {
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
		// Precedence: defaults, the credential profile's agent knobs, groups
		// in order, the host. The profile is known only once groups and host
		// are applied, hence two passes.
		var groups []*Group
		for j, g := range spec.Groups {
			grp, ok := c.group(g)
			if !ok {
				p.add(fmt.Sprintf("%s.groups[%d]", key, j), "%q is not a defined group (defined: %s)", g, c.groupNames())
				continue
			}
			groups = append(groups, grp)
		}
		layer := func(base HostDefaults) HostDefaults {
			for _, g := range groups {
				g.applyTo(&base)
			}
			spec.overrides.applyTo(&base)
			return base
		}
		s := layer(c.Defaults)
		if cr, ok := c.Credential(s.Credentials); ok {
			withKnobs := c.Defaults
			cr.knobs().applyTo(&withKnobs)
			s = layer(withKnobs)
		}
		c.checkLevel(p, key, &s, &spec.overrides)
		if _, ok := c.Credential(s.Credentials); !ok && spec.Credentials == nil {
			from := "defaults.credentials"
			for i := len(groups) - 1; i >= 0; i-- {
				if groups[i].Credentials != nil {
					from = "group " + groups[i].Name
					break
				}
			}
			p.add(key+".credentials", "%q (from %s) is not a defined credential profile (defined: %s)", s.Credentials, from, c.credentialNames())
		}

		h := Host{Name: spec.Name, Site: s.Site, Address: spec.Address, Groups: spec.Groups, Port: uint16(s.Port),
			Credentials: s.Credentials, Timeout: s.Timeout, Retries: s.Retries, Modules: s.Modules,
			MaxOids: s.MaxOids, MaxRepetitions: s.MaxRepetitions, PollTimeout: s.PollTimeout,
			Interval: s.Interval, Jitter: s.Jitter, Bulk: s.Bulk, AllowNonIncreasingOIDs: s.AllowNonIncreasingOIDs,
			UnconnectedUDP: s.UnconnectedUDP, MaxOutstanding: s.MaxOutstanding}
		c.parseAgent(p, key, raw, &spec.overrides, &h)
		k, err := task.HostKey(h.Name)
		if err != nil {
			p.add(key+".name", "%v", err)
		} else if prev, dup := byKey[k]; dup {
			p.add(key+".name", "host %q has host key %q, the same as hosts[%d] (%q): host names must differ in more than case, '.', ':' and '-' (or '%%', '/', '[' and ']')",
				h.Name, k, prev.index, prev.name)
		} else {
			byKey[k] = seenHost{i, h.Name}
		}
		h.Key = k
		for _, name := range s.Modules {
			if m, ok := c.module(name); ok {
				h.Get = appendNew(h.Get, m.Get...)
				h.Walk = appendNew(h.Walk, m.Walk...)
				h.Lookups = appendNew(h.Lookups, m.LookupOIDs...)
				h.Info = appendNew(h.Info, m.InfoOIDs...)
			}
		}
		h.Get = appendNew(h.Get, s.Get...)
		h.Walk = appendNew(h.Walk, s.Walk...)
		h.Walk, h.Tables = c.splitTables(h.Walk)
		// A lookup column no walk covers is walked too: its values label rows.
		for _, l := range h.Lookups {
			if !covered(l, h.Walk, h.Tables) {
				h.Walk = append(h.Walk, l)
			}
		}
		if len(h.Get) == 0 && len(h.Walk) == 0 && len(h.Tables) == 0 {
			p.add(key, "host %q has nothing to poll: no modules, and get and walk are both empty", h.Name)
		}
		if h.PollTimeout == 0 {
			h.PollTimeout = derivedPollTimeout(h.Timeout, h.Retries)
		}
		c.Hosts = append(c.Hosts, h)
	}
}

// parseAgent reads the host's agent address, its address or else its
// name, in any form package agent reads: the host then polls the address's
// host, over its transport, on its port if it gives one. A port given
// both in the address and by the host's own port key must be the same.
func (c *Config) parseAgent(p *problems, key string, raw any, own *overrides, h *Host) {
	from, field := h.Address, ".address"
	if from == "" {
		from, field = h.Name, ".name"
		if _, bare := raw.(string); bare {
			field = ""
		}
	}
	a, err := agent.Parse(from)
	if err != nil {
		p.add(key+field, "%v", err)
		return
	}
	h.Address = a.Host
	if a.Transport != agent.UDP {
		h.Transport = a.Transport
	}
	if a.Port == 0 {
		return
	}
	if own.Port != nil && *own.Port != int(a.Port) {
		p.add(key+".port", "%d differs from the port in %s %q (%d): give the port once, or the same in both",
			*own.Port, cmp.Or(strings.TrimPrefix(field, "."), "name"), from, a.Port)
	}
	h.Port = a.Port
}

// splitTables moves the walk roots that are known tables (or table entries)
// into tables with their columns, for multi-column walks. Column lists are
// computed once per root and shared by every host (read-only).
func (c *Config) splitTables(walk []string) ([]string, []task.Table) {
	var rest []string
	var tables []task.Table
	for _, root := range walk {
		cols, known := c.columns[root]
		if !known {
			cols, _ = c.Resolver.Columns(root)
			if c.columns == nil {
				c.columns = map[string][]string{}
			}
			c.columns[root] = cols
		}
		if cols != nil {
			tables = append(tables, task.Table{Root: root, Columns: cols})
		} else {
			rest = append(rest, root)
		}
	}
	return rest, tables
}

// covered says whether walking walk and tables fetches column col.
func covered(col string, walk []string, tables []task.Table) bool {
	under := func(root string) bool { return col == root || strings.HasPrefix(col, root+".") }
	for _, w := range walk {
		if under(w) {
			return true
		}
	}
	for _, t := range tables {
		for _, c := range t.Columns {
			if c == col {
				return true
			}
		}
	}
	return false
}

// appendNew appends the items of add that dst does not hold yet.
func appendNew(dst []string, add ...string) []string {
	for _, a := range add {
		dup := false
		for _, d := range dst {
			if d == a {
				dup = true
				break
			}
		}
		if !dup {
			dst = append(dst, a)
		}
	}
	return dst
}

// derivedPollTimeout allows a dead host its full timeout and retries twice
// over (a GET then a walk), plus a second of slack for live hosts' walks.
func derivedPollTimeout(timeout time.Duration, retries int) time.Duration {
	return 2*timeout*time.Duration(retries+1) + time.Second
}

// hostKeys are the keys a host entry may have.
var hostKeys = append([]string{"name", "address", "groups"}, overrideKeys...)

// plainHost reads a host entry that holds only a name, an address, a port
// and groups, each of the type decodeStrict would take as is; ok is false
// for anything else, which decodeStrict then decodes (and reports).
func plainHost(m map[string]any) (name, address string, port *int, groups []string, ok bool) {
	for k, v := range m {
		switch k {
		case "name":
			if name, ok = v.(string); !ok {
				return "", "", nil, nil, false
			}
		case "address":
			if address, ok = v.(string); !ok {
				return "", "", nil, nil, false
			}
		case "port":
			n, isInt := v.(int)
			if !isInt {
				return "", "", nil, nil, false
			}
			port = &n
		case "groups":
			list, isList := v.([]any)
			if !isList {
				return "", "", nil, nil, false
			}
			groups = make([]string, len(list))
			for i, g := range list {
				if groups[i], ok = g.(string); !ok {
					return "", "", nil, nil, false
				}
			}
		default:
			return "", "", nil, nil, false
		}
	}
	return name, address, port, groups, true
}

// decodeStrict decodes m into out, reporting unknown keys by name.
func decodeStrict(p *problems, key string, m map[string]any, known []string, out any) bool {
	var unknown []string
	for k := range m {
		if !contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		p.add(key, "unknown key(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
		return false
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: out, WeaklyTypedInput: true, TagName: "mapstructure", DecodeHook: decodeHooks, Squash: true,
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Sink is where HostRecords go besides the results stream: stdout and file
// get them as JSON lines (written by the leading dispatcher); the metric
// sinks (prometheus_remote_write, influx) get them as samples, each through
// its own durable consumer on the results stream, from the dispatcher or
// from the results command, whichever runs it.
type Sink struct {
	Type string `mapstructure:"type"`
	// Name tells metric sinks apart: their consumer is sink-<name>. Default:
	// the type; two metric sinks of one type need names.
	Name string `mapstructure:"name"`
	Path string `mapstructure:"path"` // file
	// URL is the metric sink's full write URL.
	URL string `mapstructure:"url"`
	// Token (or TokenFile, or FLOCK_SINKS_<NAME>_TOKEN) authenticates to
	// InfluxDB 2 (Authorization: Token) or, for remote write, is sent as a
	// bearer token.
	Token     Secret `mapstructure:"token"`
	TokenFile string `mapstructure:"token_file"`
	// Timeout bounds one write request (default 10s).
	Timeout time.Duration `mapstructure:"timeout"`
	// BatchRecords is how many records at most one write carries (default
	// 500): also how many a sink holds, unacknowledged, while it cannot write.
	BatchRecords int `mapstructure:"batch_records"`
}

// Metric sink types.
const (
	SinkPrometheusRemoteWrite = "prometheus_remote_write"
	SinkInflux                = "influx"
)

// IsMetric says the sink takes samples rather than JSON lines.
func (s *Sink) IsMetric() bool { return s.Type == SinkPrometheusRemoteWrite || s.Type == SinkInflux }

// MetricSinks are the sinks that take samples.
func (c *Config) MetricSinks() []Sink {
	var out []Sink
	for _, s := range c.Sinks {
		if s.IsMetric() {
			out = append(out, s)
		}
	}
	return out
}

// RecordSinks are the sinks that take HostRecords as JSON lines.
func (c *Config) RecordSinks() []Sink {
	var out []Sink
	for _, s := range c.Sinks {
		if !s.IsMetric() {
			out = append(out, s)
		}
	}
	return out
}

func (c *Config) validateSinks(p *problems, getenv func(string) string) {
	if len(c.Sinks) == 0 {
		c.Sinks = []Sink{{Type: "stdout"}}
	}
	baseDir := ""
	if c.File != "" {
		baseDir = filepath.Dir(c.File)
	}
	names := map[string]int{}
	envs := map[string]int{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		key := fmt.Sprintf("sinks[%d]", i)
		metricOnly := func() {
			for _, f := range []struct{ k, v string }{{"url", s.URL}, {"token", string(s.Token)}, {"token_file", s.TokenFile}, {"name", s.Name}} {
				if f.v != "" {
					p.add(key+"."+f.k, "a %s sink takes no %s (only metric sinks do)", s.Type, f.k)
				}
			}
			if s.Timeout != 0 || s.BatchRecords != 0 {
				p.add(key, "a %s sink takes no timeout or batch_records (only metric sinks do)", s.Type)
			}
		}
		switch s.Type {
		case "stdout":
			if s.Path != "" {
				p.add(key+".path", "a stdout sink takes no path")
			}
			metricOnly()
		case "file":
			if s.Path == "" {
				p.add(key+".path", "is empty (a file sink needs a path)")
			}
			metricOnly()
		case SinkPrometheusRemoteWrite, SinkInflux:
			if s.Path != "" {
				p.add(key+".path", "a %s sink takes no path (it writes to url)", s.Type)
			}
			if s.Name == "" {
				s.Name = s.Type
			}
			if !validSinkName(s.Name) {
				p.add(key+".name", "%q may hold only letters, digits, '-' and '_' (it names the consumer sink-%s)", s.Name, s.Name)
			} else if j, dup := names[s.Name]; dup {
				p.add(key+".name", "%q is already the name of sinks[%d]: give each metric sink its own name", s.Name, j)
			} else if s.Name == MetricsSubjectSink && c.MetricsSubject {
				p.add(key+".name", "%q is taken by metrics_subject: name this sink otherwise", s.Name)
			}
			names[s.Name] = i
			env := SinkTokenEnv(s.Name)
			if j, dup := envs[env]; dup && s.Name != c.Sinks[j].Name {
				p.add(key+".name", "%q and sinks[%d]'s %q share the token variable %s: name them apart", s.Name, j, c.Sinks[j].Name, env)
			}
			envs[env] = i
			resolveSecret(p, key+".token", &s.Token, s.TokenFile, env, baseDir, getenv)
			validateSinkURL(p, key+".url", s, env)
			switch {
			case s.Timeout == 0:
				s.Timeout = 10 * time.Second
			case s.Timeout < 0:
				p.add(key+".timeout", "%s is negative", s.Timeout)
			case s.Timeout > MaxSinkTimeout:
				p.add(key+".timeout", "%s is longer than %s (a batch held longer without news goes to another writer)", s.Timeout, MaxSinkTimeout)
			}
			if s.BatchRecords == 0 {
				s.BatchRecords = 500
			} else if s.BatchRecords < 0 || s.BatchRecords > 10_000 {
				p.add(key+".batch_records", "%d is not between 1 and 10000", s.BatchRecords)
			}
		case "":
			p.add(key+".type", "is empty (want stdout, file, %s or %s)", SinkPrometheusRemoteWrite, SinkInflux)
		default:
			p.add(key+".type", "%q is not a sink type (want stdout, file, %s or %s)", s.Type, SinkPrometheusRemoteWrite, SinkInflux)
		}
	}
}

// MaxSinkTimeout bounds a metric sink's write timeout: a held batch must
// show progress within the results consumer's ack wait (30 s), and a write
// plus the longest back-off (10 s) stays below it.
const MaxSinkTimeout = 15 * time.Second

// SinkTokenEnv is the environment variable that gives metric sink name's
// token: FLOCK_SINKS_<NAME>_TOKEN, upper-cased, '-' as '_'.
func SinkTokenEnv(name string) string {
	return EnvPrefix + "_SINKS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_TOKEN"
}

// MetricsSubjectSink names the output of metrics_subject (consumer
// sink-metrics_subject).
const MetricsSubjectSink = "metrics_subject"

func validSinkName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// validateSinkURL checks a metric sink's write URL: http or https, a host,
// and for influx the path and query of v1 (/write?db=) or v2
// (/api/v2/write?org=&bucket=).
func validateSinkURL(p *problems, key string, s *Sink, tokenEnv string) {
	if s.URL == "" {
		example := "http://prometheus.example.net:9090/api/v1/write"
		if s.Type == SinkInflux {
			example = "http://influxdb.example.net:8086/write?db=flock"
		}
		p.add(key, "is empty (a %s sink needs its write URL, such as %s)", s.Type, example)
		return
	}
	shown := RedactURL(s.URL)
	u, err := url.Parse(s.URL)
	if err != nil {
		p.add(key, "%q is not a URL: %v", shown, errors.Unwrap(err))
		return
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		p.add(key, "%q: scheme %q is not http or https", shown, u.Scheme)
		return
	}
	if u.Host == "" {
		p.add(key, "%q has no host", shown)
		return
	}
	if s.Type != SinkInflux {
		return
	}
	q := u.Query()
	switch {
	case strings.HasSuffix(u.Path, "/api/v2/write"):
		if q.Get("org") == "" || q.Get("bucket") == "" {
			p.add(key, "%q: an InfluxDB 2 write URL needs org= and bucket= (…/api/v2/write?org=ORG&bucket=BUCKET)", shown)
		}
		if s.Token == "" && s.TokenFile == "" {
			p.add(key, "%q: InfluxDB 2 needs a token: give token_file or %s", shown, tokenEnv)
		}
	case strings.HasSuffix(u.Path, "/write"):
		if q.Get("db") == "" {
			p.add(key, "%q: an InfluxDB 1 write URL needs db= (…/write?db=flock)", shown)
		}
	default:
		p.add(key, "%q is not an InfluxDB write URL: want …/write?db=DB (1.x) or …/api/v2/write?org=ORG&bucket=BUCKET (2.x)", shown)
	}
}

// loadResolver builds the MIB name resolver: built-in objects plus those of
// the files in mib_dirs (relative to the config file's directory).
func (c *Config) loadResolver(p *problems) {
	dirs := make([]string, len(c.MIBDirs))
	for i, d := range c.MIBDirs {
		if !filepath.IsAbs(d) && c.File != "" {
			d = filepath.Join(filepath.Dir(c.File), d)
		}
		dirs[i] = d
	}
	r, err := mib.Load(dirs)
	if err != nil {
		p.add("mib_dirs", "%v", err)
		r = mib.Builtin()
	}
	c.Resolver = r
}
