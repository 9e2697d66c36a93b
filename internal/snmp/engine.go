package snmp

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// Engine runs polls as small state machines over a few shared UDP sockets,
// not as a goroutine and a session per poll: a poll holds its state (the
// request in flight, the walk's cursor) and moves on when its answer, its
// timeout or an ICMP error arrives. Each socket has one reader goroutine;
// one timer goroutine drives every timeout, retry and paced send. SNMPv1
// and v2c run here; SNMPv3 polls run on a gosnmp session each (see Start).
//
// Answers are matched by request id (unique among the requests in flight)
// and by source address (any address with Options.UnconnectedUDP); late,
// duplicate and misaddressed answers are dropped and counted (Counters.Stray).
//
// Pacing: at most Options.MaxOutstanding requests in flight to one agent
// address (polls of hosts sharing an address and port queue for it), and
// at most EngineOptions.MaxPacketsPerSecond requests sent by the engine.
type Engine struct {
	o EngineOptions

	mu      sync.Mutex
	pending map[uint32]*machine           // requests in flight, by request id
	timers  timerHeap                     // the same requests, by when they time out
	agents  map[netip.AddrPort]agent      // by agent address without a zone (machine.peer)
	waiting map[netip.AddrPort][]*machine // requests queued for an agent's slot
	paced   []*machine                    // requests queued for the packet rate
	nextTx  time.Time                     // when the packet rate allows the next send
	txEvery time.Duration                 // 1/MaxPacketsPerSecond; 0: unpaced
	clockAt time.Time                     // when the timer goroutine wakes next
	icmp    []icmpNote                    // ICMP errors a sender read, for the timer goroutine

	nextID   atomic.Uint32
	sockMu   sync.Mutex
	socks    [2][]*socket // IPv4, IPv6; opened on first use
	rr       atomic.Uint32
	wake     chan struct{}
	closing  chan struct{}
	wg       sync.WaitGroup
	sessions sync.WaitGroup // the goroutines of SNMPv3 and TCP polls
}

// icmpNote is an ICMP error for the request with id, sent to to.
type icmpNote struct {
	id    uint32
	to    netip.AddrPort
	errno syscall.Errno
}

// agent is what the engine keeps per agent address while requests to it
// are in flight.
type agent struct {
	inflight int32
	bad      string // the last datagram from it that did not decode, while requests were in flight
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	// Source, when valid, is the local address requests to agents of its
	// family are sent from (net-snmp's clientaddr).
	Source netip.Addr
	// Counters count requests, retries and stray answers; may be nil.
	Counters *Counters
	// Engines remembers SNMPv3 engines across polls; may be nil.
	Engines *EngineCache
	// Sockets per address family; default: the number of CPUs, at most 4.
	Sockets int
	// MaxPacketsPerSecond bounds the requests sent, retries included; 0: unbounded.
	MaxPacketsPerSecond float64
}

// NewEngine starts an engine: its timer goroutine now, its sockets on
// first use. Close it.
func NewEngine(o EngineOptions) *Engine {
	if o.Sockets <= 0 {
		o.Sockets = min(runtime.GOMAXPROCS(0), 4)
	}
	e := &Engine{o: o, pending: make(map[uint32]*machine), agents: make(map[netip.AddrPort]agent),
		waiting: make(map[netip.AddrPort][]*machine), wake: make(chan struct{}, 1), closing: make(chan struct{})}
	if o.MaxPacketsPerSecond > 0 {
		e.txEvery = time.Duration(float64(time.Second) / o.MaxPacketsPerSecond)
	}
	e.nextID.Store(uint32(time.Now().UnixNano()) & 0x7fffffff)
	e.wg.Add(1)
	go e.clock()
	return e
}

// Close stops the engine. Polls must have ended.
func (e *Engine) Close() error {
	select {
	case <-e.closing:
		return nil
	default:
	}
	close(e.closing)
	e.sockMu.Lock()
	for _, fam := range e.socks {
		for _, s := range fam {
			_ = s.conn.Close()
		}
	}
	e.sockMu.Unlock()
	e.wg.Wait()
	e.sessions.Wait()
	return nil
}

// Sink receives a poll's results. Its methods are called one at a time,
// on the engine's goroutines: they must not block.
type Sink interface {
	// Varbind is one varbind, in order; vb is reused after the call.
	Varbind(vb *task.Varbind)
	// PartFailed reports a part ("get", "walk <root>", "table <root>") that
	// failed; true ends the poll, false goes on with the next part.
	PartFailed(part string, err error) (stop bool)
	// Done ends the poll: what it learnt of the agent, and the error that
	// ended it (the first part's failure, or the context's).
	Done(learned task.Quirks, err error)
}

