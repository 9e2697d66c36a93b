package natsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// PublishTasks queues tasks on the work queue, each living until its
// deadline (at least 1s) so a task nobody took cannot block its host's next
// one. It returns one error per task: nil, task.ErrHostBusy,
// task.ErrQueueFull or another failure. The task id is the JetStream message
// id, so publishing the same task twice (a restarted or doubled dispatcher)
// stores it once.
func (b *Bus) PublishTasks(ctx context.Context, tasks []task.PollTask) []error {
	errs := make([]error, len(tasks))
	for start := 0; start < len(tasks); start += publishWindow {
		end := min(start+publishWindow, len(tasks))
		if ctx.Err() != nil { // stopped: the windows not begun are not published
			for i := start; i < len(tasks); i++ {
				errs[i] = fmt.Errorf("publish task for %s: %w", tasks[i].Host, ctx.Err())
			}
			break
		}
		b.publishBatch(ctx, tasks[start:end], errs[start:end])
	}
	return errs
}

// publishWindow is how many tasks PublishTasks keeps unacknowledged at
// once: well under nats.go's limit of 4,000 asynchronous publishes, past
// which the client refuses a publish it could not send within 200 ms
// ("stalled with too many outstanding async published messages"), as it
// does when the server is slow to acknowledge. A window then waits for its
// acknowledgements instead.
const publishWindow = 1000

func (b *Bus) publishBatch(ctx context.Context, tasks []task.PollTask, errs []error) {
	now := time.Now()
	futures := make([]jetstream.PubAckFuture, len(tasks))
	for i := range tasks {
		t := &tasks[i]
		// A buffer per task: the client keeps the message for retries until its PubAck.
		data := t.AppendJSON(make([]byte, 0, 512))
		msg := &nats.Msg{Subject: task.TaskSubject(t.Site, t.HostKey), Data: data}
		var err error
		ttl := max(t.Deadline.Sub(now), time.Second).Round(time.Second)
		futures[i], err = b.js.PublishMsgAsync(msg, jetstream.WithMsgID(t.ID), jetstream.WithMsgTTL(ttl),
			jetstream.WithExpectStream(TaskStream))
		if err != nil {
			errs[i] = fmt.Errorf("publish task for %s: %w", t.Host, err)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = classifyPublish(tasks[i].Host, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("publish task for %s: %w", tasks[i].Host, ctx.Err())
		}
	}
}

// errCodeStoreFailed is nats-server's JSStreamStoreFailedF (10077): a limit
// with DiscardNew refused the message. nats.go has no constant for it.
const errCodeStoreFailed jetstream.ErrorCode = 10077

func classifyPublish(host string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed {
		if strings.Contains(apiErr.Description, "per subject") {
			return fmt.Errorf("publish task for %s: %w", host, task.ErrHostBusy)
		}
		return fmt.Errorf("publish task for %s: %w: %s", host, task.ErrQueueFull, apiErr.Description)
	}
	return fmt.Errorf("publish task for %s: %w", host, err)
}

// PublishRecord stores a HostRecord (data) on subject in the results
// stream, with id (its task id) as message id, so that a second record of
// the same task is not stored again; it returns once the server has
// acknowledged it.
func (b *Bus) PublishRecord(ctx context.Context, subject, id string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(ResultStream)); err != nil {
		return fmt.Errorf("publish record to %s: %w", subject, err)
	}
	return nil
}

// PublishRecordAsync stores a record as PublishRecord does, without
// waiting: done is called once with the outcome (on the bus's
// acknowledgement goroutine; it must not block). data must stay untouched
// until then. The acknowledgements come to one reply subscription of the
// connection's inbox and are matched by a token in the reply subject:
// no future, channel or goroutine per record, and the acknowledgement is
// read without encoding/json (see recordAcks).
func (b *Bus) PublishRecordAsync(subject, id string, data []byte, done func(error)) {
	a, err := b.recordAcks()
	if err != nil {
		done(fmt.Errorf("publish record to %s: %w", subject, err))
		return
	}
	tok := a.add(subject, done)
	msg := &nats.Msg{Subject: subject, Reply: a.prefix + strconv.FormatUint(tok, 36), Data: data,
		Header: nats.Header{jetstream.MsgIDHeader: []string{id}, jetstream.ExpectedStreamHeader: []string{ResultStream}}}
	if err := b.nc.PublishMsg(msg); err != nil {
		if p, ok := a.take(tok); ok {
			p.done(fmt.Errorf("publish record to %s: %w", subject, err))
		}
	}
}

