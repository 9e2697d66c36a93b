package e2e

// The shipped nats-server.conf's site isolation, against a real server,
// with raw nats.go: what a poller of one site may and may not do. (The
// block itself is internal/natsauth's output; see its tests.)

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/internal/natsauth"
)

var authShippedConf = filepath.Join("..", "config", "nats-server.conf")

var authShippedSites = []string{"default", "branch-7"}

func authWrite(t *testing.T, sites []string) string {
	t.Helper()
	var b bytes.Buffer
	if err := natsauth.Write(&b, sites); err != nil {
		t.Fatalf("Write(%q): %v", sites, err)
	}
	return b.String()
}

// Whatever valid site names Write is given, nats-server reads the block back
// as the users and passwords intended.
func TestServerParsesWrittenUsers(t *testing.T) {
	sites := []string{"default", "branch-7", "7", "true", "-", "_x_", "nil", strings.Repeat("Z", 64)}
	conf := "port: 4222\n" + authWrite(t, sites)
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOCK_DISPATCHER_PASSWORD", "pw-dispatcher")
	t.Setenv("FLOCK_READER_PASSWORD", "pw-reader")
	want := map[string]string{"dispatcher": "pw-dispatcher", "reader": "pw-reader"}
	for _, s := range sites {
		t.Setenv(natsauth.PollerPasswordVar(s), "pw-"+s)
		want[natsauth.PollerUser(s)] = "pw-" + s
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Users) != len(want) {
		t.Fatalf("server read %d users, want %d", len(opts.Users), len(want))
	}
	for _, u := range opts.Users {
		if pw, ok := want[u.Username]; !ok || u.Password != pw {
			t.Errorf("user %q with password %q: want %q (known %v)", u.Username, u.Password, pw, ok)
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("user %q has no permissions", u.Username)
		}
	}
}

var passwords = map[string]string{
	"dispatcher":      "disp-pw-3e1",
	"poller":          "poll-default-pw-8a0",
	"poller-branch-7": "poll-b7-pw-5c2",
	"reader":          "read-pw-19f",
}

// authStartShipped runs nats-server in-process from the shipped configuration,
// on 127.0.0.1 and a free port, passwords from the environment.
func authStartShipped(t *testing.T) *server.Server {
	t.Helper()
	t.Setenv("FLOCK_DISPATCHER_PASSWORD", passwords["dispatcher"])
	t.Setenv("FLOCK_READER_PASSWORD", passwords["reader"])
	for _, s := range authShippedSites {
		t.Setenv(natsauth.PollerPasswordVar(s), passwords[natsauth.PollerUser(s)])
	}
	opts, err := server.ProcessConfigFile(authShippedConf)
	if err != nil {
		t.Fatal(err)
	}
	port, err := procs.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", port
	opts.HTTPPort, opts.HTTPSPort = 0, 0
	opts.StoreDir = t.TempDir()
	opts.JetStreamMaxMemory, opts.JetStreamMaxStore = 64<<20, 256<<20
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		t.Fatalf("nats-server did not start on 127.0.0.1:%d", port)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// conn connects as user with inbox prefix inbox; the server's asynchronous
// errors (permissions violations) arrive on the returned channel.
func authConn(t *testing.T, srv *server.Server, user, inbox string) (*nats.Conn, jetstream.JetStream, chan error) {
	t.Helper()
	return authConnURL(t, srv.ClientURL(), user, passwords[user], inbox)
}

// authConnURL is authConn to any server's URL, with the password given.
func authConnURL(t *testing.T, url, user, password, inbox string) (*nats.Conn, jetstream.JetStream, chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := nats.Connect(url, nats.Name(user), nats.UserInfo(user, password), nats.CustomInboxPrefix(inbox),
		nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, errs
}

func authDrain(errs chan error) {
	for {
		select {
		case <-errs:
		default:
			return
		}
	}
}

// wantViolation waits for the server to report a permissions violation on
// subject and returns its text.
func authWantViolation(t *testing.T, errs <-chan error, subject, what string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return err.Error()
			}
			t.Logf("%s: other async error: %v", what, err)
		case <-timeout:
			t.Fatalf("%s: the server reported no permissions violation on %s", what, subject)
		}
	}
}

