package dispatch

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// Scheduler decides when each host is polled. Every host has slots of its
// interval, aligned to the Unix epoch plus an offset taken from a stable
// hash of its host key, so polls spread evenly over the interval and any
// dispatcher computes the same slots (and so the same task ids) for the same
// host. It is driven by the caller's clock: Due(now) returns the tasks whose
// time has come. It is not safe for concurrent use.
type Scheduler struct {
	entries map[string]*slotEntry // by host key
	queue   slotQueue
}

type slotEntry struct {
	host  config.Host
	slot  time.Time // start of the next slot to publish
	due   time.Time // slot plus this slot's jitter
	index int       // in the queue
}

// NewScheduler returns an empty scheduler.
func NewScheduler() *Scheduler {
	return &Scheduler{entries: map[string]*slotEntry{}}
}

// Len is the number of hosts scheduled.
func (s *Scheduler) Len() int { return len(s.entries) }

// hash64 is FNV-1a of the parts: stable across processes and versions.
func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// SlotStart is the start of the slot of a host with this key and interval
// that contains t.
// Slots start on whole milliseconds, as task ids record them.
func SlotStart(key string, interval time.Duration, t time.Time) time.Time {
	iv := int64(max(interval.Truncate(time.Millisecond), time.Millisecond))
	offset := int64(hash64(key)%uint64(iv/int64(time.Millisecond))) * int64(time.Millisecond)
	n := t.UnixNano() - offset
	k := n / iv
	if n < 0 && n%iv != 0 {
		k--
	}
	return time.Unix(0, k*iv+offset)
}

// jitterOf is a slot's extra delay: deterministic per host and slot.
func jitterOf(h *config.Host, slot time.Time) time.Duration {
	if h.Jitter <= 0 {
		return 0
	}
	return time.Duration(hash64(h.Key, fmt.Sprint(slot.UnixNano())) % uint64(h.Jitter))
}

// SetHosts replaces the inventory. New hosts start at their next slot,
// removed hosts stop, hosts whose settings changed keep their place unless
// their interval changed. It reports how many hosts were added, removed and
// changed.
func (s *Scheduler) SetHosts(hosts []config.Host, now time.Time) (added, removed, changed int) {
	keep := make(map[string]bool, len(hosts))
	for i := range hosts {
		h := hosts[i]
		keep[h.Key] = true
		e, ok := s.entries[h.Key]
		if !ok {
			e = &slotEntry{host: h}
			e.slot = SlotStart(h.Key, h.Interval, now).Add(h.Interval)
			e.due = e.slot.Add(jitterOf(&h, e.slot))
			s.entries[h.Key] = e
			heap.Push(&s.queue, e)
			added++
			continue
		}
		if !sameHost(&e.host, &h) {
			changed++
			intervalChanged := e.host.Interval != h.Interval
			e.host = h
			if intervalChanged {
				e.slot = SlotStart(h.Key, h.Interval, now).Add(h.Interval)
			}
			e.due = e.slot.Add(jitterOf(&h, e.slot))
			heap.Fix(&s.queue, e.index)
		}
	}
	for key, e := range s.entries {
		if !keep[key] {
			heap.Remove(&s.queue, e.index)
			delete(s.entries, key)
			removed++
		}
	}
	return added, removed, changed
}

func sameHost(a, b *config.Host) bool { return fmt.Sprintf("%+v", *a) == fmt.Sprintf("%+v", *b) }

