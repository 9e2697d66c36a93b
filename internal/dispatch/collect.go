package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// collector is the dispatcher's one path for HostRecords, in a one-shot run
// and in continuous dispatching alike. It reads each record's head only
// (task.ReadHead), refuses a record it cannot read, writes the first record
// of each task to the sinks as the bytes that arrived, and keeps each host's
// state.
type collector struct {
	sinks  []Sink
	states *States
	store  StateStore // nil: the states live in memory only (a one-shot run)
	log    *slog.Logger
	// accept picks the records this collection is for; nil takes them all.
	accept func(h *task.RecordHead) bool
	// leading, if set, must hold for a record to be written: a dispatcher
	// that lost its lease hands records back for the next leader. fence
	// is held (read) from that check to the end of the sink writes, so a
	// step-down (Runner.Fence) can wait until no write is under way.
	leading func() bool
	fence   *sync.RWMutex
	// written is told of each record written to the sinks, duplicate of each
	// record of a task already written, refused of each record not collected.
	written   func(h *task.RecordHead, redelivered bool)
	duplicate func(h *task.RecordHead)
	refused   func()
}

// errNotLeading hands a record back: this dispatcher lost its lease.
var errNotLeading = errors.New("not the leading dispatcher (lease lost): left for the next leader")

// collect handles one record from the results stream. An error means it
// was not wholly handled (a sink failed, the host's state could not be
// saved, the lease is lost) and should be delivered again; writing is
// idempotent per task id. redelivered says a dispatcher had the record
// before without acknowledging it.
func (c *collector) collect(subject string, data []byte, redelivered bool) error {
	h, err := task.ReadHead(data)
	if err != nil {
		if errors.Is(err, task.ErrUnknownSchema) {
			c.log.Error("record of an unknown schema refused; not collected: upgrade this dispatcher to read it",
				"subject", subject, "task_id", h.TaskID, "schema", h.Schema, "readable_schema", task.Schema, "err", err)
		} else {
			c.log.Error("unreadable record on the results stream refused; not collected", "subject", subject, "err", err)
		}
		if c.refused != nil {
			c.refused()
		}
		return nil // delivering it again would not make it readable
	}
	if c.accept != nil && !c.accept(&h) {
		return nil
	}
	key := task.HostStateKey(h.Site, h.HostKey)
	if c.fence != nil {
		c.fence.RLock()
	}
	if c.leading != nil && !c.leading() {
		if c.fence != nil {
			c.fence.RUnlock()
		}
		return errNotLeading
	}
	if c.states.seen(key, h.TaskID) {
		if c.duplicate != nil {
			c.duplicate(&h)
		}
	} else {
		// Written before it is marked: a failed write is retried on redelivery.
		for _, s := range c.sinks {
			if err := s.Write(data); err != nil {
				if c.fence != nil {
					c.fence.RUnlock()
				}
				return fmt.Errorf("write record %s: %w", h.TaskID, err)
			}
		}
		if c.written != nil {
			c.written(&h, redelivered)
		}
	}
	if c.fence != nil {
		c.fence.RUnlock()
	}
	state := c.states.observe(key, &h, c.store != nil)
	if c.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.store.Put(ctx, key, state)
}
