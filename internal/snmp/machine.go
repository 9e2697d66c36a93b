package snmp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/oid"
	"github.com/flock-snmp/flock/internal/task"
)

// machine is one SNMPv1/v2c poll on the engine: the parts of its job in
// order, the request in flight, what it learnt. It is moved on by one
// goroutine at a time (m.mu): the one that took it from the engine, when
// its answer, timeout, ICMP error or cancel came.
type machine struct {
	mu      sync.Mutex
	e       *Engine
	ctx     context.Context
	stopCtx func() bool
	sock    *socket
	sink    Sink
	job     *Job           // read only: its Opts are the poll's, but for noBulk
	peer    netip.AddrPort // job.Addr without a zone: how answers and ICMP errors name the agent
	noBulk  bool
	version gosnmp.SnmpVersion
	comm    string

	deadline time.Time
	part     int // the next part to start
	op       opKind
	partName string

	spans []span // GET: what is left to ask, front first

	root, cur string // walk
	seen      int
	maxRep    int
	walkEnd   bool

	cols   []column // table
	active []*column
	limit  int
	batch  int
	total  int

	capVB   int // most varbinds per request, after an agent stayed silent on more; 0: none
	learned task.Quirks
	probe   probeStage
	failed  failedRequest // the request a probe stands in for

	req       request
	one       [1]string // a walk's request OID
	toids     []string  // a table's request OIDs
	where     int8      // under e.mu
	heapIdx   int       // under e.mu
	holdsSlot bool
	cancelled bool // under e.mu
}

type opKind uint8

const (
	opNone opKind = iota
	opGet
	opWalk
	opTable
)

type probeStage uint8

const (
	noProbe    probeStage = iota
	probeAlive            // one varbind: does the agent answer at all?
	probeBulk             // a one-varbind GETBULK: does it answer GETBULK?
)

type failedRequest struct {
	pdu  gosnmp.PDUType
	size int
	err  error
}

type span struct {
	lo, hi  int
	missing bool // v1's noSuchName for get[lo]: answered without asking
}

type column struct {
	root, cursor string
	got          []task.Varbind
	buf          *[]task.Varbind // got's holder in columnBuffers (the engine's tables)
	done         bool
}

// request is the request in flight.
type request struct {
	id    uint32
	pdu   gosnmp.PDUType
	oids  []string
	reps  int
	size  int // varbinds asked for
	tries int
	due   time.Time
	buf   []byte
	bad   error // the last answer that did not decode
}

func newMachine(e *Engine, ctx context.Context, j *Job, sink Sink) *machine {
	m := &machine{e: e, ctx: ctx, sink: sink, job: j, noBulk: j.Opts.NoBulk,
		peer:     netip.AddrPortFrom(j.Addr.Addr().WithZone(""), j.Addr.Port()),
		deadline: j.Deadline, comm: j.Cred.Community.Reveal(), version: gosnmp.Version2c, heapIdx: -1}
	if j.Cred.Version == config.Version1 {
		m.version = gosnmp.Version1
	}
	if m.deadline.IsZero() {
		m.deadline = time.Now().Add(24 * time.Hour)
	}
	if d, ok := ctx.Deadline(); ok && d.Before(m.deadline) {
		m.deadline = d
	}
	m.capVB = j.Opts.MaxVarbindsPerRequest
	return m
}

func (m *machine) maxOutstanding() int32 {
	return int32(max(1, m.job.Opts.MaxOutstanding))
}

func (m *machine) bulk() bool { return m.version != gosnmp.Version1 && !m.noBulk }

// next sends the poll's next request, or ends the poll.
func (m *machine) next() {
	for {
		if m.op == opNone && !m.startPart() {
			m.finish(nil)
			return
		}
		done, err := m.build()
		if err != nil {
			m.fail(err)
			return
		}
		if !done {
			if err := m.encode(); err != nil {
				m.fail(m.opErr(err))
				return
			}
			m.e.transmit(m, true)
			return
		}
		m.endPart()
	}
}

