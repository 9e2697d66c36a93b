// Package lease decides which of several dispatchers leads.
//
// The leader holds one key in a key-value store whose entries expire on the
// server after the lease's TTL unless they are written again. A candidate
// creates the key (which succeeds only when nobody holds it), trying every
// sixth of the TTL; the leader renews it as often, with a compare-and-set
// on the revision it last wrote, and steps down at the first renewal that
// fails or as soon as it finds itself cut off from the store. It counts its
// lease as lost, locally, five sixths of a TTL after the last renewal it
// sent that succeeded: before the server can expire the key and let another
// take it. A standby thus takes over within the TTL plus a sixth of it of
// the leader's last renewal. A leader that stops cleanly deletes the key,
// and the standbys, which watch it, take over at once.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTaken is returned by a Store when the key is held by someone else (a
// create of a key that exists, a compare-and-set on a stale revision).
var ErrTaken = errors.New("held by another")

// Store is a key-value store whose entries expire TTL after their last
// write. The dispatcher's is a JetStream KV bucket.
type Store interface {
	// Create writes value under key if the key holds nothing.
	Create(ctx context.Context, key string, value []byte) (rev uint64, err error)
	// Update writes value under key if its revision is still rev.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete removes key if its revision is still rev.
	Delete(ctx context.Context, key string, rev uint64) error
	// Put writes value under key whatever it holds.
	Put(ctx context.Context, key string, value []byte) error
	// Remove removes key whatever it holds.
	Remove(ctx context.Context, key string) error
	// Get returns key's value and revision, or nil when it holds none.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// All returns every key's value.
	All(ctx context.Context) (map[string][]byte, error)
	// WatchRemoved calls fn each time key is deleted, until stop is called.
	WatchRemoved(ctx context.Context, key string, fn func()) (stop func(), err error)
}

// Key names in the store.
const (
	leaderKey    = "leader"
	memberPrefix = "member."
)

// Member is what each dispatcher says of itself in the store.
type Member struct {
	ID string `json:"id"`
	// Instance is random per process: two dispatchers given the same name
	// are still told apart.
	Instance string    `json:"instance"`
	Leading  bool      `json:"leading"`
	Since    time.Time `json:"since"` // when it took its current role
	Time     time.Time `json:"time"`
}

// Options configure an Elector.
type Options struct {
	// ID names this dispatcher; Key is its store key (a safe token).
	ID, Key string
	TTL     time.Duration
	Store   Store
	Log     *slog.Logger
	// Connected reports whether the store can be reached right now; a
	// leader that cannot reach it counts as not leading at once.
	Connected func() bool
	// Fence, if set, is called when this dispatcher stops leading, after
	// Leading turned false and before the step-down is logged: it returns
	// once nothing only a leader may do is under way.
	Fence func()
}

// Elector takes part in the election for one dispatcher.
type Elector struct {
	o       Options
	leading atomic.Bool
	until   atomic.Int64 // Unix nanoseconds: the lease counts as held until then

	mu       sync.Mutex
	leader   string // who leads, as last seen
	since    time.Time
	rev      uint64
	takeover chan struct{}
	instance string
	backoff  time.Time // no attempt to lead before (Run's goroutine only)
	failing  string    // the last reason the lease could not be read or taken, logged once
}

