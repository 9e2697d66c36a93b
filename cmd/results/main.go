// Command results is an example of another program reading Flock's
// results: it subscribes to flock.results.> and prints one line per
// HostRecord. A TSDB writer or an alerting service starts the same way.
//
//	FLOCK_NATS_URL=nats://nats.example.net:4222 results
//
// With authentication on (config/nats-server.conf) it is the reader role:
// FLOCK_NATS_USER=reader FLOCK_NATS_PASSWORD=... results
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/internal/cli"
	"github.com/flock-snmp/flock/internal/task"
)

func main() {
	cli.Main("results", func() error { return run(context.Background(), os.Getenv, os.Stdout, os.Stderr) })
}

func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	url := getenv("FLOCK_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	subject := getenv("FLOCK_RESULTS_SUBJECT")
	if subject == "" {
		subject = task.ResultPrefix + ">"
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []nats.Option{nats.Name("flock-results-example"), nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond), nats.RetryOnFailedConnect(true)}
	if user := getenv("FLOCK_NATS_USER"); user != "" {
		opts = append(opts, nats.UserInfo(user, getenv("FLOCK_NATS_PASSWORD")))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		r, err := task.DecodeRecord(m.Data)
		if err != nil {
			fmt.Fprintf(stderr, "results: %s: %v\n", m.Subject, err)
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
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	fmt.Fprintf(stderr, "results: printing %s from %s\n", subject, url)
	<-ctx.Done()
	return nil
}