// startPart sets up the next part of the job; false when none is left.
func (m *machine) startPart() bool {
	j := m.job
	p := m.part
	m.part++
	m.walkEnd = false
	if len(j.Get) > 0 {
		if p == 0 {
			m.op, m.partName = opGet, "get"
			m.spans = append(m.spans[:0], span{lo: 0, hi: len(j.Get)})
			return true
		}
		p--
	}
	if p < len(j.Walk) {
		m.op, m.partName = opWalk, "walk "+j.Walk[p]
		m.root = canonical(j.Walk[p])
		m.cur, m.seen, m.walkEnd = m.root, 0, false
		m.maxRep = max(m.job.Opts.MaxRepetitions, 1)
		return true
	}
	p -= len(j.Walk)
	if p < len(j.Tables) {
		tb := j.Tables[p]
		m.op, m.partName = opTable, "table "+tb.Root
		m.root = canonical(tb.Root)
		m.cols = m.cols[:0]
		for _, c := range tb.Columns {
			c = canonical(c)
			m.cols = append(m.cols, column{root: c, cursor: c})
		}
		m.active = m.active[:0]
		for i := range m.cols {
			m.active = append(m.active, &m.cols[i])
		}
		m.limit, m.total = max(1, m.job.Opts.MaxRepetitions), 0
		return true
	}
	return false
}

// endPart ends the current part: a table's rows reach the sink, whole or
// as far as they were walked.
func (m *machine) endPart() {
	if m.op == opTable {
		for i := range m.cols {
			c := &m.cols[i]
			for k := range c.got {
				m.sink.Varbind(&c.got[k])
			}
			if c.buf != nil {
				clear(c.got) // the strings and bytes now belong to the record
				*c.buf = c.got[:0]
				columnBuffers.Put(c.buf)
			}
			c.got, c.buf = nil, nil
		}
		m.cols = m.cols[:0]
	}
	m.op = opNone
}

// columnBuffers keeps the buffers a table's columns are gathered in, from
// poll to poll: a table's rows are gathered column by column before they
// reach the record, and growing a fresh buffer per column and poll was a
// sixth of a walking poller's CPU.
var columnBuffers sync.Pool

func columnBuffer() *[]task.Varbind {
	if b, ok := columnBuffers.Get().(*[]task.Varbind); ok {
		return b
	}
	b := make([]task.Varbind, 0, 64)
	return &b
}

// fail ends the current part with err: the poll goes on with the next part
// unless the sink says stop.
func (m *machine) fail(err error) {
	part := m.partName
	m.endPart()
	m.probe = noProbe
	if m.sink.PartFailed(part, err) {
		m.finish(err)
		return
	}
	m.next()
}

// finish ends the poll.
func (m *machine) finish(err error) {
	e := m.e
	e.mu.Lock()
	if m.where == atDone {
		e.mu.Unlock()
		return
	}
	m.where = atDone
	e.mu.Unlock()
	if m.op != opNone {
		m.endPart()
	}
	if m.stopCtx != nil {
		m.stopCtx()
	}
	m.sink.Done(m.learned, err)
}

