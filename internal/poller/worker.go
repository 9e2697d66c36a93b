package poller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// job is one task on its way through the loop: polled, its record
// published, the task answered. Its buffers are reused (Loop.jobs).
type job struct {
	l       *Loop
	d       Delivery
	t       task.PollTask
	attempt int
	rec     task.HostRecord
	buf     []byte
	subject string
	final   bool      // the record answers the last delivery: terminate, not ack
	live    int       // index in Loop.live while polled
	lastRun time.Time // when the task was taken or last reported in progress
	release func()
	perr    error       // how the poll ended
	polled  func(error) // hands the job to the publishing goroutine; bound once per job
	stored  func(error) // j.afterStore, bound once per job
}

// begin answers one delivery, without waiting: a stored record and an ack,
// a hand-back, or (for a task that cannot be polled, or its last delivery)
// an error record and a termination. release is called when the delivery
// is answered.
func (l *Loop) begin(ctx context.Context, d Delivery, release func()) {
	attempt := d.Attempt()
	t, err := task.DecodeTask(d.Data())
	if err != nil {
		// Its error record is published and waited for: not on the
		// delivery goroutine, which would hold up every other task.
		go func() {
			l.badTask(ctx, d, &t, attempt, err)
			release()
		}()
		return
	}
	j, _ := l.jobs.Get().(*job)
	if j == nil {
		j = &job{l: l}
		j.polled = func(err error) {
			j.perr = err
			j.l.finished <- j
		}
		j.stored = j.afterStore
	}
	j.d, j.t, j.attempt, j.release, j.final = d, t, attempt, release, false
	j.subject = task.ResultSubject(t.Site, t.HostKey)
	j.rec = task.HostRecord{Varbinds: j.rec.Varbinds[:0]}
	l.hooks.PollStarted()
	l.track(j)
	l.start(ctx, &j.t, attempt, &j.rec, j.polled)
}

// afterPoll: the poll ended (j.perr); its record goes to the store.
func (j *job) afterPoll() {
	j.l.untrack(j)
	l, t, rec := j.l, &j.t, &j.rec
	if j.perr != nil {
		if l.o.MaxDeliver > 0 && j.attempt >= l.o.MaxDeliver {
			// No delivery is left: handing it back would leave it stuck in the
			// queue. Answer it with a final error instead.
			*rec = task.Undelivered(t, l.o.Name, j.attempt, "the last delivery was interrupted: "+j.perr.Error(), time.Now())
			j.final = true
			j.publish()
			return
		}
		j.handBack(j.perr)
		j.done()
		return
	}
	j.publish()
}

// handBack returns the task to the queue at once, unpolled or unanswered.
func (j *job) handBack(why error) {
	j.l.log.Info("handing task back", "host", j.t.Host, "task_id", j.t.ID, "err", why)
	_ = j.d.Nak(0)
	j.l.hooks.PollDone(nil, j.attempt)
}

// publish stores the record on the host's result subject with the task id
// as message id, so a redelivered task's second record is stored once. A
// record larger than the bus carries is stored without its varbinds, as a
// too_large error, so the poll is answered rather than lost.
func (j *job) publish() {
	l, rec := j.l, &j.rec
	j.buf = rec.AppendJSON(j.buf[:0])
	if why := l.tooLarge(rec, len(j.buf)); why != "" {
		l.log.Error("record too large; published without its varbinds", "host", rec.Host, "task_id", j.t.ID, "bytes", len(j.buf))
		rec.Varbinds = rec.Varbinds[:0]
		rec.Error = &task.Error{Kind: task.KindTooLarge, Message: why}
		rec.Errors = append(rec.Errors, task.PartError{Part: "record", Kind: task.KindTooLarge, Message: why})
		j.buf = rec.AppendJSON(j.buf[:0])
	}
	if l.shuttingDown() && !l.pub.Connected() {
		// Shutting down and the server is gone: waiting for it would only
		// delay the exit. The task, never acked, goes to another poller.
		j.afterStore(fmt.Errorf("publish record to %s: not connected to NATS while shutting down", j.subject))
		return
	}
	l.pub.PublishRecordAsync(j.subject, j.t.ID, j.buf, j.stored)
}

// afterStore: the store answered; so is the task.
func (j *job) afterStore(err error) {
	l, t, rec := j.l, &j.t, &j.rec
	switch {
	case err != nil && j.final:
		j.handBack(err)
	case err != nil:
		l.log.Error("cannot publish host record; the task will be redelivered", "host", t.Host, "task_id", t.ID, "err", err)
		_ = j.d.Nak(time.Second)
		l.hooks.PollDone(nil, j.attempt)
	case j.final:
		_ = j.d.Term("max deliveries")
		l.hooks.PollDone(rec, j.attempt)
	default:
		l.hooks.PollDone(rec, j.attempt)
		if err := j.d.Ack(); err != nil {
			l.log.Warn("ack failed; the task may be polled again, its record is deduplicated", "host", t.Host, "task_id", t.ID, "err", err)
		}
		if rec.Error != nil { // one line per failed poll, never per retry
			l.log.Warn("poll failed", "host", t.Host, "site", t.Site, "task_id", t.ID, "oid", failedOID(rec), "attempt", j.attempt,
				"kind", rec.Error.Kind, "err", rec.Error.Message)
		}
	}
	j.done()
}

