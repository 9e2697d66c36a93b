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
	"os"
	"os/signal"
	"syscall"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/task"
)

func main() {
	cli.Main("poller", func() error {
		return run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	})
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("poller", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	if err := cli.Parse(fs, args); err != nil {
		cli.Usage(fs, stderr, "poller [--config FILE] [--check-config]")
		return err
	}
	cfg, err := config.Load(common.Config, getenv)
	if err != nil {
		return err
	}
	if common.CheckConfig {
		_, err := fmt.Fprintln(stdout, cli.Summary(cfg))
		return err
	}
	log, err := common.Logger(stderr)
	if err != nil {
		return err
	}
	name := cfg.Poller.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	log = log.With("poller", name)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{
		URL: cfg.PollerURL(), Name: "flock-poller " + name, Timeout: cfg.NATS.ConnectTimeout, Log: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for NATS: a clean stop
		}
		return err
	}
	p := poll.New(name, cfg.Credentials, nil)
	serveErr := bus.ServeTasks(ctx, natsbus.ServeOptions{
		Site: task.DefaultSite, Workers: cfg.Poller.Concurrency, Poller: name,
		ShutdownGrace: cfg.Poller.ShutdownGrace, Log: log,
	}, p.Poll)
	closeErr := bus.Close()
	if serveErr != nil {
		return serveErr
	}
	if closeErr != nil {
		log.Warn("closing the NATS connection", "err", closeErr)
	}
	log.Info("stopped")
	return nil
}
