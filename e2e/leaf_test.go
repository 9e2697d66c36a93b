package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/harness/netcut"
	"github.com/flock-snmp/flock/harness/simtest"
	"github.com/flock-snmp/flock/internal/dispatch"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

const leafInterval = 2 * time.Second

// openLeaf starts a leaf node whose clients need no login and may do
// anything, linked to the hub at addr as user, with the pollers' mappings.
func openLeaf(t *testing.T, user, password, addr string) *server.Server {
	t.Helper()
	u, err := url.Parse("nats-leaf://" + url.UserPassword(user, password).String() + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: "open-" + user}
	o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
	o.LeafNode.ReconnectInterval = 500 * time.Millisecond
	s := natstest.Serve(t, o)
	if err := s.GlobalAccount().AddMapping("$JS.API.>", "$JS.hub.API.>"); err != nil { // as nats-leaf.conf's
		t.Fatal(err)
	}
	return s
}

// missedBySite sums the dispatcher's missed-slot reports logged after
// from, by site.
func missedBySite(disp *proc, from time.Time) map[string]int {
	missed := map[string]int{}
	for _, l := range strings.Split(disp.stderr.String(), "\n") {
		var e struct {
			Time   time.Time `json:"time"`
			Msg    string    `json:"msg"`
			Site   string    `json:"site"`
			Missed int       `json:"missed"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "slots missed: no record by their deadline" && e.Time.After(from) {
			missed[e.Site] += e.Missed
		}
	}
	return missed
}

// TestLeafSite runs the hub as the shipped config/nats-cluster.conf (three
// nodes) and site branch-7 behind a leaf node running the shipped
// config/nats-leaf.conf, its link through a proxy the test cuts: branch-7's
// poller connects to the leaf only, takes its site's tasks through it and
// sends its records back; through the leaf it cannot take another site's
// tasks. With the link cut, the hub's site polls on, branch-7's slots are
// reported missed, and once the link is back branch-7 polls again with no
// stale task left in its queue.
func TestLeafSite(t *testing.T) {
	for k, v := range sitePasswords {
		t.Setenv(k, v)
	}
	t.Setenv("FLOCK_NATS_NAME", "hub")
	t.Setenv("FLOCK_ROUTE_PASSWORD", "route-pw")
	for i := 1; i <= 3; i++ { // the harness sets the routes; the file needs the variables
		t.Setenv(fmt.Sprintf("FLOCK_ROUTE_URL_%d", i), "nats-route://route:route-pw@127.0.0.1:1")
	}
	hub := natstest.RunClusterFrom(t, filepath.Join("..", "config", "nats-cluster.conf"), 3)
	link, err := netcut.Start(hub.LeafAddr(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Close)
	const leafPollerPW = "leaf-poller-pw"
	t.Setenv("FLOCK_NATS_NAME", "leaf-branch-7")
	t.Setenv("FLOCK_HUB_LEAF_URL", "nats-leaf://poller-branch-7:"+url.QueryEscape(sitePasswords["FLOCK_POLLER_BRANCH_7_PASSWORD"])+"@"+link.Addr())
	t.Setenv("FLOCK_SITE_POLLER_PASSWORD", leafPollerPW)
	leaf := natstest.RunLeaf(t, filepath.Join("..", "config", "nats-leaf.conf"))
	waitUntil(t, "the leaf node's link to the hub", func() bool { return leaf.NumLeafNodes() == 1 })

	hq := simtest.Start(t, snmpsim.Config{Devices: 4, Interfaces: 1, NamePrefix: "hq"})
	br7 := simtest.Start(t, snmpsim.Config{Devices: 3, Interfaces: 1, NamePrefix: "br7"})
	dir := t.TempDir()
	sink := filepath.Join(dir, "records.jsonl")
	cfgPath := filepath.Join(dir, "flock.yaml")
	cfg := fmt.Sprintf(`nats: {url: %q, user: dispatcher, ack_wait: 2s, replicas: 3}
poller: {heartbeat: 500ms, concurrency: 8}
groups:
  - {name: branch7, site: branch-7}
defaults: {interval: %s, timeout: 300ms, retries: 0, get: [sysName.0]}
sinks: [{type: file, path: %s}]
hosts:
%s`, hub.URL(), leafInterval, sink, hostsIn(t, hq, "")+hostsIn(t, br7, "branch7"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dispStart := time.Now()
	disp := start(t, "dispatcher", "dispatcher", []string{"FLOCK_NATS_PASSWORD=" + sitePasswords["FLOCK_DISPATCHER_PASSWORD"], "FLOCK_LOG_FORMAT=json",
		"FLOCK_METRICS_LISTEN=127.0.0.1:0"}, "--config", cfgPath)
	start(t, "hq-poller", "poller", []string{"FLOCK_NATS_URL=" + hub.URL(), "FLOCK_NATS_USER=poller", "FLOCK_NATS_PASSWORD=" + sitePasswords["FLOCK_POLLER_PASSWORD"],
		"FLOCK_POLLER_NAME=hq-poller", "FLOCK_METRICS_LISTEN=127.0.0.1:0"}, "--config", cfgPath)
	start(t, "br7-poller", "poller", []string{"FLOCK_NATS_URL=" + leaf.ClientURL(), "FLOCK_NATS_USER=poller", "FLOCK_NATS_PASSWORD=" + leafPollerPW,
		"FLOCK_POLLER_SITE=branch-7", "FLOCK_POLLER_NAME=br7-poller", "FLOCK_METRICS_LISTEN=127.0.0.1:0"}, "--config", cfgPath)

	siteOf := map[string]string{}
	for _, d := range hq.Devices() {
		siteOf[d.Name] = task.DefaultSite
	}
	for _, d := range br7.Devices() {
		siteOf[d.Name] = "branch-7"
	}
	read := func() map[string][]task.HostRecord { return decodeAll(t, completeLines(sink)) }
	waitUntil(t, "two records of every host, branch-7's through the leaf", func() bool {
		if _, err := os.Stat(sink); err != nil {
			return false
		}
		got := read()
		for host := range siteOf {
			if len(got[host]) < 2 {
				return false
			}
		}
		return true
	})
	for host, recs := range read() {
		want := map[string]string{task.DefaultSite: "hq-poller", "branch-7": "br7-poller"}[siteOf[host]]
		for _, r := range recs {
			if r.Poller != want || r.Error != nil {
				t.Fatalf("record of %s (site %s) by %s, error %v; want by %s, no error", host, siteOf[host], r.Poller, r.Error, want)
			}
		}
	}

	// Through the leaf, the site's pollers reach their own consumer only.
	// (The leaf maps $JS.API.> to the hub's domain before it reports a
	// violation, so the refusal names $JS.hub.API.)
	nc, js, errs := authConnURL(t, leaf.ClientURL(), "poller", leafPollerPW, natsbus.PollerInbox("branch-7"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if _, err := js.Consumer(ctx, natsbus.TaskStream, natsbus.PollerConsumer(task.DefaultSite)); err == nil {
		t.Fatal("a poller of the leaf bound to pollers-default")
	}
	cancel()
	t.Log(authWantViolation(t, errs, "$JS.hub.API.CONSUMER.INFO.FLOCK_TASKS.pollers-default", "a poller of the leaf binding to pollers-default"))
	if msg, err := nc.Request("$JS.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.pollers-default", []byte(`{"batch":1,"expires":1000000000}`), 1500*time.Millisecond); err == nil {
		t.Fatalf("a poller of the leaf pulled from pollers-default: %s %q", msg.Subject, msg.Data)
	}
	t.Log(authWantViolation(t, errs, "$JS.hub.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.pollers-default", "a poller of the leaf pulling from pollers-default"))

	// The hub holds the link itself to the site's poller user: a leaf whose
	// own users may do anything still cannot take another site's tasks
	// through it (its own site's consumer answers), and the dispatcher's
	// user cannot link a leaf at all.
	open := openLeaf(t, "poller-branch-7", sitePasswords["FLOCK_POLLER_BRANCH_7_PASSWORD"], hub.LeafAddr(1))
	waitUntil(t, "the unrestricted leaf's link", func() bool { return open.NumLeafNodes() == 1 })
	onc, err := nats.Connect(open.ClientURL(), nats.CustomInboxPrefix(natsbus.PollerInbox("branch-7"))) // the only replies the hub sends the link
	if err != nil {
		t.Fatal(err)
	}
	defer onc.Close()
	if _, err := onc.Request("$JS.API.CONSUMER.INFO.FLOCK_TASKS.pollers-branch-7", nil, 3*time.Second); err != nil {
		t.Fatalf("through an unrestricted leaf, its own site's consumer: %v", err)
	}
	if m, err := onc.Request("$JS.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.pollers-default", []byte(`{"batch":1,"expires":1000000000}`), 2*time.Second); err == nil {
		t.Fatalf("through an unrestricted leaf, pulled from pollers-default: %q", m.Data)
	} else {
		t.Logf("through an unrestricted leaf, pulling from pollers-default: %v", err)
	}
	asDispatcher := openLeaf(t, "dispatcher", sitePasswords["FLOCK_DISPATCHER_PASSWORD"], hub.LeafAddr(2))
	time.Sleep(3 * time.Second)
	if n := asDispatcher.NumLeafNodes(); n != 0 {
		t.Fatalf("a leaf logged in as the dispatcher: %d links", n)
	}

	// The link cut for four intervals: the hub's site polls on. (Slots
	// missed while the cluster settled at the start are reported by now:
	// a slot is missed an interval and dispatch.MissedGrace after it began.)
	time.Sleep(time.Until(dispStart.Add(2*leafInterval + dispatch.MissedGrace(&task.PollTask{PollTimeoutMS: 2000}))))
	cut := time.Now()
	link.Cut()
	time.Sleep(4 * leafInterval)
	link.Restore()
	restored := time.Now()
	waitUntil(t, "the leaf node's link back", func() bool { return leaf.NumLeafNodes() == 1 })
	// branch-7 polls again: a record of every host of a slot after the link came back.
	waitUntil(t, "records of branch-7 after the link came back", func() bool {
		got := read()
		for _, d := range br7.Devices() {
			recs := got[d.Name]
			if len(recs) == 0 || !slotOf(t, recs[len(recs)-1].TaskID).After(restored) {
				return false
			}
		}
		return true
	})
	// Nothing of the cut is left in branch-7's queue.
	bus, err := natsbus.Connect(context.Background(), natsbus.ConnectOptions{URL: hub.URL(), Name: "checker",
		Auth: natsbus.Auth{User: "dispatcher", Password: sitePasswords["FLOCK_DISPATCHER_PASSWORD"]}, InboxPrefix: natsbus.DispatcherInbox})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if q, err := bus.Queue(context.Background(), "branch-7"); err != nil || q.OldestAge > leafInterval {
		t.Fatalf("branch-7's queue after the link came back: %+v %v", q, err)
	}

	// The hub's site missed no slot, cut or not; branch-7's missed slots
	// were reported as missed, by site.
	end := time.Now()
	got := read()
	for _, d := range hq.Devices() {
		have := map[time.Time]bool{}
		for _, r := range got[d.Name] {
			have[slotOf(t, r.TaskID)] = true
		}
		first := slotOf(t, got[d.Name][0].TaskID)
		for at := first; at.Add(2 * leafInterval).Before(end); at = at.Add(leafInterval) {
			if !have[at] {
				t.Errorf("hub site: no record of %s's slot %s (link cut %s-%s)", d.Name, at.Format("15:04:05.000"),
					cut.Format("15:04:05.000"), restored.Format("15:04:05.000"))
			}
		}
	}
	missed := missedBySite(disp, cut)
	t.Logf("slots reported missed by site from the cut on: %v (before it: %v)", missed, missedBySite(disp, time.Time{}))
	if missed["branch-7"] < len(br7.Devices()) || missed[task.DefaultSite] != 0 {
		t.Fatalf("slots reported missed by site %v: want branch-7's (at least one per host) and none of default", missed)
	}
}
