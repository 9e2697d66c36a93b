// Package config loads Flock's YAML configuration, the one file both the
// dispatcher and the pollers read. It is the only package that imports
// viper. Load applies defaults, then the file, then FLOCK_ environment
// variables, decodes strictly (an unknown key is an error), validates, and
// returns plain structs. Every error names the file, the key and the value.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/flock-snmp/flock/internal/mib"
)

// ErrInvalid is wrapped by every error that comes from the configuration
// itself (as opposed to, say, an unreadable file): the binaries exit 2 on it.
var ErrInvalid = errors.New("invalid configuration")

// largeConfig is the file size (about 50,000 hosts) from which Load trades
// CPU for memory while it decodes.
const largeConfig = 4 << 20

// EnvPrefix prefixes every environment override: FLOCK_NATS_URL sets nats.url.
const EnvPrefix = "FLOCK"

// Config is the whole configuration.
type Config struct {
	// File is the path the configuration was read from, or "" when none was.
	File        string       `mapstructure:"-"`
	NATS        NATS         `mapstructure:"nats"`
	Poller      Poller       `mapstructure:"poller"`
	Dispatcher  Dispatcher   `mapstructure:"dispatcher"`
	Metrics     Metrics      `mapstructure:"metrics"`
	Log         Log          `mapstructure:"log"`
	Credentials []Credential `mapstructure:"credentials"`
	Modules     []Module     `mapstructure:"modules"`
	Defaults    HostDefaults `mapstructure:"defaults"`
	Sinks       []Sink       `mapstructure:"sinks"`
	// MetricsSubject publishes each record's samples as InfluxDB line
	// protocol on flock.metrics.<site>.<hostkey> (Telegraf's
	// inputs.nats_consumer reads them).
	MetricsSubject bool `mapstructure:"metrics_subject"`
	// MIBDirs hold MIB files whose names may be used wherever an OID is
	// accepted, besides the built-in ones. Relative to the config file.
	MIBDirs []string `mapstructure:"mib_dirs"`
	// Groups are the named overrides hosts join, validated, in file order.
	Groups []Group `mapstructure:"-"`
	// Hosts is the inventory with defaults and groups applied, in file order.
	Hosts []Host `mapstructure:"-"`
	// RawGroups and RawHosts are the lists as written, until Load has built
	// Groups and Hosts from them (then nil).
	RawGroups []any `mapstructure:"groups"`
	RawHosts  []any `mapstructure:"hosts"`
	// Resolver turns MIB names into OIDs and knows table columns.
	Resolver *mib.Resolver       `mapstructure:"-"`
	columns  map[string][]string // table columns by walk root, shared by hosts
}

// NATS says how to reach the bus, or how to run one.
type NATS struct {
	// URL of the NATS server(s). Empty: the dispatcher embeds a server, and
	// pollers connect to nats://<embedded.listen>.
	URL      string   `mapstructure:"url"`
	Embedded Embedded `mapstructure:"embedded"`
	// AckWait is how long a task may go without an ack or progress report
	// before JetStream hands it to another poller. Pollers report progress on
	// long polls, so this bounds how quickly a dead poller's tasks move on.
	AckWait time.Duration `mapstructure:"ack_wait"`
	// MaxDeliver bounds how often one task is delivered.
	MaxDeliver int `mapstructure:"max_deliver"`
	// ConnectTimeout bounds the wait for the bus at startup; 0 waits forever.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// MaxQueuedTasks bounds the task queue; past it new tasks are refused
	// (and counted), never queued without bound.
	MaxQueuedTasks int `mapstructure:"max_queued_tasks"`
	// Replicas is how many JetStream servers keep each stream and bucket
	// the dispatcher creates: 1, or 3 (or 5) on a cluster.
	Replicas int `mapstructure:"replicas"`
	// Authentication: user and password (or password_file), an nkey seed
	// file, or a .creds file (JWT and seed); at most one way.
	User         string  `mapstructure:"user"`
	Password     Secret  `mapstructure:"password"`
	PasswordFile string  `mapstructure:"password_file"`
	NKeySeedFile string  `mapstructure:"nkey_seed_file"`
	CredsFile    string  `mapstructure:"creds_file"`
	TLS          NATSTLS `mapstructure:"tls"`
}

// NATSTLS configures TLS to the NATS server: a CA to trust and, for mutual
// TLS, a client certificate and key. Paths are relative to the config file.
type NATSTLS struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Embedded configures the dispatcher's in-process nats-server.
type Embedded struct {
	// Listen is host:port; anything but loopback needs ConfigFile with users.
	Listen   string `mapstructure:"listen"`
	StoreDir string `mapstructure:"store_dir"`
	// ConfigFile is a nats-server configuration (users, permissions, TLS)
	// the embedded server starts from, e.g. config/nats-server.conf.
	ConfigFile string `mapstructure:"config_file"`
}

