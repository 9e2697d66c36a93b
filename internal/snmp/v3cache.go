package snmp

import (
	"net/netip"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"
)

// EngineCache remembers, per agent address, the SNMPv3 engine id, boots and
// time learnt by the last session. A new session starts from it, with the
// engine time advanced by the seconds elapsed since, so it pays neither an
// engine-id discovery nor a notInTimeWindow round trip. If the agent
// rebooted or was replaced, its report makes gosnmp resynchronise once.
// It is safe for concurrent use; a nil *EngineCache caches nothing.
type EngineCache struct {
	mu  sync.Mutex
	max int
	m   map[netip.AddrPort]engine
}

type engine struct {
	id    string
	boots uint32
	time  uint32
	at    time.Time
}

// NewEngineCache holds at most max agents (one entry is about 100 bytes).
func NewEngineCache(max int) *EngineCache {
	return &EngineCache{max: max, m: make(map[netip.AddrPort]engine)}
}

// Len is the number of agents remembered.
func (c *EngineCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *EngineCache) seed(addr netip.AddrPort, sp *gosnmp.UsmSecurityParameters, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	e, ok := c.m[addr]
	c.mu.Unlock()
	if !ok {
		return
	}
	sp.AuthoritativeEngineID = e.id
	sp.AuthoritativeEngineBoots = e.boots
	sp.AuthoritativeEngineTime = e.time + uint32(now.Sub(e.at)/time.Second)
}

func (c *EngineCache) store(addr netip.AddrPort, sp *gosnmp.UsmSecurityParameters, now time.Time) {
	if c == nil || sp.AuthoritativeEngineID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[addr]; !ok && len(c.m) >= c.max {
		for k := range c.m { // evict an arbitrary agent: it only costs a rediscovery
			delete(c.m, k)
			break
		}
	}
	c.m[addr] = engine{id: sp.AuthoritativeEngineID, boots: sp.AuthoritativeEngineBoots, time: sp.AuthoritativeEngineTime, at: now}
}
