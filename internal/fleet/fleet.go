// Package fleet tells which pollers are alive at each site, from their
// heartbeats.
//
// A poller is alive from a heartbeat until three of its heartbeat periods
// pass without another, or until it says it is stopping. A site of the
// inventory with no live poller is an outage: its tasks wait in the queue
// and its hosts go unpolled, so it is reported once when it begins and once
// when it ends.
package fleet

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// DefaultHeartbeat is the period assumed of a heartbeat that does not say
// its own.
const DefaultHeartbeat = 10 * time.Second

// Missed is how many heartbeat periods may pass before a poller counts as gone.
const Missed = 3

// Poller is a poller's last heartbeat and when it was received.
type Poller struct {
	task.Heartbeat
	Seen time.Time
}

// Alive reports whether the poller counts as alive at now.
func (p *Poller) Alive(now time.Time) bool {
	if p.Stopping {
		return false
	}
	every := time.Duration(p.EveryMS) * time.Millisecond
	if every <= 0 {
		every = DefaultHeartbeat
	}
	return now.Sub(p.Seen) < Missed*every
}

// Fleet is the pollers known from their heartbeats. Safe for concurrent use.
type Fleet struct {
	log *slog.Logger

	mu      sync.Mutex
	pollers map[string]*Poller // by site and id
	outage  map[string]bool    // sites reported without a live poller
}

// New returns an empty fleet; log receives the outage reports.
func New(log *slog.Logger) *Fleet {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{log: log, pollers: map[string]*Poller{}, outage: map[string]bool{}}
}

// Observe records a heartbeat received (stored by the server) at seen.
func (f *Fleet) Observe(hb task.Heartbeat, seen time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := hb.Site + "/" + hb.ID // two sites may name pollers alike
	if p, ok := f.pollers[key]; ok && p.Seen.After(seen) {
		return // an older one, replayed
	}
	f.pollers[key] = &Poller{Heartbeat: hb, Seen: seen}
}

// Live returns the live pollers of each site at now, by name within a site.
func (f *Fleet) Live(now time.Time) map[string][]Poller {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]Poller{}
	for id, p := range f.pollers {
		if !p.Alive(now) {
			if now.Sub(p.Seen) > time.Hour {
				delete(f.pollers, id) // long gone: forget it
			}
			continue
		}
		out[p.Site] = append(out[p.Site], *p)
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b Poller) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}

// Watch checks sites (Check) every period until ctx ends, while leading
// says so, beginning after Missed periods so that pollers starting with
// the caller get their chance to be heard.
func (f *Fleet) Watch(ctx context.Context, every time.Duration, sites func() []string, leading func() bool) {
	wait := time.NewTimer(Missed * every)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
			if leading() {
				f.Check(sites(), time.Now())
			}
			wait.Reset(every)
		}
	}
}

// Check reports, once per outage, each of sites that has no live poller at
// now ("site has no live poller"), and each whose outage ended. It returns
// the live pollers by site.
func (f *Fleet) Check(sites []string, now time.Time) map[string][]Poller {
	live := f.Live(now)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, site := range sites {
		n := len(live[site])
		switch {
		case n == 0 && !f.outage[site]:
			f.outage[site] = true
			f.log.Warn("site has no live poller: its tasks wait in the queue and its hosts go unpolled",
				"site", site, "consumer", task.PollerConsumer(site), "missed_heartbeats", Missed)
		case n > 0 && f.outage[site]:
			delete(f.outage, site)
			f.log.Info("site has live pollers again", "site", site, "pollers", n)
		}
	}
	return live
}
