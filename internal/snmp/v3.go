package snmp

import (
	"context"
	"errors"

	"github.com/flock-snmp/flock/internal/task"
)

// runSession runs an SNMPv3 or TCP job on a gosnmp session of its own
// (see Start).
func (e *Engine) runSession(ctx context.Context, j *Job, sink Sink) {
	if !j.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, j.Deadline)
		defer cancel()
	}
	opts := j.Opts
	opts.Engines, opts.Counters, opts.Source = e.o.Engines, e.o.Counters, e.o.Source
	s, err := Dial(ctx, j.Name, j.Addr, j.Cred, opts)
	if err != nil {
		sink.Done(task.Quirks{}, err)
		return
	}
	defer s.Close()
	var end error
	failed := func(part string, err error) (stop bool) {
		switch {
		case err == nil:
			return false
		case errors.Is(err, context.Canceled):
			end = err
			return true
		case sink.PartFailed(part, err):
			end = err
			return true
		}
		return false
	}
	done := func() { sink.Done(s.Learned(), end) }
	if len(j.Get) > 0 && failed("get", s.Get(ctx, j.Get, sink.Varbind)) {
		done()
		return
	}
	for _, root := range j.Walk {
		if failed("walk "+root, s.Walk(ctx, root, sink.Varbind)) {
			done()
			return
		}
	}
	for _, tb := range j.Tables {
		if failed("table "+tb.Root, s.WalkTable(ctx, tb.Root, tb.Columns, sink.Varbind)) {
			done()
			return
		}
	}
	done()
}

// Run runs j and waits for it, stopping at the first failed part: for
// tests and one-off tools. fn gets each varbind.
func (e *Engine) Run(ctx context.Context, j *Job, fn func(*task.Varbind)) (task.Quirks, error) {
	s := &waitSink{fn: fn, done: make(chan struct{})}
	e.Start(ctx, j, s)
	<-s.done
	return s.learned, s.err
}

type waitSink struct {
	fn      func(*task.Varbind)
	learned task.Quirks
	err     error
	done    chan struct{}
}

func (s *waitSink) Varbind(vb *task.Varbind)            { s.fn(vb) }
func (s *waitSink) PartFailed(_ string, err error) bool { return true }
func (s *waitSink) Done(q task.Quirks, err error) {
	s.learned, s.err = q, err
	close(s.done)
}