// Job is one poll: the GETs, then each walk, then each table.
type Job struct {
	Name     string // the host, for errors
	Addr     netip.AddrPort
	Cred     *config.Credential
	Opts     Options
	Deadline time.Time // the whole poll's
	Get      []string
	Walk     []string
	Tables   []task.Table // walked column by column together
}

// Start runs j and reports to sink; ctx cancels it (Done with ctx's error).
// It returns at once: an SNMPv1/v2c poll over UDP is a state machine on
// the engine's sockets; an SNMPv3 poll runs on its own gosnmp session and
// goroutine, which keeps USM (keys, engine discovery, time windows) in
// gosnmp's hands, and so does a poll over TCP (a connection of its own).
func (e *Engine) Start(ctx context.Context, j *Job, sink Sink) {
	if j.Cred.Version == config.Version3 || j.Opts.TCP {
		e.sessions.Add(1)
		go func() {
			defer e.sessions.Done()
			e.runSession(ctx, j, sink)
		}()
		return
	}
	m := newMachine(e, ctx, j, sink)
	m.mu.Lock()
	defer m.mu.Unlock()
	sock, err := e.socket(j.Addr.Addr().Is6())
	if err != nil {
		m.finish(fmt.Errorf("poll %s (%s): %w: %w", j.Name, j.Addr, ErrUnreachable, err))
		return
	}
	m.sock = sock
	if ctx.Done() != nil {
		m.stopCtx = context.AfterFunc(ctx, func() { e.cancel(m) })
	}
	m.next()
}

// socket returns one of the shared sockets of a family, opening them the
// first time.
func (e *Engine) socket(v6 bool) (*socket, error) {
	fam := 0
	if v6 {
		fam = 1
	}
	e.sockMu.Lock()
	defer e.sockMu.Unlock()
	select {
	case <-e.closing:
		return nil, fmt.Errorf("the engine is closed")
	default:
	}
	if e.socks[fam] == nil {
		for range e.o.Sockets {
			s, err := openSocket(e, v6, e.o.Source)
			if err != nil {
				for _, s := range e.socks[fam] {
					_ = s.conn.Close()
				}
				e.socks[fam] = nil
				return nil, err
			}
			e.socks[fam] = append(e.socks[fam], s)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				s.read()
			}()
		}
	}
	socks := e.socks[fam]
	return socks[e.rr.Add(1)%uint32(len(socks))], nil
}

// Where a machine is, as the engine sees it (under e.mu).
const (
	atOwner   = iota // being moved on by one goroutine
	atPending        // its request is in flight
	atAgent          // its request waits for the agent's slot
	atPace           // its request waits for the packet rate
	atDone
)

// transmit sends m's request (m.req, encoded) under the agent's limit and
// the packet rate. Called by m's owner; afterwards m belongs to whoever
// takes it from the engine.
func (e *Engine) transmit(m *machine, first bool) {
	e.mu.Lock()
	if m.cancelled {
		e.mu.Unlock()
		m.requestEnded()
		m.finish(m.ctx.Err())
		return
	}
	if first {
		a := e.agents[m.peer]
		if a.inflight >= m.maxOutstanding() {
			e.waiting[m.peer] = append(e.waiting[m.peer], m)
			m.where = atAgent
			e.queueTimer(m)
			e.mu.Unlock()
			return
		}
		a.inflight++
		e.agents[m.peer] = a
		m.holdsSlot = true
	}
	if e.txEvery > 0 {
		now := time.Now()
		e.paceCredit(now)
		if len(e.paced) > 0 || e.nextTx.After(now) {
			e.paced = append(e.paced, m)
			m.where = atPace
			e.queueTimer(m)
			e.wakeAt(e.nextTx)
			e.mu.Unlock()
			return
		}
		e.nextTx = e.nextTx.Add(e.txEvery)
	}
	e.register(m)
	e.mu.Unlock()
	e.send(m)
}

// queueTimer times out a request that waits for its agent's slot or the
// packet rate at the poll's deadline: a wait never outlives the poll.
// Under e.mu.
func (e *Engine) queueTimer(m *machine) {
	m.req.due = m.deadline
	heap.Push(&e.timers, m)
	e.wakeAt(m.req.due)
}

// dequeue takes a queued request out of the timer heap. Under e.mu.
func (e *Engine) dequeue(m *machine) {
	if m.heapIdx >= 0 {
		heap.Remove(&e.timers, m.heapIdx)
	}
}

