// Package poll turns one PollTask into one HostRecord: it resolves the host,
// opens an SNMP session with the named credential profile, runs the task's
// GETs and walks under the poll's deadline, and records what it got. A device
// that fails is a result (the record's error), not a failure of the poll.
package poll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/snmp"
	"github.com/flock-snmp/flock/internal/task"
)

// Poller polls tasks with the credential profiles of its own configuration.
// It is safe for concurrent use: every Poll opens its own session.
type Poller struct {
	name     string
	creds    map[string]*config.Credential
	resolver *net.Resolver
	engines  *snmp.EngineCache
	sessions snmp.Pool
	memory   Memory
	counters *snmp.Counters
	source   netip.Addr
}

// WithSource makes the poller send its requests from addr (to agents of
// its address family): for agents that answer only certain addresses.
func (p *Poller) WithSource(addr netip.Addr) *Poller {
	p.source = addr
	return p
}

// WithCounters makes the poller's sessions count packets and retries into c.
func (p *Poller) WithCounters(c *snmp.Counters) *Poller {
	p.counters = c
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

// Close closes the sockets the poller keeps for reuse. Polls must have ended.
func (p *Poller) Close() { p.sessions.Close() }

// Engines is the poller's cache of SNMPv3 engines.
func (p *Poller) Engines() *snmp.EngineCache { return p.engines }

// Poll polls t and fills rec, reusing rec's varbind slice. It returns an error
// only when ctx was cancelled (the poller is shutting down), so the caller
// can hand the task back; device failures are in rec.Error.
func (p *Poller) Poll(ctx context.Context, t *task.PollTask, attempt int, rec *task.HostRecord) error {
	start := time.Now()
	vbs := rec.Varbinds[:0]
	*rec = task.NewRecord(t, p.name, attempt, start)
	rec.Varbinds = vbs
	err := p.poll(ctx, t, start, rec)
	rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil && errors.Is(err, context.Canceled) {
		return err
	}
	if err != nil && rec.Error == nil {
		rec.Error = &task.Error{Kind: Kind(err), Message: err.Error()}
		if rec.Error.Kind == task.KindTimeout && !t.PollDeadline(start).Before(t.Deadline) {
			// The slot ended, not the device's patience: say so, or the device gets the blame.
			rec.Error.Message += fmt.Sprintf(" (the poll started %s after its slot and reached the slot's end: "+
				"pollers may be too few or too busy)", start.Sub(t.ScheduledAt).Round(time.Millisecond))
		}
	}
	return nil
}

func (p *Poller) poll(ctx context.Context, t *task.PollTask, start time.Time, rec *task.HostRecord) error {
	cred, ok := p.creds[t.Credentials]
	if !ok {
		rec.Error = &task.Error{Kind: task.KindBadTask,
			Message: fmt.Sprintf("host %s: credential profile %q is not defined on poller %s", t.Host, t.Credentials, p.name)}
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, t.PollDeadline(start))
	defer cancel()
	ip, err := snmp.Resolve(ctx, p.resolver, t.Address)
	if err != nil {
		return err
	}
	opts := snmp.Options{
		Timeout: t.Timeout(), Retries: t.Retries, MaxOids: t.MaxOids, MaxRepetitions: t.MaxRepetitions,
		NoBulk: t.NoBulk, AllowNonIncreasing: t.AllowNonIncreasingOIDs, UnconnectedUDP: t.UnconnectedUDP,
		Engines: p.engines, Counters: p.counters, Source: p.source,
	}
	memKey := task.HostStateKey(t.Site, t.HostKey)
	var known task.Quirks
	if p.memory != nil {
		known, _ = p.memory.Quirks(memKey)
		opts.NoBulk = opts.NoBulk || known.NoBulk
		if known.MaxRepetitions > 0 {
			opts.MaxRepetitions = min(opts.MaxRepetitions, known.MaxRepetitions)
		}
	}
	sess, err := p.sessions.Dial(t.Host, netip.AddrPortFrom(ip, t.Port), cred, opts)
	if err != nil {
		return err
	}
	defer sess.Close()
	defer func() { p.remember(ctx, memKey, known, sess.Learned()) }() // Learned after the poll, not now
	add := func(vb *task.Varbind) { rec.Varbinds = append(rec.Varbinds, *vb) }

	// Each part (the GETs, each walk, each table) runs even when an earlier
	// one failed with a protocol error, so one bad table does not empty the
	// record; each failure is listed. A timeout or unreachable host ends the
	// poll: the other parts would only wait too.
	var first error
	failed := func(part string, err error) (stop bool) {
		if errors.Is(err, context.Canceled) {
			first = err
			return true
		}
		if first == nil {
			first = err
		}
		rec.Errors = append(rec.Errors, task.PartError{Part: part, Kind: Kind(err), Message: err.Error()})
		return errors.Is(err, snmp.ErrTimeout) || errors.Is(err, snmp.ErrUnreachable)
	}
	if len(t.Get) > 0 {
		if err := sess.Get(ctx, t.Get, add); err != nil && failed("get", err) {
			return first
		}
	}
	for _, root := range t.Walk {
		if err := sess.Walk(ctx, root, add); err != nil && failed("walk "+root, err) {
			return first
		}
	}
	for _, tb := range t.Tables {
		if err := sess.WalkTable(ctx, tb.Root, tb.Columns, add); err != nil && failed("table "+tb.Root, err) {
			return first
		}
	}
	return first
}

// remember stores what this poll taught about the device, when it is news.
func (p *Poller) remember(ctx context.Context, key string, known, learned task.Quirks) {
	if p.memory == nil {
		return
	}
	news := known
	if learned.NoBulk && !known.NoBulk {
		news.NoBulk = true
	}
	if learned.MaxRepetitions > 0 && (known.MaxRepetitions == 0 || learned.MaxRepetitions < known.MaxRepetitions) {
		news.MaxRepetitions = learned.MaxRepetitions
	}
	if news == known {
		return
	}
	news.Poller, news.LearnedAt = p.name, time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = p.memory.Learn(ctx, key, news) // a failure only means the next poll learns it again
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
