// Command bench is Flock's load harness (harness/bench): it prints one
// line per scenario,
//
//	bench: scenario=NAME hosts=N polls=N varbinds=N secs=S polls_per_s=X ...
//
// and reports figures only; it never fails on a number.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/flock-snmp/flock/harness/bench"
	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/internal/cli"
)

func main() {
	cli.Main("bench", func() error { return run(context.Background(), os.Args[1:], os.Stdout, os.Stderr) })
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("scenarios", "gosnmp-only,get1,walk,wan,dead20,mem5k,mem50k,once10k,inventory100k", "comma-separated scenarios to run")
	keep := fs.Bool("keep", false, "keep the work directory (logs, records)")
	replicas := fs.Int("replicas", 1, "run the scenarios on this many nats-servers clustered, with nats.replicas at it (3: what R3 costs)")
	if err := cli.Parse(fs, args); err != nil {
		cli.Usage(fs, stderr, "bench [--replicas N] [--scenarios gosnmp-only,get1,walk,wan,dead20,mem5k,mem50k,once10k,inventory100k]")
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	dir, err := os.MkdirTemp("", "flock-bench-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(stderr, "bench: work directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := procs.Build(ctx, dir); err != nil {
		return err
	}
	scenarios := bench.Scenarios()
	// The yardstick first: every scenario's line then gives its figures as
	// ratios to it (x_gosnmp_*), measured in the same sitting.
	var base *bench.Result
	if want["gosnmp-only"] {
		res, err := bench.GosnmpOnly(ctx, dir, scenarios[0])
		if err != nil {
			return fmt.Errorf("scenario gosnmp-only: %w", err)
		}
		fmt.Fprintln(stdout, res.Line())
		base = &res
	}
	for _, sc := range scenarios {
		if !want[sc.Name] {
			continue
		}
		sc.Replicas = *replicas
		res, err := bench.Run(ctx, dir, sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		res.Base = base
		fmt.Fprintln(stdout, res.Line())
	}
	if want["inventory100k"] {
		line, err := bench.Inventory(ctx, dir, 100_000)
		if err != nil {
			return fmt.Errorf("scenario inventory100k: %w", err)
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}