// register puts m's request in flight: pending by id, timed out by due.
// Under e.mu.
func (e *Engine) register(m *machine) {
	now := time.Now()
	m.req.due = now.Add(m.job.Opts.Timeout)
	if m.deadline.Before(m.req.due) {
		m.req.due = m.deadline
	}
	if !m.req.due.After(now) {
		m.req.due = now
	}
	e.pending[m.req.id] = m
	heap.Push(&e.timers, m)
	m.where = atPending
	e.wakeAt(m.req.due)
}

// send writes m's registered request. A send that fails takes m back, if
// nobody else did, and fails its request.
func (e *Engine) send(m *machine) {
	err := m.sock.send(m.req.buf, m.job.Addr)
	if err == nil {
		e.o.Counters.sentOne()
		return
	}
	if e.claim(m) {
		m.requestEnded()
		m.fail(m.opErr(fmt.Errorf("%w: %w", ErrUnreachable, err)))
	}
}

// claim takes m's request out of flight; false when another goroutine took
// it first (its answer, its timeout, a cancel).
func (e *Engine) claim(m *machine) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.where != atPending || e.pending[m.req.id] != m {
		return false
	}
	e.unpend(m)
	return true
}

// paceCredit keeps the packet rate's next send at most 10 ms in the past:
// no burst after a stall. Under e.mu.
func (e *Engine) paceCredit(now time.Time) {
	if floor := now.Add(-10 * time.Millisecond); e.nextTx.Before(floor) {
		e.nextTx = floor
	}
}

// unpend takes m's request out of flight; m now belongs to the caller.
// Under e.mu.
func (e *Engine) unpend(m *machine) {
	delete(e.pending, m.req.id)
	heap.Remove(&e.timers, m.heapIdx)
	m.where = atOwner
}

// newID is a request id no request in flight has.
func (e *Engine) newID() uint32 {
	for {
		id := e.nextID.Add(1) & 0x7fffffff
		if id == 0 {
			continue
		}
		e.mu.Lock()
		_, used := e.pending[id]
		e.mu.Unlock()
		if !used {
			return id
		}
	}
}

// release gives back m's slot at its agent: to the request that waited
// longest for it, in the same step (nothing can take the slot in
// between), or to the agent's count. Called by m's owner when a request
// ends.
func (e *Engine) release(m *machine) {
	if !m.holdsSlot {
		return
	}
	m.holdsSlot = false
	addr := m.peer
	e.mu.Lock()
	var next *machine
	if q := e.waiting[addr]; len(q) > 0 {
		next = q[0]
		q[0] = nil
		if len(q) == 1 {
			delete(e.waiting, addr)
		} else {
			e.waiting[addr] = q[1:]
		}
		e.dequeue(next)
		next.where, next.holdsSlot = atOwner, true
	} else {
		a := e.agents[addr]
		if a.inflight--; a.inflight <= 0 {
			delete(e.agents, addr)
		} else {
			e.agents[addr] = a
		}
	}
	e.mu.Unlock()
	if next != nil {
		next.mu.Lock()
		e.transmit(next, false)
		next.mu.Unlock()
	}
}

// answer is a datagram from an agent: the poll it answers moves on.
func (e *Engine) answer(s *socket, b []byte, src netip.AddrPort) {
	version, id, ok := messageID(b)
	e.mu.Lock()
	m := e.pending[id]
	if !ok || m == nil || (src != m.peer && !m.job.Opts.UnconnectedUDP) || int(m.version) != version {
		if !ok {
			// Not a message we can read: if requests to that agent are in
			// flight, their timeout says what it sent instead.
			if a, inflight := e.agents[src]; inflight {
				a.bad = fmt.Sprintf("%d-byte datagram that is not an SNMPv1/v2c message", len(b))
				e.agents[src] = a
			}
		}
		e.mu.Unlock()
		e.o.Counters.strayOne()
		return
	}
	e.unpend(m)
	if a := e.agents[m.peer]; a.bad != "" {
		a.bad = "" // it answers: an earlier undecodable datagram is history
		e.agents[m.peer] = a
	}
	e.mu.Unlock()

	m.mu.Lock()
	defer m.mu.Unlock()
	// The decoder keeps slices of what it decodes: a copy of the datagram,
	// not the socket's buffer, goes into the record.
	if err := s.ans.decode(s.dec, append([]byte(nil), b...)); err != nil {
		m.undecodable(err)
		return
	}
	m.onAnswer(&s.ans)
}

// icmpError is an ICMP error for a request sent to to: its poll learns the
// agent is unreachable. Called by a socket's reader, which holds no poll.
func (e *Engine) icmpError(payload []byte, to netip.AddrPort, errno syscall.Errno) {
	if _, id, ok := messageID(payload); ok {
		e.unreachable(icmpNote{id, to, errno})
	}
}

