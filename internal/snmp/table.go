package snmp

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosnmp/gosnmp"

	"github.com/flock-snmp/flock/internal/oid"
	"github.com/flock-snmp/flock/internal/task"
)

// tableVarbinds is about how many varbinds one table request asks for:
// columns x repetitions, small enough that agents do not answer tooBig.
const tableVarbinds = 100

// WalkTable walks the columns of one table together: each request asks for
// the next rows of every column still running (GETBULK; GETNEXT on v1 or
// without bulk), so a table of c columns costs about c times fewer round
// trips than walking it whole. Varbinds reach fn in OID order, column by
// column, as a walk of the table would give them, when the walk ends; on an
// error, the rows collected so far still do. On tooBig it asks for fewer
// rows, down to one; errors are reported as Walk reports them.
func (s *Session) WalkTable(ctx context.Context, root string, columns []string, fn func(*task.Varbind)) error {
	defer s.bind(ctx)()
	root = canonical(root)
	cols := make([]*column, len(columns))
	for i, c := range columns {
		c = canonical(c)
		cols[i] = &column{root: c, cursor: c}
	}
	// Whatever was collected reaches fn, even when the walk fails part way.
	defer func() {
		for _, c := range cols {
			for i := range c.got {
				fn(&c.got[i])
			}
		}
	}()
	bulk := s.g.Version != gosnmp.Version1 && !s.opts.NoBulk
	limit := max(1, s.opts.MaxRepetitions)    // lowered for good when the agent answers tooBig
	active := append([]*column(nil), cols...) // filtered in place; cols keeps the order
	oids := make([]string, 0, len(cols))
	total := 0
	maxOids := max(1, s.opts.MaxOids)
	for len(active) > 0 {
		// At most max_oids columns per request (gosnmp enforces it for GETBULK
		// too); the next columns take the place of those that end.
		batch := active[:min(len(active), maxOids)]
		// About tableVarbinds per answer, re-spread as columns end.
		reps := max(1, min(limit, tableVarbinds/len(batch)))
		oids = oids[:0]
		for _, c := range batch {
			oids = append(oids, c.cursor)
		}
		var pkt *gosnmp.SnmpPacket
		var err error
		if bulk {
			pkt, err = s.g.GetBulk(oids, 0, uint32(reps))
		} else {
			pkt, err = s.g.GetNext(oids)
		}
		if err != nil {
			if bulk && errors.Is(classify(err), ErrTimeout) && ctx.Err() == nil && s.bulkRefused(oids) {
				bulk = false // walk on with GETNEXT
				continue
			}
			return s.opErr(ctx, "walk table "+root+" at", oids[0], err)
		}
		switch {
		case pkt.Error == gosnmp.TooBig && reps > 1:
			limit = reps / 2
			learnRepetitions(&s.learned, limit)
			continue
		case pkt.Error == gosnmp.NoSuchName && !bulk && int(pkt.ErrorIndex) >= 1 && int(pkt.ErrorIndex) <= len(batch):
			batch[pkt.ErrorIndex-1].done = true // v1's end of view for that column
		case pkt.Error != gosnmp.NoError:
			return fmt.Errorf("walk table %s on %s: %w: agent answered %s (max-repetitions %d, %d columns)", root, s.name, ErrProtocol, pkt.Error, reps, len(batch))
		case len(pkt.Variables) == 0:
			return fmt.Errorf("walk table %s on %s: %w: empty answer", root, s.name, ErrProtocol)
		default:
			// Rows of len(batch) varbinds; a truncated answer ends mid-row.
			for i := range pkt.Variables {
				c := batch[i%len(batch)]
				if c.done {
					continue
				}
				p := &pkt.Variables[i]
				if p.Type == gosnmp.EndOfMibView {
					c.done = true
					continue
				}
				if cmp := oid.CompareStrings(p.Name, c.cursor); cmp == 0 || (cmp < 0 && !s.opts.AllowNonIncreasing) {
					return fmt.Errorf("walk table %s on %s: %w: OID %s is not increasing after %s", root, s.name, ErrProtocol, p.Name, c.cursor)
				}
				if !oid.InSubtree(p.Name, c.root) {
					c.done = true
					continue
				}
				var vb task.Varbind
				if err := s.convert(p, &vb); err != nil {
					return fmt.Errorf("walk table %s on %s: %w: %w", root, s.name, ErrProtocol, err)
				}
				c.got = append(c.got, vb)
				c.cursor = p.Name
				if total++; total > s.opts.maxVarbinds() {
					return fmt.Errorf("walk table %s on %s: %w: more than %d varbinds: an agent that walks forever?", root, s.name, ErrProtocol, s.opts.maxVarbinds())
				}
			}
		}
		next := active[:0]
		for _, c := range active {
			if !c.done {
				next = append(next, c)
			}
		}
		active = next
		if err := ctx.Err(); err != nil {
			return s.opErr(ctx, "walk table "+root+" at", oids[0], err)
		}
	}
	return nil
}
