package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// Request is a poll-now request: a host's name, answered with its record.
type Request interface {
	// Data is the host's name (or host key).
	Data() []byte
	// Respond answers with the record.
	Respond(record []byte) error
	// Refuse answers that no record comes, and why.
	Refuse(why string) error
}

// pollNowLimit bounds the poll-now requests the dispatcher serves at once:
// they are for troubleshooting, and must not crowd out scheduled polls.
const pollNowLimit = 16

// PollNow answers `dispatcher poll HOST` in the background: it builds the
// host's task from the inventory in force, hands it to one of the site's
// pollers and answers with the record that comes back (not stored, not
// written to the sinks). At most 16 are served at once; the next are
// refused and told to try again.
func (r *Runner) PollNow(ctx context.Context, req Request) {
	select {
	case r.pollNow <- struct{}{}:
	default:
		_ = req.Refuse(fmt.Sprintf("the dispatcher is already serving %d poll-now requests; try again", pollNowLimit))
		return
	}
	go func() { // the poll takes a while: not on the caller's goroutine
		defer func() { <-r.pollNow }()
		host := string(req.Data())
		t, err := r.PollNowTask(host)
		if err != nil {
			_ = req.Refuse(err.Error())
			return
		}
		ctx, cancel := context.WithDeadline(ctx, t.Deadline.Add(2*time.Second))
		defer cancel()
		rec, err := r.bus.RequestPoll(ctx, t.Site, t.AppendJSON(nil))
		if err != nil {
			_ = req.Refuse(err.Error())
			return
		}
		r.o.Log.Info("poll now", "host", host, "task_id", t.ID)
		_ = req.Respond(rec)
	}()
}

// PollNowTask builds a task that polls the named host (or host key) now,
// outside its schedule, for `dispatcher poll HOST`.
func (r *Runner) PollNowTask(name string) (task.PollTask, error) {
	r.mu.Lock()
	hosts := r.hosts
	r.mu.Unlock()
	for i := range hosts {
		h := &hosts[i]
		if h.Name == name || h.Key == name {
			now := r.o.Now()
			deadline := now.Add(min(h.Interval, 2*time.Minute))
			t := newTask(h, now, now, deadline)
			t.ID = task.NowID(h.Site, h.Key, now)
			return t, nil
		}
	}
	return task.PollTask{}, fmt.Errorf("host %q is not in the dispatcher's inventory", name)
}