// build prepares the current part's next request in m.req; done when the
// part has nothing left to ask.
func (m *machine) build() (done bool, err error) {
	r := &m.req
	r.tries, r.bad = 0, nil
	switch m.op {
	case opGet:
		get := m.job.Get
		for len(m.spans) > 0 && m.spans[0].missing {
			vb := task.Varbind{OID: canonical(get[m.spans[0].lo]), Type: task.TypeNoSuchObject}
			m.sink.Varbind(&vb) // v1's missing OIDs only: rare enough to allocate
			m.spans = m.spans[1:]
		}
		if len(m.spans) == 0 {
			return true, nil
		}
		lim := max(m.job.Opts.MaxOids, 1)
		if m.capVB > 0 {
			lim = min(lim, m.capVB)
		}
		if s := m.spans[0]; s.hi-s.lo > lim {
			m.spans = slices.Insert(m.spans, 1, span{lo: s.lo + lim, hi: s.hi})
			m.spans[0].hi = s.lo + lim
		}
		s := m.spans[0]
		r.pdu, r.oids, r.reps, r.size = gosnmp.GetRequest, get[s.lo:s.hi], 0, s.hi-s.lo
	case opWalk:
		if m.walkEnd {
			m.one[0] = m.root
			r.pdu, r.oids, r.reps, r.size = gosnmp.GetRequest, m.one[:], 0, 1
			return false, nil
		}
		m.one[0] = m.cur
		r.oids = m.one[:]
		if m.bulk() {
			reps := m.maxRep
			if m.capVB > 0 {
				reps = min(reps, m.capVB)
			}
			r.pdu, r.reps, r.size = gosnmp.GetBulkRequest, reps, reps
		} else {
			r.pdu, r.reps, r.size = gosnmp.GetNextRequest, 0, 1
		}
	case opTable:
		if len(m.active) == 0 {
			return true, nil
		}
		// At most max_oids columns per request; the next columns take the
		// place of those that end. About tableVarbinds per answer.
		maxOids := max(1, m.job.Opts.MaxOids)
		if m.capVB > 0 {
			maxOids = min(maxOids, m.capVB)
		}
		m.batch = min(len(m.active), maxOids)
		reps := max(1, min(m.limit, tableVarbinds/m.batch))
		if m.capVB > 0 {
			reps = max(1, min(reps, m.capVB/m.batch))
		}
		m.toids = m.toids[:0]
		for _, c := range m.active[:m.batch] {
			m.toids = append(m.toids, c.cursor)
		}
		r.oids = m.toids
		if m.bulk() {
			r.pdu, r.reps, r.size = gosnmp.GetBulkRequest, reps, m.batch*reps
		} else {
			r.pdu, r.reps, r.size = gosnmp.GetNextRequest, 0, m.batch
		}
	}
	return false, nil
}

// encode writes m.req with a new request id, into its reused buffer.
func (m *machine) encode() error {
	r := &m.req
	r.id = m.e.newID()
	buf, err := appendRequest(r.buf[:0], m.version, m.comm, r.pdu, r.id, r.reps, r.oids)
	r.buf = buf
	if err != nil { // only OIDs the configuration check let through reach here
		return fmt.Errorf("%w: cannot encode the request: %w", ErrProtocol, err)
	}
	return nil
}

// requestEnded: the request in flight got its answer or gave up; its slot
// at the agent goes to the next request waiting for it.
func (m *machine) requestEnded() { m.e.release(m) }

// opErr says which part and request err belongs to.
func (m *machine) opErr(err error) error {
	at := ""
	if len(m.req.oids) > 0 {
		at = m.req.oids[0]
	}
	switch m.op {
	case opWalk:
		if m.walkEnd {
			return fmt.Errorf("get %s on %s: %w", m.root, m.job.Name, err)
		}
		return fmt.Errorf("walk %s at %s on %s: %w", m.root, m.cur, m.job.Name, err)
	case opTable:
		return fmt.Errorf("walk table %s at %s on %s: %w", m.root, at, m.job.Name, err)
	}
	return fmt.Errorf("get %s on %s: %w", at, m.job.Name, err)
}

// undecodable: an answer to the request did not decode. As gosnmp does, ask
// again while tries are left; then it is a protocol error.
func (m *machine) undecodable(err error) {
	m.req.bad = err
	if m.req.tries < m.job.Opts.Retries && m.probe == noProbe {
		m.retry()
		return
	}
	m.requestEnded()
	m.fail(m.opErr(fmt.Errorf("%w: %w", ErrProtocol, err)))
}

// retry sends the request again, same id: a late answer to an earlier try
// is as good.
func (m *machine) retry() {
	m.req.tries++
	m.e.o.Counters.retryOne()
	m.e.transmit(m, false) // its agent slot kept; the packet rate counts it
}

