// Package snmpsim is Flock's own SNMP agent: a fleet of simulated devices,
// each a real UDP socket answering SNMPv1 and v2c GET, GETNEXT and GETBULK
// from an OID table, built on gosnmp's packet codec. Tests, the demo and the
// benchmarks poll it instead of real devices.
package snmpsim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/oid"
)

// Config describes a simulated fleet.
type Config struct {
	Devices    int    // how many devices
	Interfaces int    // rows in each device's ifTable and ifXTable
	Community  string // the read community every device accepts; default "public"
	// ListenIP is the address to bind; default 127.0.0.1. Anything but a
	// loopback address needs AllowNonLoopback (for the simulator's own
	// container in docker compose).
	ListenIP         string
	AllowNonLoopback bool
	BasePort         int    // device i listens on BasePort+i; 0 gives every device a random port
	NamePrefix       string // device names are <prefix>-00001 …; default "sim"
	// MaxResponseBytes bounds an answer, as an agent's message size does: a
	// GET or GETNEXT that would exceed it is answered tooBig, a GETBULK is
	// truncated. Default 65000.
	MaxResponseBytes int
	// Delay is added to every answer, as a round trip to a distant device
	// would, give or take up to Jitter.
	Delay, Jitter time.Duration
	// Mixed fleets: every DeadEvery-th device never answers, every
	// SlowEvery-th answers after SlowDelay, every BrokenEvery-th answers
	// walks with genErr (0: none).
	DeadEvery, SlowEvery, BrokenEvery int
	SlowDelay                         time.Duration
	// SilentAbove, when positive, makes every device ignore requests that ask
	// for more than this many varbinds, as some real agents do with large
	// requests (no answer, not even tooBig): a GET or GETNEXT with more
	// varbinds, a GETBULK whose answer would hold more (non-repeaters plus
	// repeaters times max-repetitions). Counted: Silenced.
	SilentAbove int
	// AllowFrom, when not empty, are the only addresses the devices answer,
	// as an agent with an access list does; requests from any other are
	// dropped without an answer (and counted: Refused).
	AllowFrom []netip.Addr
}

func (c *Config) setDefaults() {
	if c.Community == "" {
		c.Community = "public"
	}
	if c.ListenIP == "" {
		c.ListenIP = "127.0.0.1"
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "sim"
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 65000
	}
}

// Fault is a way a device misbehaves, for testing how Flock copes.
type Fault int32

// Faults.
const (
	FaultNone Fault = iota
	// FaultGenErr answers every GETNEXT and GETBULK with genErr.
	FaultGenErr
	// FaultNonIncreasing answers GETNEXT and GETBULK with the requested OID
	// itself, as a broken agent that would make a naive walk loop forever.
	FaultNonIncreasing
	// FaultNoBulk drops GETBULK requests, as agents that do not implement it do.
	FaultNoBulk
	// FaultSwappedRows walks each pair of neighbouring objects in reverse
	// order (…, 3, 2, 5, 4, …): OIDs go backwards, yet a walk that allows
	// that still sees every object once.
	FaultSwappedRows
	// FaultOtherPort answers from another UDP port than the one asked, as
	// multi-homed agents answer from another address.
	FaultOtherPort
	// FaultWrongRequestID answers with another request id than the one asked.
	FaultWrongRequestID
	// FaultTruncated sends only the first half of each answer: malformed BER.
	FaultTruncated
	// FaultGarbage answers with bytes that are not SNMP at all.
	FaultGarbage
	// FaultEndless walks forever: every GETNEXT/GETBULK answer is an OID
	// just below the one asked, so a walk never leaves the subtree.
	FaultEndless
	// FaultHugeValue answers every OctetString with 60,000 bytes.
	FaultHugeValue
	// FaultDuplicate sends every answer twice, as a network that duplicates
	// datagrams does.
	FaultDuplicate
)

