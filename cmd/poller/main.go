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

	"github.com/flock-snmp/flock/internal/cli"
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
	cfg, log, done, err := common.Setup(fs, "poller [--config FILE] [--check-config]", args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	name := cfg.Poller.Name
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	log = log.With("poller", name)

	ctx, proc, err := cli.StartProcess(ctx, getenv)
	if err != nil {
		return err
	}
	defer proc.Close()

	bus, err := natsbus.Connect(ctx, natsbus.ConnectOptions{
		URL: cfg.PollerURL(), Name: "flock-poller " + name, Timeout: cfg.NATS.ConnectTimeout, Log: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for NATS: a clean stop
		}
		return err
	}
	memory, err := bus.DeviceMemory(ctx)
	if err != nil {
		_ = bus.Close()
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop
		}
		return err
	}
	p := poll.New(name, cfg.Credentials, nil).WithMemory(memory)
	serveErr := bus.ServeTasks(ctx, natsbus.ServeOptions{
		Site: task.DefaultSite, Workers: cfg.Poller.Concurrency, Poller: name,
		ShutdownGrace: cfg.Poller.ShutdownGrace, Log: log,
	}, p.Poll)
	memory.Close()
	closeErr := bus.Close()
	if serveErr != nil {
		return serveErr
	}
	if closeErr != nil {
		log.Warn("closing the NATS connection", "err", closeErr)
	}
	log.Info("stopped")
	proc.LeakCheck(log)
	return nil
}