// icmpLater is icmpError for a sender, which holds a poll (perhaps the one
// the error is for): the timer goroutine hands the error over.
func (e *Engine) icmpLater(payload []byte, to netip.AddrPort, errno syscall.Errno) {
	_, id, ok := messageID(payload)
	if !ok {
		return
	}
	e.mu.Lock()
	e.icmp = append(e.icmp, icmpNote{id, to, errno})
	e.wakeAt(time.Now())
	e.mu.Unlock()
}

// unreachable fails the request an ICMP error is for, if still in flight.
// The caller holds no poll.
func (e *Engine) unreachable(n icmpNote) {
	e.mu.Lock()
	m := e.pending[n.id]
	if m == nil || m.peer != n.to {
		e.mu.Unlock()
		return
	}
	e.unpend(m)
	e.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requestEnded()
	m.fail(m.opErr(fmt.Errorf("%w: %w", ErrUnreachable, n.errno)))
}

// cancel ends m for its context: at once if its request is in flight or
// queued, else when its owner next tries to send.
func (e *Engine) cancel(m *machine) {
	if !errors.Is(m.ctx.Err(), context.Canceled) {
		return // a deadline: the poll's own timeouts end it, as a timeout
	}
	e.mu.Lock()
	m.cancelled = true
	switch m.where {
	case atPending:
		e.unpend(m)
	case atAgent:
		e.dequeue(m)
		e.dropWaiting(m)
	case atPace:
		e.dequeue(m)
		e.dropPaced(m)
	default:
		e.mu.Unlock()
		return
	}
	m.where = atOwner
	e.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requestEnded()
	m.finish(m.ctx.Err())
}

// dropWaiting takes m out of its agent's queue. Under e.mu.
func (e *Engine) dropWaiting(m *machine) {
	q := e.waiting[m.peer]
	if i := slices.Index(q, m); i >= 0 {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(e.waiting, m.peer)
	} else {
		e.waiting[m.peer] = q
	}
}

// dropPaced takes m out of the packet rate's queue. Under e.mu.
func (e *Engine) dropPaced(m *machine) {
	if i := slices.Index(e.paced, m); i >= 0 {
		e.paced = slices.Delete(e.paced, i, i+1)
	}
}

// wakeAt makes the timer goroutine wake by t. Under e.mu.
func (e *Engine) wakeAt(t time.Time) {
	if e.clockAt.IsZero() || t.Before(e.clockAt) {
		e.clockAt = t
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// clock is the timer goroutine: timeouts, retries and paced sends.
func (e *Engine) clock() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var expired, paced []*machine
	var icmp []icmpNote
	for {
		select {
		case <-e.closing:
			return
		case <-timer.C:
		case <-e.wake:
		}
		now := time.Now()
		e.mu.Lock()
		icmp, e.icmp = e.icmp, icmp[:0]
		for len(e.timers) > 0 && !e.timers[0].req.due.After(now) {
			m := heap.Pop(&e.timers).(*machine)
			switch m.where {
			case atPending:
				delete(e.pending, m.req.id)
			case atAgent: // the poll's deadline came while it waited
				e.dropWaiting(m)
			case atPace:
				e.dropPaced(m)
			}
			m.where = atOwner
			expired = append(expired, m)
		}
		if len(e.paced) > 0 {
			e.paceCredit(now)
			for len(e.paced) > 0 && !e.nextTx.After(now) {
				m := e.paced[0]
				e.paced[0] = nil
				e.paced = e.paced[1:]
				e.nextTx = e.nextTx.Add(e.txEvery)
				e.dequeue(m)
				e.register(m)
				paced = append(paced, m)
			}
		}
		next := now.Add(time.Hour)
		if len(e.timers) > 0 {
			next = e.timers[0].req.due
		}
		if len(e.paced) > 0 && e.nextTx.Before(next) {
			next = e.nextTx
		}
		e.clockAt = next
		e.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(next.Sub(now), time.Millisecond))
		for i, m := range paced {
			m.mu.Lock()
			e.send(m)
			m.mu.Unlock()
			paced[i] = nil
		}
		paced = paced[:0]
		for _, n := range icmp {
			e.unreachable(n)
		}
		for i, m := range expired {
			m.mu.Lock()
			m.onTimeout()
			m.mu.Unlock()
			expired[i] = nil
		}
		expired = expired[:0]
	}
}

// timerHeap orders requests in flight by due time.
type timerHeap []*machine

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].req.due.Before(h[j].req.due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *timerHeap) Push(x any) {
	m := x.(*machine)
	m.heapIdx = len(*h)
	*h = append(*h, m)
}
func (h *timerHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.heapIdx = -1
	return m
}