// Device is one simulated agent.
type Device struct {
	Index     int
	Name      string
	Community string

	table    *Table
	conn     *net.UDPConn
	addr     netip.AddrPort
	descr    string
	location string
	bootTime time.Time
	maxResp  int
	allow    []netip.Addr
	refused  atomic.Uint64

	delay     atomic.Int64 // nanoseconds added to each answer
	jitter    time.Duration
	rng       uint64 // xorshift state for the jitter, used by the serving goroutine only
	fault     atomic.Int32
	lossPct   atomic.Int32 // drop this percentage of requests
	lossSeq   atomic.Uint64
	tooBig    atomic.Int32 // >0: a GETBULK answer with more varbinds is tooBig
	silentAbv atomic.Int32 // >0: requests for more varbinds get no answer
	silenced  atomic.Uint64
	other     *net.UDPConn // FaultOtherPort answers from here
	dead      atomic.Bool
	answers   atomic.Int64 // >0: answer this many more requests, then go silent
	requests  atomic.Uint64
	malformed atomic.Uint64
	waiting   atomic.Int64 // delayed answers not yet sent
	mostWait  atomic.Int64 // the most at once
}

// MostInFlight is the most requests the device held at once, waiting for
// their delayed answers: how many a manager had outstanding to it.
func (d *Device) MostInFlight() int { return int(d.mostWait.Load()) }

// AddrPort is where the device listens.
func (d *Device) AddrPort() netip.AddrPort { return d.addr }

// SetDelay makes the device answer d later.
func (d *Device) SetDelay(delay time.Duration) { d.delay.Store(int64(delay)) }

// SetFault makes the device misbehave (FaultNone to heal it).
func (d *Device) SetFault(f Fault) { d.fault.Store(int32(f)) }

// SetLoss makes the device drop pct percent of the requests it receives
// (deterministically spread: every (100/pct)-th, roughly).
func (d *Device) SetLoss(pct int) { d.lossPct.Store(int32(pct)) }

// SetTooBigAbove makes GETBULK answers with more than n varbinds tooBig
// (0: truncate them instead, as RFC 3416 allows).
func (d *Device) SetTooBigAbove(n int) { d.tooBig.Store(int32(n)) }

// SetSilentAbove makes the device ignore requests for more than n
// varbinds (see Config.SilentAbove; 0: answer every size).
func (d *Device) SetSilentAbove(n int) { d.silentAbv.Store(int32(n)) }

// Silenced counts the requests ignored for their size (SetSilentAbove).
func (d *Device) Silenced() uint64 { return d.silenced.Load() }

// asked is how many varbinds a request asks for: its varbinds, or for a
// GETBULK what its answer would hold at most.
func asked(req *gosnmp.SnmpPacket) int {
	n := len(req.Variables)
	if req.PDUType != gosnmp.GetBulkRequest {
		return n
	}
	nonRep := min(int(req.NonRepeaters), n)
	return nonRep + (n-nonRep)*int(req.MaxRepetitions)
}

// StopAfter makes the device answer n more requests and then stop answering,
// like an agent that dies in the middle of a walk.
func (d *Device) StopAfter(n int) { d.answers.Store(int64(n)) }

// SetDead makes the device stop answering (true) or answer again (false).
func (d *Device) SetDead(dead bool) { d.dead.Store(dead) }

// Requests counts datagrams the device received.
func (d *Device) Requests() uint64 { return d.requests.Load() }

// Refused counts the requests dropped because their source was not in AllowFrom.
func (d *Device) Refused() uint64 { return d.refused.Load() }

// Malformed counts datagrams the device could not decode.
func (d *Device) Malformed() uint64 { return d.malformed.Load() }

// Fleet is a running set of devices.
type Fleet struct {
	cfg     Config
	devices []*Device
	wg      sync.WaitGroup
	once    sync.Once
}

