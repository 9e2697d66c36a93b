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
// once: a window waits for its acknowledgements before the next is sent,
// so a server slow to acknowledge slows the publisher rather than letting
// unacknowledged tasks pile up.
const publishWindow = 1000

func (b *Bus) publishBatch(ctx context.Context, tasks []task.PollTask, errs []error) {
	a, err := b.pubAcks()
	if err != nil {
		for i := range tasks {
			errs[i] = fmt.Errorf("publish task for %s: %w", tasks[i].Host, err)
		}
		return
	}
	now := time.Now()
	var wg sync.WaitGroup
	for i := range tasks {
		t := &tasks[i]
		// A buffer per task: the client keeps the message until it is sent.
		data := t.AppendJSON(make([]byte, 0, 512))
		ttl := max(t.Deadline.Sub(now), time.Second).Round(time.Second)
		msg := &nats.Msg{Subject: task.TaskSubject(t.Site, t.HostKey), Data: data, Header: nats.Header{
			jetstream.MsgIDHeader: []string{t.ID}, jetstream.MsgTTLHeader: []string{ttl.String()},
			jetstream.ExpectedStreamHeader: []string{TaskStream}}}
		wg.Add(1)
		a.publishStored(b.nc, msg, func(err error) {
			if err != nil {
				errs[i] = classifyPublish(t.Host, err)
			}
			wg.Done()
		})
	}
	// Every publication is answered within publishAckTimeout (or at once
	// when the connection closes): waiting for all of them, even when ctx
	// ends, keeps errs from being written after this returns.
	wg.Wait()
	if ctx.Err() != nil {
		for i := range tasks {
			if errs[i] != nil {
				errs[i] = fmt.Errorf("publish task for %s: %w (%w)", tasks[i].Host, ctx.Err(), errs[i])
			}
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
// read without encoding/json (see pubAcks).
func (b *Bus) PublishRecordAsync(subject, id string, data []byte, done func(error)) {
	a, err := b.pubAcks()
	if err != nil {
		done(fmt.Errorf("publish record to %s: %w", subject, err))
		return
	}
	msg := &nats.Msg{Subject: subject, Data: data,
		Header: nats.Header{jetstream.MsgIDHeader: []string{id}, jetstream.ExpectedStreamHeader: []string{ResultStream}}}
	a.publishStored(b.nc, msg, func(err error) {
		if err != nil {
			err = fmt.Errorf("publish record to %s: %w", subject, err)
		}
		done(err)
	})
}

// storeAttempts and storeRetryWait: how often, and how far apart, a task
// or record is sent while no stream leader answers.
const (
	storeAttempts  = 3
	storeRetryWait = 250 * time.Millisecond
)

// pubAcks matches asynchronous JetStream publications (records, tasks)
// with their acknowledgements. None waits forever: one unacknowledged after
// publishAckTimeout fails (the caller hands its task back, or publishes it
// again; the message id makes a copy stored meanwhile a no-op), and all
// fail when the connection closes.
type pubAcks struct {
	prefix  string // <inbox>.
	mu      sync.Mutex
	next    uint64
	pending map[uint64]func(error) // done, by reply token
	order   []sentAt               // by time sent: the timeouts
}

type sentAt struct {
	tok uint64
	at  time.Time
}

func (b *Bus) pubAcks() (*pubAcks, error) {
	b.acksOnce.Do(func() {
		a := &pubAcks{prefix: b.nc.NewInbox() + ".", pending: make(map[uint64]func(error))}
		if _, err := b.nc.Subscribe(a.prefix+"*", a.reply); err != nil {
			b.acksErr = fmt.Errorf("subscribe to acknowledgements: %w", err)
			return
		}
		b.acks = a
		go a.expire(b.nc)
	})
	return b.acks, b.acksErr
}

// publishStored sends msg to a stream; done gets the outcome. While no
// stream leader answers (no responders: an election) it is sent again, as
// nats.go's own publish does, so a brief election costs neither a task nor
// a record's delivery; no acknowledgement at all (the server is away)
// fails it instead.
func (a *pubAcks) publishStored(nc *nats.Conn, msg *nats.Msg, done func(error)) {
	attempt := 1
	var send func()
	send = func() {
		a.publish(nc, msg, func(err error) {
			if errors.Is(err, nats.ErrNoResponders) && attempt < storeAttempts && !nc.IsClosed() {
				attempt++
				time.AfterFunc(storeRetryWait, send)
				return
			}
			if err != nil && attempt > 1 {
				err = fmt.Errorf("attempt %d: %w", attempt, err)
			}
			done(err)
		})
	}
	send()
}

// publish sends msg once, with a reply subject of its own; done gets the outcome.
func (a *pubAcks) publish(nc *nats.Conn, msg *nats.Msg, done func(error)) {
	tok := a.add(done)
	msg.Reply = a.prefix + strconv.FormatUint(tok, 36)
	if err := nc.PublishMsg(msg); err != nil {
		if done, ok := a.take(tok); ok {
			done(err)
		}
	}
}

func (a *pubAcks) add(done func(error)) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	a.pending[a.next] = done
	a.order = append(a.order, sentAt{a.next, time.Now()})
	return a.next
}

func (a *pubAcks) take(tok uint64) (func(error), bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	done, ok := a.pending[tok]
	if ok {
		delete(a.pending, tok)
	}
	return done, ok
}

// reply is an acknowledgement: {"stream":...,"seq":...} or {"error":{...}}.
func (a *pubAcks) reply(m *nats.Msg) {
	tok, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, a.prefix), 36, 64)
	if err != nil {
		return
	}
	done, ok := a.take(tok)
	if !ok {
		return // timed out already: its task was handed back
	}
	done(pubAckError(m))
}

// pubAckError reads an acknowledgement: nil for a stored message, the
// server's *jetstream.APIError for a refused one.
func pubAckError(m *nats.Msg) error {
	if m.Header.Get("Status") == "503" {
		return nats.ErrNoResponders
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) && bytes.Contains(m.Data, []byte(`"seq"`)) {
		return nil
	}
	var ack struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Error == nil {
		return fmt.Errorf("unreadable acknowledgement %q", m.Data)
	}
	return ack.Error
}

// expire fails the publications unacknowledged for publishAckTimeout, and
// every one once the connection is closed.
func (a *pubAcks) expire(nc *nats.Conn) {
	tick := time.NewTicker(publishAckTimeout / 8)
	defer tick.Stop()
	var due []func(error)
	for range tick.C {
		closed := nc.IsClosed()
		limit := time.Now().Add(-publishAckTimeout)
		a.mu.Lock()
		n := 0
		for _, s := range a.order {
			if !closed && s.at.After(limit) {
				break
			}
			if done, ok := a.pending[s.tok]; ok {
				delete(a.pending, s.tok)
				due = append(due, done)
			}
			n++
		}
		a.order = a.order[n:]
		a.mu.Unlock()
		for i, done := range due {
			err := nats.ErrTimeout
			if closed {
				err = nats.ErrConnectionClosed
			}
			done(fmt.Errorf("no acknowledgement within %s: %w", publishAckTimeout, err))
			due[i] = nil
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