// onTimeout: the request's time ran out (or the poll's).
func (m *machine) onTimeout() {
	now := time.Now()
	if !now.Before(m.deadline) {
		m.requestEnded()
		m.fail(m.opErr(fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)))
		return
	}
	if m.req.tries < m.job.Opts.Retries && m.probe == noProbe {
		m.retry()
		return
	}
	m.e.mu.Lock()
	bad := m.e.agents[m.peer].bad
	m.e.mu.Unlock()
	m.requestEnded()
	switch {
	case m.req.bad != nil:
		m.fail(m.opErr(fmt.Errorf("%w: no valid answer: %w", ErrProtocol, m.req.bad)))
		return
	case bad != "":
		m.fail(m.opErr(fmt.Errorf("%w: no valid answer: the agent sent a %s", ErrProtocol, bad)))
		return
	case m.probe != noProbe:
		m.probeTimedOut()
		return
	}
	err := m.opErr(fmt.Errorf("%w: no answer after %d tries of %s", ErrTimeout, m.req.tries+1, m.job.Opts.Timeout))
	if m.req.size > 1 || (m.req.pdu == gosnmp.GetBulkRequest && !m.walkEnd) {
		// Some agents never answer requests above some size. One small
		// probe tells them from an agent that is down.
		m.failed = failedRequest{pdu: m.req.pdu, size: m.req.size, err: err}
		m.sendProbe(probeAlive)
		return
	}
	m.fail(err)
}

// sendProbe sends a one-varbind request, tried once: probeAlive asks as
// the failed request did but for one varbind (GETNEXT for a walk or table),
// probeBulk a GETBULK of one repetition.
func (m *machine) sendProbe(stage probeStage) {
	m.probe = stage
	r := &m.req
	r.tries, r.bad = 0, nil
	r.oids = r.oids[:1]
	switch {
	case stage == probeBulk:
		r.pdu, r.reps, r.size = gosnmp.GetBulkRequest, 1, 1
	case m.op == opGet:
		r.pdu, r.reps, r.size = gosnmp.GetRequest, 0, 1
	default:
		r.pdu, r.reps, r.size = gosnmp.GetNextRequest, 0, 1
	}
	if err := m.encode(); err != nil {
		m.fail(m.opErr(err))
		return
	}
	m.e.transmit(m, true)
}

// probeTimedOut: the agent answers no small request either: down.
// A GETBULK of one it does not answer while it answers GETNEXT: it does
// not do GETBULK.
func (m *machine) probeTimedOut() {
	stage := m.probe
	m.probe = noProbe
	if stage == probeBulk {
		m.noBulk, m.learned.NoBulk = true, true
		m.next() // the part goes on with GETNEXT
		return
	}
	m.fail(m.failed.err)
}

// probeAnswered: the agent is alive; the failed request was too large for it.
func (m *machine) probeAnswered() {
	stage := m.probe
	m.probe = noProbe
	if stage == probeAlive && m.failed.pdu == gosnmp.GetBulkRequest {
		m.sendProbe(probeBulk)
		return
	}
	size := max(1, m.failed.size/2)
	if m.capVB == 0 || size < m.capVB {
		m.capVB = size
	}
	if m.learned.MaxVarbinds == 0 || m.capVB < m.learned.MaxVarbinds {
		m.learned.MaxVarbinds = m.capVB
	}
	m.next()
}

// learnRepetitions keeps in q the smallest max-repetitions an agent
// answered after tooBig (the engine's polls and gosnmp sessions alike).
func learnRepetitions(q *task.Quirks, n int) {
	if q.MaxRepetitions == 0 || n < q.MaxRepetitions {
		q.MaxRepetitions = n
	}
}

// onAnswer moves the poll on with an answer to its request.
func (m *machine) onAnswer(pkt *answer) {
	m.requestEnded()
	if m.probe != noProbe {
		m.probeAnswered()
		return
	}
	var err error
	switch m.op {
	case opGet:
		err = m.getAnswer(pkt)
	case opWalk:
		if m.walkEnd {
			err = m.walkEndAnswer(pkt)
		} else {
			err = m.walkAnswer(pkt)
		}
	case opTable:
		err = m.tableAnswer(pkt)
	}
	if err != nil {
		m.fail(err)
		return
	}
	m.next()
}