// New returns an Elector; Run takes part.
func New(o Options) *Elector {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Connected == nil {
		o.Connected = func() bool { return true }
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return &Elector{o: o, takeover: make(chan struct{}, 1), since: time.Now(), instance: hex.EncodeToString(nonce[:])}
}

// Leading reports whether this dispatcher holds the lease now: it has not
// lost it, its last renewal is recent enough, and the store is reachable.
// Everything only a leader may do checks it first.
func (e *Elector) Leading() bool {
	return e.leading.Load() && time.Now().UnixNano() < e.until.Load() && e.o.Connected()
}

// Leader is the id of the leader as this dispatcher last saw it; "" when none.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Run takes part in the election until ctx ends. While this dispatcher
// leads, lead runs with a context that ends when the lease is lost; an
// error from lead ends Run (after the lease is released). While it stands
// by, standby (if not nil) runs with a context that ends when it is about
// to lead. At the end, a leader waits for lead to return and then releases
// the lease at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error, standby func(ctx context.Context)) error {
	every := e.o.TTL / 6
	stopWatch, err := e.o.Store.WatchRemoved(ctx, leaderKey, func() {
		select {
		case e.takeover <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("watch the dispatcher lease: %w", err)
	}
	defer stopWatch()
	var (
		leadCancel context.CancelFunc
		leadDone   chan error
		sbCancel   context.CancelFunc
		sbDone     chan struct{}
	)
	startStandby := func() {
		if standby == nil || sbCancel != nil {
			return
		}
		sbCtx, cancel := context.WithCancel(ctx)
		sbCancel, sbDone = cancel, make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			standby(sbCtx)
		}(sbDone)
	}
	stopStandby := func() {
		if sbCancel != nil {
			sbCancel()
			<-sbDone
			sbCancel, sbDone = nil, nil
		}
	}
	defer stopStandby()
	stepDown := func(why string, args ...any) {
		e.leading.Store(false) // nothing more is published or written from here
		if e.o.Fence != nil {
			e.o.Fence()
		}
		e.mu.Lock()
		e.since = time.Now()
		e.mu.Unlock()
		e.o.Log.Warn("stepped down: no longer the leading dispatcher; standing by", append([]any{"reason", why}, args...)...)
		if leadCancel != nil {
			leadCancel()
			<-leadDone
			leadCancel, leadDone = nil, nil
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	paused, renewFailed := false, false
	for {
		if e.leading.Load() {
			switch {
			case !e.o.Connected() && time.Now().UnixNano() >= e.until.Load():
				stepDown("cut off from NATS for longer than the lease")
			case !e.o.Connected():
				// Leading() says no while the link is down: nothing is
				// published or written. Back within the lease, the next
				// renewal resumes the term as it was.
				if !paused {
					paused = true
					e.o.Log.Warn("lost the connection to NATS: publishing and writing paused; leading again if it returns within the lease")
				}
			default:
				paused = false
				err := e.renew(ctx, every)
				switch {
				case err == nil || ctx.Err() != nil:
					renewFailed = false
				case errors.Is(err, ErrTaken):
					stepDown("the lease changed hands", "err", err)
				case time.Now().UnixNano() >= e.until.Load():
					stepDown("lease not renewed", "err", err)
				case !renewFailed:
					// The store did not answer (its stream changing leader
					// on a cluster, say): nobody else can take the lease
					// before it runs out, so this dispatcher leads on until
					// then, trying again each round.
					renewFailed = true
					e.o.Log.Warn("lease renewal failed: leading on until the lease runs out, renewing meanwhile",
						"err", err, "left", time.Until(time.Unix(0, e.until.Load())).Round(time.Millisecond))
				}
			}
		} else if ctx.Err() == nil && e.o.Connected() && time.Now().After(e.backoff) {
			e.tryLead(ctx, every)
			if e.leading.Load() {
				stopStandby()
				leadCtx, cancel := context.WithCancel(ctx)
				leadCancel, leadDone = cancel, make(chan error, 1)
				go func(done chan error) { done <- lead(leadCtx) }(leadDone)
			}
		}
		if !e.leading.Load() {
			startStandby()
		}
		e.putMember(ctx, every)
		select {
		case <-ctx.Done():
			if leadDone != nil {
				<-leadDone // its work ends (records acknowledged) before the lease goes
			}
			e.release()
			return nil
		case err := <-leadDone:
			// lead ended while this dispatcher leads: something it needs
			// failed (at a takeover, say). Hand the lease over and stand by;
			// this dispatcher stands again after one TTL.
			leadCancel()
			leadCancel, leadDone = nil, nil
			if err == nil {
				err = errors.New("leading ended unexpectedly")
			}
			e.o.Log.Error("leading failed: handing the lease over; standing again after one lease TTL", "err", err, "ttl", e.o.TTL)
			e.release()
			e.mu.Lock()
			e.since = time.Now()
			e.mu.Unlock()
			e.backoff = time.Now().Add(e.o.TTL)
		case <-t.C:
		case <-e.takeover:
		}
	}
}

// release ends this dispatcher's term or part: a leader stops leading and
// deletes the lease, so a standby takes over at once; its member entry goes
// too (written again at its next round if it goes on).
func (e *Elector) release() {
	bg, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.o.Store.Remove(bg, memberPrefix+e.o.Key)
	if !e.leading.Swap(false) {
		return
	}
	e.mu.Lock()
	rev := e.rev
	e.mu.Unlock()
	if err := e.o.Store.Delete(bg, leaderKey, rev); err != nil {
		e.o.Log.Warn("could not hand the lease over; a standby takes over when it expires", "ttl", e.o.TTL, "err", err)
		return
	}
	e.o.Log.Info("lease handed over: stopped leading")
}

func (e *Elector) value() []byte {
	b, _ := json.Marshal(Member{ID: e.o.ID, Instance: e.instance, Leading: true, Since: e.since, Time: time.Now().UTC()})
	return b
}

func (e *Elector) tryLead(ctx context.Context, every time.Duration) {
	opCtx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	start := time.Now()
	rev, err := e.o.Store.Create(opCtx, leaderKey, e.value())
	if err == nil {
		e.until.Store(start.Add(e.o.TTL * 5 / 6).UnixNano())
		e.leading.Store(true)
		e.mu.Lock()
		prev := e.leader
		e.rev, e.leader, e.since = rev, e.o.ID, time.Now()
		e.mu.Unlock()
		e.o.Log.Warn("took over: this dispatcher leads now", "id", e.o.ID, "previous_leader", prev, "lease_ttl", e.o.TTL)
		return
	}
	if !errors.Is(err, ErrTaken) {
		if why := err.Error(); why != e.failing { // once per cause, not every round
			e.failing = why
			e.o.Log.Warn("cannot stand for leading: the lease cannot be taken", "key", leaderKey, "err", err)
		}
		return
	}
	e.failing = ""
	data, rev, err := e.o.Store.Get(opCtx, leaderKey)
	if err != nil || data == nil {
		return
	}
	var m Member
	if json.Unmarshal(data, &m) != nil {
		return
	}
	if m.Instance == e.instance {
		// Still this dispatcher's own lease (it stepped down, cut off, and
		// nobody took it meanwhile): take it back at once rather than wait
		// for it to expire.
		if rev, err := e.o.Store.Update(opCtx, leaderKey, e.value(), rev); err == nil {
			e.until.Store(start.Add(e.o.TTL * 5 / 6).UnixNano())
			e.leading.Store(true)
			e.mu.Lock()
			e.rev, e.since = rev, time.Now()
			e.mu.Unlock()
			e.o.Log.Warn("took over: this dispatcher leads again (its own lease had not expired)", "id", e.o.ID, "lease_ttl", e.o.TTL)
		}
		return
	}
	e.mu.Lock()
	if e.leader != m.ID {
		e.o.Log.Info("standing by", "leader", m.ID)
	}
	e.leader = m.ID
	e.mu.Unlock()
}

func (e *Elector) renew(ctx context.Context, every time.Duration) error {
	opCtx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	e.mu.Lock()
	rev := e.rev
	e.mu.Unlock()
	start := time.Now()
	newRev, err := e.o.Store.Update(opCtx, leaderKey, e.value(), rev)
	if errors.Is(err, ErrTaken) {
		// An earlier renewal that timed out may have been stored after all,
		// moving the revision on: if the lease still holds this
		// dispatcher's instance, it is still its own; renew on its revision.
		data, cur, gerr := e.o.Store.Get(opCtx, leaderKey)
		var m Member
		if gerr == nil && data != nil && json.Unmarshal(data, &m) == nil && m.Instance == e.instance && cur != rev {
			newRev, err = e.o.Store.Update(opCtx, leaderKey, e.value(), cur)
		}
	}
	if err != nil {
		return err
	}
	e.until.Store(start.Add(e.o.TTL * 5 / 6).UnixNano())
	e.mu.Lock()
	e.rev = newRev
	e.mu.Unlock()
	return nil
}

func (e *Elector) putMember(ctx context.Context, every time.Duration) {
	opCtx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	e.mu.Lock()
	m := Member{ID: e.o.ID, Instance: e.instance, Leading: e.leading.Load(), Since: e.since, Time: time.Now().UTC()}
	e.mu.Unlock()
	b, _ := json.Marshal(m)
	if err := e.o.Store.Put(opCtx, memberPrefix+e.o.Key, b); err != nil && ctx.Err() == nil {
		e.o.Log.Debug("member entry not written", "err", err)
	}
}

// Members lists the dispatchers whose member entries are live (written
// within the TTL), the leader first, then by id.
func Members(ctx context.Context, s Store) ([]Member, error) {
	all, err := s.All(ctx)
	if err != nil {
		return nil, err
	}
	var out []Member
	for k, v := range all {
		if len(k) <= len(memberPrefix) || k[:len(memberPrefix)] != memberPrefix {
			continue
		}
		var m Member
		if json.Unmarshal(v, &m) == nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Leading != out[j].Leading {
			return out[i].Leading
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
