// Package poll turns one PollTask into one HostRecord: it resolves the host,
// opens an SNMP session with the named credential profile, runs the task's
// GETs and walks under the poll's deadline, and records what it got. A device
// that fails is a result (the record's error), not a failure of the poll.
package poll

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/agent"
	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/snmp"
	"github.com/flock-snmp/flock/internal/task"
)

// Poller polls tasks with the credential profiles of its own configuration.
// It is safe for concurrent use. Its polls run on one snmp.Engine: state
// machines on a few shared sockets, not a goroutine each.
type Poller struct {
	name     string
	creds    map[string]*config.Credential
	resolver *net.Resolver
	engines  *snmp.EngineCache
	memory   Memory
	counters *snmp.Counters
	source   netip.Addr
	maxPPS   float64

	once   sync.Once
	engine *snmp.Engine
	learns sync.WaitGroup // device memory being written
}

// WithSource makes the poller send its requests from addr (to agents of
// its address family): for agents that answer only certain addresses.
func (p *Poller) WithSource(addr netip.Addr) *Poller {
	p.source = addr
	return p
}

// WithCounters makes the poller count packets, retries and stray answers into c.
func (p *Poller) WithCounters(c *snmp.Counters) *Poller {
	p.counters = c
	return p
}

// WithPacketRate bounds the SNMP requests the poller sends per second,
// retries included (0: unbounded).
func (p *Poller) WithPacketRate(perSecond float64) *Poller {
	p.maxPPS = perSecond
	return p
}

// Memory keeps what devices taught pollers (see task.Quirks), shared by all
// of them, keyed by "<site>.<hostkey>".
type Memory interface {
	Quirks(key string) (task.Quirks, bool)
	Learn(ctx context.Context, key string, q task.Quirks) error
}

// WithMemory makes the poller apply and record device quirks.
func (p *Poller) WithMemory(m Memory) *Poller {
	p.memory = m
	return p
}

// New returns a Poller named name (written into its records). A nil resolver
// means net.DefaultResolver.
func New(name string, creds []config.Credential, resolver *net.Resolver) *Poller {
	m := make(map[string]*config.Credential, len(creds))
	for i := range creds {
		m[creds[i].Name] = &creds[i]
	}
	return &Poller{name: name, creds: m, resolver: resolver, engines: snmp.NewEngineCache(200_000)}
}

func (p *Poller) eng() *snmp.Engine {
	p.once.Do(func() {
		p.engine = snmp.NewEngine(snmp.EngineOptions{Source: p.source, Counters: p.counters, Engines: p.engines,
			MaxPacketsPerSecond: p.maxPPS})
	})
	return p.engine
}

// Close closes the poller's sockets. Polls must have ended.
func (p *Poller) Close() {
	p.once.Do(func() {})
	if p.engine != nil {
		_ = p.engine.Close()
	}
	p.learns.Wait()
}

// Engines is the poller's cache of SNMPv3 engines.
func (p *Poller) Engines() *snmp.EngineCache { return p.engines }

// Poll polls t and fills rec, reusing rec's varbind slice. It returns an error
// only when ctx was cancelled (the poller is shutting down), so the caller
// can hand the task back; device failures are in rec.Error.
func (p *Poller) Poll(ctx context.Context, t *task.PollTask, attempt int, rec *task.HostRecord) error {
	done := make(chan error, 1)
	p.Start(ctx, t, attempt, rec, func(err error) { done <- err })
	return <-done
}

// Start is Poll without the wait: it returns at once and calls done when
// rec is complete, with Poll's error. done runs on the engine's goroutines
// and must not block.
func (p *Poller) Start(ctx context.Context, t *task.PollTask, attempt int, rec *task.HostRecord, done func(error)) {
	start := time.Now()
	vbs := rec.Varbinds[:0]
	*rec = task.NewRecord(t, p.name, attempt, start)
	rec.Varbinds = vbs
	r := &run{p: p, ctx: ctx, t: t, rec: rec, start: start, done: done}
	cred, ok := p.creds[t.Credentials]
	if !ok {
		rec.Error = &task.Error{Kind: task.KindBadTask,
			Message: fmt.Sprintf("host %s: credential profile %q is not defined on poller %s", t.Host, t.Credentials, p.name)}
		r.end(nil)
		return
	}
	if ip, err := netip.ParseAddr(t.Address); err == nil {
		r.startJob(ip.Unmap(), cred) // ::ffff:a.b.c.d is an IPv4 agent: answered from a.b.c.d
		return
	}
	go func() { // a name to look up: the one step that may block
		ctx, cancel := context.WithDeadline(ctx, t.PollDeadline(start))
		defer cancel()
		ip, err := snmp.Resolve(ctx, p.resolver, ipNetworks[agent.Family(t.Transport)], t.Address)
		if err != nil {
			r.end(err)
			return
		}
		r.startJob(ip, cred)
	}()
}

// ipNetworks are the networks a name resolves in, by agent.Family: a
// udp6 or tcp6 agent's name to an IPv6 address only.
var ipNetworks = map[int]string{0: "ip", 4: "ip4", 6: "ip6"}

// reprobeAfter is how long a learnt request size holds before a poll tries
// the configured size again: agents get upgraded, or their silence was a
// passing loss.
const reprobeAfter = 6 * time.Hour

// run is one poll on its way through the engine: it fills the record.
type run struct {
	p      *Poller
	ctx    context.Context
	t      *task.PollTask
	rec    *task.HostRecord
	start  time.Time
	done   func(error)
	memKey string
	known  task.Quirks
	first  error
	job    snmp.Job
}