// recordAcks matches record publications with their JetStream
// acknowledgements. None waits forever: one unacknowledged after
// publishAckTimeout fails (the caller hands its task back; the message id
// makes a copy stored meanwhile a no-op), and all fail when the connection
// closes.
type recordAcks struct {
	prefix  string // <inbox>.
	mu      sync.Mutex
	next    uint64
	pending map[uint64]pendingPub
	order   []sentAt // by time sent: the timeouts
}

type pendingPub struct {
	subject string
	done    func(error)
}

type sentAt struct {
	tok uint64
	at  time.Time
}

func (b *Bus) recordAcks() (*recordAcks, error) {
	b.acksOnce.Do(func() {
		a := &recordAcks{prefix: b.nc.NewInbox() + ".", pending: make(map[uint64]pendingPub)}
		if _, err := b.nc.Subscribe(a.prefix+"*", a.reply); err != nil {
			b.acksErr = fmt.Errorf("subscribe to acknowledgements: %w", err)
			return
		}
		b.acks = a
		go a.expire(b.nc)
	})
	return b.acks, b.acksErr
}

func (a *recordAcks) add(subject string, done func(error)) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	a.pending[a.next] = pendingPub{subject: subject, done: done}
	a.order = append(a.order, sentAt{a.next, time.Now()})
	return a.next
}

func (a *recordAcks) take(tok uint64) (pendingPub, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.pending[tok]
	if ok {
		delete(a.pending, tok)
	}
	return p, ok
}

// reply is an acknowledgement: {"stream":...,"seq":...} or {"error":{...}}.
func (a *recordAcks) reply(m *nats.Msg) {
	tok, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, a.prefix), 36, 64)
	if err != nil {
		return
	}
	p, ok := a.take(tok)
	if !ok {
		return // timed out already: its task was handed back
	}
	p.done(pubAckError(p.subject, m))
}

func pubAckError(subject string, m *nats.Msg) error {
	if m.Header.Get("Status") == "503" {
		return fmt.Errorf("publish record to %s: %w", subject, nats.ErrNoResponders)
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) && bytes.Contains(m.Data, []byte(`"seq"`)) {
		return nil
	}
	var ack struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Error == nil {
		return fmt.Errorf("publish record to %s: unreadable acknowledgement %q", subject, m.Data)
	}
	return fmt.Errorf("publish record to %s: %s (code %d, err_code %d)", subject, ack.Error.Description, ack.Error.Code, ack.Error.ErrCode)
}

// expire fails the publications unacknowledged for publishAckTimeout, and
// every one once the connection is closed.
func (a *recordAcks) expire(nc *nats.Conn) {
	tick := time.NewTicker(publishAckTimeout / 8)
	defer tick.Stop()
	var due []pendingPub
	for range tick.C {
		closed := nc.IsClosed()
		limit := time.Now().Add(-publishAckTimeout)
		a.mu.Lock()
		n := 0
		for _, s := range a.order {
			if !closed && s.at.After(limit) {
				break
			}
			if p, ok := a.pending[s.tok]; ok {
				delete(a.pending, s.tok)
				due = append(due, p)
			}
			n++
		}
		a.order = a.order[n:]
		a.mu.Unlock()
		for i, p := range due {
			err := nats.ErrTimeout
			if closed {
				err = nats.ErrConnectionClosed
			}
			p.done(fmt.Errorf("publish record to %s: no acknowledgement within %s: %w", p.subject, publishAckTimeout, err))
			due[i] = pendingPub{}
		}
		due = due[:0]
		if closed {
			return
		}
	}
}

// PublishCore publishes data on subject without storing it (core NATS:
// whoever subscribes gets it, no one else): metrics_subject's line protocol.
func (b *Bus) PublishCore(subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// FlushCore waits until the server has everything PublishCore sent.
func (b *Bus) FlushCore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nats.go wants a deadline
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush to NATS: %w", err)
	}
	return nil
}
