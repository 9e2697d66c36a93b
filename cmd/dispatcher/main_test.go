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
		if err != nil || !strings.HasPrefix(stdout.String(), "configuration OK: "+cfg+": ") {
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
		{[]string{"--config", cfg, "frobnicate"}, `unexpected argument "frobnicate": want a flag or one of the subcommands status, poll`},
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