// Start opens one UDP socket per device and serves until Close.
func Start(cfg Config) (*Fleet, error) {
	cfg.setDefaults()
	if cfg.Devices < 1 {
		return nil, fmt.Errorf("snmpsim: devices must be at least 1, got %d", cfg.Devices)
	}
	if cfg.Interfaces < 0 {
		return nil, fmt.Errorf("snmpsim: interfaces must not be negative, got %d", cfg.Interfaces)
	}
	ip, err := netip.ParseAddr(cfg.ListenIP)
	if err != nil {
		return nil, fmt.Errorf("snmpsim: listen address: %w", err)
	}
	if !ip.IsLoopback() && !cfg.AllowNonLoopback {
		return nil, fmt.Errorf("snmpsim: listen address %s is not a loopback address (see --allow-non-loopback)", ip)
	}
	table, err := RouterTable(cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg}
	boot := time.Now().Add(-time.Hour)
	for i := 0; i < cfg.Devices; i++ {
		port := 0
		if cfg.BasePort > 0 {
			port = cfg.BasePort + i
		}
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("snmpsim: device %d: %w", i+1, err)
		}
		name := fmt.Sprintf("%s-%05d", cfg.NamePrefix, i+1)
		d := &Device{
			Index: i + 1, Name: name, Community: cfg.Community, table: table, conn: conn,
			addr:     conn.LocalAddr().(*net.UDPAddr).AddrPort(),
			descr:    fmt.Sprintf("Flock simulated router %s, %d interfaces", name, cfg.Interfaces),
			location: fmt.Sprintf("simulated rack %d", i/40+1),
			bootTime: boot, maxResp: cfg.MaxResponseBytes, allow: cfg.AllowFrom,
		}
		d.delay.Store(int64(cfg.Delay))
		d.silentAbv.Store(int32(max(cfg.SilentAbove, 0)))
		d.jitter, d.rng = cfg.Jitter, uint64(i)*0x9E3779B97F4A7C15+1
		n := i + 1
		switch {
		case cfg.DeadEvery > 0 && n%cfg.DeadEvery == 0:
			d.dead.Store(true)
		case cfg.BrokenEvery > 0 && n%cfg.BrokenEvery == 0:
			d.fault.Store(int32(FaultGenErr))
		case cfg.SlowEvery > 0 && n%cfg.SlowEvery == 0:
			d.delay.Store(int64(cfg.SlowDelay))
		}
		if cfg.Devices <= 100 { // a second socket for FaultOtherPort; large fleets go without
			if other, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))); err == nil {
				d.other = other
			}
		}
		f.devices = append(f.devices, d)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			d.serve()
		}()
	}
	return f, nil
}

// Devices lists the fleet's devices in order.
func (f *Fleet) Devices() []*Device { return f.devices }

// Close stops every device and waits for them.
func (f *Fleet) Close() error {
	var errs []error
	f.once.Do(func() {
		for _, d := range f.devices {
			if err := d.conn.Close(); err != nil {
				errs = append(errs, err)
			}
			if d.other != nil {
				_ = d.other.Close()
			}
		}
		f.wg.Wait()
	})
	return errors.Join(errs...)
}

// WriteHosts writes the fleet as entries of a Flock config's hosts list.
func (f *Fleet) WriteHosts(w io.Writer) error { return f.WriteHostsAt(w, "") }

