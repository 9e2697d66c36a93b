package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flock-snmp/flock/internal/cli"
)

// The common flags work before and after a subcommand. --check-config
// stops each after loading the file the flags name, so no NATS is needed.
func TestGlobalFlagsBeforeAndAfterSubcommands(t *testing.T) {
	const cfg = "../../config/flock.yaml"
	noEnv := func(string) string { return "" }
	for _, args := range [][]string{
		{"--config", cfg, "--check-config"},
		{"--config", cfg, "--check-config", "status"},
		{"--config", cfg, "status", "--check-config", "--sort", "name"},
		{"status", "--config", cfg, "--check-config"},
		{"--check-config", "status", "--config", cfg},
		{"--config", cfg, "--check-config", "poll", "core-sw1.example.net"},
		{"poll", "--config", cfg, "--check-config", "core-sw1.example.net"},
		{"--check-config", "poll", "core-sw1.example.net", "--config", cfg},
		{"-config=" + cfg, "poll", "-check-config", "core-sw1.example.net"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, noEnv, &stdout, &stderr)
		if err != nil || !strings.HasPrefix(stdout.String(), "configuration OK: "+cfg+": ") || !strings.HasSuffix(stdout.String(), "; sites: branch-7, default\n") {
			t.Errorf("dispatcher %s: %v; stdout %q stderr %q", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
	}
	// The config path from the environment, when no flag gives one, reaches the subcommand too.
	var stdout bytes.Buffer
	env := func(k string) string {
		if k == "FLOCK_CONFIG" {
			return cfg
		}
		return ""
	}
	if err := run(context.Background(), []string{"status", "--check-config"}, env, &stdout, &bytes.Buffer{}); err != nil ||
		!strings.HasPrefix(stdout.String(), "configuration OK: "+cfg) {
		t.Errorf("FLOCK_CONFIG with status: %v %q", err, stdout.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg, "frobnicate"}, `unexpected argument "frobnicate": want a flag or one of the subcommands status, poll, nats-conf`},
		{[]string{"--once", "--config", cfg, "status"}, "--once runs the whole dispatcher; it does not go with status"},
		{[]string{"--config", cfg, "status", "--once"}, "flag provided but not defined: -once"},
		{[]string{"--config", cfg, "poll"}, "dispatcher poll needs a HOST"},
		{[]string{"--no-such-flag", "status"}, "flag provided but not defined: -no-such-flag"},
	} {
		err := run(context.Background(), tc.args, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dispatcher %s: %v, want a usage error (exit 2) saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// nats-conf prints the authorization block with a poller user per site of
// the inventory.
func TestNATSConf(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--config", "../../config/flock.yaml", "nats-conf"}, func(string) string { return "" },
		&stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	for _, want := range []string{"authorization {", "user: dispatcher", "user: poller\n", "user: poller-branch-7\n",
		"password: $FLOCK_POLLER_BRANCH_7_PASSWORD", `"$JS.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.pollers-branch-7"`, `"flock.poll.task.branch-7"`,
		`"_INBOX_flock_poller_branch-7.>"`, "user: reader"} {
		if !strings.Contains(out, want) {
			t.Fatalf("nats-conf lacks %q:\n%s", want, out)
		}
	}
}
