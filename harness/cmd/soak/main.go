// Command soak breaks a running Flock on purpose for a bounded time and
// counts what was lost: see harness/soak. Loopback only. Its last line is
//
//	soak: secs=S cycles=N kills=N nats_restarts=N dispatcher_restarts=N leader_kills=N takeover_secs=S tasks=N records=N missing=N duplicates=N possible_duplicates=N leaked_goroutines=N leaked_sockets=N ...
//
// and it exits 1 when the bar (kills >= 20, a leader killed, nothing missing, duplicated beyond
// the counted possible duplicates, or leaked) is not met.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/harness/soak"
	"github.com/flock-snmp/flock/internal/cli"
)

func main() {
	cli.Main("soak", func() error { return run(context.Background(), os.Args[1:], os.Stdout, os.Stderr) })
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	cfg := soak.Config{Log: stdout}
	fs.IntVar(&cfg.Devices, "devices", 2000, "simulated devices")
	fs.IntVar(&cfg.Pollers, "pollers", 3, "poller processes")
	fs.DurationVar(&cfg.Interval, "interval", 10*time.Second, "poll interval")
	fs.DurationVar(&cfg.AckWait, "ack-wait", 3*time.Second, "nats.ack_wait")
	fs.DurationVar(&cfg.Duration, "duration", 150*time.Second, "length of the chaos phase")
	fs.IntVar(&cfg.Kills, "kills", 24, "poller SIGKILLs during the chaos phase")
	keep := fs.Bool("keep", false, "keep the work directory (logs, records)")
	if err := cli.Parse(fs, args); err != nil {
		cli.Usage(fs, stderr, "soak [--duration 150s] [--kills 24] [--devices 2000]")
		return err
	}
	dir, err := os.MkdirTemp("", "flock-soak-")
	if err != nil {
		return err
	}
	cfg.Dir = dir
	if *keep {
		fmt.Fprintf(stdout, "soak: work directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Line())
	if !res.Pass() {
		return errors.Join(cli.ErrReported, fmt.Errorf("the soak did not meet its bar"))
	}
	return nil
}
