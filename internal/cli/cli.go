// Package cli holds what Flock's binaries share on the command line: common
// flags, the logger they select, and the mapping from errors to exit codes
// (0 success, 1 failure, 2 bad configuration or usage).
package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/telemetry"
)

// ErrUsage marks a command-line mistake (exit 2).
var ErrUsage = errors.New("usage")

// ErrReported marks a failure already reported to the user (exit 1, nothing more printed).
var ErrReported = errors.New("failed")

// ExitCode maps an error from a binary's run function to its exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage), errors.Is(err, config.ErrInvalid):
		return 2
	}
	return 1
}

// Main runs a binary's run function and exits with its status.
func Main(name string, run func() error) {
	err := run()
	if err != nil && !errors.Is(err, ErrReported) && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	os.Exit(ExitCode(err))
}

// Common are the flags every binary takes.
type Common struct {
	Config      string
	CheckConfig bool
	LogLevel    string
	LogFormat   string
}

// Register adds the common flags to fs. Their defaults are the values c
// already holds (a subcommand's flags start from the global flags given
// before it); the config path's is $FLOCK_CONFIG.
func (c *Common) Register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.Config, "config", cmp.Or(c.Config, getenv("FLOCK_CONFIG")), "configuration `file` (YAML); default $FLOCK_CONFIG")
	fs.BoolVar(&c.CheckConfig, "check-config", c.CheckConfig, "validate the configuration, print a summary and exit (2 if invalid)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error; default log.level ($FLOCK_LOG_LEVEL), info")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json; default log.format ($FLOCK_LOG_FORMAT), text")
}

// ParseCommand parses the global flags of a binary with subcommands (fs)
// from args, up to the first argument that is not a flag: that is the
// subcommand, which must be one of commands, and rest are the arguments
// after it, for the subcommand's own flags. With no subcommand, cmd is "".
// So `dispatcher --config F poll HOST` and `dispatcher poll --config F HOST`
// both work, as with git, docker and nats.
func ParseCommand(fs *flag.FlagSet, args []string, commands ...string) (cmd string, rest []string, err error) {
	if err := parseFlags(fs, args); err != nil {
		return "", nil, err
	}
	if fs.NArg() == 0 {
		return "", nil, nil
	}
	for _, c := range commands {
		if fs.Arg(0) == c {
			return c, fs.Args()[1:], nil
		}
	}
	return "", nil, fmt.Errorf("%w: unexpected argument %q: want a flag or one of the subcommands %s (see -h)",
		ErrUsage, fs.Arg(0), strings.Join(commands, ", "))
}

// Setup parses args with fs (the common flags registered, plus the binary's
// own), then loads the configuration as Load does.
func (c *Common) Setup(fs *flag.FlagSet, synopsis string, args []string, getenv func(string) string,
	stdout, stderr io.Writer) (cfg *config.Config, log *slog.Logger, done bool, err error) {
	if err := Parse(fs, args); err != nil {
		Usage(fs, stderr, synopsis)
		return nil, nil, false, err
	}
	return c.Load(getenv, stdout, stderr)
}

// Load loads and validates the configuration the parsed flags name and
// builds the logger. With --check-config it prints the summary and returns
// done: the binary has nothing more to do.
func (c *Common) Load(getenv func(string) string, stdout, stderr io.Writer) (cfg *config.Config, log *slog.Logger, done bool, err error) {
	if cfg, err = config.Load(c.Config, getenv); err != nil {
		return nil, nil, false, err
	}
	if c.CheckConfig {
		_, err := fmt.Fprintln(stdout, Summary(cfg))
		return cfg, nil, true, err
	}
	if c.LogLevel == "" {
		c.LogLevel = cfg.Log.Level
	}
	if c.LogFormat == "" {
		c.LogFormat = cfg.Log.Format
	}
	if log, err = c.Logger(stderr); err != nil {
		return nil, nil, false, err
	}
	return cfg, log, false, nil
}

// Parse parses args, turning flag errors into ErrUsage.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see -h)", ErrUsage, fs.Arg(0))
	}
	return nil
}

// parseFlags parses the flags in args, up to the first argument that is
// not one, turning flag errors into ErrUsage (-h stays flag.ErrHelp).
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w (see -h)", ErrUsage, err)
	}
	return nil
}

