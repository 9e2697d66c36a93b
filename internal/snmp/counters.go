package snmp

import (
	"sync/atomic"

	"github.com/gosnmp/gosnmp"
)

// Counters count the packets sessions send and their retries, for metrics.
// One atomic add per packet; safe for concurrent use.
type Counters struct {
	sent, retries   atomic.Uint64
	stray           atomic.Uint64
	onSent, onRetry func(*gosnmp.GoSNMP) // made once, not per session
}

// NewCounters returns zeroed counters.
func NewCounters() *Counters {
	c := &Counters{}
	c.onSent = func(*gosnmp.GoSNMP) { c.sent.Add(1) }
	c.onRetry = func(*gosnmp.GoSNMP) { c.retries.Add(1) }
	return c
}

// Sent is the number of SNMP requests sent, retries included.
func (c *Counters) Sent() uint64 { return c.sent.Load() }

// Retries is the number of requests sent again after a timeout.
func (c *Counters) Retries() uint64 { return c.retries.Load() }

// Stray is the number of datagrams that answered no request in flight:
// late or duplicate answers, answers from another address than the agent
// asked, garbage.
func (c *Counters) Stray() uint64 { return c.stray.Load() }

func (c *Counters) sentOne() {
	if c != nil {
		c.sent.Add(1)
	}
}

func (c *Counters) retryOne() {
	if c != nil {
		c.retries.Add(1)
	}
}

func (c *Counters) strayOne() {
	if c != nil {
		c.stray.Add(1)
	}
}

// attach makes g count into c (or into nothing when c is nil).
func (c *Counters) attach(g *gosnmp.GoSNMP) {
	if c == nil {
		g.OnSent, g.OnRetry = nil, nil
		return
	}
	g.OnSent, g.OnRetry = c.onSent, c.onRetry
}
