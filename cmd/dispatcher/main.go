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
	"os"
	"os/signal"
	"syscall"

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

const synopsis = "dispatcher [--config FILE] --once | --check-config"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	var common cli.Common
	common.Register(fs, getenv)
	once := fs.Bool("once", false, "poll every host once, print one JSON HostRecord per line, a summary on stderr, and exit")
	cfg, log, done, err := common.Setup(fs, synopsis, args, getenv, stdout, stderr)
	if err != nil || done {
		return err
	}
	if !*once {
		cli.Usage(fs, stderr, synopsis)
		return fmt.Errorf("%w: --once is required: continuous scheduling is not available yet", cli.ErrUsage)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	bus, closeBus, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeBus()
	if err := bus.EnsureStreams(ctx, natsbus.StreamOptions{
		Site: task.DefaultSite, AckWait: cfg.NATS.AckWait, MaxDeliver: cfg.NATS.MaxDeliver,
	}); err != nil {
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
