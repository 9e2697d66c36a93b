package lease_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/internal/lease"
)

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// candidate is one elector running on its own connection.
type candidate struct {
	e       *lease.Elector
	log     *safeBuffer
	cancel  context.CancelFunc
	done    chan error
	leading atomic.Int32 // terms begun
	up      atomic.Bool  // reported connected
}

func run(t *testing.T, store lease.Store, id string, ttl time.Duration) *candidate {
	t.Helper()
	c := &candidate{log: &safeBuffer{}, done: make(chan error, 1)}
	c.up.Store(true)
	c.e = lease.New(lease.Options{ID: id, Key: id, TTL: ttl, Store: store, Log: slog.New(slog.NewTextHandler(c.log, nil)), Connected: c.up.Load})
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		c.done <- c.e.Run(ctx, func(ctx context.Context) error {
			c.leading.Add(1)
			<-ctx.Done()
			return nil
		}, nil)
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *candidate) stop() {
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
		<-c.done
	}
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestOneLeadsOthersTakeOver(t *testing.T) {
	const ttl = 1200 * time.Millisecond
	srv := natstest.RunJetStream(t)
	stores := make([]lease.Store, 3)
	for i := range stores {
		// Only the first makes the bucket: the others, asking for another
		// TTL, get the bucket's (a standby cannot shorten the lease).
		s, got, err := natstest.Connect(t, srv, "elector").Leases(context.Background(), ttl+time.Duration(i)*time.Second)
		if err != nil || got != ttl {
			t.Fatalf("Leases: TTL %s, %v; want the bucket's %s", got, err, ttl)
		}
		stores[i] = s
	}
	a := run(t, stores[0], "a", ttl)
	waitFor(t, "a leads", 2*time.Second, a.e.Leading)
	b, c := run(t, stores[1], "b", ttl), run(t, stores[2], "c", ttl)
	time.Sleep(ttl) // several renewals: the others stand by
	if !a.e.Leading() || b.e.Leading() || c.e.Leading() || b.e.Leader() != "a" || a.leading.Load() != 1 {
		t.Fatalf("leading: a %v b %v c %v; b sees %q; a's terms %d", a.e.Leading(), b.e.Leading(), c.e.Leading(), b.e.Leader(), a.leading.Load())
	}
	members, err := lease.Members(context.Background(), stores[1])
	if err != nil || len(members) != 3 || members[0].ID != "a" || !members[0].Leading || members[1].Leading || members[2].Leading {
		t.Fatalf("members %+v, %v", members, err)
	}

	// A clean stop hands over at once.
	a.stop()
	took := waitFor(t, "b or c to take over", ttl, func() bool { return b.e.Leading() || c.e.Leading() })
	if b.e.Leading() && c.e.Leading() {
		t.Fatal("two leaders")
	}
	t.Logf("handover after a clean stop: %s", took)
	if !strings.Contains(a.log.String(), "lease handed over") {
		t.Fatalf("a's log:\n%s", a.log.String())
	}

	// The leader cut off from the store stops leading at once; another
	// takes over only when its lease has expired.
	leader, other := b, c
	if c.e.Leading() {
		leader, other = c, b
	}
	cut := time.Now()
	leader.up.Store(false)
	if leader.e.Leading() {
		t.Fatal("a leader cut off from the store still says it leads")
	}
	took = waitFor(t, "the other to take over", 3*ttl, other.e.Leading)
	t.Logf("takeover after the leader was cut off: %s (ttl %s)", took, ttl)
	if took < ttl/2 {
		t.Fatalf("took over %s after the cut, before the cut-off leader's lease could expire (ttl %s)", time.Since(cut), ttl)
	}
	if !strings.Contains(leader.log.String(), "lost the connection to NATS: publishing and writing paused") ||
		!strings.Contains(leader.log.String(), "reason=\"cut off from NATS for longer than the lease\"") {
		t.Fatalf("pause and step-down not logged:\n%s", leader.log.String())
	}

	// A leader whose link comes back within its lease goes on leading,
	// without a new term.
	leader, other = other, leader
	terms := leader.leading.Load()
	leader.up.Store(false)
	time.Sleep(ttl / 3)
	if leader.e.Leading() {
		t.Fatal("a leader without its link says it leads")
	}
	leader.up.Store(true)
	waitFor(t, "the leader to lead again", ttl, leader.e.Leading)
	time.Sleep(ttl)
	if !leader.e.Leading() || other.e.Leading() || leader.leading.Load() != terms {
		t.Fatalf("after a short cut: leading %v, other %v, terms %d (was %d)", leader.e.Leading(), other.e.Leading(), leader.leading.Load(), terms)
	}
}

// A renewal that timed out may have been stored after all, moving the
// lease's revision on under the leader: its next renewal finds its own
// instance there and goes on leading, in the same term.
func TestRenewalStoredUnacknowledgedKeepsTheTerm(t *testing.T) {
	const ttl = 1200 * time.Millisecond
	srv := natstest.RunJetStream(t)
	store, _, err := natstest.Connect(t, srv, "elector").Leases(context.Background(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	a := run(t, store, "a", ttl)
	waitFor(t, "a leads", 2*time.Second, a.e.Leading)
	for range 3 { // as the store would: the same value, a later revision
		data, rev, err := store.Get(context.Background(), "leader")
		if err != nil || data == nil {
			t.Fatalf("leader key: %v", err)
		}
		if _, err := store.Update(context.Background(), "leader", data, rev); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl / 3) // past a renewal
	}
	if !a.e.Leading() || a.leading.Load() != 1 || strings.Contains(a.log.String(), "stepped down") {
		t.Fatalf("leading %v after %d terms; log:\n%s", a.e.Leading(), a.leading.Load(), a.log.String())
	}
	// Another's lease is not adopted: a changed instance ends the term.
	data, rev, err := store.Get(context.Background(), "leader")
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(data), `"instance":"`, `"instance":"x`, 1)
	if forged == string(data) {
		t.Fatalf("no instance in the lease: %s", data)
	}
	if _, err := store.Update(context.Background(), "leader", []byte(forged), rev); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to step down", 2*ttl, func() bool { return !a.e.Leading() })
	if !strings.Contains(a.log.String(), "the lease changed hands") {
		t.Fatalf("a's log:\n%s", a.log.String())
	}
}