func (m *machine) getAnswer(pkt *answer) error {
	s := m.spans[0]
	oids := m.req.oids
	switch pkt.errStatus {
	case gosnmp.NoError:
		if len(pkt.vbs) != len(oids) {
			return fmt.Errorf("get %s on %s: %w: asked for %d OIDs, got %d", oids[0], m.job.Name, ErrProtocol, len(oids), len(pkt.vbs))
		}
		if pkt.badAt >= 0 {
			return fmt.Errorf("get %s on %s: %w: %w", pkt.vbs[pkt.badAt].OID, m.job.Name, ErrProtocol, pkt.badErr)
		}
		for i := range pkt.vbs {
			m.sink.Varbind(&pkt.vbs[i])
		}
		m.spans = m.spans[1:]
	case gosnmp.NoSuchName:
		// SNMPv1 fails the whole PDU for one missing OID: report that one and ask again for the rest.
		idx := int(pkt.errIndex)
		if idx < 1 || idx > len(oids) {
			return fmt.Errorf("get %s on %s: %w: noSuchName with error index %d of %d", oids[0], m.job.Name, ErrProtocol, idx, len(oids))
		}
		at := s.lo + idx - 1
		var repl []span
		if at > s.lo {
			repl = append(repl, span{lo: s.lo, hi: at})
		}
		repl = append(repl, span{lo: at, hi: at + 1, missing: true})
		if at+1 < s.hi {
			repl = append(repl, span{lo: at + 1, hi: s.hi})
		}
		m.spans = append(repl, m.spans[1:]...)
	case gosnmp.TooBig:
		if len(oids) == 1 {
			return fmt.Errorf("get %s on %s: %w: tooBig for a single OID", oids[0], m.job.Name, ErrProtocol)
		}
		half := s.lo + len(oids)/2
		m.spans = append([]span{{lo: s.lo, hi: half}, {lo: half, hi: s.hi}}, m.spans[1:]...)
	default:
		return fmt.Errorf("get %s on %s: %w: agent answered %s (error index %d)", failedOID(oids, pkt.errIndex), m.job.Name, ErrProtocol, pkt.errStatus, pkt.errIndex)
	}
	return nil
}

// walkAnswer follows a walk: unlike gosnmp's BulkWalk it fails, rather than
// stopping quietly, when the agent answers with an error status or returns
// non-increasing OIDs; on tooBig it halves max-repetitions.
func (m *machine) walkAnswer(pkt *answer) error {
	switch {
	case pkt.errStatus == gosnmp.NoSuchName && m.version == gosnmp.Version1:
		m.endWalk() // v1's end of MIB view
		return nil
	case pkt.errStatus == gosnmp.TooBig && m.req.reps > 1:
		m.maxRep = m.req.reps / 2
		learnRepetitions(&m.learned, m.maxRep)
		return nil
	case pkt.errStatus != gosnmp.NoError:
		return fmt.Errorf("walk %s on %s: %w: agent answered %s after %s (max-repetitions %d)", m.root, m.job.Name, ErrProtocol, pkt.errStatus, m.cur, max(m.req.reps, 1))
	case len(pkt.vbs) == 0:
		return fmt.Errorf("walk %s on %s: %w: empty answer after %s", m.root, m.job.Name, ErrProtocol, m.cur)
	}
	for i := range pkt.vbs {
		p := &pkt.vbs[i]
		if p.Type == task.TypeEndOfMibView && i != pkt.badAt {
			m.endWalk()
			return nil
		}
		// Order first: an answer at or before where we asked is a broken
		// agent, even when it lies outside the subtree (it would loop).
		if c := oid.CompareStrings(p.OID, m.cur); c == 0 || (c < 0 && !m.job.Opts.AllowNonIncreasing) {
			return fmt.Errorf("walk %s on %s: %w: OID %s is not increasing after %s", m.root, m.job.Name, ErrProtocol, p.OID, m.cur)
		}
		if !oid.InSubtree(p.OID, m.root) {
			m.endWalk()
			return nil
		}
		if i == pkt.badAt {
			return fmt.Errorf("walk %s on %s: %w: %w", m.root, m.job.Name, ErrProtocol, pkt.badErr)
		}
		m.sink.Varbind(p)
		m.seen++
		m.cur = p.OID
		if m.seen >= m.job.Opts.maxVarbinds() {
			return fmt.Errorf("walk %s on %s: %w: more than %d varbinds: an agent that walks forever?", m.root, m.job.Name, ErrProtocol, m.seen)
		}
	}
	return nil
}

