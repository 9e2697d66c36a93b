package natsbus_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

// Upgrading from the dispatcher of one site: the new durable consumer of
// every site's records starts where dispatcher-default left off, so the
// records stored while no dispatcher ran are collected, and the old
// consumer goes.
func TestRecordsConsumerTakesOverTheLegacyOne(t *testing.T) {
	_, d := natstest.RunFlock(t, 5*time.Second, 5)
	ctx := context.Background()
	legacy, err := d.JetStream().CreateOrUpdateConsumer(ctx, natsbus.ResultStream, jetstream.ConsumerConfig{
		Durable: "dispatcher-default", FilterSubject: task.ResultPrefix + "default.>", AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		if err := d.PublishRecord(ctx, task.ResultSubject("default", "h"), fmt.Sprint("default.h@", i), []byte(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	msgs, err := legacy.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		_ = m.DoubleAck(ctx) // the old dispatcher collected record 1
	}
	publish(2) // stored while no dispatcher runs
	publish(3)

	var mu sync.Mutex
	var got []string
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- d.ConsumeRecords(cctx, "dispatcher", 0, func(_ string, data []byte, _ bool) error {
			mu.Lock()
			got = append(got, string(data))
			mu.Unlock()
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != `{"i":2}` || got[1] != `{"i":3}` {
		t.Fatalf("records through the new consumer: %q; want 2 and 3 (1 was collected before)", got)
	}
	if _, err := d.JetStream().Consumer(ctx, natsbus.ResultStream, "dispatcher-default"); err == nil {
		t.Fatal("the old consumer is still there")
	}
}

// collect runs ConsumeRecords with ackWait until want records came (or
// 10 s passed) and returns what it got.
func collect(t *testing.T, d *natsbus.Bus, ackWait time.Duration, want int) []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.ConsumeRecords(ctx, "dispatcher", ackWait, func(_ string, data []byte, _ bool) error {
			mu.Lock()
			got = append(got, string(data))
			mu.Unlock()
			return nil
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), got...)
}

// The first term publishes tasks while the records durable is being made:
// a record stored just before it exists is collected, not skipped; a
// durable made before keeps its place, its ack wait following the caller.
func TestRecordsStoredBeforeTheConsumerAreCollected(t *testing.T) {
	_, d := natstest.RunFlock(t, 5*time.Second, 5)
	ctx := context.Background()
	if err := d.PublishRecord(ctx, task.ResultSubject("default", "h"), "default.h@1", []byte(`{"i":1}`)); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, d, 4*time.Second, 1); len(got) != 1 || got[0] != `{"i":1}` {
		t.Fatalf("records: %q; want the one stored before the durable was made", got)
	}
	if err := d.PublishRecord(ctx, task.ResultSubject("default", "h"), "default.h@2", []byte(`{"i":2}`)); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, d, 6*time.Second, 1); len(got) != 1 || got[0] != `{"i":2}` {
		t.Fatalf("records the second time: %q; want only the new one", got)
	}
	c, err := d.JetStream().Consumer(ctx, natsbus.ResultStream, "dispatcher")
	if err != nil || c.CachedInfo().Config.AckWait != 6*time.Second {
		t.Fatalf("durable after a second start with another ack wait: %v", err)
	}
}

// Records published without waiting are each answered once: stored (a
// second copy under the same id too, stored once), refused with the
// server's reason, or failed when no stream takes the subject or the
// connection closes; never left waiting.
func TestRecordsPublishedAsynchronously(t *testing.T) {
	srv, d := natstest.RunFlock(t, 5*time.Second, 5)
	p := natstest.Connect(t, srv, "p")
	outcome := func(subject, id string) error {
		t.Helper()
		done := make(chan error, 2)
		p.PublishRecordAsync(subject, id, []byte(`{"schema":1}`), func(err error) { done <- err })
		select {
		case err := <-done:
			select {
			case again := <-done:
				t.Fatalf("answered twice: %v, then %v", err, again)
			case <-time.After(5 * time.Millisecond):
			}
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("publication to %s never answered", subject)
		}
		return nil
	}
	subject := task.ResultSubject(task.DefaultSite, "h")
	for i := range 200 {
		if err := outcome(subject, fmt.Sprint("default.h@", i%100)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	s, err := d.JetStream().Stream(context.Background(), natsbus.ResultStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 100 {
		t.Fatalf("stored %v records, want 100 (each id once): %v", info.State.Msgs, err)
	}
	if err := outcome("flock.nowhere.h", "x"); err == nil || !strings.Contains(err.Error(), "no responders") {
		t.Fatalf("a subject no stream takes: %v, want no responders", err)
	}
	_ = p.Close()
	if err := outcome(subject, "default.h@closed"); err == nil {
		t.Fatal("published on a closed connection without an error")
	}
}
