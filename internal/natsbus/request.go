package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Subjects of poll now, request and reply on core NATS (not stored).
const (
	// PollNowSubject takes a host name and answers with that host's HostRecord
	// (the running dispatcher serves it).
	PollNowSubject = "flock.poll.now"
	// PollTaskPrefix + site: the dispatcher hands a poll-now task to one of
	// the site's pollers (queue group "pollers") and gets the record back.
	PollTaskPrefix = "flock.poll.task."
	// ErrorHeader carries why a request got no record.
	ErrorHeader = "Flock-Error"
)

// ServePollTasks calls fn with each poll-now task of site, in the
// "pollers" queue group, so that one poller of the site answers each. fn
// runs on the subscription's goroutine and must not block. Stop with the
// returned func.
func (b *Bus) ServePollTasks(site string, fn func(*Request)) (stop func(), err error) {
	sub, err := b.nc.QueueSubscribe(PollTaskPrefix+site, "pollers", func(m *nats.Msg) { fn(&Request{m: m}) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", PollTaskPrefix+site, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// ServePollNow calls fn with each request on flock.poll.now (a host name),
// in the "dispatchers" queue group, so that one of several dispatchers
// answers each. fn runs on the subscription's goroutine and must not
// block. Stop with the returned func.
func (b *Bus) ServePollNow(fn func(*Request)) (stop func(), err error) {
	sub, err := b.nc.QueueSubscribe(PollNowSubject, "dispatchers", func(m *nats.Msg) { fn(&Request{m: m}) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", PollNowSubject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// RequestPoll hands a poll-now task (data) to one of site's pollers and
// returns the HostRecord it answers with, or an error saying that no
// poller of the site is running, that none answered, or why the poller
// refused.
func (b *Bus) RequestPoll(ctx context.Context, site string, data []byte) ([]byte, error) {
	subject := PollTaskPrefix + site
	resp, err := b.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("no poller of site %s is running (nothing answers %s)", site, subject)
	case err != nil:
		return nil, fmt.Errorf("no answer from a poller of site %s: %w", site, err)
	}
	if why := resp.Header.Get(ErrorHeader); why != "" {
		return nil, errors.New(why)
	}
	return resp.Data, nil
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
