package natsauth_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flock-snmp/flock/internal/natsauth"
)

var shippedConf = filepath.Join("..", "..", "config", "nats-server.conf")

var shippedSites = []string{"default", "branch-7"}

func write(t *testing.T, sites []string) string {
	t.Helper()
	var b bytes.Buffer
	if err := natsauth.Write(&b, sites); err != nil {
		t.Fatalf("Write(%q): %v", sites, err)
	}
	return b.String()
}

// The shipped config/nats-server.conf ends with exactly the block Write
// produces for its sites, so the two never drift.
func TestShippedConfigIsWritten(t *testing.T) {
	data, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	if n := strings.Count(conf, "authorization {"); n != 1 {
		t.Fatalf("%s has %d authorization blocks, want 1", shippedConf, n)
	}
	got := conf[strings.Index(conf, "authorization {"):]
	if want := write(t, shippedSites); got != want {
		t.Fatalf("the authorization block of %s is not natsauth.Write's for %q; replace it with:\n%s", shippedConf, shippedSites, want)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ site, user, pwVar string }{
		{"default", "poller", "FLOCK_POLLER_PASSWORD"},
		{"branch-7", "poller-branch-7", "FLOCK_POLLER_BRANCH_7_PASSWORD"},
		{"Paris_2", "poller-Paris_2", "FLOCK_POLLER_PARIS_2_PASSWORD"},
		{"DEFAULT", "poller-DEFAULT", "FLOCK_POLLER_DEFAULT_PASSWORD"},
	} {
		if u := natsauth.PollerUser(c.site); u != c.user {
			t.Errorf("PollerUser(%q) = %q, want %q", c.site, u, c.user)
		}
		if v := natsauth.PollerPasswordVar(c.site); v != c.pwVar {
			t.Errorf("PollerPasswordVar(%q) = %q, want %q", c.site, v, c.pwVar)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	long := strings.Repeat("x", 65)
	for _, c := range []struct {
		sites []string
		want  string
	}{
		{[]string{"default", ""}, `site ""`},
		{[]string{"a.b"}, `site "a.b"`},
		{[]string{"a b"}, `site "a b"`},
		{[]string{"a>"}, `site "a>"`},
		{[]string{"a*"}, `site "a*"`},
		{[]string{"été"}, `site "été"`},
		{[]string{long}, `site "` + long + `"`},
		{[]string{"default", "branch-7", "default"}, `site "default" is listed twice`},
		{[]string{"a-b", "x", "a_b"}, `sites "a-b" and "a_b" would share the password variable $FLOCK_POLLER_A_B_PASSWORD`},
		{[]string{"Branch", "branch"}, `sites "Branch" and "branch"`},
		{[]string{"_", "-"}, `sites "_" and "-"`},
	} {
		var b bytes.Buffer
		err := natsauth.Write(&b, c.sites)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Write(%q): %v, want an error with %s", c.sites, err, c.want)
		}
		if b.Len() != 0 {
			t.Errorf("Write(%q) wrote %d bytes with an error", c.sites, b.Len())
		}
	}
	if err := natsauth.Write(&bytes.Buffer{}, []string{strings.Repeat("x", 64), "_", "--", "7", "true"}); err != nil {
		t.Errorf("valid sites: %v", err)
	}
}
