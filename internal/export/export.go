// Package export delivers HostRecords to one metric output at least once.
//
// A Writer reads the records of its sink from a Source (the sink's own
// durable consumer on the results stream), turns each into samples
// (internal/sample, with the host's lookups and info), adds them to its
// Output's batch and sends the batch; only a batch the output accepted is
// acknowledged. While the output cannot write (no connection, 5xx, 429)
// the batch is held, unacknowledged, and sent again with a growing back-off:
// the records behind it wait in the results stream, not in memory, so an
// outage costs a bounded amount of memory however long it lasts, and the
// sink catches up in order when the output returns. An output that refuses
// a batch for good (4xx) is not retried: the refusal is logged with the
// server's answer and the records are acknowledged (they stay in the
// HostRecords); a batch refused so is split in halves and sent again, so
// only the record that holds the refused sample is lost to the sink. Each
// sink has its own Writer and Source, so one sink's outage never stalls
// another's.
package export

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Msg is one delivered record (jetstream.Msg satisfies it).
type Msg interface {
	Subject() string
	Data() []byte
	Ack() error
	// InProgress tells the source the record is still being worked on, so
	// it is not handed to another writer while its output is down.
	InProgress() error
	// Nak hands the record back at once, for the sink's next writer.
	Nak() error
}

// Source delivers a sink's records (internal/natsbus adapts a durable
// consumer to it).
type Source interface {
	// Fetch appends up to max records to dst, waiting up to wait for them.
	Fetch(max int, wait time.Duration, dst []Msg) ([]Msg, error)
	// Progress says how far the sink has written the stream.
	Progress(ctx context.Context) (Progress, error)
	// LastStored is the stream sequence of the last record stored.
	LastStored(ctx context.Context) (uint64, error)
}

// Output is one metric output's batch and the way to send it.
type Output interface {
	// Add adds one record's samples to the batch.
	Add(rec *task.HostRecord, samples []sample.Sample)
	// Send sends the batch. An error for which Final is true will not pass
	// by retrying (the server refused the content).
	Send(ctx context.Context) error
	Final(err error) bool
	// Reset empties the batch.
	Reset()
}

// Progress is how far a sink has written the records stored.
type Progress struct {
	// Pending counts the records not acknowledged: stored and not yet
	// delivered, or delivered and not acknowledged.
	Pending uint64
	// AckFloor is the stream sequence up to which every record is
	// acknowledged.
	AckFloor uint64
}

// Profiles gives a host's profile (its modules' lookups and info; nil:
// none), and whether the host is missing from a writer's inventory (one
// with no inventory at all misses none: it was given none on purpose).
type Profiles func(site, hostKey string) (p *sample.Profile, unknown bool)

// Writer moves one sink's records from its Source to its Output.
type Writer struct {
	Name      string
	Source    Source
	Output    Output
	Converter *sample.Converter
	Profiles  Profiles
	// Batch is how many records one write carries at most.
	Batch   int
	Log     *slog.Logger
	Metrics *Metrics
	// MaxBackoff bounds the wait between attempts while the output is
	// down (default 10s; it must stay below the source's ack wait).
	MaxBackoff time.Duration
}

// fetchWait is how long a fetch waits for records: the latency a record
// may add while the sink is quiet, and how long a stopping writer waits.
const fetchWait = time.Second

// Run writes records until ctx ends. The batch in hand when it ends gets
// one more attempt (a write's timeout at most): written, it is
// acknowledged; not, it is handed back at once, so that the sink's next
// writer starts with it and the database still gets the records in order.
func (w *Writer) Run(ctx context.Context) error {
	m := w.Metrics.sink(w.Name)
	go w.watchPending(ctx, m)
	st := &runState{w: w, m: m, unknown: map[[2]string]bool{}}
	var (
		msgs       []Msg
		readFailed bool // the last fetch failed: said once per outage
	)
	for ctx.Err() == nil {
		var err error
		msgs, err = w.Source.Fetch(w.Batch, fetchWait, msgs[:0])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.errors.Inc()
			if !readFailed {
				readFailed = true
				w.Log.Warn("sink cannot read its records; trying again every second", "sink", w.Name, "err", err)
			}
			sleep(ctx, fetchWait)
			continue
		}
		if readFailed {
			readFailed = false
			w.Log.Info("sink reads its records again", "sink", w.Name)
		}
		if len(msgs) == 0 {
			continue
		}
		st.recs, st.held = st.recs[:0], msgs
		for _, msg := range msgs {
			rec, err := task.DecodeRecord(msg.Data())
			if err != nil {
				// Delivering it again would not make it readable.
				w.Log.Error("unreadable record refused by the sink; not written", "sink", w.Name, "subject", msg.Subject(), "err", err)
				m.refused.Inc()
				continue
			}
			st.recs = append(st.recs, rec)
		}
		if !st.deliver(ctx, st.recs) {
			for _, msg := range msgs {
				_ = msg.Nak() // stopped while holding: to the next writer, first
			}
			return nil
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				// Delivered again later and written twice: the samples are the
				// same, the databases keep one.
				w.Log.Debug("sink could not acknowledge a written record", "sink", w.Name, "subject", msg.Subject(), "err", err)
			}
		}
	}
	return nil
}