func (r *run) startJob(ip netip.Addr, cred *config.Credential) {
	t, p := r.t, r.p
	opts := snmp.Options{
		Timeout: t.Timeout(), Retries: t.Retries, MaxOids: t.MaxOids, MaxRepetitions: t.MaxRepetitions,
		NoBulk: t.NoBulk, AllowNonIncreasing: t.AllowNonIncreasingOIDs, UnconnectedUDP: t.UnconnectedUDP,
		MaxOutstanding: t.MaxOutstanding, TCP: agent.IsTCP(t.Transport),
	}
	if p.memory != nil {
		r.memKey = task.HostStateKey(t.Site, t.HostKey)
		r.known, _ = p.memory.Quirks(r.memKey)
		opts.NoBulk = opts.NoBulk || r.known.NoBulk
		if r.known.MaxRepetitions > 0 {
			opts.MaxRepetitions = min(opts.MaxRepetitions, r.known.MaxRepetitions)
		}
		if r.known.MaxVarbinds > 0 && time.Since(r.known.LearnedAt) < reprobeAfter {
			opts.MaxVarbindsPerRequest = r.known.MaxVarbinds
		}
	}
	r.job = snmp.Job{Name: t.Host, Addr: netip.AddrPortFrom(ip, t.Port), Cred: cred, Opts: opts,
		Deadline: t.PollDeadline(r.start), Get: t.Get, Walk: t.Walk, Tables: t.Tables}
	p.eng().Start(r.ctx, &r.job, r)
}

// Varbind implements snmp.Sink.
func (r *run) Varbind(vb *task.Varbind) { r.rec.Varbinds = append(r.rec.Varbinds, *vb) }

// PartFailed implements snmp.Sink. Each part (the GETs, each walk, each
// table) runs even when an earlier one failed with a protocol error, so
// one bad table does not empty the record; each failure is listed. A
// timeout or unreachable host ends the poll: the other parts would only
// wait too.
func (r *run) PartFailed(part string, err error) (stop bool) {
	if r.first == nil {
		r.first = err
	}
	r.rec.Errors = append(r.rec.Errors, task.PartError{Part: part, Kind: Kind(err), Message: err.Error()})
	return errors.Is(err, snmp.ErrTimeout) || errors.Is(err, snmp.ErrUnreachable)
}

// Done implements snmp.Sink.
func (r *run) Done(learned task.Quirks, err error) {
	if err == nil || !errors.Is(err, context.Canceled) {
		err = cmp.Or(r.first, err)
	}
	r.p.remember(r.memKey, r.known, learned)
	r.end(err)
}

// end completes the record with err, the poll's first failure.
func (r *run) end(err error) {
	rec, t := r.rec, r.t
	rec.DurationMS = float64(time.Since(r.start).Microseconds()) / 1000
	if err != nil && errors.Is(err, context.Canceled) {
		r.done(err)
		return
	}
	if err != nil && rec.Error == nil {
		rec.Error = &task.Error{Kind: Kind(err), Message: err.Error()}
		if rec.Error.Kind == task.KindTimeout && !t.PollDeadline(r.start).Before(t.Deadline) {
			// The slot ended, not the device's patience: say so, or the device gets the blame.
			rec.Error.Message += fmt.Sprintf(" (the poll started %s after its slot and reached the slot's end: "+
				"pollers may be too few or too busy)", r.start.Sub(t.ScheduledAt).Round(time.Millisecond))
		}
	}
	r.done(nil)
}

// remember stores what this poll taught about the device, when it is news,
// in the background: the device memory is a network store, and the engine's
// goroutines must not wait for it.
func (p *Poller) remember(key string, known, learned task.Quirks) {
	if p.memory == nil || key == "" {
		return
	}
	news := known
	if learned.NoBulk && !known.NoBulk {
		news.NoBulk = true
	}
	if learned.MaxRepetitions > 0 && (known.MaxRepetitions == 0 || learned.MaxRepetitions < known.MaxRepetitions) {
		news.MaxRepetitions = learned.MaxRepetitions
	}
	refresh := false
	switch {
	case learned.MaxVarbinds > 0 && (known.MaxVarbinds == 0 || learned.MaxVarbinds < known.MaxVarbinds):
		news.MaxVarbinds = learned.MaxVarbinds
	case known.MaxVarbinds > 0 && time.Since(known.LearnedAt) >= reprobeAfter:
		// This poll tried the configured size again: what it learnt holds
		// for another six hours, or nothing (0) when that size worked.
		news.MaxVarbinds, refresh = learned.MaxVarbinds, true
	}
	if news == known && !refresh {
		return
	}
	news.Poller, news.LearnedAt = p.name, time.Now()
	p.learns.Add(1)
	go func() {
		defer p.learns.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.memory.Learn(ctx, key, news) // a failure only means the next poll learns it again
	}()
}

// Kind maps an error from a poll to a HostRecord error kind.
func Kind(err error) string {
	switch {
	case errors.Is(err, snmp.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return task.KindTimeout
	case errors.Is(err, snmp.ErrUnreachable):
		return task.KindUnreachable
	case errors.Is(err, snmp.ErrResolve):
		return task.KindResolve
	case errors.Is(err, snmp.ErrAuth):
		return task.KindAuth
	case errors.Is(err, snmp.ErrProtocol):
		return task.KindProtocol
	case errors.Is(err, task.ErrBadTask):
		return task.KindBadTask
	}
	return task.KindInternal
}
