// Command dispatcher turns Flock's inventory into poll tasks on the
// JetStream work queue and collects the HostRecords the pollers publish.
//
//	dispatcher --config flock.yaml --once
//
// Without nats.url it runs an embedded nats-server that pollers connect to.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/export"
	"github.com/flock-snmp/flock/internal/fleet"
	"github.com/flock-snmp/flock/internal/lease"
	"github.com/flock-snmp/flock/internal/natsauth"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
	"github.com/flock-snmp/flock/internal/telemetry"
)

func main() {
	cli.Main("dispatcher", func() error {
		return run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	})
}

const synopsis = `dispatcher [--config FILE] [--once | --check-config]
       dispatcher [--config FILE] status [--sort duration|name|state|last_success|failures]
       dispatcher [--config FILE] poll [--timeout D] HOST
       dispatcher [--config FILE] nats-conf
       dispatcher --probe URL
The common flags (--config, --check-config, --log-level, --log-format) go before or after a subcommand.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if probed, err := cli.Probe(ctx, args); probed {
		return err
	}
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	once := fs.Bool("once", false, "poll every host once, print one JSON HostRecord per line, a summary on stderr, and exit")
	cmd, rest, err := cli.ParseCommand(fs, args, "status", "poll", "nats-conf")
	if err != nil {
		cli.Usage(fs, stderr, synopsis)
		return err
	}
	if cmd != "" && *once {
		return fmt.Errorf("%w: --once runs the whole dispatcher; it does not go with %s (see -h)", cli.ErrUsage, cmd)
	}
	switch cmd {
	case "status":
		return runStatus(ctx, &common, rest, getenv, stdout, stderr)
	case "poll":
		return runPoll(ctx, &common, rest, getenv, stdout, stderr)
	case "nats-conf":
		return runNATSConf(&common, rest, getenv, stdout, stderr)
	}
	cfg, log, done, err := common.Load(getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	ctx, proc, err := cli.StartProcess(ctx, getenv)
	if err != nil {
		return err
	}
	defer proc.Close()

	bus, closeBus, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	closeBus = sync.OnceFunc(closeBus)
	defer closeBus()
	streams := natsbus.StreamOptions{
		Sites: cfg.Sites(), AckWait: cfg.NATS.AckWait, MaxDeliver: cfg.NATS.MaxDeliver, MaxQueued: cfg.NATS.MaxQueuedTasks,
		Replicas: cfg.NATS.Replicas,
	}
	if err := bus.EnsureStreams(ctx, streams); err != nil {
		return err
	}
	if !*once {
		err := runContinuously(ctx, bus, streams, cfg, func() (*config.Config, error) { return config.Load(common.Config, getenv) }, stdout, log)
		closeBus()
		if err == nil {
			proc.LeakCheck(log)
		}
		return err
	}
	sinkCtx, stopSinks := context.WithCancel(ctx)
	defer stopSinks()
	metricSinks, err := startMetricSinks(sinkCtx, bus, cfg, export.NewMetrics(nil), log)
	if err != nil {
		return err
	}
	update, finish := cli.OnceProgress(stderr, cli.IsTerminal(stderr), len(cfg.Hosts))
	sum, err := dispatch.RunOnceProgress(ctx, bus, cfg, stdout, log, update)
	finish()
	fmt.Fprintln(stderr, sum)
	if err != nil {
		return err
	}
	// The run's records are in the metric sinks before it ends.
	drainCtx, cancel := context.WithTimeout(ctx, onceSinkWait)
	err = metricSinks.Drain(drainCtx)
	cancel()
	stopSinks()
	metricSinks.Wait()
	if err != nil {
		return err
	}
	if !sum.Complete() {
		return cli.ErrReported
	}
	return nil
}

// runContinuously takes part in the dispatchers' election until ctx ends:
// while it leads, it polls every host at its interval; while it stands by,
// it serves its metrics and status. SIGHUP re-reads the inventory.
func runContinuously(ctx context.Context, bus *natsbus.Bus, streams natsbus.StreamOptions, cfg *config.Config,
	load func() (*config.Config, error), stdout io.Writer, log *slog.Logger) error {
	name := cfg.Dispatcher.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	key, err := task.HostKey(name)
	if err != nil {
		return fmt.Errorf("dispatcher.name: %w", err)
	}
	log = log.With("dispatcher", name)
	states, err := bus.Bucket(ctx, natsbus.HostStateBucket, "Flock dispatcher: last state of each host")
	if err != nil {
		return err
	}
	leases, ttl, err := bus.Leases(ctx, cfg.Dispatcher.LeaseTTL)
	if err != nil {
		return err
	}
	if ttl != cfg.Dispatcher.LeaseTTL {
		// Every dispatcher must count with the TTL the bucket applies.
		log.Warn("the lease bucket's TTL differs from dispatcher.lease_ttl; using the bucket's (delete the bucket flock_dispatchers with every dispatcher stopped to change it)",
			"bucket_ttl", ttl, "dispatcher.lease_ttl", cfg.Dispatcher.LeaseTTL)
	}
	sinks, err := dispatch.OpenSinks(cfg.RecordSinks(), stdout)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range sinks {
			_ = s.Close()
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	pollers := fleet.New(log)
	stopWatch, err := bus.WatchPollers(ctx, pollers.Observe)
	if err != nil {
		return err
	}
	defer stopWatch()
	var r *dispatch.Runner
	elector := lease.New(lease.Options{ID: name, Key: key, TTL: ttl, Store: leases, Log: log, Connected: bus.Connected,
		Fence: func() { r.Fence() }})
	reg := telemetry.NewRegistry()
	// The leading dispatcher runs the metric sinks, one writer per sink at a
	// time (a sink's samples reach its database in order), and hands them
	// over with the lease; each term starts them with the latest inventory.
	sinkMetrics := export.NewMetrics(reg)
	var (
		sinksMu sync.Mutex
		running *export.Sinks // this term's, nil while standing by
		latest  = cfg         // the inventory the last applied reload read
	)
	reloadConfig := func() (*config.Config, error) {
		c, err := load()
		if err != nil {
			return c, err
		}
		sinksMu.Lock()
		defer sinksMu.Unlock()
		latest = c
		if running != nil {
			err = running.SetHosts(c)
		}
		return c, err
	}
	lead := func(ctx context.Context) error {
		sinkCtx, stopSinks := context.WithCancel(ctx)
		defer stopSinks()
		sinksMu.Lock()
		ms, err := startMetricSinks(sinkCtx, bus, cfg, sinkMetrics, log)
		if err == nil {
			err = ms.SetHosts(latest)
			running = ms
		}
		sinksMu.Unlock()
		if err != nil {
			return err
		}
		defer func() {
			stopSinks() // each finishes the batch in hand first
			ms.Wait()
			sinksMu.Lock()
			running = nil
			sinksMu.Unlock()
		}()
		return r.Run(ctx)
	}
	r = dispatch.NewRunner(bus, cfg, dispatch.RunOptions{
		Sinks: sinks, State: states, Reload: reload, LoadConfig: reloadConfig, Log: log, Registerer: reg,
		RecordsAckWait: 2 * ttl,
		Queue: func(ctx context.Context, site string) (dispatch.QueueStats, error) {
			q, err := bus.Queue(ctx, site)
			return dispatch.QueueStats(q), err
		},
		AddSite:    func(ctx context.Context, site string) error { return bus.EnsureSite(ctx, streams, site) },
		RemoveSite: bus.RemoveSite,
		ListSites:  bus.Sites,
		Leading:    elector.Leading,
		Pollers:    func() map[string][]fleet.Poller { return pollers.Live(time.Now()) },
		Members:    func(ctx context.Context) ([]lease.Member, error) { return lease.Members(ctx, leases) },
	})
	// A site without a live poller is reported once per outage.
	go pollers.Watch(ctx, cfg.Poller.Heartbeat, r.Sites, elector.Leading)
	role := func() string {
		if elector.Leading() {
			return "leader"
		}
		return "standby"
	}
	if cfg.Metrics.Listen != "" {
		srv, err := telemetry.Serve("metrics.listen", cfg.Metrics.Listen, telemetry.ServerOptions{
			Registry: reg, Log: log, Role: role,
			Ready: func(ctx context.Context) error { return bus.Ready(ctx) },
			Handlers: map[string]http.Handler{"GET /status": dispatch.StatusHandler(func() dispatch.FleetView {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				return r.Fleet(ctx, name)
			})},
		})
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	stopPollNow, err := bus.ServePollNow(func(req *natsbus.Request) { r.PollNow(ctx, req) })
	if err != nil {
		return err
	}
	defer stopPollNow()
	log.Info("standing for election", "lease_ttl", cfg.Dispatcher.LeaseTTL, "sites", r.Sites())
	err = elector.Run(ctx, lead, r.Standby)
	st := r.Stats()
	log.Info("stopped", "published", st.Published, "overruns", st.Overruns, "queue_full", st.QueueFull, "failed", st.Failed, "interrupted", st.Interrupted,
		"exhausted", st.Exhausted, "missed", st.Missed, "records", st.Records, "possible_duplicates", st.PossibleDuplicates, "terms", st.Terms,
		"reloads", st.Reloads, "rejected_reloads", st.Rejected)
	return err
}

// onceSinkWait bounds how long --once waits for its metric sinks to write
// its records after the last one arrived.
const onceSinkWait = 30 * time.Second

// startMetricSinks runs the configuration's metric sinks (none: nothing).
func startMetricSinks(ctx context.Context, bus *natsbus.Bus, cfg *config.Config, m *export.Metrics, log *slog.Logger) (*export.Sinks, error) {
	return export.Start(ctx, cfg, bus.OpenSink, bus, m, log)
}

// connect joins the configured NATS, or starts the embedded server and
// connects to it in-process. The returned func closes what was opened.
func connect(ctx context.Context, cfg *config.Config, log *slog.Logger) (*natsbus.Bus, func(), error) {
	if cfg.NATS.URL != "" {
		bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{
			URL: cfg.NATS.URL, Name: "flock-dispatcher", Timeout: cfg.NATS.ConnectTimeout, Log: log,
			Auth: natsbus.AuthFromConfig(&cfg.NATS), InboxPrefix: natsbus.DispatcherInbox,
		})
		if err != nil {
			return nil, nil, err
		}
		return bus, func() { _ = bus.Close() }, nil
	}
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{
		Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir, ConfigFile: cfg.NATS.Embedded.ConfigFile, Log: log,
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("embedded NATS server started", "url", emb.ClientURL(), "store_dir", cfg.NATS.Embedded.StoreDir)
	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{Name: "flock-dispatcher", InProcess: emb.Server(), Log: log,
		Auth: natsbus.AuthFromConfig(&cfg.NATS), InboxPrefix: natsbus.DispatcherInbox, Timeout: 10 * time.Second})
	if err != nil {
		emb.Close()
		return nil, nil, err
	}
	return bus, func() {
		_ = bus.Close()
		emb.Close()
	}, nil
}

// runStatus prints every host of the inventory with its state from the
// dispatcher's KV bucket, slowest first by default.
func runStatus(ctx context.Context, common *cli.Common, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher status", flag.ContinueOnError)
	common.Register(fs, getenv)
	sortKey := fs.String("sort", "duration", "order: duration (slowest first), name, state (failing first), last_success (oldest first), failures")
	cfg, log, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	bus, err := connectClient(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	states, err := bus.OpenBucket(ctx, natsbus.HostStateBucket) // opened, never created or changed by a client
	if err != nil {
		return fmt.Errorf("%w (has a dispatcher run in run mode on this NATS?)", err)
	}
	all, err := states.All(ctx)
	if err != nil {
		return err
	}
	decoded, err := dispatch.DecodeStates(all)
	if err != nil {
		return err
	}
	rows := dispatch.BuildStatus(cfg.Hosts, decoded)
	if err := dispatch.SortStatus(rows, *sortKey); err != nil {
		return fmt.Errorf("%w: --sort: %w", cli.ErrUsage, err)
	}
	pollers := fleet.New(nil)
	if err := bus.Pollers(ctx, pollers.Observe); err != nil {
		log.Warn("poller heartbeats unavailable", "err", err)
	}
	var members []lease.Member
	if leases, err := bus.OpenLeases(ctx); err == nil { // none until a dispatcher has run
		members, _ = lease.Members(ctx, leases)
	}
	now := time.Now()
	return dispatch.WriteFleetText(stdout, dispatch.BuildFleet(rows, cfg.Sites(), pollers.Live(now), members, now))
}

// runNATSConf prints the nats-server authorization block with one poller
// user for every site of the inventory.
func runNATSConf(common *cli.Common, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher nats-conf", flag.ContinueOnError)
	common.Register(fs, getenv)
	cfg, _, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	return natsauth.Write(stdout, cfg.Sites())
}

// runPoll asks the running dispatcher to poll one host now and prints its
// HostRecord; exit 0 if the host answered, 1 if the record has an error.
func runPoll(ctx context.Context, common *cli.Common, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher poll", flag.ContinueOnError)
	common.Register(fs, getenv)
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the record")
	// HOST may come before, between or after the flags.
	var host string
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err == nil && fs.NArg() > 0 {
		before := args[:len(args)-fs.NArg()]
		host = fs.Arg(0)
		args = append(append([]string{}, before...), fs.Args()[1:]...)
	}
	cfg, log, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	if host == "" {
		return fmt.Errorf("%w: dispatcher poll needs a HOST (its name in the inventory)", cli.ErrUsage)
	}
	bus, err := connectClient(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	data, err := bus.PollNow(ctx, host)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(append(data, '\n')); err != nil {
		return err
	}
	rec, err := task.DecodeRecord(data)
	if err != nil {
		return fmt.Errorf("poll %s: undecodable record: %w", host, err)
	}
	if rec.Error != nil {
		fmt.Fprintf(stderr, "flock: %s: %s\n", host, rec.Error)
		return cli.ErrReported
	}
	return nil
}

// connectClient joins the NATS the configuration names (nats.url, or the
// embedded server's listen address) as a short-lived client.
func connectClient(ctx context.Context, cfg *config.Config, log *slog.Logger) (*natsbus.Bus, error) {
	timeout := cfg.NATS.ConnectTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	return natsbus.Connect(ctx, natsbus.ConnectOptions{URL: cfg.PollerURL(), Name: "flock-dispatcher-cli", Timeout: timeout, Log: log,
		Auth: natsbus.AuthFromConfig(&cfg.NATS), InboxPrefix: natsbus.DispatcherInbox})
}
