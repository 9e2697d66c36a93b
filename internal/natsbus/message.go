package natsbus

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TaskMsg is one delivery of a task from the work queue (a poller.Delivery).
type TaskMsg struct {
	m jetstream.Msg
}

// Data is the task as published.
func (t *TaskMsg) Data() []byte { return t.m.Data() }

// Subject is where the task was published.
func (t *TaskMsg) Subject() string { return t.m.Subject() }

// Attempt is the delivery count, 1 the first time.
func (t *TaskMsg) Attempt() int {
	if md, err := t.m.Metadata(); err == nil {
		return int(md.NumDelivered)
	}
	return 1
}

// Ack acknowledges the task: it leaves the work queue.
func (t *TaskMsg) Ack() error { return t.m.Ack() }

// Nak hands the task back, delivered again after delay (0: at once).
func (t *TaskMsg) Nak(delay time.Duration) error {
	if delay <= 0 {
		return t.m.Nak()
	}
	return t.m.NakWithDelay(delay)
}

// InProgress resets the task's ack wait.
func (t *TaskMsg) InProgress() error { return t.m.InProgress() }

// Term removes the task from the queue without delivering it again.
func (t *TaskMsg) Term(reason string) error { return t.m.TermWithReason(reason) }

// Request is a core NATS request whose requester waits for the reply.
type Request struct {
	m *nats.Msg
}

// Data is the request's body.
func (r *Request) Data() []byte { return r.m.Data }

// Respond replies with data.
func (r *Request) Respond(data []byte) error { return r.m.Respond(data) }

// Refuse replies with no body and why in the ErrorHeader header.
func (r *Request) Refuse(why string) error {
	reply := nats.NewMsg(r.m.Reply)
	reply.Header.Set(ErrorHeader, why)
	return r.m.RespondMsg(reply)
}
