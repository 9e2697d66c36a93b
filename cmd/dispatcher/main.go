// Command dispatcher turns Flock's inventory into poll tasks on the
// JetStream work queue and collects the HostRecords the pollers publish.
//
//	dispatcher --config flock.yaml --once
//
// Without nats.url it runs an embedded nats-server that pollers connect to.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

func main() {
	cli.Main("dispatcher", func() error {
		return run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	})
}

const synopsis = "dispatcher [--config FILE] [--once | --check-config]"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	once := fs.Bool("once", false, "poll every host once, print one JSON HostRecord per line, a summary on stderr, and exit")
	cfg, log, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
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
	if err := bus.EnsureStreams(ctx, natsbus.StreamOptions{
		Site: task.DefaultSite, AckWait: cfg.NATS.AckWait, MaxDeliver: cfg.NATS.MaxDeliver, MaxQueued: cfg.NATS.MaxQueuedTasks,
	}); err != nil {
		return err
	}
	if !*once {
		err := runContinuously(ctx, bus, cfg, func() (*config.Config, error) { return config.Load(common.Config, getenv) }, stdout, log)
		closeBus()
		if err == nil {
			proc.LeakCheck(log)
		}
		return err
	}
	sum, err := dispatch.RunOnce(ctx, bus, cfg, stdout, log)
	fmt.Fprintln(stderr, sum)
	if err != nil {
		return err
	}
	if !sum.Complete() {
		return cli.ErrReported
	}
	return nil
}

// runContinuously polls every host at its interval until ctx ends; SIGHUP
// re-reads the configuration's inventory.
func runContinuously(ctx context.Context, bus *natsbus.Bus, cfg *config.Config, load func() (*config.Config, error),
	stdout io.Writer, log *slog.Logger) error {
	states, err := bus.Bucket(ctx, natsbus.HostStateBucket, "Flock dispatcher: last state of each host")
	if err != nil {
		return err
	}
	sinks, err := dispatch.OpenSinks(cfg.Sinks, stdout)
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r, err := dispatch.NewRunner(ctx, bus, cfg, dispatch.RunOptions{
		Site: task.DefaultSite, Sinks: sinks, State: states, Reload: reload, LoadConfig: load, Log: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		stopMetrics, err := serveMetrics(cfg.Metrics.Listen, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	err = r.Run(ctx)
	st := r.Stats()
	log.Info("stopped", "published", st.Published, "overruns", st.Overruns, "queue_full", st.QueueFull, "failed", st.Failed,
		"exhausted", st.Exhausted, "records", st.Records, "reloads", st.Reloads, "rejected_reloads", st.Rejected)
	return err
}

// serveMetrics serves /metrics on addr until the returned func is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// connect joins the configured NATS, or starts the embedded server and
// connects to it in-process. The returned func closes what was opened.
func connect(ctx context.Context, cfg *config.Config, log *slog.Logger) (*natsbus.Bus, func(), error) {
	if cfg.NATS.URL != "" {
		bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{
			URL: cfg.NATS.URL, Name: "flock-dispatcher", Timeout: cfg.NATS.ConnectTimeout, Log: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return bus, func() { _ = bus.Close() }, nil
	}
	emb, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{
		Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir, Log: log,
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("embedded NATS server started", "url", emb.ClientURL(), "store_dir", cfg.NATS.Embedded.StoreDir)
	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{Name: "flock-dispatcher", InProcess: emb.Server(), Log: log})
	if err != nil {
		emb.Close()
		return nil, nil, err
	}
	return bus, func() {
		_ = bus.Close()
		emb.Close()
	}, nil
}
