// Command compose-test checks Flock under docker compose on this machine's
// Docker engine (see harness/composetest). Build the images first (make
// images). Its last line is
//
//	compose-test: hosts=N cycles=N pollers=N poller_shares=a/b/c killed=N missed=N subscriber_records=N dispatcher_records=N nats_restart_recovered=yes|no leftover_containers=N ... tsdb_hosts=N tsdb_sysuptime_hosts=N tsdb_hosts_after_restart=N (samples in VictoriaMetrics through the tsdb profile's writer)
//
// and it exits 1 when a check fails.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/harness/composectl"
	"github.com/flock-snmp/flock/harness/composetest"
	"github.com/flock-snmp/flock/internal/cli"
)

func main() {
	cli.Main("compose-test", func() error { return run(context.Background(), os.Stdout) })
}

func run(ctx context.Context, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	res, err := composetest.Run(ctx, composetest.Config{
		Compose: composectl.Command(), Project: fmt.Sprintf("flockct%d", os.Getpid()), Interval: 10 * time.Second, Hosts: 300, Log: stdout,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Line())
	if !res.Pass() {
		return errors.Join(cli.ErrReported, errors.New("a compose check failed"))
	}
	return nil
}