// done returns the job's slot and its buffers.
func (j *job) done() {
	release := j.release
	j.d, j.release, j.perr = nil, nil, nil
	j.t = task.PollTask{}
	j.l.jobs.Put(j)
	release()
}

// failedOID is the walk or table root of the poll's first failed part
// ("walk .1.3.6.1.2.1.2.2"), or "" when the GETs failed or no part is named.
func failedOID(rec *task.HostRecord) string {
	if len(rec.Errors) == 0 {
		return ""
	}
	_, root, _ := strings.Cut(rec.Errors[0].Part, " ")
	return root
}

// badTask answers an unusable task with an error record on the host's result
// subject (taken from the task subject when the body is unreadable) and
// terminates it, so it is neither retried nor silently dropped.
func (l *Loop) badTask(ctx context.Context, d Delivery, t *task.PollTask, attempt int, cause error) {
	site, key, ok := task.ParseTaskSubject(d.Subject())
	host := t.Host
	if host == "" {
		host = key
	}
	l.log.Error("bad task terminated", "subject", d.Subject(), "host", host, "err", cause)
	if ok {
		now := time.Now()
		rec := task.NewRecord(t, l.o.Name, attempt, now)
		rec.Site, rec.Host, rec.HostKey = site, host, key
		if rec.TaskID == "" {
			rec.TaskID = fmt.Sprintf("bad.%s.%s", key, now.UTC().Format("20060102T150405.000000000"))
		}
		rec.Error = &task.Error{Kind: task.KindBadTask, Message: cause.Error()}
		data := rec.AppendJSON(nil)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.PublishTimeout)
		err := l.pub.PublishRecord(pctx, task.ResultSubject(site, key), rec.TaskID, data)
		cancel()
		if err != nil {
			l.log.Error("cannot publish bad-task record", "subject", d.Subject(), "err", err)
		} else {
			l.hooks.PollStarted() // counted as a poll that ended at once, with kind bad_task
			l.hooks.PollDone(&rec, attempt)
		}
	}
	_ = d.Term("bad task: " + truncate(cause.Error(), 200))
}

// payloadHeadroom is what a record may not take of the bus's max_payload:
// the subject and the headers travel in it too.
const payloadHeadroom = 4096

// tooLarge says why a record of size bytes cannot travel on the bus, or ""
// when it can: the one check of the bus's max_payload, for stored records
// and poll-now answers alike.
func (l *Loop) tooLarge(rec *task.HostRecord, size int) string {
	limit := l.pub.MaxPayload()
	if size <= limit-payloadHeadroom {
		return ""
	}
	return fmt.Sprintf("the record for host %s is %d bytes with %d varbinds, more than the bus's max_payload allows (%d): "+
		"poll fewer OIDs or raise max_payload on the NATS server", rec.Host, size, len(rec.Varbinds), limit)
}

// track lists j as being polled, for the keep-alive sweep.
func (l *Loop) track(j *job) {
	l.liveMu.Lock()
	j.live, j.lastRun = len(l.live), time.Now()
	l.live = append(l.live, j)
	l.liveMu.Unlock()
}

// untrack: j's poll ended.
func (l *Loop) untrack(j *job) {
	l.liveMu.Lock()
	last := len(l.live) - 1
	moved := l.live[last]
	l.live[j.live], moved.live = moved, j.live
	l.live[last] = nil
	l.live = l.live[:last]
	l.liveMu.Unlock()
}

// keepAlive reports progress on every task polled for more than a third of
// the ack wait, every third of it, so that a live poller's long walk is
// never mistaken for a dead poller's. One sweep for all polls, not a timer
// each: tens of thousands are in flight.
func (l *Loop) keepAlive(stop <-chan struct{}) {
	every := max(l.o.AckWait/3, 100*time.Millisecond)
	tick := time.NewTicker(every / 4)
	defer tick.Stop()
	var due []Delivery
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		l.liveMu.Lock()
		for _, j := range l.live {
			if now.Sub(j.lastRun) >= every {
				j.lastRun = now
				due = append(due, j.d)
			}
		}
		l.liveMu.Unlock()
		for i, d := range due {
			_ = d.InProgress() // a task acked meanwhile ignores it
			due[i] = nil
		}
		due = due[:0]
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
