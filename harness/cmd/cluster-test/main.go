// Command cluster-test checks Flock on a three-node NATS cluster with a
// remote site behind a leaf node, under docker compose on this machine's
// Docker engine (see harness/clustertest). Build the images first (make
// images). Its last line is
//
//	cluster-test: nodes=3 killed=nats-N rolling_restart=yes|no missed=N duplicates=N leaf_site=branch-7 leaf_cut_recovered=yes|no leftover_containers=N
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
	"path/filepath"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/harness/clustertest"
	"github.com/flock-snmp/flock/harness/composectl"
	"github.com/flock-snmp/flock/internal/cli"
)

func main() {
	cli.Main("cluster-test", func() error { return run(context.Background(), os.Stdout) })
}

func run(ctx context.Context, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	// config/compose-cluster.yaml: 100 hosts of site default, 50 of branch-7, every 10 s.
	res, err := clustertest.Run(ctx, clustertest.Config{
		Compose: composectl.Command(), File: "docker-compose.cluster.yml", Project: fmt.Sprintf("flockcl%d", os.Getpid()),
		Interval: 10 * time.Second, AckWait: 5 * time.Second, Hosts: map[string]int{"default": 100, "branch-7": 50}, LeafSite: "branch-7",
		Pollers: 2, Cut: 30 * time.Second, LogDir: filepath.Join("build", "cluster-test"), Log: stdout,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Line())
	if !res.Pass() {
		return errors.Join(cli.ErrReported, errors.New("a cluster check failed"))
	}
	return nil
}
