package poller

import (
	"context"
	"fmt"

	"github.com/flock-snmp/flock/internal/task"
)

// Request is a poll-now request: a task whose HostRecord is the answer.
type Request interface {
	// Data is the task.
	Data() []byte
	// Respond answers with the record.
	Respond(record []byte) error
	// Refuse answers that no record comes, and why.
	Refuse(why string) error
}

// pollNowLimit bounds the poll-now requests one poller serves at once:
// they are for troubleshooting, and must not crowd out scheduled polls.
const pollNowLimit = 16

// PollNow answers a poll-now request in the background: it polls the task
// and responds with its record, which is not stored. At most 16 are served
// at once; the next are refused and told to try again, as are those that
// come once the loop is stopping.
func (l *Loop) PollNow(ctx context.Context, r Request) {
	l.mu.Lock()
	if l.shuttingDown() {
		l.mu.Unlock()
		_ = r.Refuse(fmt.Sprintf("poller %s is shutting down; try again", l.o.Name))
		return
	}
	select {
	case l.pollNow <- struct{}{}:
	default:
		l.mu.Unlock()
		_ = r.Refuse(fmt.Sprintf("poller %s is already serving %d poll-now requests; try again", l.o.Name, pollNowLimit))
		return
	}
	l.requests.Add(1)
	l.mu.Unlock()
	go func() { // a poll blocks: not on the caller's goroutine
		defer func() {
			<-l.pollNow
			l.requests.Done()
		}()
		l.pollOnRequest(ctx, r)
	}()
}

func (l *Loop) pollOnRequest(ctx context.Context, r Request) {
	t, err := task.DecodeTask(r.Data())
	if err != nil {
		_ = r.Refuse(fmt.Sprintf("poller %s: bad poll-now task: %v", l.o.Name, err))
		return
	}
	var rec task.HostRecord
	polled := make(chan error, 1)
	l.start(ctx, &t, 1, &rec, func(err error) { polled <- err })
	if err := <-polled; err != nil {
		_ = r.Refuse(fmt.Sprintf("poller %s: poll of %s interrupted: %v", l.o.Name, t.Host, err))
		return
	}
	l.log.Info("polled on request", "host", t.Host, "task_id", t.ID, "ok", rec.Error == nil)
	data := rec.AppendJSON(nil)
	if why := l.tooLarge(&rec, len(data)); why != "" {
		_ = r.Refuse(fmt.Sprintf("poller %s: %s", l.o.Name, why))
		return
	}
	if err := r.Respond(data); err != nil {
		l.log.Warn("cannot answer a poll-now request", "host", t.Host, "task_id", t.ID, "err", err)
	}
}
