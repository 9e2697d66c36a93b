// Command poller takes poll tasks from Flock's JetStream work queue, polls
// the devices over SNMP and publishes one HostRecord per poll.
//
//	poller --config flock.yaml
//	FLOCK_NATS_URL=nats://nats.example.net:4222 poller
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/poller"
	"github.com/flock-snmp/flock/internal/snmp"
	"github.com/flock-snmp/flock/internal/task"
	"github.com/flock-snmp/flock/internal/telemetry"
)

func main() {
	cli.Main("poller", func() error {
		return run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	})
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if probed, err := cli.Probe(ctx, args); probed {
		return err
	}
	fs := flag.NewFlagSet("poller", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	cfg, log, done, err := common.Setup(fs, "poller [--config FILE] [--check-config] | poller --probe URL", args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	// A poller polls tasks, not the inventory: the hosts the file lists
	// (validated above) are not kept for the process's lifetime.
	cfg.Hosts, cfg.RawHosts = nil, nil
	name := cfg.Poller.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	site := cfg.Poller.Site
	log = log.With("poller", name, "site", site)

	ctx, proc, err := cli.StartProcess(ctx, getenv)
	if err != nil {
		return err
	}
	defer proc.Close()

	// Telemetry first: /healthz answers, and /readyz says why not, while
	// the poller waits for NATS.
	counters := snmp.NewCounters()
	var busRef atomic.Pointer[natsbus.Bus]
	var bound atomic.Bool
	reg := telemetry.NewRegistry()
	// Every poller metric says the poller's site (one value per process: bounded).
	metrics := telemetry.NewPollerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"site": site}, reg), telemetry.PollerSources{
		PacketsSent: counters.Sent, Retries: counters.Retries, StrayAnswers: counters.Stray,
		NATSReconnects: func() uint64 {
			if b := busRef.Load(); b != nil {
				return b.Reconnects()
			}
			return 0
		},
	})
	closeTelemetry := func() {}
	if cfg.Metrics.Listen != "" {
		srv, err := telemetry.Serve("metrics.listen", cfg.Metrics.Listen, telemetry.ServerOptions{
			Registry: reg, Log: log,
			Ready: func(ctx context.Context) error {
				b := busRef.Load()
				if b == nil {
					return fmt.Errorf("not connected to NATS yet (%s)", config.RedactURL(cfg.PollerURL()))
				}
				if !bound.Load() {
					return fmt.Errorf("not bound to the task consumer %s yet", natsbus.PollerConsumer(site))
				}
				return b.Ready(ctx, natsbus.TaskStream, natsbus.ResultStream)
			},
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		closeTelemetry = srv.Close
	}

	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{
		URL: cfg.PollerURL(), Name: "flock-poller " + name, Timeout: cfg.NATS.ConnectTimeout, Log: log,
		Auth: natsbus.AuthFromConfig(&cfg.NATS), InboxPrefix: natsbus.PollerInbox(site),
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for NATS: a clean stop
		}
		return err
	}
	busRef.Store(bus)
	memory, err := bus.DeviceMemory(ctx)
	if err != nil {
		_ = bus.Close()
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop
		}
		return err
	}
	p := poll.New(name, cfg.Credentials, nil).WithMemory(memory).WithCounters(counters).WithPacketRate(cfg.Poller.MaxPacketsPerSecond)
	if src, err := netip.ParseAddr(cfg.Poller.SourceAddress); err == nil { // validated: empty or an address
		p = p.WithSource(src)
	}
	closeParts := func() error { // in reverse order of start; polls must have ended
		p.Close()
		memory.Close()
		return bus.Close()
	}
	tasks, err := bus.BindTasks(ctx, site, log)
	if err != nil {
		_ = closeParts()
		if ctx.Err() != nil {
			return nil // stopped while waiting for the consumer: a clean stop
		}
		return err
	}
	bound.Store(true)
	loop := poller.New(poller.Options{
		Name: name, Workers: cfg.Poller.Concurrency, AckWait: tasks.AckWait(), MaxDeliver: tasks.MaxDeliver(),
		ShutdownGrace: cfg.Poller.ShutdownGrace, Log: log, Hooks: metrics,
	}, p.Start, bus)
	stopPollNow, err := bus.ServePollTasks(site, func(r *natsbus.Request) { loop.PollNow(ctx, r) })
	if err != nil {
		_ = closeParts()
		return err
	}
	var side sync.WaitGroup
	beatCtx, stopBeats := context.WithCancel(ctx)
	side.Add(1)
	go func() {
		defer side.Done()
		id, _ := task.HostKey(name)
		started := time.Now().UTC()
		bus.SendHeartbeats(beatCtx, id, cfg.Poller.Heartbeat, func() task.Heartbeat {
			return task.Heartbeat{ID: name, Site: site, Version: cli.Version, Concurrency: cfg.Poller.Concurrency,
				InFlight: metrics.InFlight(), Polls: metrics.Polls(), StartedAt: started}
		})
	}()
	serveErr := loop.Serve(ctx, func(buffer int, deliver func(poller.Delivery)) (func(), error) {
		return tasks.Consume(buffer, func(m *natsbus.TaskMsg) { deliver(m) })
	})
	stopPollNow()
	stopBeats()
	side.Wait()
	closeErr := closeParts()
	if serveErr != nil {
		return serveErr
	}
	if closeErr != nil {
		log.Warn("closing the NATS connection", "err", closeErr)
	}
	log.Info("stopped")
	closeTelemetry() // its listener and goroutine are not leaks
	proc.LeakCheck(log)
	return nil
}