// Usage writes fs's help to w.
func Usage(fs *flag.FlagSet, w io.Writer, synopsis string) {
	fmt.Fprintf(w, "usage: %s\n\n", synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// Logger builds the process's logger on w.
func (c *Common) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("%w: -log-level %q: want debug, info, warn or error", ErrUsage, c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: -log-format %q: want text or json", ErrUsage, c.LogFormat)
}

// Summary is the line --check-config prints for a valid configuration.
func Summary(cfg *config.Config) string {
	file := cfg.File
	if file == "" {
		file = "(no file: defaults and environment)"
	}
	nats := "embedded, listening on " + cfg.NATS.Embedded.Listen
	if cfg.NATS.URL != "" {
		nats = config.RedactURL(cfg.NATS.URL)
	}
	var sinks []string
	for _, s := range cfg.Sinks {
		switch {
		case s.IsMetric():
			sinks = append(sinks, fmt.Sprintf("%s %s (%s)", s.Type, s.Name, config.RedactURL(s.URL)))
		case s.Path != "":
			sinks = append(sinks, s.Type+" "+s.Path)
		default:
			sinks = append(sinks, s.Type)
		}
	}
	if cfg.MetricsSubject {
		sinks = append(sinks, "metrics_subject (flock.metrics.>)")
	}
	return fmt.Sprintf("configuration OK: %s: %d hosts, %d credential profiles, NATS %s; sinks: %s; sites: %s",
		file, len(cfg.Hosts), len(cfg.Credentials), nats, strings.Join(sinks, ", "), strings.Join(cfg.Sites(), ", "))
}

// Version is the binaries' version, set at build time with
// -ldflags "-X github.com/flock-snmp/flock/internal/cli.Version=...".
var Version = "dev"

// StartProfile writes a CPU profile of the whole process to the file named
// by FLOCK_CPUPROFILE, if set, until the returned func is called: pprof on
// the binaries themselves, for the load harness and for operators.
func StartProfile(getenv func(string) string) (stop func(), err error) {
	path := getenv("FLOCK_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("FLOCK_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("FLOCK_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// Process is what every binary sets up around its work: a CPU profile when
// FLOCK_CPUPROFILE asks for one, SIGINT/SIGTERM handling, and the goroutine
// count its leak check compares against at exit.
type Process struct {
	stopProfile func()
	stopSignals context.CancelFunc
	goroutines  int
}

// StartProcess returns ctx cancelled on SIGINT or SIGTERM. Close the Process when done.
func StartProcess(ctx context.Context, getenv func(string) string) (context.Context, *Process, error) {
	stopProfile, err := StartProfile(getenv)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	// Counted after signal handling started: os/signal's watcher goroutine
	// lives as long as the process; NotifyContext's own ends with stop.
	return ctx, &Process{stopProfile: stopProfile, stopSignals: stop, goroutines: runtime.NumGoroutine() - 1}, nil
}

// Close stops the signal handling and the profile. It may be called more than once.
func (p *Process) Close() {
	p.stopSignals()
	p.stopProfile()
}

// LeakCheck reports, at a graceful exit with everything else closed,
// whether goroutines or sockets were left behind: goroutines beyond those at
// start (after a short wait for them to finish) and sockets still open. The
// soak reads the line it logs.
func (p *Process) LeakCheck(log *slog.Logger) {
	p.stopSignals()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > p.goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	leaked := max(0, runtime.NumGoroutine()-p.goroutines)
	sockets := 0
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, fd := range fds {
			if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
				sockets++
			}
		}
	}
	log.Info("leak check", "leaked_goroutines", leaked, "open_sockets", sockets)
}

// Probe runs a binary's `--probe URL` when args start with it (handled):
// it asks the URL and returns nil on a 200 answer. The images are FROM
// scratch (no shell, no curl), so their health checks run the binary itself.
func Probe(ctx context.Context, args []string) (handled bool, err error) {
	if len(args) == 0 || (args[0] != "--probe" && args[0] != "-probe") {
		return false, nil
	}
	var url string
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.StringVar(&url, "probe", "", "")
	if err := Parse(fs, args); err != nil || url == "" {
		return true, fmt.Errorf("%w: --probe URL takes no other flag (see -h)", ErrUsage)
	}
	return true, telemetry.Probe(ctx, url)
}