// Poller configures the poller process.
type Poller struct {
	// Site is the site whose tasks this poller takes (pollers-<site>).
	Site string `mapstructure:"site"`
	// SourceAddress, an IP address of this machine, is where SNMP requests
	// are sent from (to agents of its family); empty: the system chooses.
	SourceAddress string `mapstructure:"source_address"`
	// Concurrency is how many polls run at once.
	Concurrency int `mapstructure:"concurrency"`
	// MaxPacketsPerSecond bounds the SNMP requests the poller sends per
	// second, retries included, so a slow link is not flooded; 0: unbounded.
	MaxPacketsPerSecond float64 `mapstructure:"max_packets_per_second"`
	// Name identifies the poller in HostRecords and logs; default host name and pid.
	Name string `mapstructure:"name"`
	// ShutdownGrace is how long in-flight polls may run after SIGTERM before they are handed back.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// Heartbeat is how often the poller says it is alive on flock.pollers.<id>.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
}

// Log configures the binaries' logs (log/slog). The -log-level and
// -log-format flags win over these.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn or error
	Format string `mapstructure:"format"` // text or json
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port for /metrics, /healthz and /readyz (and the
	// dispatcher's /status); empty: no endpoint.
	Listen string `mapstructure:"listen"`
}

// Dispatcher configures the dispatcher process.
type Dispatcher struct {
	// OnceTimeout bounds a --once run; 0 derives it from the hosts' poll
	// timeouts plus one redelivery (ack_wait).
	OnceTimeout time.Duration `mapstructure:"once_timeout"`
	// LeaseTTL is how long the leading dispatcher's lease lives unless it
	// renews it (it does every sixth of it): a standby takes over within
	// about this long of the leader's death.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// Name identifies the dispatcher among several (leader and standbys);
	// default host name and pid.
	Name string `mapstructure:"name"`
}

// setDefaults registers every scalar key, so that FLOCK_ environment
// variables reach Unmarshal and a dump shows every setting.
func setDefaults(v *viper.Viper) {
	v.SetDefault("nats.url", "")
	v.SetDefault("nats.embedded.listen", "127.0.0.1:4222")
	v.SetDefault("nats.embedded.store_dir", "./data/nats")
	v.SetDefault("nats.embedded.config_file", "")
	v.SetDefault("nats.ack_wait", "30s")
	v.SetDefault("nats.max_deliver", 5)
	v.SetDefault("nats.connect_timeout", "0s")
	v.SetDefault("nats.max_queued_tasks", 1_000_000)
	v.SetDefault("nats.replicas", 1)
	v.SetDefault("nats.user", "")
	v.SetDefault("nats.password", "")
	v.SetDefault("nats.password_file", "")
	v.SetDefault("nats.nkey_seed_file", "")
	v.SetDefault("nats.creds_file", "")
	v.SetDefault("nats.tls.ca_file", "")
	v.SetDefault("nats.tls.cert_file", "")
	v.SetDefault("nats.tls.key_file", "")
	v.SetDefault("poller.site", "default")
	v.SetDefault("poller.source_address", "")
	v.SetDefault("poller.concurrency", 256)
	v.SetDefault("poller.name", "")
	v.SetDefault("poller.shutdown_grace", "10s")
	v.SetDefault("poller.heartbeat", "10s")
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	v.SetDefault("dispatcher.once_timeout", "0s")
	v.SetDefault("dispatcher.lease_ttl", "10s")
	v.SetDefault("dispatcher.name", "")
	v.SetDefault("metrics.listen", "")
	v.SetDefault("defaults.site", "default")
	v.SetDefault("defaults.credentials", "public")
	v.SetDefault("defaults.port", 161)
	v.SetDefault("defaults.timeout", "2s")
	v.SetDefault("defaults.retries", 1)
	v.SetDefault("defaults.max_outstanding", 1)
	v.SetDefault("poller.max_packets_per_second", 0)
	v.SetDefault("defaults.get", []string{"1.3.6.1.2.1.1.1.0"})
	v.SetDefault("defaults.walk", []string{})
	v.SetDefault("defaults.max_oids", 32)
	v.SetDefault("defaults.max_repetitions", 25)
	v.SetDefault("defaults.poll_timeout", "0s")
	v.SetDefault("defaults.modules", []string{})
	v.SetDefault("mib_dirs", []string{})
	v.SetDefault("metrics_subject", false)
	v.SetDefault("defaults.interval", "60s")
	v.SetDefault("defaults.jitter", "0s")
	v.SetDefault("defaults.bulk", true)
	v.SetDefault("defaults.allow_nonincreasing_oids", false)
	v.SetDefault("defaults.unconnected_udp", false)
}