// CatchUp makes the current slot of host key due now, unless done says
// that slot's task id was already answered or the next slot begins within
// CatchUpMargin. A restarted dispatcher uses it
// for the hosts it knew, so the slot that came while it was down is not
// lost; the deterministic task id makes a second publication of a slot the
// previous dispatcher did queue harmless (deduplicated, or refused as busy).
func (s *Scheduler) CatchUp(key string, now time.Time, done func(taskID string) bool) bool {
	e, ok := s.entries[key]
	if !ok {
		return false
	}
	cur := SlotStart(key, e.host.Interval, now)
	if cur.Add(e.host.Interval).Sub(now) < CatchUpMargin(e.host.Interval) {
		// The next slot is about to begin: polled now, the current one
		// would still be queued or running then and cost the host that
		// next slot (an overrun). The next one comes on time instead.
		return false
	}
	if done(task.SlotID(e.host.Site, key, cur)) {
		return false
	}
	e.slot, e.due = cur, now
	heap.Fix(&s.queue, e.index)
	return true
}

// CatchUpMargin is how much of its slot must be left for a slot to be
// caught up: a quarter of the interval, at most 5 s.
func CatchUpMargin(interval time.Duration) time.Duration { return min(interval/4, 5*time.Second) }

// NextDue is when the earliest task is due; false when nothing is scheduled.
func (s *Scheduler) NextDue() (time.Time, bool) {
	if len(s.queue) == 0 {
		return time.Time{}, false
	}
	return s.queue[0].due, true
}

// Due returns the tasks due at now, in due order, and moves each of their
// hosts to its next slot. A host whose slot passed by more than a whole
// interval (the dispatcher was stopped or stalled) resumes at its current
// slot instead of catching up on the ones it missed.
func (s *Scheduler) Due(now time.Time) []task.PollTask {
	var out []task.PollTask
	for len(s.queue) > 0 && !s.queue[0].due.After(now) {
		e := s.queue[0]
		h := &e.host
		if now.Sub(e.slot) < h.Interval { // still this slot's turn
			out = append(out, s.task(h, e.slot, e.due))
		}
		e.slot = e.slot.Add(h.Interval)
		if !e.slot.After(now) {
			// The next slot has begun already (a stall, or a slot caught up
			// late): the current slot is due now; the ones before it are
			// missed, not caught up.
			e.slot = SlotStart(h.Key, h.Interval, now)
		}
		e.due = e.slot.Add(jitterOf(h, e.slot))
		heap.Fix(&s.queue, 0)
	}
	return out
}

// task builds the PollTask for host h and slot. Its id is deterministic per
// host and slot; it is valid for one interval.
func (s *Scheduler) task(h *config.Host, slot, scheduled time.Time) task.PollTask {
	return newTask(h, slot, scheduled, slot.Add(h.Interval))
}

// newTask builds the task of host h for the slot starting at slot.
func newTask(h *config.Host, slot, scheduled, deadline time.Time) task.PollTask {
	return task.PollTask{
		Schema: task.TaskSchema(h.Transport), ID: task.SlotID(h.Site, h.Key, slot), Site: h.Site,
		Host: h.Name, HostKey: h.Key, Address: h.Address, Port: h.Port, Transport: h.Transport,
		Credentials: h.Credentials,
		Get:         h.Get, Walk: h.Walk, Tables: h.Tables, TimeoutMS: h.Timeout.Milliseconds(),
		PollTimeoutMS: min(h.PollTimeout, deadline.Sub(scheduled)).Milliseconds(),
		Retries:       h.Retries, MaxOids: h.MaxOids, MaxRepetitions: h.MaxRepetitions,
		NoBulk: !h.Bulk, AllowNonIncreasingOIDs: h.AllowNonIncreasingOIDs, UnconnectedUDP: h.UnconnectedUDP, MaxOutstanding: h.MaxOutstanding,
		ScheduledAt: scheduled, Deadline: deadline,
	}
}

// slotQueue is a min-heap of entries by due time.
type slotQueue []*slotEntry

func (q slotQueue) Len() int { return len(q) }
func (q slotQueue) Less(i, j int) bool {
	if q[i].due.Equal(q[j].due) {
		return q[i].host.Key < q[j].host.Key
	}
	return q[i].due.Before(q[j].due)
}
func (q slotQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *slotQueue) Push(x any) {
	e := x.(*slotEntry)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *slotQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}