// WriteHostsAt writes the hosts list with address instead of the listen
// address ("" keeps it): the simulator's service name under docker compose.
func (f *Fleet) WriteHostsAt(w io.Writer, address string) error {
	for _, d := range f.devices {
		addr := d.addr.Addr().String()
		if address != "" {
			addr = address
		}
		if _, err := fmt.Fprintf(w, "  - {name: %s, address: %s, port: %d}\n", d.Name, addr, d.addr.Port()); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) serve() {
	buf := make([]byte, 65536)
	dec := &gosnmp.GoSNMP{} // one decoder per goroutine: decoding mutates it
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d.requests.Add(1)
		if d.dead.Load() {
			continue
		}
		if len(d.allow) > 0 && !slices.Contains(d.allow, from.Addr().Unmap()) {
			d.refused.Add(1)
			continue // not on the access list: no answer
		}
		if pct := uint64(d.lossPct.Load()); pct > 0 && (d.lossSeq.Add(1)*pct)%100 < pct {
			continue // lost
		}
		if d.answers.Load() > 0 && d.answers.Add(-1) == 0 {
			d.dead.Store(true) // this was the last answer
		}
		req, err := dec.SnmpDecodePacket(buf[:n])
		if err != nil {
			d.malformed.Add(1)
			continue
		}
		if req.PDUType == gosnmp.GetBulkRequest && Fault(d.fault.Load()) == FaultNoBulk {
			continue
		}
		if limit := int(d.silentAbv.Load()); limit > 0 && asked(req) > limit {
			d.silenced.Add(1)
			continue // too large for this agent: no answer at all
		}
		// A wrong community gets no answer, as on real agents: the manager sees a timeout.
		if req.Version == gosnmp.Version3 || req.Community != d.Community {
			continue
		}
		resp := d.Respond(req, time.Now())
		if resp == nil {
			continue
		}
		fault := Fault(d.fault.Load())
		if fault == FaultWrongRequestID {
			resp.RequestID = req.RequestID + 1000
		}
		out, err := resp.MarshalMsg()
		if err != nil {
			continue
		}
		switch fault {
		case FaultTruncated:
			out = out[:len(out)/2]
		case FaultGarbage:
			out = []byte("\x30\x82\xff\xffHTTP/1.1 400 Bad Request\r\n\r\n")
		}
		conn := d.conn
		if Fault(d.fault.Load()) == FaultOtherPort && d.other != nil {
			conn = d.other
		}
		if delay := time.Duration(d.delay.Load()); delay > 0 {
			if d.jitter > 0 {
				d.rng ^= d.rng << 13
				d.rng ^= d.rng >> 7
				d.rng ^= d.rng << 17
				delay += time.Duration(d.rng%uint64(2*d.jitter+1)) - d.jitter
			}
			if n := d.waiting.Add(1); n > d.mostWait.Load() {
				d.mostWait.Store(n) // only this goroutine raises it
			}
			time.AfterFunc(delay, func() {
				d.waiting.Add(-1)
				_, _ = conn.WriteToUDPAddrPort(out, from)
				if fault == FaultDuplicate {
					_, _ = conn.WriteToUDPAddrPort(out, from)
				}
			})
			continue
		}
		_, _ = conn.WriteToUDPAddrPort(out, from)
		if fault == FaultDuplicate {
			_, _ = conn.WriteToUDPAddrPort(out, from)
		}
	}
}

// Respond computes the answer to a decoded request, or nil when the agent stays silent.
func (d *Device) Respond(req *gosnmp.SnmpPacket, now time.Time) *gosnmp.SnmpPacket {
	resp := &gosnmp.SnmpPacket{
		Version: req.Version, Community: req.Community, PDUType: gosnmp.GetResponse, RequestID: req.RequestID,
	}
	v1 := req.Version == gosnmp.Version1
	if req.PDUType == gosnmp.GetNextRequest || req.PDUType == gosnmp.GetBulkRequest {
		switch Fault(d.fault.Load()) {
		case FaultGenErr:
			return errorResponse(resp, req, gosnmp.GenErr, 1)
		case FaultNonIncreasing:
			resp.Variables = make([]gosnmp.SnmpPDU, len(req.Variables))
			for i, v := range req.Variables {
				resp.Variables[i] = gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.Integer, Value: 1}
			}
			return resp
		case FaultEndless:
			reps := 1
			if req.PDUType == gosnmp.GetBulkRequest {
				reps = max(1, min(int(req.MaxRepetitions), 50))
			}
			for _, v := range req.Variables {
				o, err := oid.Parse(v.Name)
				if err != nil {
					continue
				}
				for r := 0; r < reps; r++ {
					if len(o) < 20 { // always after the asked OID, inside its subtree, bounded in length
						o = append(o, 1)
					} else {
						o[len(o)-1]++
					}
					resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: o.String(), Type: gosnmp.Integer, Value: r})
				}
			}
			return resp
		}
	}
	vars := make([]gosnmp.SnmpPDU, 0, len(req.Variables))
	size := 0
	var scratch oid.OID
	switch req.PDUType {
	case gosnmp.GetRequest, gosnmp.GetNextRequest:
		for i, v := range req.Variables {
			o, err := oid.AppendParse(scratch[:0], v.Name)
			scratch = o
			var e *entry
			var ok bool
			if err == nil {
				if req.PDUType == gosnmp.GetRequest {
					e, ok = d.table.get(o)
				} else {
					e, ok = d.next(o)
				}
			}
			if ok {
				pdu := d.pdu(e, now)
				size += pduSize(&pdu)
				vars = append(vars, pdu)
				continue
			}
			if v1 {
				return errorResponse(resp, req, gosnmp.NoSuchName, i+1)
			}
			typ := gosnmp.EndOfMibView
			if req.PDUType == gosnmp.GetRequest {
				typ = gosnmp.NoSuchObject
				if err == nil && d.table.hasObject(o) {
					typ = gosnmp.NoSuchInstance
				}
			}
			vars = append(vars, gosnmp.SnmpPDU{Name: v.Name, Type: typ})
			size += len(v.Name) + 4
		}
		if size > d.maxResp {
			return errorResponse(resp, req, gosnmp.TooBig, 0)
		}
	case gosnmp.GetBulkRequest:
		if v1 {
			return nil // GETBULK does not exist in v1; a v1 agent drops it
		}
		nonRep := min(int(req.NonRepeaters), len(req.Variables))
		for _, v := range req.Variables[:nonRep] {
			vars = d.appendNext(vars, v.Name, now, &size)
		}
		repeat := req.Variables[nonRep:]
		cursors := make([]string, len(repeat))
		for i, v := range repeat {
			cursors[i] = v.Name
		}
	rows:
		for r := 0; r < int(req.MaxRepetitions) && len(repeat) > 0; r++ {
			allEnded := true
			for i := range cursors {
				before := len(vars)
				vars = d.appendNext(vars, cursors[i], now, &size)
				last := vars[len(vars)-1]
				if size > d.maxResp && before > 0 {
					vars = vars[:before] // truncate, as RFC 3416 §4.2.3 allows
					break rows
				}
				if last.Type != gosnmp.EndOfMibView {
					allEnded = false
				}
				cursors[i] = last.Name
			}
			if allEnded {
				break
			}
		}
	default:
		return nil
	}
	if limit := int(d.tooBig.Load()); limit > 0 && req.PDUType == gosnmp.GetBulkRequest && len(vars) > limit {
		return errorResponse(resp, req, gosnmp.TooBig, 0)
	}
	resp.Variables = vars
	return resp
}