// endWalk ends a walk; as net-snmp's walk does, a root that is itself an
// object and has nothing below it is then fetched with GET.
func (m *machine) endWalk() {
	if m.seen > 0 {
		m.op = opNone
		return
	}
	m.walkEnd = true
}

func (m *machine) walkEndAnswer(pkt *answer) error {
	m.op, m.walkEnd = opNone, false
	switch pkt.errStatus {
	case gosnmp.NoError:
		if len(pkt.vbs) != 1 {
			return fmt.Errorf("get %s on %s: %w: asked for 1 OIDs, got %d", m.root, m.job.Name, ErrProtocol, len(pkt.vbs))
		}
		if pkt.badAt == 0 {
			return fmt.Errorf("get %s on %s: %w: %w", pkt.vbs[0].OID, m.job.Name, ErrProtocol, pkt.badErr)
		}
		if !pkt.vbs[0].Type.IsException() {
			m.sink.Varbind(&pkt.vbs[0])
		}
		return nil
	case gosnmp.NoSuchName:
		return nil
	case gosnmp.TooBig:
		return fmt.Errorf("get %s on %s: %w: tooBig for a single OID", m.root, m.job.Name, ErrProtocol)
	}
	return fmt.Errorf("get %s on %s: %w: agent answered %s (error index %d)", m.root, m.job.Name, ErrProtocol, pkt.errStatus, pkt.errIndex)
}

// tableAnswer takes the next rows of the columns asked: rows of m.batch
// varbinds; a truncated answer ends mid-row.
func (m *machine) tableAnswer(pkt *answer) error {
	batch := m.active[:m.batch]
	bulk := m.req.pdu == gosnmp.GetBulkRequest
	switch {
	case pkt.errStatus == gosnmp.TooBig && m.req.reps > 1:
		m.limit = m.req.reps / 2
		learnRepetitions(&m.learned, m.limit)
		return nil
	case pkt.errStatus == gosnmp.NoSuchName && !bulk && int(pkt.errIndex) >= 1 && int(pkt.errIndex) <= len(batch):
		batch[pkt.errIndex-1].done = true // v1's end of view for that column
	case pkt.errStatus != gosnmp.NoError:
		return fmt.Errorf("walk table %s on %s: %w: agent answered %s (max-repetitions %d, %d columns)", m.root, m.job.Name, ErrProtocol, pkt.errStatus, max(m.req.reps, 1), len(batch))
	case len(pkt.vbs) == 0:
		return fmt.Errorf("walk table %s on %s: %w: empty answer", m.root, m.job.Name, ErrProtocol)
	default:
		for i := range pkt.vbs {
			c := batch[i%len(batch)]
			if c.done {
				continue
			}
			p := &pkt.vbs[i]
			if p.Type == task.TypeEndOfMibView && i != pkt.badAt {
				c.done = true
				continue
			}
			if cmp := oid.CompareStrings(p.OID, c.cursor); cmp == 0 || (cmp < 0 && !m.job.Opts.AllowNonIncreasing) {
				return fmt.Errorf("walk table %s on %s: %w: OID %s is not increasing after %s", m.root, m.job.Name, ErrProtocol, p.OID, c.cursor)
			}
			if !oid.InSubtree(p.OID, c.root) {
				c.done = true
				continue
			}
			if i == pkt.badAt {
				return fmt.Errorf("walk table %s on %s: %w: %w", m.root, m.job.Name, ErrProtocol, pkt.badErr)
			}
			if c.buf == nil {
				c.buf = columnBuffer()
				c.got = *c.buf
			}
			c.got = append(c.got, *p)
			c.cursor = p.OID
			if m.total++; m.total > m.job.Opts.maxVarbinds() {
				return fmt.Errorf("walk table %s on %s: %w: more than %d varbinds: an agent that walks forever?", m.root, m.job.Name, ErrProtocol, m.job.Opts.maxVarbinds())
			}
		}
	}
	next := m.active[:0]
	for _, c := range m.active {
		if !c.done {
			next = append(next, c)
		}
	}
	m.active = next
	return nil
}
