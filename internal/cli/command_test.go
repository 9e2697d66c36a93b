package cli

import (
	"errors"
	"flag"
	"slices"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		cmd      string
		rest     []string
		config   string
		checkCfg bool
	}{
		{[]string{"--config", "f.yaml"}, "", nil, "f.yaml", false},
		{[]string{"--config", "f.yaml", "poll", "h", "--timeout", "1s"}, "poll", []string{"h", "--timeout", "1s"}, "f.yaml", false},
		{[]string{"status", "--config", "f.yaml"}, "status", []string{"--config", "f.yaml"}, "env.yaml", false},
		{[]string{"-check-config", "--", "status"}, "status", []string{}, "env.yaml", true},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		var c Common
		c.Register(fs, func(string) string { return "env.yaml" })
		cmd, rest, err := ParseCommand(fs, tc.args, "status", "poll")
		if err != nil || cmd != tc.cmd || !slices.Equal(rest, tc.rest) || c.Config != tc.config || c.CheckConfig != tc.checkCfg {
			t.Errorf("%q: cmd %q rest %q config %q check %v, %v", tc.args, cmd, rest, c.Config, c.CheckConfig, err)
		}
		// A subcommand's flag set starts from what the global flags said.
		sub := flag.NewFlagSet("sub", flag.ContinueOnError)
		c.Register(sub, func(string) string { return "other.yaml" })
		if err := Parse(sub, nil); err != nil || c.Config != tc.config || c.CheckConfig != tc.checkCfg {
			t.Errorf("%q: the subcommand's defaults lost the global flags: %q %v", tc.args, c.Config, c.CheckConfig)
		}
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, _, err := ParseCommand(fs, []string{"stat"}, "status"); !errors.Is(err, ErrUsage) {
		t.Errorf("an unknown subcommand: %v", err)
	}
	if _, _, err := ParseCommand(flag.NewFlagSet("x", flag.ContinueOnError), []string{"-h"}, "status"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