// next is the object after o in the device's walk order.
func (d *Device) next(o oid.OID) (*entry, bool) {
	if Fault(d.fault.Load()) == FaultSwappedRows {
		return d.table.nextSwapped(o)
	}
	return d.table.next(o)
}

func (d *Device) appendNext(vars []gosnmp.SnmpPDU, name string, now time.Time, size *int) []gosnmp.SnmpPDU {
	o, err := oid.Parse(name)
	if err == nil {
		if e, ok := d.next(o); ok {
			pdu := d.pdu(e, now)
			*size += pduSize(&pdu)
			return append(vars, pdu)
		}
	}
	*size += len(name) + 4
	return append(vars, gosnmp.SnmpPDU{Name: name, Type: gosnmp.EndOfMibView})
}

func (d *Device) pdu(e *entry, now time.Time) gosnmp.SnmpPDU {
	if e.typ == gosnmp.OctetString && Fault(d.fault.Load()) == FaultHugeValue {
		return gosnmp.SnmpPDU{Name: e.name, Type: e.typ, Value: make([]byte, 60_000)}
	}
	return gosnmp.SnmpPDU{Name: e.name, Type: e.typ, Value: e.value(d, now)}
}

// pduSize estimates a varbind's encoded size, generously.
func pduSize(p *gosnmp.SnmpPDU) int {
	n := len(p.Name)/2 + 8
	switch v := p.Value.(type) {
	case string:
		n += len(v)
	case []byte:
		n += len(v)
	default:
		n += 9
	}
	return n
}

func errorResponse(resp, req *gosnmp.SnmpPacket, status gosnmp.SNMPError, index int) *gosnmp.SnmpPacket {
	resp.Error = status
	resp.ErrorIndex = uint8(min(index, 255))
	resp.Variables = make([]gosnmp.SnmpPDU, len(req.Variables))
	for i, v := range req.Variables {
		resp.Variables[i] = gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.Null}
	}
	if status == gosnmp.TooBig {
		resp.Variables = nil
	}
	return resp
}
