// Command snmpsim serves a fleet of simulated SNMP devices on loopback, for
// Flock's demo, tests and benchmarks.
//
//	snmpsim --devices 24 --interfaces 8 --hosts-out hosts.yaml
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/snmpsim"
)

func main() {
	cli.Main("snmpsim", func() error {
		return run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	})
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snmpsim", flag.ContinueOnError)
	var cfg snmpsim.Config
	fs.IntVar(&cfg.Devices, "devices", 20, "number of simulated devices")
	fs.IntVar(&cfg.Interfaces, "interfaces", 8, "interfaces (ifTable/ifXTable rows) per device")
	fs.StringVar(&cfg.ListenIP, "listen", "127.0.0.1", "loopback address to listen on")
	fs.IntVar(&cfg.BasePort, "base-port", 0, "device i listens on base-port+i; 0 picks free ports")
	fs.StringVar(&cfg.Community, "community", "public", "read community")
	fs.StringVar(&cfg.NamePrefix, "name-prefix", "sim", "devices are named <prefix>-00001 and on (their sysName), e.g. for a second site's simulator")
	fs.DurationVar(&cfg.Delay, "delay", 0, "added to every answer, like a network round trip")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "the delay varies by up to this much either way")
	fs.IntVar(&cfg.DeadEvery, "dead-every", 0, "every Nth device never answers")
	fs.IntVar(&cfg.SlowEvery, "slow-every", 0, "every Nth device answers after --slow-delay")
	fs.DurationVar(&cfg.SlowDelay, "slow-delay", 300*time.Millisecond, "delay of the slow devices")
	fs.IntVar(&cfg.BrokenEvery, "broken-every", 0, "every Nth device answers walks with genErr")
	fs.IntVar(&cfg.SilentAbove, "silent-above", 0, "devices ignore requests for more than N varbinds (a GETBULK: non-repeaters + repeaters x max-repetitions), as some agents do; 0: none")
	fs.BoolVar(&cfg.AllowNonLoopback, "allow-non-loopback", false, "allow --listen on a non-loopback address (the simulator's own container)")
	fs.Func("allow-from", "answer only requests from these `addresses` (comma-separated), as an agent with an access list", func(v string) error {
		for _, a := range strings.Split(v, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				return fmt.Errorf("%q is not an IP address", a)
			}
			cfg.AllowFrom = append(cfg.AllowFrom, ip)
		}
		return nil
	})
	hostsAddress := fs.String("hosts-address", "", "address written into --hosts-out (default: the listen address)")
	hostsOut := fs.String("hosts-out", "", "write the devices as a Flock hosts list (YAML) to this `file`")
	if err := cli.Parse(fs, args); err != nil {
		cli.Usage(fs, stderr, "snmpsim [--devices N] [--interfaces N] [--hosts-out FILE]")
		return err
	}
	fleet, err := snmpsim.Start(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	defer fleet.Close()
	if *hostsOut != "" {
		var b bytes.Buffer
		b.WriteString("hosts:\n")
		if err := fleet.WriteHostsAt(&b, *hostsAddress); err != nil {
			return err
		}
		if err := os.WriteFile(*hostsOut, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write hosts list: %w", err)
		}
	}
	devs := fleet.Devices()
	fmt.Fprintf(stdout, "snmpsim: serving %d devices with %d interfaces each, %s to %s, community %q\n",
		len(devs), cfg.Interfaces, devs[0].AddrPort(), devs[len(devs)-1].AddrPort(), cfg.Community)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