// wantSubscribeRefused subscribes to subject and expects the server to
// refuse it.
func authWantSubscribeRefused(t *testing.T, nc *nats.Conn, errs chan error, subject, who string) {
	t.Helper()
	authDrain(errs)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	msg := authWantViolation(t, errs, subject, who+" subscribing to "+subject)
	if _, err := sub.NextMsg(time.Second); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("%s subscribing to %s: NextMsg: %v, want a permissions violation", who, subject, err)
	}
	t.Logf("%s subscribing to %s: %s", who, subject, msg)
}

// wantPullRefused has who, the pollers of one site, try to take a task from
// another site's consumer, both through the jetstream package and with a
// bare pull request, and expects the server to refuse both.
func authWantPullRefused(t *testing.T, nc *nats.Conn, js jetstream.JetStream, errs chan error, consumer, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	authDrain(errs)
	info := "$JS.API.CONSUMER.INFO.FLOCK_TASKS." + consumer
	if _, err := js.Consumer(ctx, "FLOCK_TASKS", consumer); err == nil {
		t.Fatalf("%s bound to consumer %s", who, consumer)
	} else {
		t.Logf("%s binding to %s (jetstream.Consumer): %v", who, consumer, err)
	}
	t.Logf("%s binding to %s: server: %s", who, consumer, authWantViolation(t, errs, info, who+" binding to "+consumer))

	next := "$JS.API.CONSUMER.MSG.NEXT.FLOCK_TASKS." + consumer
	authDrain(errs)
	msg, err := nc.Request(next, []byte(`{"batch":1,"expires":1000000000}`), 1500*time.Millisecond)
	if err == nil {
		t.Fatalf("%s pulled from %s: %s %q", who, consumer, msg.Subject, msg.Data)
	}
	t.Logf("%s pulling from %s (request on %s): %v", who, consumer, next, err)
	t.Logf("%s pulling from %s: server: %s", who, consumer, authWantViolation(t, errs, next, who+" pulling from "+consumer))
}

