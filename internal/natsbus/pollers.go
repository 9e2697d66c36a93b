package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flock-snmp/flock/internal/task"
)

// Subjects of the live (core NATS, not stored) side of Flock.
const (
	// HeartbeatPrefix: each poller publishes its Heartbeat on HeartbeatPrefix + its id.
	HeartbeatPrefix = "flock.pollers."
	// PollNowSubject takes a host name and answers with that host's HostRecord
	// (the running dispatcher serves it).
	PollNowSubject = "flock.poll.now"
	// PollTaskPrefix + site: the dispatcher hands a poll-now task to one of
	// the site's pollers (queue group "pollers") and gets the record back.
	PollTaskPrefix = "flock.poll.task."
	// ErrorHeader carries why a poll-now request got no record.
	ErrorHeader = "Flock-Error"
	// pollNowLimit bounds the poll-now requests one process serves at once:
	// they are for troubleshooting, and must not crowd out scheduled polls.
	pollNowLimit = 16
)

// limiter admits at most n at once and refuses the rest.
type limiter chan struct{}

func (l limiter) try() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l limiter) done() { <-l }

// Heartbeat is what a poller says about itself on flock.pollers.<id>.
type Heartbeat struct {
	ID          string    `json:"id"`
	Site        string    `json:"site"`
	Version     string    `json:"version"`
	Concurrency int       `json:"concurrency"`
	InFlight    int64     `json:"in_flight"`
	Polls       uint64    `json:"polls"`
	StartedAt   time.Time `json:"started_at"`
	Time        time.Time `json:"time"`
}

// SendHeartbeats publishes beat() on flock.pollers.<id> now and every
// period until ctx ends. id must be a single subject token.
func (b *Bus) SendHeartbeats(ctx context.Context, id string, every time.Duration, beat func() Heartbeat) {
	subject := HeartbeatPrefix + id
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		hb := beat()
		hb.Time = time.Now().UTC()
		if data, err := json.Marshal(hb); err == nil {
			if err := b.nc.Publish(subject, data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				b.log.Debug("heartbeat not sent", "subject", subject, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServePollTasks answers poll-now tasks for site, one poll per request, in
// the "pollers" queue group (one poller answers each). The record is the
// reply; it is not stored on the results stream. Stop with the returned func.
func (b *Bus) ServePollTasks(ctx context.Context, site, poller string, h Handler, log *slog.Logger) (stop func(), err error) {
	if log == nil {
		log = b.log
	}
	busy := make(limiter, pollNowLimit)
	sub, err := b.nc.QueueSubscribe(PollTaskPrefix+site, "pollers", func(m *nats.Msg) {
		if !busy.try() {
			respondError(m, fmt.Sprintf("poller %s is already serving %d poll-now requests; try again", poller, pollNowLimit))
			return
		}
		go func() { // a poll blocks: not on the subscription's goroutine
			defer busy.done()
			b.pollNow(ctx, m, poller, h, log)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", PollTaskPrefix+site, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (b *Bus) pollNow(ctx context.Context, m *nats.Msg, poller string, h Handler, log *slog.Logger) {
	t, err := task.DecodeTask(m.Data)
	if err != nil {
		respondError(m, fmt.Sprintf("poller %s: bad poll-now task: %v", poller, err))
		return
	}
	pollCtx, cancel := context.WithDeadline(ctx, t.Deadline)
	defer cancel()
	var rec task.HostRecord
	if err := h(pollCtx, &t, 1, &rec); err != nil {
		respondError(m, fmt.Sprintf("poller %s: poll of %s interrupted: %v", poller, t.Host, err))
		return
	}
	log.Info("polled on request", "host", t.Host, "task_id", t.ID, "ok", rec.Error == nil)
	data := rec.AppendJSON(nil)
	if limit := int(b.nc.MaxPayload()) - 4096; len(data) > limit {
		respondError(m, fmt.Sprintf("poller %s: the record for %s is %d bytes, more than the bus's max_payload allows (%d)",
			poller, t.Host, len(data), b.nc.MaxPayload()))
		return
	}
	_ = m.Respond(data)
}

func respondError(m *nats.Msg, why string) {
	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(ErrorHeader, why)
	_ = m.RespondMsg(reply)
}

// ServePollNow serves flock.poll.now: the request's body is a host name,
// lookup turns it into a task, one of the site's pollers polls it, and the
// HostRecord is the answer (or an error header naming what went wrong).
func (b *Bus) ServePollNow(ctx context.Context, site string, lookup func(host string) (task.PollTask, error), log *slog.Logger) (stop func(), err error) {
	if log == nil {
		log = b.log
	}
	busy := make(limiter, pollNowLimit)
	sub, err := b.nc.Subscribe(PollNowSubject, func(m *nats.Msg) {
		if !busy.try() {
			respondError(m, fmt.Sprintf("the dispatcher is already serving %d poll-now requests; try again", pollNowLimit))
			return
		}
		go func() {
			defer busy.done()
			host := string(m.Data)
			t, err := lookup(host)
			if err != nil {
				respondError(m, err.Error())
				return
			}
			data := t.AppendJSON(nil)
			rctx, cancel := context.WithDeadline(ctx, t.Deadline.Add(2*time.Second))
			defer cancel()
			resp, err := b.nc.RequestWithContext(rctx, PollTaskPrefix+site, data)
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				respondError(m, fmt.Sprintf("no poller of site %s is running to poll %s", site, host))
				return
			case err != nil:
				respondError(m, fmt.Sprintf("poll of %s: no answer from a poller: %v", host, err))
				return
			}
			log.Info("poll now", "host", host, "task_id", t.ID)
			if why := resp.Header.Get(ErrorHeader); why != "" {
				respondError(m, why)
				return
			}
			_ = m.Respond(resp.Data)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", PollNowSubject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// PollNow asks the running dispatcher to poll host now and returns the
// HostRecord's JSON.
func (b *Bus) PollNow(ctx context.Context, host string) ([]byte, error) {
	resp, err := b.nc.RequestWithContext(ctx, PollNowSubject, []byte(host))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("poll %s: no dispatcher is serving %s (is one running, in run mode, on this NATS?)", host, PollNowSubject)
	case err != nil:
		return nil, fmt.Errorf("poll %s: %w", host, err)
	}
	if why := resp.Header.Get(ErrorHeader); why != "" {
		return nil, fmt.Errorf("poll %s: %s", host, why)
	}
	return resp.Data, nil
}