// runState is what one writer keeps from batch to batch.
type runState struct {
	w       *Writer
	m       *sinkMetrics
	recs    []task.HostRecord
	samples []sample.Sample
	held    []Msg // the batch's messages, told of progress while held
	down    bool  // the output failed its last attempt: an outage is under way
	since   time.Time
	unknown map[[2]string]bool // hosts not in the inventory, said once each
}

// deliver writes recs, holding them while the output cannot take them.
// A batch the output refuses for good is split in halves and each sent
// again, down to the one record that is refused: one bad sample (out of
// order, say) costs its own record, not the batch's. False: ctx ended
// first.
func (st *runState) deliver(ctx context.Context, recs []task.HostRecord) bool {
	w, m := st.w, st.m
	if len(recs) == 0 {
		return true
	}
	w.Output.Reset()
	n := 0
	for i := range recs {
		rec := &recs[i]
		p, unknown := w.Profiles(rec.Site, rec.HostKey)
		if unknown {
			if k := [2]string{rec.Site, rec.HostKey}; !st.unknown[k] && len(st.unknown) < 10_000 {
				st.unknown[k] = true
				w.Log.Warn("host not in this writer's inventory: its samples carry no lookups or info (give the writer the dispatcher's configuration)",
					"sink", w.Name, "host", rec.Host, "site", rec.Site)
			}
		}
		st.samples = w.Converter.ConvertWith(rec, p, st.samples[:0])
		w.Output.Add(rec, st.samples)
		n += len(st.samples)
	}
	for attempt := 0; ; attempt++ {
		// Progress before each attempt: a slow write must not let the
		// source hand the held batch to another writer.
		if attempt > 0 {
			for _, msg := range st.held {
				_ = msg.InProgress()
			}
		}
		// Not cancelled with ctx: a stopping writer finishes the write under
		// way (bounded by the output's timeout) rather than leave it to the
		// source's ack wait, after which it would land behind newer records.
		err := w.Output.Send(context.WithoutCancel(ctx))
		if err == nil {
			m.records.Add(float64(len(recs)))
			m.samples.Add(float64(n))
			break
		}
		if ctx.Err() != nil {
			return false
		}
		m.errors.Inc()
		if w.Output.Final(err) {
			if len(recs) > 1 {
				half := len(recs) / 2
				first, second := recs[:half], recs[half:]
				return st.deliver(ctx, first) && st.deliver(ctx, second)
			}
			w.Log.Error("sink refused a record: not retried; acknowledged unwritten (it stays in the HostRecords)",
				"sink", w.Name, "host", recs[0].Host, "task_id", recs[0].TaskID, "samples", n, "err", err)
			m.rejected.Inc()
			break
		}
		if !st.down {
			st.down, st.since = true, time.Now()
			w.Log.Warn("sink cannot write: holding its records in the results stream until it can",
				"sink", w.Name, "records", len(st.held), "err", err)
		} else {
			w.Log.Debug("sink still cannot write", "sink", w.Name, "attempt", attempt+1, "err", err)
		}
		for _, msg := range st.held {
			_ = msg.InProgress()
		}
		sleep(ctx, w.backoff(attempt))
	}
	if st.down {
		st.down = false
		w.Log.Info("sink writes again", "sink", w.Name, "outage", time.Since(st.since).Round(time.Millisecond))
	}
	return true
}

// backoff is the wait after the attempt-th failure: 0.5 s doubling to
// MaxBackoff, with a fifth of jitter so writers of one sink spread out.
func (w *Writer) backoff(attempt int) time.Duration {
	ceiling := w.MaxBackoff
	if ceiling <= 0 {
		ceiling = 10 * time.Second
	}
	d := 500 * time.Millisecond << min(attempt, 10)
	d = min(d, ceiling)
	return d - time.Duration(rand.Int64N(int64(d/5)+1))
}

// watchPending keeps the sink's pending gauge current. A pending count it
// cannot read is shown as -1, not as the last one read.
func (w *Writer) watchPending(ctx context.Context, m *sinkMetrics) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := w.Source.Progress(c)
		cancel()
		if err == nil {
			m.pending.Set(float64(p.Pending))
		} else if ctx.Err() == nil {
			m.pending.Set(-1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Drain waits until the sink has acknowledged every record stored when it
// was called (records stored since do not hold it up), or ctx ends, which
// it reports with the records left.
func Drain(ctx context.Context, src Source) (uint64, error) {
	upTo, err := src.LastStored(ctx)
	if err != nil {
		return 0, err
	}
	for {
		p, err := src.Progress(ctx)
		if err == nil && (p.AckFloor >= upTo || p.Pending == 0) {
			return 0, nil
		}
		left := uint64(0)
		if err == nil && upTo > p.AckFloor {
			left = upTo - p.AckFloor
		}
		select {
		case <-ctx.Done():
			return left, errors.Join(ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