// DefaultCredentials apply when the configuration has no credentials list:
// SNMPv2c with community "public", what net-snmp's tools assume.
func DefaultCredentials() []Credential {
	return []Credential{{Name: "public", Version: Version2c, Community: "public"}}
}

// Load reads the configuration from path ("" means: defaults and environment
// only), applies getenv's FLOCK_ overrides and validates it.
func Load(path string, getenv func(string) string) (*Config, error) {
	v := viper.NewWithOptions(viper.EnvKeyReplacer(strings.NewReplacer(".", "_")))
	setDefaults(v)
	label := "(no config file)"
	if path != "" {
		label = path
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if len(data) > largeConfig {
			// Decoding a large inventory makes several short-lived copies of
			// it (YAML nodes, viper's maps, the raw host lists): a tighter
			// collector while it lasts keeps the peak near what is kept
			// (100,000 hosts: 270-360 MB -> 215-240 MB, for ~1.5 s more CPU).
			defer debug.SetGCPercent(debug.SetGCPercent(25))
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(strings.NewReader(string(data))); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", path, ErrInvalid, unwrapParse(err))
		}
	}
	// Environment overrides, through the injected getenv so tests control them.
	for _, key := range v.AllKeys() {
		env := EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
		if val := getenv(env); val != "" {
			v.Set(key, val)
		}
	}
	cfg := &Config{File: path}
	err := v.UnmarshalExact(cfg, viper.DecodeHook(decodeHooks))
	if err != nil {
		p := &problems{file: label}
		addDecodeProblems(p, "", err)
		return nil, p.err()
	}
	if !v.IsSet("credentials") {
		cfg.Credentials = DefaultCredentials()
	}
	if err := cfg.validate(label, getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeHooks turn strings from YAML or the environment into typed values,
// with errors that quote the value.
var decodeHooks = mapstructure.ComposeDecodeHookFunc(durationHook, intHook, boolHook, mapstructure.StringToSliceHookFunc(","))

// boolHook accepts true/false (and yes/no, on/off) only, quoting anything else.
func boolHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Bool || from.Kind() != reflect.String {
		return data, nil
	}
	switch strings.ToLower(strings.TrimSpace(data.(string))) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return nil, fmt.Errorf("%q is not true or false", data)
}

// intHook decodes a string into an int, quoting the value when it is not a whole number.
func intHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Int || from.Kind() != reflect.String {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a whole number", s)
	}
	return n, nil
}

// durationHook decodes "2s"-style strings into time.Duration with an error that quotes the value.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() || from.Kind() != reflect.String {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (write it like 2s, 500ms or 1m30s)", s)
	}
	return d, nil
}

// addDecodeProblems rewrites mapstructure's "'key' message" lines as
// problems under prefix ("" at the top level, "hosts[3]" for one host).
func addDecodeProblems(p *problems, prefix string, err error) {
	msg := strings.TrimPrefix(err.Error(), "decoding failed due to the following error(s):")
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, rest := "", line
		if strings.HasPrefix(line, "'") {
			if end := strings.Index(line[1:], "'"); end >= 0 {
				key, rest = line[1:end+1], strings.TrimSpace(line[end+2:])
			}
		}
		if k, ok := strings.CutPrefix(rest, "has invalid keys: "); ok {
			rest = "unknown key(s) " + k
		}
		switch {
		case prefix != "" && key != "":
			key = prefix + "." + key
		case prefix != "":
			key = prefix
		case key == "":
			key = "(top level)"
		}
		p.add(key, "%s", rest)
	}
}

// unwrapParse drops viper's generic wrapper so the YAML line number shows.
func unwrapParse(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		if inner := errors.Unwrap(pe); inner != nil {
			return inner
		}
	}
	return err
}

// Credential returns the named profile.
func (c *Config) Credential(name string) (*Credential, bool) { return byName(c.Credentials, name) }

// PollerURL is the URL pollers use: nats.url, or the embedded server's address.
func (c *Config) PollerURL() string {
	if c.NATS.URL != "" {
		return c.NATS.URL
	}
	return "nats://" + c.NATS.Embedded.Listen
}

// Sites lists the sites of the inventory's hosts, sorted, each once.
func (c *Config) Sites() []string {
	seen := map[string]bool{}
	var out []string
	for i := range c.Hosts {
		if s := c.Hosts[i].Site; !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// MaxPollTimeout is the longest poll_timeout of any host.
func (c *Config) MaxPollTimeout() time.Duration {
	var m time.Duration
	for i := range c.Hosts {
		m = max(m, c.Hosts[i].PollTimeout)
	}
	return m
}