// Each site's poller user takes its own site's tasks and nothing of another
// site's, on a real nats-server running the shipped configuration.
func TestSitesOfShippedServerConfig(t *testing.T) {
	srv := authStartShipped(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The dispatcher: streams, one consumer per site, a task per site.
	_, djs, _ := authConn(t, srv, "dispatcher", "_INBOX_flock_dispatcher")
	tasks, err := djs.CreateStream(ctx, jetstream.StreamConfig{Name: "FLOCK_TASKS", Subjects: []string{"flock.tasks.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("dispatcher creates FLOCK_TASKS: %v", err)
	}
	results, err := djs.CreateStream(ctx, jetstream.StreamConfig{Name: "FLOCK_RESULTS", Subjects: []string{"flock.results.>"},
		Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("dispatcher creates FLOCK_RESULTS: %v", err)
	}
	for _, s := range authShippedSites {
		if _, err := tasks.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: natsauth.PollerConsumer(s),
			FilterSubject: "flock.tasks." + s + ".>", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second}); err != nil {
			t.Fatalf("dispatcher creates consumer %s: %v", natsauth.PollerConsumer(s), err)
		}
		if _, err := djs.Publish(ctx, "flock.tasks."+s+".host-1", []byte("task of "+s)); err != nil {
			t.Fatalf("dispatcher publishes a task of %s: %v", s, err)
		}
	}
	// The dispatchers' lease bucket is the dispatcher's.
	lease, err := djs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "flock_dispatchers", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("dispatcher creates flock_dispatchers: %v", err)
	}
	if _, err := lease.Put(ctx, "leader", []byte("d1")); err != nil {
		t.Fatalf("dispatcher takes the lease: %v", err)
	}

	// Pollers of branch-7: their own site's task, record, poll-now.
	b7 := "branch-7"
	nc7, js7, errs7 := authConn(t, srv, natsauth.PollerUser(b7), natsauth.PollerInbox(b7))
	own, err := js7.Consumer(ctx, "FLOCK_TASKS", natsauth.PollerConsumer(b7))
	if err != nil {
		t.Fatalf("poller of %s binds to its consumer: %v", b7, err)
	}
	batch, err := own.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("poller of %s acks its task: %v", b7, err)
		}
	}
	if batch.Error() != nil || len(got) != 1 || got[0] != "task of "+b7 {
		t.Fatalf("poller of %s fetched %q (%v), want its site's task", b7, got, batch.Error())
	}
	if _, err := js7.Publish(ctx, "flock.results."+b7+".x", []byte("record")); err != nil {
		t.Fatalf("poller of %s publishes its site's record: %v", b7, err)
	}
	if err := nc7.Publish("flock.pollers.p-b7-1", []byte(`{"site":"branch-7"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := nc7.QueueSubscribe("flock.poll.task."+b7, "pollers", func(m *nats.Msg) { _ = m.Respond([]byte("now:" + string(m.Data))) }); err != nil {
		t.Fatal(err)
	}
	if err := nc7.Flush(); err != nil {
		t.Fatal(err)
	}
	dnc, _, _ := authConn(t, srv, "dispatcher", "_INBOX_flock_dispatcher")
	if reply, err := dnc.Request("flock.poll.task."+b7, []byte("t1"), 5*time.Second); err != nil || string(reply.Data) != "now:t1" {
		t.Fatalf("poll-now task to %s: %v", b7, err)
	}
	select {
	case err := <-errs7:
		t.Fatalf("poller of %s doing its job: %v", b7, err)
	default:
	}

	// ... and nothing of site default's.
	authWantPullRefused(t, nc7, js7, errs7, natsauth.PollerConsumer("default"), "poller of "+b7)
	for _, subject := range []string{natsauth.PollerInbox("default") + ".>", "flock.poll.task.default", natsauth.PollerInbox("default") + ".x"} {
		authWantSubscribeRefused(t, nc7, errs7, subject, "poller of "+b7)
	}
	authDrain(errs7)
	if err := nc7.Publish("flock.results.default.x", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	t.Logf("poller of %s publishing a record of default: %s", b7, authWantViolation(t, errs7, "flock.results.default.x", "poller of "+b7+" publishing a record of default"))
	authDrain(errs7)
	if err := nc7.Publish("$KV.flock_dispatchers.leader", []byte("evil")); err != nil {
		t.Fatal(err)
	}
	authWantViolation(t, errs7, "$KV.flock_dispatchers.leader", "poller of "+b7+" taking the dispatchers' lease")

	// The default site's pollers (user poller) take their own task and not
	// branch-7's.
	ncd, jsd, errsd := authConn(t, srv, natsauth.PollerUser("default"), natsauth.PollerInbox("default"))
	authWantPullRefused(t, ncd, jsd, errsd, natsauth.PollerConsumer(b7), "poller of default")
	authDrain(errsd)
	if err := ncd.Publish("flock.results."+b7+".x", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	authWantViolation(t, errsd, "flock.results."+b7+".x", "poller of default publishing a record of "+b7)
	ownDefault, err := jsd.Consumer(ctx, "FLOCK_TASKS", natsauth.PollerConsumer("default"))
	if err != nil {
		t.Fatalf("poller of default binds to its consumer: %v", err)
	}
	m, err := ownDefault.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || string(m.Data()) != "task of default" {
		t.Fatalf("poller of default fetched: %v", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}

	// Only the records each site's pollers may publish reached the stream.
	rinfo, err := results.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rinfo.State.Msgs != 1 {
		t.Fatalf("FLOCK_RESULTS holds %d records, want 1 (branch-7's own)", rinfo.State.Msgs)
	}
	if v, err := lease.Get(ctx, "leader"); err != nil || string(v.Value()) != "d1" {
		t.Fatalf("lease: %v", err)
	}
	tinfo, err := tasks.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tinfo.State.Msgs != 0 {
		t.Fatalf("FLOCK_TASKS still holds %d tasks", tinfo.State.Msgs)
	}
}

// A site's password variable must be set: nats-server refuses the
// configuration otherwise, naming it.
func TestMissingPasswordVariable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(authWrite(t, []string{"default", "zz-unset-site"})), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOCK_DISPATCHER_PASSWORD", "a")
	t.Setenv("FLOCK_POLLER_PASSWORD", "b")
	t.Setenv("FLOCK_READER_PASSWORD", "c")
	_, err := server.ProcessConfigFile(path)
	if v := natsauth.PollerPasswordVar("zz-unset-site"); err == nil || !strings.Contains(err.Error(), v) {
		t.Fatalf("config without $%s: %v", v, err)
	}
	t.Logf("nats-server on an unset site password: %v", err)
}
