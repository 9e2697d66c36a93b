// Command results reads Flock's results apart from the dispatcher.
//
// With metric sinks in its configuration (sinks of type
// prometheus_remote_write or influx, or metrics_subject: true) it is the
// TSDB writer: it runs those sinks, each through the sink's own durable
// consumer on FLOCK_RESULTS, which it shares with every other process
// running the same sink (dispatchers included), so writers can run and
// scale apart from the dispatcher. A record is acknowledged only once its
// sink's database accepted it; while a database is down its records wait
// in the stream.
//
//	results --config flock.yaml
//
// With none it is an example of another program reading the results: it
// subscribes to flock.results.> (FLOCK_RESULTS_SUBJECT) and prints one line
// per HostRecord. An alerting service starts the same way.
//
//	FLOCK_NATS_URL=nats://nats.example.net:4222 results
//
// With authentication on (config/nats-server.conf) it is the reader role:
// FLOCK_NATS_USER=reader FLOCK_NATS_PASSWORD=... results
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/export"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
	"github.com/flock-snmp/flock/internal/telemetry"
)

func main() {
	cli.Main("results", func() error { return run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr) })
}

const synopsis = `results [--config FILE] [--check-config]
With metric sinks in the configuration, writes to them; without, prints a line per HostRecord.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if probed, err := cli.Probe(ctx, args); probed {
		return err
	}
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	cfg, log, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	ctx, proc, err := cli.StartProcess(ctx, getenv)
	if err != nil {
		return err
	}
	defer proc.Close()
	timeout := cfg.NATS.ConnectTimeout
	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{URL: cfg.PollerURL(), Name: "flock-results", Timeout: timeout, Log: log,
		Auth: natsbus.AuthFromConfig(&cfg.NATS)})
	if err != nil {
		return err
	}
	defer bus.Close()
	if len(cfg.MetricSinks()) == 0 && !cfg.MetricsSubject {
		return printRecords(ctx, bus, getenv, stdout, stderr)
	}
	return writeSinks(ctx, bus, cfg, log)
}

// writeSinks runs the metric sinks until ctx ends.
func writeSinks(ctx context.Context, bus *natsbus.Bus, cfg *config.Config, log *slog.Logger) error {
	reg := telemetry.NewRegistry()
	sinks, err := export.Start(ctx, cfg, bus.OpenSink, bus, export.NewMetrics(reg), log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the results stream
		}
		return err
	}
	if cfg.Metrics.Listen != "" {
		srv, err := telemetry.Serve("metrics.listen", cfg.Metrics.Listen, telemetry.ServerOptions{
			Registry: reg, Log: log, Role: func() string { return "writer" },
			// The reader role may look at FLOCK_RESULTS only.
			Ready: func(ctx context.Context) error { return bus.Ready(ctx, natsbus.ResultStream) },
		})
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	log.Info("writing results to metric sinks", "sinks", sinks.Names())
	<-ctx.Done()
	sinks.Wait()
	log.Info("stopped")
	return nil
}

// printRecords prints a line per HostRecord published, until ctx ends.
func printRecords(ctx context.Context, bus *natsbus.Bus, getenv func(string) string, stdout, stderr io.Writer) error {
	subject := getenv("FLOCK_RESULTS_SUBJECT")
	if subject == "" {
		subject = task.ResultPrefix + ">"
	}
	stop, err := bus.Subscribe(subject, func(subject string, data []byte) {
		r, err := task.DecodeRecord(data)
		if err != nil {
			fmt.Fprintf(stderr, "results: %s: %v\n", subject, err)
			return
		}
		status := "ok"
		if r.Error != nil {
			status = r.Error.Kind
		}
		fmt.Fprintf(stdout, "record host=%s task_id=%s poller=%s status=%s varbinds=%d duration_ms=%.1f\n",
			r.Host, r.TaskID, r.Poller, status, len(r.Varbinds), r.DurationMS)
	})
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stderr, "results: printing %s\n", subject)
	<-ctx.Done()
	return nil
}
