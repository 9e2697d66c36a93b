package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/natstest"
	"github.com/flock-snmp/flock/internal/natsbus"
	"github.com/flock-snmp/flock/internal/task"
)

// servePollNow answers the default site's poll-now requests with loop, as cmd/poller wires it.
func servePollNow(t *testing.T, ctx context.Context, b *natsbus.Bus, loop *Loop) {
	t.Helper()
	stop, err := b.ServePollTasks("default", func(r *natsbus.Request) { loop.PollNow(ctx, r) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

func pollNowTask() task.PollTask {
	return task.PollTask{Schema: task.Schema, ID: "default.h@now-1", Site: "default", Host: "h.example.net", HostKey: "h-example-net",
		Address: "127.0.0.1", Port: 161, Credentials: "public", Get: []string{".1.3.6.1.2.1.1.5.0"}, TimeoutMS: 100, PollTimeoutMS: 1000, MaxOids: 8,
		MaxRepetitions: 10, ScheduledAt: time.Now(), Deadline: time.Now().Add(time.Minute)}
}

// A poller serves at most pollNowLimit poll-now tasks at once and says so
// to the next one, instead of starting polls without bound.
func TestPollNowTasksAreBounded(t *testing.T) {
	srv := natstest.RunJetStream(t)
	b := natstest.Connect(t, srv, "p1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	release := make(chan struct{})
	started := make(chan struct{}, pollNowLimit+1)
	loop := New(Options{Name: "p1"}, blocking(func(ctx context.Context, tk *task.PollTask, _ int, rec *task.HostRecord) error {
		started <- struct{}{}
		<-release
		*rec = task.HostRecord{Schema: task.Schema, TaskID: tk.ID, Host: tk.Host}
		return nil
	}), b)
	servePollNow(t, ctx, b, loop)
	tk := pollNowTask()
	data, _ := json.Marshal(&tk)
	answers := make(chan string, pollNowLimit+1)
	for i := 0; i < pollNowLimit; i++ {
		go func() {
			resp, err := b.Conn().RequestWithContext(ctx, natsbus.PollTaskPrefix+"default", data)
			if err != nil {
				answers <- err.Error()
				return
			}
			answers <- resp.Header.Get(natsbus.ErrorHeader) + string(resp.Data)
		}()
		select {
		case <-started:
		case a := <-answers:
			t.Fatalf("poll-now task %d answered before its poll started: %s", i, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("poll-now task %d never started", i)
		}
	}
	resp, err := b.Conn().RequestWithContext(ctx, natsbus.PollTaskPrefix+"default", data)
	if err != nil || !strings.Contains(resp.Header.Get(natsbus.ErrorHeader), "already serving 16 poll-now requests") {
		t.Fatalf("request over the limit: %v %q", err, resp.Header.Get(natsbus.ErrorHeader))
	}
	close(release)
	for i := 0; i < pollNowLimit; i++ {
		if a := <-answers; !strings.Contains(a, `"task_id":"default.h@now-1"`) {
			t.Fatalf("answer %d: %s", i, a)
		}
	}
}

// blocking turns a poll that blocks into a StartFunc, on a goroutine of its own.
func blocking(poll func(ctx context.Context, tk *task.PollTask, attempt int, rec *task.HostRecord) error) StartFunc {
	return func(ctx context.Context, tk *task.PollTask, attempt int, rec *task.HostRecord, done func(error)) {
		go func() { done(poll(ctx, tk, attempt, rec)) }()
	}
}

func TestFailedOID(t *testing.T) {
	for part, want := range map[string]string{"walk .1.3.6.1.2.1.2.2": ".1.3.6.1.2.1.2.2", "table .1.3.6.1.2.1.31.1.1": ".1.3.6.1.2.1.31.1.1", "get": "", "record": ""} {
		rec := &task.HostRecord{Errors: []task.PartError{{Part: part}, {Part: "walk .9"}}}
		if got := failedOID(rec); got != want {
			t.Errorf("part %q: oid %q, want %q", part, got, want)
		}
	}
	if got := failedOID(&task.HostRecord{}); got != "" {
		t.Errorf("no part: %q", got)
	}
}

// A poll-now record larger than the bus carries is refused with the reason,
// as the bus would refuse the reply, rather than lost in silence.
func TestPollNowRecordTooLarge(t *testing.T) {
	srv := natstest.Run(t, natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxPayload: 64 << 10})
	b := natstest.Connect(t, srv, "p1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	loop := New(Options{Name: "p1"}, blocking(func(ctx context.Context, tk *task.PollTask, _ int, rec *task.HostRecord) error {
		*rec = task.NewRecord(tk, "p1", 1, time.Now())
		for i := range 5000 {
			rec.Varbinds = append(rec.Varbinds, task.Varbind{OID: fmt.Sprintf(".1.3.6.1.2.1.2.2.1.2.%d", i), Type: task.TypeOctetString, Bytes: []byte("GigabitEthernet0/1")})
		}
		return nil
	}), b)
	servePollNow(t, ctx, b, loop)
	tk := pollNowTask()
	resp, err := b.Conn().RequestWithContext(ctx, natsbus.PollTaskPrefix+"default", tk.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	why := resp.Header.Get(natsbus.ErrorHeader)
	if len(resp.Data) != 0 || !strings.HasPrefix(why, "poller p1: the record for host h.example.net is ") ||
		!strings.Contains(why, "with 5000 varbinds, more than the bus's max_payload allows (65536)") {
		t.Fatalf("answer %d bytes, %s: %q", len(resp.Data), natsbus.ErrorHeader, why)
	}
}
