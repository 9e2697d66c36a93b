package poller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// worker owns the buffers of one poll slot, reused from task to task.
type worker struct {
	l             *Loop
	progressEvery time.Duration
	log           *slog.Logger
	rec           task.HostRecord
	buf           []byte
}

// handle answers one delivery: a stored record and an ack, a hand-back, or
// (for a task that cannot be polled, or its last delivery) an error record
// and a termination.
func (w *worker) handle(ctx context.Context, d Delivery) {
	attempt := d.Attempt()
	t, err := task.DecodeTask(d.Data())
	if err != nil {
		w.badTask(ctx, d, &t, attempt, err)
		return
	}
	subject, id := task.ResultSubject(t.Site, t.HostKey), t.ID // the record answers the task, whatever the poll wrote
	rec := &w.rec
	*rec = task.HostRecord{Varbinds: rec.Varbinds[:0]}
	w.l.hooks.PollStarted()
	ka := keepAlive(d, w.progressEvery)
	perr := w.l.poll(ctx, &t, attempt, rec)
	ka.stop()
	if perr != nil {
		if w.l.o.MaxDeliver > 0 && attempt >= w.l.o.MaxDeliver {
			// No delivery is left: handing it back would leave it stuck in the
			// queue. Answer it with a final error instead.
			*rec = task.Undelivered(&t, w.l.o.Name, attempt, "the last delivery was interrupted: "+perr.Error(), time.Now())
			if err := w.publish(ctx, subject, id, rec); err == nil {
				_ = d.Term("max deliveries")
				w.l.hooks.PollDone(rec, attempt)
				return
			}
		}
		w.log.Info("handing task back", "host", t.Host, "task_id", t.ID, "err", perr)
		_ = d.Nak(0)
		w.l.hooks.PollDone(nil, attempt)
		return
	}
	if err := w.publish(ctx, subject, id, rec); err != nil {
		w.log.Error("cannot publish host record; the task will be redelivered", "host", t.Host, "task_id", t.ID, "err", err)
		_ = d.Nak(time.Second)
		w.l.hooks.PollDone(nil, attempt)
		return
	}
	w.l.hooks.PollDone(rec, attempt)
	if err := d.Ack(); err != nil {
		w.log.Warn("ack failed; the task may be polled again, its record is deduplicated", "host", t.Host, "task_id", t.ID, "err", err)
	}
	if rec.Error != nil { // one line per failed poll, never per retry
		w.log.Warn("poll failed", "host", t.Host, "site", t.Site, "task_id", t.ID, "oid", failedOID(rec), "attempt", attempt,
			"kind", rec.Error.Kind, "err", rec.Error.Message)
	}
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
func (w *worker) badTask(ctx context.Context, d Delivery, t *task.PollTask, attempt int, cause error) {
	site, key, ok := task.ParseTaskSubject(d.Subject())
	host := t.Host
	if host == "" {
		host = key
	}
	w.log.Error("bad task terminated", "subject", d.Subject(), "host", host, "err", cause)
	if ok {
		now := time.Now()
		rec := task.NewRecord(t, w.l.o.Name, attempt, now)
		rec.Site, rec.Host, rec.HostKey = site, host, key
		if rec.TaskID == "" {
			rec.TaskID = fmt.Sprintf("bad.%s.%s", key, now.UTC().Format("20060102T150405.000000000"))
		}
		rec.Error = &task.Error{Kind: task.KindBadTask, Message: cause.Error()}
		if err := w.publish(ctx, task.ResultSubject(site, key), rec.TaskID, &rec); err != nil {
			w.log.Error("cannot publish bad-task record", "subject", d.Subject(), "err", err)
		} else {
			w.l.hooks.PollStarted() // counted as a poll that ended at once, with kind bad_task
			w.l.hooks.PollDone(&rec, attempt)
		}
	}
	_ = d.Term("bad task: " + truncate(cause.Error(), 200))
}

// publish stores rec on subject (its host's result subject) with id (its
// task id) as message id, so a redelivered task's second record is stored
// once. A record larger than the bus carries is stored without its
// varbinds, as a too_large error, so the poll is answered rather than lost.
func (w *worker) publish(ctx context.Context, subject, id string, rec *task.HostRecord) error {
	w.buf = rec.AppendJSON(w.buf[:0])
	if why := w.l.tooLarge(rec, len(w.buf)); why != "" {
		w.log.Error("record too large; published without its varbinds", "host", rec.Host, "task_id", id, "bytes", len(w.buf))
		rec.Varbinds = rec.Varbinds[:0]
		rec.Error = &task.Error{Kind: task.KindTooLarge, Message: why}
		rec.Errors = append(rec.Errors, task.PartError{Part: "record", Kind: task.KindTooLarge, Message: why})
		w.buf = rec.AppendJSON(w.buf[:0])
	}
	if w.l.shuttingDown() && !w.l.pub.Connected() {
		// Shutting down and the server is gone: waiting for it would only
		// delay the exit. The task, never acked, goes to another poller.
		return fmt.Errorf("publish record to %s: not connected to NATS while shutting down", subject)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.l.o.PublishTimeout)
	defer cancel()
	return w.l.pub.PublishRecord(ctx, subject, id, w.buf)
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

// keepAliveTimer reports progress on a task until stopped. It is a runtime
// timer, not a goroutine: it costs nothing on polls shorter than its period.
type keepAliveTimer struct {
	t     *time.Timer
	d     Delivery
	every time.Duration
	mu    sync.Mutex
	done  bool
}

func keepAlive(d Delivery, every time.Duration) *keepAliveTimer {
	k := &keepAliveTimer{d: d, every: every}
	k.mu.Lock() // fire reads k.t under the lock: order it after this write
	k.t = time.AfterFunc(every, k.fire)
	k.mu.Unlock()
	return k
}

func (k *keepAliveTimer) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	_ = k.d.InProgress()
	k.t.Reset(k.every)
}

func (k *keepAliveTimer) stop() {
	k.mu.Lock()
	k.done = true
	k.mu.Unlock()
	k.t.Stop()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
